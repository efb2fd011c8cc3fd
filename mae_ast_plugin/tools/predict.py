"""Using fine-tuned classifiers: loading a checkpoint, scoring clips, and ``mae-ast-predict``.

    mae-ast-predict CHECKPOINT file.wav [file2.flac ...] [--top-k 5] [--device cuda]

Example::

    mae-ast-predict outputs/finetune/esc50/RUN/checkpoints/checkpoint_best.pt dog.wav --top-k 3

prints, for each file, the top-k classes with their probabilities (softmax for single-label
models, independent sigmoids for multi-label ones).  The checkpoint carries its class list and
filterbank settings, so no training data is needed.  A file is cropped as the evaluation
split was (the checkpoint's ``eval_max_sample_len_s``); what remains, if longer than
``--window-seconds`` (10 s), is encoded in overlapping windows whose tokens are stitched and
pooled by the head.  CHECKPOINT is a fairseq ``.pt`` (read with
``torch.load(weights_only=True)``) or a folder from ``mae-ast-export ... --format safetensors``,
which needs no fairseq.
"""

import logging
import os
import sys
from dataclasses import fields

import torch

from mae_ast_plugin.cli import command_parser, device_option
from mae_ast_plugin.encoder import (
    DEFAULT_WINDOWING,
    MaeAstEncoder,
    Windowing,
    add_window_option,
    windowing_of,
)
from mae_ast_plugin.features import (
    AudioError,
    FbankConfig,
    as_mono_waveform,
    load_audio,
    num_frames,
    resample,
)
from mae_ast_plugin.model_io import load_classifier

# Table 1's columns, told apart by the class count and label type of their data.
TABLE1_BENCHMARKS = {
    (527, True): "AS",
    (50, False): "ESC",
    (35, False): "KS2",
    (12, False): "KS1",
    (1251, False): "SID",
    (4, False): "ER",
}
_MODEL_NAMES = {"mae_ast": "MAE-AST", "ssast": "SSAST"}
_MASKING = {"chunk": "Chunked", "random": "Random", "span": "Span"}


def class_probabilities(logits: torch.Tensor, multi_label: bool) -> torch.Tensor:
    return torch.sigmoid(logits.float()) if multi_label else torch.softmax(logits.float(), dim=-1)


def describe_model(model) -> dict:
    """The Table 1 row a classifier belongs to: pretraining model, token type, encoder depth and
    masking, read from the encoder config it carries."""
    pretrained = model.cfg.pretrained_cfg
    encoder = pretrained["model"]
    whole_spectrum = encoder.get("token_mel_bins") == pretrained["features"]["num_mel_bins"]
    token = "Frame" if whole_spectrum else "Patch"
    layers = encoder.get("encoder_layers")
    name = _MODEL_NAMES.get(encoder.get("_name"), str(encoder.get("_name")))
    if not pretrained.get("checkpoint"):
        return {"name": f"Scratch {token}", "encoder_layers": layers, "masking": "-"}
    return {
        "name": f"{name} {token}",
        "encoder_layers": layers,
        "masking": _MASKING.get(encoder.get("mask_type"), str(encoder.get("mask_type"))),
    }


def benchmark_of(task) -> str | None:
    return TABLE1_BENCHMARKS.get((len(task.classes), bool(task.cfg.multi_label)))


def clip_waveform(
    audio, task, sample_rate: int | None = None, channel_axis: int | None = None
) -> torch.Tensor:
    """The mono waveform (samples,) at ``task.features.sample_rate`` of one clip, cropped as the
    evaluation splits are (``eval_max_sample_len_s`` from the start; SUPERB SID keeps whole
    utterances): what the loader gives the model.

    ``audio`` is a file path (read by :func:`load_audio`), or a waveform array/tensor at
    ``sample_rate`` Hz that :func:`as_mono_waveform` accepts (1-D, or 2-D with channels mixed
    down; float or integer PCM), so an array gives the same input as the file it came from.
    """
    features = task.cfg.features
    if isinstance(audio, (str, os.PathLike)):
        waveform = load_audio(str(audio), features.sample_rate)
    else:
        if sample_rate is None:
            raise ValueError("a waveform needs its sample_rate (Hz)")
        waveform = as_mono_waveform(audio, channel_axis)
        waveform = resample(waveform, sample_rate, features.sample_rate)
    return waveform[: int(round(task.crop_seconds(training=False) * features.sample_rate))]


