"""Export a checkpoint for use outside this plugin: ``mae-ast-export``.

    mae-ast-export CHECKPOINT OUT.pt  --format authors
    mae-ast-export CHECKPOINT OUT_DIR --format safetensors
    mae-ast-export CHECKPOINT OUT_DIR --format hf

``authors``: a fairseq checkpoint in the exact layout of the authors' plugin
(AlanBaade/MAE-AST-Public): their ``cfg.model``/``cfg.task`` field names and values and every
state-dict key their ``MAE_AST`` expects, including the stored sinusoidal tables
(``--max-token-length`` rows).  s3prl's ``mae_ast_local`` upstream and the authors' own plugin
load it.  Only pretraining ``mae_ast`` checkpoints have an equivalent there; an option the
authors never had (SSAST, a fine-tuned classifier, span masking, chunk sides other than 3-5,
another analysis window) is refused with an error naming it.

``safetensors``: a folder ``model.safetensors`` + ``config.json`` (see
:mod:`mae_ast_plugin.pretrained`) of any checkpoint (pretraining or fine-tuned classifier, ours
or the authors'), which ``mae_ast_plugin.load_encoder(OUT_DIR)`` and ``mae-ast-predict`` read
without fairseq.

``hf``: a Hugging Face ``transformers`` folder with custom code (``AutoModel``, and
``AutoModelForAudioClassification`` for fine-tuned models, a waveform-in feature extractor; see
:mod:`mae_ast_plugin.hf_export`) of any checkpoint or exported folder.

The input checkpoint is read with ``torch.load(weights_only=True)`` (a file that would run
code is refused); reading it needs fairseq, the exported files do not.
"""

import argparse
import dataclasses
import datetime
import logging
import os
import sys

import torch

from .atomic_io import atomic_target
from .hashing import file_sha256

logger = logging.getLogger(__name__)

# The authors' MAE_AST_Config and MAE_AST_Pretraining_Config fields, in their order
# (AlanBaade/MAE-AST-Public mae_ast/models/mae_ast.py, tasks/mae_ast_pretraining.py @287574d5;
# the same in s3prl 0.4.18 s3prl/upstream/mae_ast/).
AUTHORS_MODEL_FIELDS = (
    "ast_kernel_size_chan", "ast_kernel_size_time", "ast_kernel_stride_chan",
    "ast_kernel_stride_time", "encoder_layers", "encoder_embed_dim", "encoder_ffn_embed_dim",
    "encoder_attention_heads", "activation_fn", "layer_norm_first", "feature_grad_mult",
    "use_post_enc_proj", "decoder_embed_dim", "decoder_layers", "decoder_layerdrop", "dropout",
    "attention_dropout", "activation_dropout", "encoder_layerdrop", "dropout_input",
    "random_mask_prob", "mask_length", "mask_selection", "mask_other", "no_mask_overlap",
    "mask_min_space", "conv_pos", "conv_pos_groups", "checkpoint_activations",
    "max_token_length", "enc_sine_pos", "enc_conv_pos", "dec_sine_pos", "dec_conv_pos",
)
AUTHORS_TASK_FIELDS = (
    "data", "sample_rate", "normalize", "enable_padding", "max_keep_size", "max_sample_size",
    "min_sample_size", "random_crop", "pad_audio", "feature_type", "feature_rate",
    "feature_dim", "deltas", "mask_spans", "mask_type",
)
# Their sinusoid tables' default length (MAE_AST_Config.max_token_length): 48000 tokens, 16 min
# of patch tokens or 16 min of frame tokens.
AUTHORS_MAX_TOKEN_LENGTH = 48000
# Values of their fields that our model has no counterpart for; the ones compat.py checks on
# the way in are set to what it accepts, the others to their pretraining yaml's values
# (config/pretrain/mae_ast.yaml) where it sets them, else their dataclass defaults.
_AUTHORS_FIXED_MODEL = {
    "activation_fn": "gelu",
    "layer_norm_first": False,
    "feature_grad_mult": 0.1,
    "mask_selection": "static",
    "mask_other": 0.0,
    "no_mask_overlap": False,
    "mask_min_space": 0,
    "conv_pos": 128,
    "conv_pos_groups": 16,
    "enc_sine_pos": True,
    "enc_conv_pos": False,
    "dec_sine_pos": True,
    "dec_conv_pos": False,
}
_AUTHORS_FIXED_TASK = {
    "normalize": False,
    "enable_padding": False,
    "max_keep_size": None,
    "max_sample_size": 250000,
    "min_sample_size": 32000,
    "random_crop": True,
    "pad_audio": False,
    "feature_type": "fbank",
    "deltas": False,
    "mask_spans": False,
}
# Our model fields that only matter in training and have no effect on the trained network's
# function (init_style only chooses the initial weights).
_TRAINING_ONLY = ("checkpoint_activations", "init_style")


