"""``mae-ast-export CHECKPOINT OUT_DIR --format hf``: a Hugging Face ``transformers`` model folder
with custom code, as recent audio encoders are published::

    OUT_DIR/
      config.json                    MaeAstConfig: architecture, filterbank, windows, head, id2label
      model.safetensors              the weights (encoder; and the head of a fine-tuned model)
      preprocessor_config.json       MaeAstFeatureExtractor's settings
      configuration_mae_ast.py       the config class
      modeling_mae_ast.py            MaeAstModel (AutoModel), MaeAstForAudioClassification
      feature_extraction_mae_ast.py  waveform in (any rate, mono mix), Kaldi filterbank out

Used as::

    from transformers import AutoFeatureExtractor, AutoModel
    extractor = AutoFeatureExtractor.from_pretrained(OUT_DIR, trust_remote_code=True)
    model = AutoModel.from_pretrained(OUT_DIR, trust_remote_code=True)
    out = model(**extractor([wave], sampling_rate=44100))   # out.hidden_states: every layer

The folder's code needs torch, torchaudio and transformers, not this package or fairseq; the
templates ship in ``mae_ast_plugin/hf_template``.  Any checkpoint ``load_encoder`` reads (ours or
the authors', pretraining or fine-tuned, or an exported safetensors folder) is exported; the
hidden states equal ``load_encoder(...).extract_features``' (``hidden_states[i]`` is its layer
i, ``hidden_states[0]`` the first layer's input) and a classifier's logits equal
``mae-ast-predict``'s, windows for long audio included.
"""

import json
import os
import tempfile
from pathlib import Path

from .atomic_io import atomic_target, atomic_write_text
from .encoder import DEFAULT_WINDOWING
from .features import FbankConfig, num_frames

TEMPLATES = Path(__file__).resolve().parent / "hf_template"
CODE_FILES = ("configuration_mae_ast.py", "modeling_mae_ast.py", "feature_extraction_mae_ast.py")
ENCODER_PREFIXES = ("batch_norm.", "post_extract_proj.", "encoder.")
AUTO_MAP = {
    "AutoConfig": "configuration_mae_ast.MaeAstConfig",
    "AutoModel": "modeling_mae_ast.MaeAstModel",
    "AutoFeatureExtractor": "feature_extraction_mae_ast.MaeAstFeatureExtractor",
}


def hf_config(config: dict) -> dict:
    """The ``config.json`` of the HF folder from an exported folder's config (see
    :mod:`mae_ast_plugin.model_io.folder`)."""
    encoder, features = config["encoder"], FbankConfig(**config["features"])
    window_samples = int(round(DEFAULT_WINDOWING.window_s * features.sample_rate))
    out = {
        "model_type": "mae_ast",
        "architectures": ["MaeAstModel"],
        "auto_map": dict(AUTO_MAP),
        "source_model_type": config["model_type"],
        "token_frames": encoder["token_frames"],
        "token_mel_bins": encoder["token_mel_bins"],
        "num_mel_bins": features.num_mel_bins,
        "sample_rate": features.sample_rate,
        "frame_length_ms": features.frame_length_ms,
        "frame_shift_ms": features.frame_shift_ms,
        "hidden_size": encoder["encoder_embed_dim"],
        "num_hidden_layers": encoder["encoder_layers"],
        "num_attention_heads": encoder["encoder_attention_heads"],
        "intermediate_size": encoder["encoder_ffn_embed_dim"],
        "layer_norm_eps": 1e-5,  # torch.nn.LayerNorm's and BatchNorm's defaults, as trained
        "batch_norm_eps": 1e-5,
        "window_frames": num_frames(window_samples, features),
        "hop_frames": int(round(DEFAULT_WINDOWING.hop_s * 1000.0 / features.frame_shift_ms)),
        "batch_windows": DEFAULT_WINDOWING.batch_windows,
        "output_hidden_states": True,
        "provenance": config.get("provenance", {}),
    }
    head = config.get("classifier")
    if head:
        names = list(head["classes"]["display_name"])
        crop = float(head["eval_crop_s"])
        crop_frames = num_frames(int(round(crop * features.sample_rate)), features)
        out.update(
            architectures=["MaeAstForAudioClassification"],
            auto_map=dict(
                AUTO_MAP,
                AutoModelForAudioClassification="modeling_mae_ast.MaeAstForAudioClassification",
            ),
            layer_weighting=bool(head["layer_weighting"]),
            projector_dim=int(head["projector_dim"]),
            head_layer_norm=bool(head["head_layer_norm"]),
            multi_label=bool(head["multi_label"]),
            eval_crop_frames=crop_frames if crop < 24 * 3600 else None,
            id2label={str(i): name for i, name in enumerate(names)},
            label2id={name: i for i, name in enumerate(names)},
            label_mids=list(head["classes"]["mid"]),
        )
    return out


def hf_weights(state: dict, classifier: bool) -> dict:
    """The exported folder's state dict under the HF model's names: the encoder's tensors as
    they are (``MaeAstModel``), a classifier's encoder under ``mae_ast.`` and its head as is."""
    out = {}
    for key, value in state.items():
        if classifier:
            if key.startswith("encoder_model."):
                inner = key[len("encoder_model."):]
                if inner.startswith(ENCODER_PREFIXES):
                    out["mae_ast." + inner] = value
            else:
                out[key] = value
        elif key.startswith(ENCODER_PREFIXES):
            out[key] = value
    return out


def export_hf(source: str, out_dir: str) -> dict:
    """Write the HF folder of ``source`` (a checkpoint or an exported safetensors folder) into
    ``out_dir``; returns its config dict.  Every file is written under a temporary name and
    renamed."""
    from safetensors.torch import load_file, save_file

    from .model_io.folder import WEIGHTS_NAME, is_model_folder, read_config

    with tempfile.TemporaryDirectory(prefix="mae_ast_hf_") as scratch:
        folder = str(source)
        if not is_model_folder(folder):
            from .export import export_safetensors

            folder = os.path.join(scratch, "folder")
            export_safetensors(str(source), folder)
        config = read_config(folder)
        state = load_file(os.path.join(folder, WEIGHTS_NAME))
    classifier = bool(config.get("classifier"))
    out_config = hf_config(config)
    weights = {k: v.contiguous() for k, v in hf_weights(state, classifier).items()}
    features = FbankConfig(**config["features"])
    preprocessor = {
        "feature_extractor_type": "MaeAstFeatureExtractor",
        "auto_map": {"AutoFeatureExtractor": AUTO_MAP["AutoFeatureExtractor"]},
        "feature_size": features.num_mel_bins,
        "sampling_rate": features.sample_rate,
        "frame_length_ms": features.frame_length_ms,
        "frame_shift_ms": features.frame_shift_ms,
        "padding_value": 0.0,
        "padding_side": "right",
        "return_attention_mask": True,
    }
    os.makedirs(out_dir, exist_ok=True)
    with atomic_target(os.path.join(out_dir, "model.safetensors")) as temporary:
        save_file(weights, temporary, metadata={"format": "pt"})
    for name in CODE_FILES:
        atomic_write_text(os.path.join(out_dir, name), (TEMPLATES / name).read_text())
    atomic_write_text(os.path.join(out_dir, "preprocessor_config.json"),
                      json.dumps(preprocessor, indent=1) + "\n")
    atomic_write_text(os.path.join(out_dir, "config.json"),
                      json.dumps(out_config, indent=1, allow_nan=False) + "\n")
    return out_config
