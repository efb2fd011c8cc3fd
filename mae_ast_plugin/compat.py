"""Loading checkpoints written by the authors' plugin (AlanBaade/MAE-AST-Public).

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
"""

import logging
import math

import torch
from omegaconf import DictConfig, open_dict

logger = logging.getLogger(__name__)


class IncompatibleCheckpointError(ValueError):
    pass


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


def upgrade_authors_cfg(cfg: DictConfig) -> None:
    """Rewrite an authors' ``cfg`` (model and task) into ours, in place."""
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
    from .modules.tokens import sinusoidal_positions

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