class NotExportableError(ValueError):
    """A checkpoint the requested format cannot express."""


# --------------------------------------------------------------------------------------------
def _load(checkpoint: str):
    """(model, cfg, task, state) of any checkpoint of ours or the authors'."""
    from fairseq import checkpoint_utils

    import mae_ast_plugin  # noqa: F401  (registers the models, the authors' cfg upgrade)

    from .checkpoints import read_checkpoint

    state = read_checkpoint(checkpoint)
    models, cfg, task = checkpoint_utils.load_model_ensemble_and_task([checkpoint], state=state)
    return models[0].eval(), cfg, task, state


def _num_updates(state) -> int:
    history = state.get("optimizer_history") or [{}]
    return int(history[-1].get("num_updates", 0))



def _merged_model_cfg(model, cfg):
    """The config the model was built with: the checkpoint's ``cfg.model`` merged with the
    dataclass defaults of fields it lacks (an authors' checkpoint has no chunk sides)."""
    from omegaconf import OmegaConf, open_dict

    merged = OmegaConf.create(OmegaConf.to_container(model.cfg, resolve=True, enum_to_str=True))
    with open_dict(merged):
        merged["_name"] = cfg.model["_name"]
    return merged


def _plain_encoder_config(model_cfg) -> dict:
    """Our network's config fields (the plain dataclass's) as JSON values."""
    from .modules.mae_ast import MaeAstConfig

    return {
        f.name: (str(model_cfg[f.name]) if f.name == "mask_type" else model_cfg[f.name])
        for f in dataclasses.fields(MaeAstConfig)
    }


# --------------------------------------------------------------------------------------------
def export_safetensors(checkpoint: str, out_dir: str) -> dict:
    """Write ``out_dir/model.safetensors`` and ``config.json`` for ``checkpoint`` (pretraining
    or fine-tuned); returns the config written."""
    from omegaconf import OmegaConf

    from .checkpoints import features_config
    from .models.mae_ast_classifier import MaeAstClassifier
    from .pretrained import read_config, save_folder

    model, cfg, task, state = _load(checkpoint)
    classifier = None
    if isinstance(model, MaeAstClassifier):
        encoder_cfg = OmegaConf.create(model.cfg.pretrained_cfg["model"])
        network = model
        classifier = {
            "classes": task.classes.to_state(),
            "multi_label": bool(task.cfg.multi_label),
            "eval_crop_s": float(task.crop_seconds(training=False)),
            "layer_weighting": bool(model.cfg.layer_weighting),
            "projector_dim": int(model.cfg.projector_dim),
            "head_layer_norm": bool(model.cfg.head_layer_norm),
        }
        model_type = encoder_cfg["_name"]
    else:
        model.remove_pretraining_modules()
        network, encoder_cfg, model_type = model, _merged_model_cfg(model, cfg), cfg.model["_name"]
    provenance = {
        "source_checkpoint": os.path.abspath(checkpoint),
        "source_sha256": file_sha256(checkpoint),
        "source_model": cfg.model["_name"],
        "num_updates": _num_updates(state),
        "exported_utc": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
    }
    save_folder(
        out_dir,
        network,
        model_type=model_type,
        encoder=_plain_encoder_config(encoder_cfg),
        features=features_config(cfg),
        classifier=classifier,
        provenance=provenance,
    )
    return read_config(out_dir)


# --------------------------------------------------------------------------------------------
def _refuse(option: str, why: str):
    raise NotExportableError(
        f"cannot export to the authors' format: {option} {why}.  Use --format safetensors, "
        "which keeps every option of this plugin"
    )