@torch.no_grad()
def predict_clip(
    model, task, audio, sample_rate: int | None = None, device: str = "cpu",
    channel_axis: int | None = None, windowing: Windowing | None = DEFAULT_WINDOWING,
) -> torch.Tensor:
    """Class probabilities (C,) of one clip: a file path, or a waveform at ``sample_rate`` Hz
    (see :func:`clip_waveform`).  A clip (after the evaluation crop) longer than one window is
    encoded in windows (:class:`~mae_ast_plugin.encoder.Windowing`; ``None``: in one pass) and
    the head pools the stitched tokens, as it pools a short clip's.  Raises :class:`AudioError`
    for a clip shorter than one token."""
    features = task.cfg.features
    waveform = clip_waveform(audio, task, sample_rate, channel_axis)
    frames = num_frames(waveform.numel(), features)
    if frames < model.min_frames:
        name = audio if isinstance(audio, (str, os.PathLike)) else "audio"
        raise AudioError(f"{name}: {frames} frames, fewer than one token ({model.min_frames})")
    # the task's config node as the plain FbankConfig the encoder's front end was built with
    fbank_cfg = FbankConfig(**{f.name: getattr(features, f.name) for f in fields(FbankConfig)})
    encoder = MaeAstEncoder(model.encoder_model, fbank_cfg, device=device)
    out = encoder.extract_features([waveform], features.sample_rate, windowing=windowing)
    tokens = model.combine_layers(out.last_hidden_state, out.hidden_states)
    padding = out.padding_mask if out.padding_mask.any() else None  # one clip: no padding
    logits, _ = model.pool_and_classify(tokens, padding)
    return class_probabilities(logits[0], task.cfg.multi_label)


def predict_file(
    model, task, path: str, device: str = "cpu", windowing: Windowing | None = DEFAULT_WINDOWING
) -> torch.Tensor:
    """Class probabilities (C,) of one audio file."""
    return predict_clip(model, task, path, device=device, windowing=windowing)


def main(argv=None):
    parser = command_parser("mae-ast-predict", __doc__)
    parser.add_argument(
        "checkpoint",
        help="fine-tuned checkpoint (checkpoint_best.pt) or a folder exported from one by "
        "mae-ast-export --format safetensors",
    )
    parser.add_argument("files", nargs="+", help="audio files (any format soundfile reads)")
    parser.add_argument("--top-k", type=int, default=5, help="classes to print per file")
    parser.add_argument(
        "--device", type=device_option, default="cuda" if torch.cuda.is_available() else "cpu"
    )
    add_window_option(parser)
    args = parser.parse_args(argv)
    windowing = windowing_of(args)
    logging.basicConfig(level=logging.WARNING)

    from mae_ast_plugin.model_io import ArtefactError

    try:
        model, task = load_classifier(args.checkpoint, device=args.device)
    except ArtefactError as err:
        print(f"mae-ast-predict: error: {err}", file=sys.stderr)
        return 2
    classes = task.classes
    failures = 0
    for path in args.files:
        try:
            probabilities = predict_file(model, task, path, args.device, windowing)
        except AudioError as err:
            print(f"{path}: error: {err}", file=sys.stderr)
            failures += 1
            continue
        scores, indices = probabilities.topk(min(args.top_k, len(classes)))
        print(path)
        for score, index in zip(scores.tolist(), indices.tolist(), strict=True):
            print(f"  {score:.4f}  {classes.names[index]}  ({classes.mids[index]})")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
