"""Using fine-tuned classifiers: loading a checkpoint, scoring clips, and ``mae-ast-predict``.

    mae-ast-predict CHECKPOINT file.wav [file2.flac ...] [--top-k 5] [--device cuda]

Example::

    mae-ast-predict outputs/finetune/esc50/RUN/checkpoints/checkpoint_best.pt dog.wav --top-k 3

prints, for each file, the top-k classes with their probabilities (softmax for single-label
models, independent sigmoids for multi-label ones).  The checkpoint carries its class list and
filterbank settings, so no training data is needed.  CHECKPOINT is a fairseq ``.pt`` (read with
``torch.load(weights_only=True)``) or a folder from ``mae-ast-export ... --format safetensors``,
which needs no fairseq.
"""

import logging
import os
import sys
from dataclasses import dataclass

import torch

from mae_ast_plugin.cli import command_parser, device_option
from mae_ast_plugin.features import (
    AudioError,
    as_mono_waveform,
    compute_fbank,
    load_audio,
    resample,
)

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


class NotAClassifierError(ValueError):
    pass


@dataclass
class ExportedClassList:
    """The class list of an exported classifier folder (``ClassList``'s fields)."""

    mids: list[str]
    names: list[str]

    def __len__(self):
        return len(self.names)


@dataclass
class ExportedTaskConfig:
    multi_label: bool
    features: object  # FbankConfig


class ExportedTask:
    """What prediction reads of a fine-tuning task, from an exported folder's config.json."""

    def __init__(self, config: dict, features):
        head = config["classifier"]
        self.classes = ExportedClassList(
            mids=list(head["classes"]["mid"]), names=list(head["classes"]["display_name"])
        )
        self.cfg = ExportedTaskConfig(multi_label=bool(head["multi_label"]), features=features)
        self._eval_crop_s = float(head["eval_crop_s"])

    def crop_seconds(self, training: bool) -> float:
        return self._eval_crop_s


def load_exported_classifier(folder: str, device: str = "cpu"):
    """(ClipClassifier in eval mode, ExportedTask) of a folder written by ``mae-ast-export
    --format safetensors`` from a fine-tuned checkpoint; torch and safetensors only."""
    from mae_ast_plugin.pretrained import load_folder

    network, features, config = load_folder(folder, device=device)
    if not config.get("classifier"):
        raise NotAClassifierError(
            f"{folder} holds a {config['model_type']} encoder without a classifier head "
            "(exported from a pretraining checkpoint, it has no classes to predict)"
        )
    return network, ExportedTask(config, features)


def load_classifier(
    checkpoint: str, data: str | None = None, device: str = "cpu", task_overrides=None
):
    """(model in eval mode on ``device``, task) of a fine-tuned checkpoint.  ``data`` replaces
    the training data directory (needed only to load evaluation splits); ``task_overrides``
    replaces other task settings (e.g. ``{"skip_invalid": True}``).

    The checkpoint keeps what defines the model (its filterbank settings, class list, label
    type, evaluation crop); the settings of how the training run read its data are the calling
    tool's to decide, not the training run's: ``skip_invalid`` is False (bad clips are errors)
    and ``fbank_cache`` None (the training machine's cache directory) unless
    ``task_overrides`` says otherwise."""
    from fairseq import checkpoint_utils

    from mae_ast_plugin.checkpoints import read_checkpoint
    from mae_ast_plugin.models.mae_ast_classifier import MaeAstClassifier

    task = {"skip_invalid": False, "fbank_cache": None, **(task_overrides or {})}
    if data:
        task["data"] = data
    state = read_checkpoint(str(checkpoint), arg_overrides={"task": task})
    ensemble, _, task = checkpoint_utils.load_model_ensemble_and_task(
        [str(checkpoint)], state=state
    )
    model = ensemble[0]
    if not isinstance(model, MaeAstClassifier):
        raise NotAClassifierError(
            f"{checkpoint} holds a {type(model).__name__}, not a fine-tuned mae_ast_classifier "
            "(pretraining checkpoints have no classes to predict)"
        )
    return model.to(device).eval(), task


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


def clip_features(
    audio, task, sample_rate: int | None = None, channel_axis: int | None = None
) -> torch.Tensor:
    """(frames, mel) filterbank of one clip, cropped as the evaluation splits are.

    ``audio`` is a file path (read by :func:`load_audio`), or a waveform array/tensor at
    ``sample_rate`` Hz that :func:`as_mono_waveform` accepts (1-D, or 2-D with channels mixed
    down; float or integer PCM), so an array gives the same features as the file it came from.
    """
    features = task.cfg.features
    if isinstance(audio, (str, os.PathLike)):
        waveform = load_audio(str(audio), features.sample_rate)
    else:
        if sample_rate is None:
            raise ValueError("a waveform needs its sample_rate (Hz)")
        waveform = as_mono_waveform(audio, channel_axis)
        waveform = resample(waveform, sample_rate, features.sample_rate)
    waveform = waveform[: int(round(task.crop_seconds(training=False) * features.sample_rate))]
    return compute_fbank(waveform, features)


@torch.no_grad()
def predict_clip(
    model, task, audio, sample_rate: int | None = None, device: str = "cpu",
    channel_axis: int | None = None,
) -> torch.Tensor:
    """Class probabilities (C,) of one clip: a file path, or a waveform at ``sample_rate`` Hz
    (see :func:`clip_features`).  Raises :class:`AudioError` for a clip shorter than one token."""
    fbank = clip_features(audio, task, sample_rate, channel_axis)
    if fbank.shape[0] < model.min_frames:
        name = audio if isinstance(audio, (str, os.PathLike)) else "audio"
        raise AudioError(
            f"{name}: {fbank.shape[0]} frames, fewer than one token ({model.min_frames})"
        )
    logits = model(fbank.unsqueeze(0).to(device))["logits"][0]
    return class_probabilities(logits, task.cfg.multi_label)


def predict_file(model, task, path: str, device: str = "cpu") -> torch.Tensor:
    """Class probabilities (C,) of one audio file."""
    return predict_clip(model, task, path, device=device)


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
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)

    from mae_ast_plugin.checkpoints import UnsafeCheckpointError
    from mae_ast_plugin.pretrained import is_model_folder

    try:
        if is_model_folder(args.checkpoint):
            model, task = load_exported_classifier(args.checkpoint, device=args.device)
        else:
            model, task = load_classifier(args.checkpoint, device=args.device)
    except (NotAClassifierError, UnsafeCheckpointError, FileNotFoundError) as err:
        print(f"mae-ast-predict: error: {err}", file=sys.stderr)
        return 2
    classes = task.classes
    failures = 0
    for path in args.files:
        try:
            probabilities = predict_file(model, task, path, args.device)
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