def authors_cfg(model_cfg, features, task_data: str, max_token_length: int):
    """Our model config and filterbank settings as the authors' (model, task) cfg dicts; the
    inverse of ``compat.upgrade_authors_cfg``, built from the same tables."""
    from .compat import _MASK_TYPES, _MODEL_DROPPED, _MODEL_RENAMES, _TASK_DROPPED

    name = model_cfg.get("_name")
    if name != "mae_ast":
        what = {"ssast": "is the SSAST baseline (their plugin has only MAE-AST)",
                "mae_ast_classifier": "is a fine-tuned classifier (their plugin has no "
                "fine-tuning model; export its pretraining checkpoint)"}
        _refuse(f"model._name={name}", what.get(name, "is not an MAE-AST pretraining model"))
    if features.frame_length_ms != 25.0 or features.frame_shift_ms != 10.0:
        _refuse(
            f"task.features.frame_length_ms={features.frame_length_ms}/frame_shift_ms="
            f"{features.frame_shift_ms}",
            "differ from their fixed 25 ms window and 10 ms shift",
        )
    mask_type = str(model_cfg.mask_type)
    to_authors_mask = {ours: theirs for theirs, ours in reversed(_MASK_TYPES.items())}
    if mask_type not in to_authors_mask:
        _refuse(
            f"model.mask_type={mask_type}",
            "has no equivalent (their retain_spans keeps spans and masks about exp(-p) of the "
            "tokens, with no exact ratio)",
        )
    if mask_type == "chunk" and (model_cfg.chunk_min_size, model_cfg.chunk_max_size) != (3, 5):
        _refuse(
            f"model.chunk_min_size={model_cfg.chunk_min_size}/chunk_max_size="
            f"{model_cfg.chunk_max_size}",
            "differ from their fixed chunk sides 3-5",
        )

    ours = {key: model_cfg[key] for key in model_cfg if key != "_name"}
    handled = set(_MODEL_RENAMES.values()) | set(_TRAINING_ONLY) | {"mask_type"}
    handled |= {"chunk_min_size", "chunk_max_size"}
    model = {"_name": "mae_ast"}
    for field in AUTHORS_MODEL_FIELDS:
        if field in _MODEL_RENAMES:
            model[field] = ours[_MODEL_RENAMES[field]]
        elif field in _AUTHORS_FIXED_MODEL:
            model[field] = _AUTHORS_FIXED_MODEL[field]
        elif field in ours:
            model[field] = ours[field]
            handled.add(field)
    model["ast_kernel_stride_time"] = model["ast_kernel_size_time"]
    model["ast_kernel_stride_chan"] = model["ast_kernel_size_chan"]
    model["use_post_enc_proj"] = model["encoder_embed_dim"] != model["decoder_embed_dim"]
    model["checkpoint_activations"] = False  # memory saving only; s3prl refuses True
    model["max_token_length"] = int(max_token_length)
    unknown = sorted(set(ours) - handled)
    if unknown:
        _refuse(f"model.{unknown[0]}", "has no equivalent in their MAE_AST_Config")
    missing = sorted(set(AUTHORS_MODEL_FIELDS) - set(model))
    assert not missing and set(_MODEL_DROPPED) <= set(model), missing  # tables out of step

    task = {"_name": "mae_ast_pretraining"}
    for field in AUTHORS_TASK_FIELDS:
        task[field] = _AUTHORS_FIXED_TASK.get(field)
    task.update(
        data=task_data,
        sample_rate=int(features.sample_rate),
        feature_rate=int(round(1000.0 / features.frame_shift_ms)),
        feature_dim=int(features.num_mel_bins),
        mask_type=to_authors_mask[mask_type],
    )
    assert set(_TASK_DROPPED) <= set(task)
    return model, task


def authors_state_dict(model, authors_model_cfg: dict, num_mel_bins: int) -> dict:
    """Our pretraining model's state dict with the authors' extra entries: the stored
    sinusoid tables (1, max_token_length, dim) and the parameters their forward pass never
    reads (``encoder_mask_emb``: zeros; ``layer_norm`` over the mel bins: identity)."""
    from .modules.tokens import sinusoidal_positions

    state = {k: v.detach().clone() for k, v in model.state_dict().items()}
    dtype = state["post_extract_proj.weight"].dtype
    length = authors_model_cfg["max_token_length"]
    for prefix, dim in (("enc", authors_model_cfg["encoder_embed_dim"]),
                        ("dec", authors_model_cfg["decoder_embed_dim"])):
        table = sinusoidal_positions(length, dim, "cpu", torch.float32)
        state[f"{prefix}_sine_pos_embed.pe"] = table.unsqueeze(0).to(dtype).clone()  # not a view
    state["encoder_mask_emb"] = torch.zeros(authors_model_cfg["encoder_embed_dim"], dtype=dtype)
    state["layer_norm.weight"] = torch.ones(num_mel_bins, dtype=dtype)
    state["layer_norm.bias"] = torch.zeros(num_mel_bins, dtype=dtype)
    return state


