"""The authors' checkpoint format (AlanBaade/MAE-AST-Public): reading it, and writing ours in it.

Reading.
Their ``cfg`` uses other field names (``ast_kernel_size_*``, ``random_mask_prob``, a flat
``feature_dim``...) and fields we have no use for (``feature_type``, ``deltas``, ``conv_pos``...).
fairseq would silently drop unknown fields when it rebuilds the task and model, so this module
rewrites them first, in one step: :func:`upgrade_authors_cfg`.  It is chained after fairseq's
own checkpoint upgrade (``checkpoint_utils._upgrade_state_dict``), so every fairseq loading path
(``load_model_ensemble_and_task``, fine-tuning from ``pretrained_checkpoint``, resuming) sees
our names.  A value we cannot honour (``feature_type: wav``, deltas, pre-LN layers, conv
positions...) raises :class:`IncompatibleCheckpointError` instead of being dropped.

The state dict needs only :func:`drop_authors_buffers`: their sinusoidal tables (which we
compute instead, after checking them) and two parameters their forward pass never used.

Writing (``mae-ast-export --format authors``, :func:`save_authors`): the inverse, built from
the same tables: their ``cfg.model``/``cfg.task`` field names and values and every state-dict
key their ``MAE_AST`` expects, including the stored sinusoidal tables (``max_token_length``
rows).  s3prl's ``mae_ast_local`` upstream and the authors' own plugin load it.  Only
pretraining ``mae_ast`` checkpoints have an equivalent there; an option the authors never had
(SSAST, a fine-tuned classifier, span masking, chunk sides other than 3-5, another analysis
window) is refused with :class:`NotExportableError` naming it.
"""

import logging
import math

import torch

from ..atomic_io import atomic_target
from .errors import IncompatibleCheckpointError, NotExportableError

logger = logging.getLogger(__name__)


# authors' model field -> ours, where only the name differs
_MODEL_RENAMES = {
    "ast_kernel_size_time": "token_frames",
    "ast_kernel_size_chan": "token_mel_bins",
    "random_mask_prob": "mask_ratio",
    "mask_length": "span_length",
}
# authors' model fields with no effect in our model, or whose effect is fixed
_MODEL_DROPPED = (
    "ast_kernel_stride_time",  # checked equal to the kernel (non-overlapping tokens)
    "ast_kernel_stride_chan",
    "activation_fn",  # checked == gelu
    "layer_norm_first",  # checked False (post-LN)
    "feature_grad_mult",  # scaled the gradient of an identity "feature extractor": no effect
    "use_post_enc_proj",  # checked; we project exactly when the widths differ
    "mask_selection",  # wav2vec2 span options of retain_spans
    "mask_other",
    "no_mask_overlap",
    "mask_min_space",
    "conv_pos",  # convolutional positions: checked disabled
    "conv_pos_groups",
    "max_token_length",  # length of their stored sinusoid tables; we compute positions
    "enc_sine_pos",  # checked True
    "dec_sine_pos",
    "enc_conv_pos",
    "dec_conv_pos",
)
_TASK_DROPPED = (
    "feature_type",  # checked == fbank
    "feature_dim",  # -> features.num_mel_bins
    "sample_rate",  # -> features.sample_rate
    "feature_rate",  # checked == 1000 / frame shift
    "deltas",  # checked False
    "normalize",  # waveform layer norm, only used by feature_type=wav
    "enable_padding",  # unused in their code
    "pad_audio",  # we always pad (their crop-to-shortest is not reproduced)
    "random_crop",  # we crop at random in train splits
    "max_sample_size",  # mixed units in their code; ours is max_sample_len_s
    "max_keep_size",
    "mask_spans",  # unused in their code
    "mask_type",  # -> model.mask_type
)
_MASK_TYPES = {"random_mask": "random", "random_mask_batched": "random", "chunk_mask": "chunk"}


def is_authors_cfg(cfg) -> bool:
    model = cfg.get("model") if cfg is not None else None
    return model is not None and model.get("_name") == "mae_ast" and "ast_kernel_size_time" in model


def _require(condition: bool, message: str):
    if not condition:
        raise IncompatibleCheckpointError(
            f"authors' checkpoint cannot be loaded faithfully: {message}"
        )