def export_authors(checkpoint: str, out_path: str, max_token_length=AUTHORS_MAX_TOKEN_LENGTH):
    """Write ``checkpoint`` (an MAE-AST pretraining checkpoint) as the authors' plugin would
    have saved it: same top-level keys, ``cfg`` a plain dict, their model and task fields.  The
    optimizer state is not carried (``last_optimizer_state`` None): the file is for inference
    and fine-tuning, not for resuming."""
    from omegaconf import OmegaConf

    from .checkpoints import features_config

    if max_token_length < 1:
        raise ValueError(f"--max-token-length must be positive, got {max_token_length}")
    model, cfg, _task, state = _load(checkpoint)
    features = features_config(cfg)
    model_cfg, task_cfg = authors_cfg(
        _merged_model_cfg(model, cfg), features, str(cfg.task.get("data", "")), max_token_length
    )
    full_cfg = OmegaConf.to_container(cfg, resolve=True, enum_to_str=True)
    full_cfg["model"], full_cfg["task"] = model_cfg, task_cfg
    full_cfg["common"]["user_dir"] = None  # theirs is wherever the user put MAE-AST-Public
    criterion = full_cfg.get("criterion") or {}
    full_cfg["criterion"] = {
        "_name": "mae_ast",
        "reconstruction_weight": float(criterion.get("reconstruction_weight", 10.0)),
        "classification_weight": float(criterion.get("classification_weight", 1.0)),
    }
    exported = {
        "args": None,
        "cfg": full_cfg,
        "model": authors_state_dict(model, model_cfg, features.num_mel_bins),
        "criterion": None,
        "optimizer_history": state.get("optimizer_history") or [],
        "task_state": {},
        "extra_state": state.get("extra_state"),
        "last_optimizer_state": None,
    }
    with atomic_target(out_path) as temporary:
        torch.save(exported, temporary)
    return exported


# --------------------------------------------------------------------------------------------
EPILOG = """examples:
  mae-ast-export outputs/pretrain/checkpoints/checkpoint_last.pt mae_ast_patch.pt --format authors
      then in s3prl: python run_downstream.py -u mae_ast_local -k mae_ast_patch.pt ...
  mae-ast-export outputs/esc50/checkpoints/checkpoint_best.pt esc50_model/ --format safetensors
      then: mae_ast_plugin.load_encoder("esc50_model/"), or mae-ast-predict esc50_model/ a.wav
"""


def main(argv=None):
    parser = argparse.ArgumentParser(
        prog="mae-ast-export",
        description=__doc__.split("\n\n")[0],
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("checkpoint", help="fairseq checkpoint (ours or the authors')")
    parser.add_argument("out", help="OUT.pt for --format authors, a folder for safetensors, hf")
    parser.add_argument("--format", required=True, choices=("authors", "safetensors", "hf"))
    parser.add_argument(
        "--max-token-length",
        type=int,
        default=AUTHORS_MAX_TOKEN_LENGTH,
        help="authors: rows of the stored sinusoid tables, the longest clip in tokens "
        f"(default {AUTHORS_MAX_TOKEN_LENGTH}, theirs)",
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    from .checkpoints import UnsafeCheckpointError

    try:
        if args.format == "authors":
            exported = export_authors(args.checkpoint, args.out, args.max_token_length)
            model = exported["cfg"]["model"]
            print(
                f"wrote {args.out}: authors' format, {model['encoder_layers']}-layer encoder, "
                f"tokens {model['ast_kernel_size_time']} frames x {model['ast_kernel_size_chan']}"
                f" mel bins, mask_type {exported['cfg']['task']['mask_type']}"
            )
        elif args.format == "hf":  # a Hugging Face custom-code folder: see hf_export.py
            from .hf_export import export_hf

            config = export_hf(args.checkpoint, args.out)
            print(f"wrote {args.out}/: Hugging Face folder, {config['architectures'][0]}")
        else:
            config = export_safetensors(args.checkpoint, args.out)
            kind = "classifier" if config["classifier"] else "encoder"
            print(f"wrote {args.out}/: {config['model_type']} {kind}, safetensors + config.json")
    except (NotExportableError, UnsafeCheckpointError, FileNotFoundError) as err:
        print(f"mae-ast-export: error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