def upgrade_authors_cfg(cfg) -> None:
    """Rewrite an authors' ``cfg`` (a DictConfig: model and task) into ours, in place."""
    from omegaconf import open_dict

    model, task = cfg.model, cfg.task
    _require(task.get("feature_type") == "fbank", f"feature_type={task.get('feature_type')!r} "
             "(this plugin computes Kaldi fbank features only)")
    _require(not task.get("deltas", False), "deltas=True (delta features are not supported)")
    _require(int(task.get("feature_rate", 100)) == 100, "feature_rate must be 100 (10 ms frames)")
    _require(not model.get("layer_norm_first", False), "layer_norm_first=True (pre-LN layers)")
    _require(model.get("activation_fn", "gelu") == "gelu", f"activation_fn={model.activation_fn}")
    _require(not model.get("enc_conv_pos") and not model.get("dec_conv_pos"),
             "convolutional positional embeddings are enabled")
    _require(model.get("enc_sine_pos", False) and model.get("dec_sine_pos", False),
             "sinusoidal positions disabled (enc_sine_pos/dec_sine_pos false)")
    for axis in ("time", "chan"):
        _require(model[f"ast_kernel_stride_{axis}"] == model[f"ast_kernel_size_{axis}"],
                 f"overlapping tokens (ast_kernel_stride_{axis} != ast_kernel_size_{axis})")
    _require(
        not (model.get("use_post_enc_proj") and model.encoder_embed_dim == model.decoder_embed_dim),
        "use_post_enc_proj=True with equal encoder and decoder widths",
    )

    with open_dict(cfg):
        mask_type = task.get("mask_type", "random_mask")
        for old, new in _MODEL_RENAMES.items():
            if old in model:
                model[new] = model.pop(old)
        if mask_type == "retain_spans":
            # Their spans were the *kept* tokens: with span probability p about exp(-p) of the
            # tokens were masked.  Keep that behaviour under our span mode's exact-ratio rule.
            masked = round(math.exp(-float(model.mask_ratio)), 2)
            logger.warning(
                "authors' retain_spans (p=%s) masked about %.2f of tokens; using "
                "mask_type=span, mask_ratio=%.2f",
                model.mask_ratio,
                masked,
                masked,
            )
            model.mask_type, model.mask_ratio = "span", masked
        else:
            _require(mask_type in _MASK_TYPES, f"unknown mask_type {mask_type!r}")
            model.mask_type = _MASK_TYPES[mask_type]
        task.features = {
            "sample_rate": int(task.get("sample_rate", 16000)),
            "num_mel_bins": int(task.feature_dim),
        }
        for key in _MODEL_DROPPED:
            model.pop(key, None)
        for key in _TASK_DROPPED:
            task.pop(key, None)


def drop_authors_buffers(state_dict, prefix: str = "", keep=()) -> None:
    """Remove the authors' stored sinusoid tables (after checking they match ours) and their
    unused ``layer_norm`` and ``encoder_mask_emb`` parameters, unless named in ``keep`` (a model
    that does use a parameter of that name)."""
    from ..modules.tokens import sinusoidal_positions

    for name in ("enc_sine_pos_embed.pe", "dec_sine_pos_embed.pe"):
        table = state_dict.pop(prefix + name, None)
        if table is not None:
            table = table.reshape(-1, table.shape[-1]).float()
            ours = sinusoidal_positions(table.shape[0], table.shape[1], "cpu", torch.float32)
            error = (table - ours).abs().max().item()
            _require(error < 1e-3, f"{name} differs from the standard sinusoid table by {error}")
    for name in ("layer_norm.weight", "layer_norm.bias", "encoder_mask_emb"):
        if name not in keep:
            state_dict.pop(prefix + name, None)


def install_checkpoint_upgrade() -> None:
    """Chain :func:`upgrade_authors_cfg` after fairseq's checkpoint upgrade (idempotent)."""
    from fairseq import checkpoint_utils

    fairseq_upgrade = checkpoint_utils._upgrade_state_dict
    if getattr(fairseq_upgrade, "_mae_ast_plugin", False):
        return

    def upgrade(state):
        state = fairseq_upgrade(state)
        if is_authors_cfg(state.get("cfg")):
            upgrade_authors_cfg(state["cfg"])
        return state

    upgrade._mae_ast_plugin = True
    checkpoint_utils._upgrade_state_dict = upgrade


# --------------------------------------------------------------------------------------------
# Writing: our pretraining checkpoint as the authors' plugin would have saved it
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
# Values of their fields that our model has no counterpart for; the ones the reader above checks on
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


def _refuse(option: str, why: str):
    raise NotExportableError(
        f"cannot export to the authors' format: {option} {why}.  Use --format safetensors, "
        "which keeps every option of this plugin"
    )


def authors_cfg(model_cfg, features, task_data: str, max_token_length: int):
    """Our model config and filterbank settings as the authors' (model, task) cfg dicts; the
    inverse of :func:`upgrade_authors_cfg`, built from the same tables."""
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
    from ..modules.tokens import sinusoidal_positions

    state = {k: v.detach().clone() for k, v in model.state_dict().items()}
    dtype = state["post_extract_proj.weight"].dtype
    length = authors_model_cfg["max_token_length"]
    for prefix, dim in (("enc", authors_model_cfg["encoder_embed_dim"]),
                        ("dec", authors_model_cfg["decoder_embed_dim"])):
        table = sinusoidal_positions(length, dim, "cpu", torch.float32)
        state[f"{prefix}_sine_pos_embed.pe"] = table.unsqueeze(0).to(dtype).clone()  # no view
    state["encoder_mask_emb"] = torch.zeros(authors_model_cfg["encoder_embed_dim"], dtype=dtype)
    state["layer_norm.weight"] = torch.ones(num_mel_bins, dtype=dtype)
    state["layer_norm.bias"] = torch.zeros(num_mel_bins, dtype=dtype)
    return state


def save_authors(model, cfg, state: dict, out_path: str, max_token_length: int) -> dict:
    """Write a loaded MAE-AST pretraining checkpoint (``model`` in eval mode, its ``cfg`` and
    checkpoint ``state``) as the authors' plugin would have saved it: same top-level keys,
    ``cfg`` a plain dict, their model and task fields.  The optimizer state is not carried
    (``last_optimizer_state`` None): the file is for inference and fine-tuning, not for
    resuming.  Returns what was written."""
    from omegaconf import OmegaConf

    from .fairseq_files import features_config, model_config

    if max_token_length < 1:
        raise ValueError(f"--max-token-length must be positive, got {max_token_length}")
    features = features_config(cfg)
    model_cfg, task_cfg = authors_cfg(
        model_config(model, cfg.model["_name"]), features, str(cfg.task.get("data", "")),
        max_token_length,
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
