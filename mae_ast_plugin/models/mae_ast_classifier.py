"""MAE-AST encoder + mean pooling + linear head, for fine-tuning on clip classification.

The paper's fine-tuning (Fig. 1): drop the decoder, run the encoder over all tokens (no masking,
no overlap, the pretraining positions), mean-pool its last outputs over the clip, and classify
with a linear head, fine-tuning everything.  The options below reproduce the protocols the paper
borrowed (SSAST's library for AS/ESC/KS2, SUPERB for KS1/SID/ER) and the usual variants.

The encoder comes from ``pretrained_checkpoint`` (any model ``mae_ast_plugin.model_io`` reads:
ours or the authors', pretraining or fine-tuned, or an exported folder), or is trained from
scratch with the architecture in ``encoder`` when that is empty.  The encoder's config is kept
in ``pretrained_cfg`` (filled in automatically, like wav2vec2's ``w2v_args``) so a fine-tuned
checkpoint rebuilds without the pretrained file.
"""

import dataclasses
import functools
import logging
import re
from dataclasses import dataclass, field
from typing import Any, Optional

import torch
import torch.nn.functional as F
from fairseq.dataclass import FairseqDataclass
from fairseq.models import BaseFairseqModel, register_model
from omegaconf import OmegaConf, open_dict

from ..errors import InputError
from ..features import FbankConfig
from ..model_io import encoder_source
from ..modules.classifier import ClipClassifier
from .mae_ast import MaeAstModelConfig, build_pretraining_network

logger = logging.getLogger(__name__)


class FeatureMismatchError(InputError):
    pass


@dataclass
class MaeAstClassifierConfig(FairseqDataclass):
    pretrained_checkpoint: str = field(
        default="",
        metadata={
            "help": "the encoder to start from: a pretraining checkpoint (ours or the authors'), "
            "a fine-tuned one (its head is dropped) or an exported folder; empty: from scratch"
        },
    )
    pretrained_cfg: Any = field(
        default=None,
        metadata={"help": "set automatically: the encoder's model config and filterbank settings"},
    )
    encoder: MaeAstModelConfig = field(
        default_factory=MaeAstModelConfig,
        metadata={"help": "encoder architecture when training from scratch (ignored otherwise)"},
    )
    freeze_encoder: bool = field(
        default=False, metadata={"help": "train only the head (linear probe); encoder in eval mode"}
    )
    layer_weighting: bool = field(
        default=False,
        metadata={"help": "pool a learned softmax-weighted sum of all layer outputs (SUPERB)"},
    )
    projector_dim: int = field(
        default=0,
        metadata={"help": "linear projection of each token before pooling (SUPERB: 256); 0: none"},
    )
    head_layer_norm: bool = field(
        default=False, metadata={"help": "LayerNorm before the linear head (SSAST's mlp_head)"}
    )
    dropout: Optional[float] = field(
        default=None, metadata={"help": "encoder dropout; None keeps the pretrained value"}
    )
    attention_dropout: Optional[float] = field(
        default=None,
        metadata={"help": "encoder attention dropout; None keeps the pretrained value"},
    )
    encoder_layerdrop: Optional[float] = field(
        default=None, metadata={"help": "encoder LayerDrop; None keeps the pretrained value"}
    )
    time_mask_width: int = field(
        default=0,
        metadata={"help": "SpecAugment in training: one time mask of U[0, width) frames; 0: off"},
    )
    freq_mask_width: int = field(
        default=0,
        metadata={"help": "SpecAugment in training: one mel mask of U[0, width) bins; 0: off"},
    )
    mixup_prob: float = field(
        default=0.0,
        metadata={
            "help": "probability that a training clip is mixed with another (fbank and labels)"
        },
    )
    mixup_alpha: float = field(
        default=10.0, metadata={"help": "mixup weight ~ Beta(alpha, alpha) (SSAST: 10)"}
    )
    layer_decay: float = field(
        default=1.0,
        metadata={
            "help": "layer-wise lr decay: layer l of N gets lr x decay^(N+1-l), embeddings l=0, "
            "head N+1; needs fairseq's composite optimizer: add +optim=layer_decay"
        },
    )


_FEATURE_FIELDS = [f.name for f in dataclasses.fields(FbankConfig)]


def _feature_dict(features) -> dict:
    return {name: getattr(features, name) for name in _FEATURE_FIELDS}


def _container(config) -> dict:
    """Plain dict of a DictConfig, dict or dataclass config (enums as strings)."""
    return OmegaConf.to_container(OmegaConf.create(config), resolve=True, enum_to_str=True)


@register_model("mae_ast_classifier", dataclass=MaeAstClassifierConfig)
class MaeAstClassifier(ClipClassifier, BaseFairseqModel):
    """The network is ``modules.classifier.ClipClassifier``; this adds the encoder's loading,
    SpecAugment, mixup and layer-wise learning-rate decay."""

    def __init__(self, cfg: MaeAstClassifierConfig, num_classes: int, features: FbankConfig):
        """``cfg`` is left as it is; ``self.cfg`` is a copy with ``pretrained_cfg`` filled in
        (the task stores it in the checkpoint's config)."""
        pretrained_cfg, pretrained = cfg.pretrained_cfg, None
        if pretrained_cfg is None:
            pretrained_cfg, pretrained = self.pretrained_config(cfg, features)
        super().__init__(
            self._build_encoder(cfg, pretrained_cfg, features, pretrained),
            num_classes,
            layer_weighting=cfg.layer_weighting,
            projector_dim=cfg.projector_dim,
            head_layer_norm=cfg.head_layer_norm,
            freeze_encoder=cfg.freeze_encoder,
        )
        if OmegaConf.is_config(cfg):
            self.cfg = OmegaConf.merge(cfg, {"pretrained_cfg": pretrained_cfg})
        else:
            self.cfg = dataclasses.replace(cfg, pretrained_cfg=pretrained_cfg)
        if cfg.freeze_encoder:
            self.encoder_model.requires_grad_(False)
        if cfg.layer_decay != 1.0:
            self._set_layer_lr_scales(len(self.encoder_model.encoder.layers))

    @classmethod
    def build_model(cls, cfg: MaeAstClassifierConfig, task):
        return cls(cfg, num_classes=len(task.classes), features=task.cfg.features)

    # ----------------------------------------------------------------------------------------
    @staticmethod
    def pretrained_config(cfg: MaeAstClassifierConfig, features) -> tuple[dict, Optional[Any]]:
        """The encoder's ``pretrained_cfg`` (``checkpoint``, its ``model`` config and its
        ``features``) for a model starting fine-tuning, and the
        ``model_io.EncoderSource`` its weights come from (any artefact the model_io
        module reads; None for a scratch encoder built from ``cfg.encoder``)."""
        if not cfg.pretrained_checkpoint:
            model_cfg = {**_container(cfg.encoder), "_name": "mae_ast"}
            return {"checkpoint": "", "model": model_cfg, "features": _feature_dict(features)}, None
        pretrained = encoder_source(cfg.pretrained_checkpoint)
        pretrained_cfg = {
            "checkpoint": cfg.pretrained_checkpoint,
            "model": pretrained.model_cfg,
            "features": _feature_dict(pretrained.features),
        }
        return pretrained_cfg, pretrained

    @staticmethod
    def _build_encoder(cfg, pretrained_cfg, features, pretrained) -> BaseFairseqModel:
        """The encoder ``pretrained_cfg`` describes, with the weights of the ``EncoderSource``
        ``pretrained`` (None: restoring a fine-tuned checkpoint, whose own weights follow, or a
        scratch encoder)."""
        source = pretrained_cfg.get("checkpoint") or "the scratch encoder"
        expected = {k: pretrained_cfg["features"].get(k) for k in _FEATURE_FIELDS}
        if _feature_dict(features) != expected:
            raise FeatureMismatchError(
                f"task.features {_feature_dict(features)} differ from those {source} was "
                f"pretrained with, {expected}: set task.features to the pretrained values"
            )

        model_cfg = OmegaConf.create(_container(pretrained_cfg["model"]))
        with open_dict(model_cfg):
            for key in ("dropout", "attention_dropout", "encoder_layerdrop"):
                if getattr(cfg, key) is not None:
                    model_cfg[key] = getattr(cfg, key)
        if pretrained is not None:
            encoder = pretrained.build(model_cfg)
            logger.info("encoder loaded from %s", pretrained.artefact.describe())
        else:
            encoder = build_pretraining_network(model_cfg, features)
            encoder.remove_pretraining_modules()
        return encoder

    def _set_layer_lr_scales(self, num_layers: int):
        """Tag parameters with fairseq's ``optim_overrides``, which the composite optimizer with
        ``dynamic_groups`` turns into one parameter group per learning-rate scale."""
        layer_of = re.compile(r"^encoder_model\.encoder\.layers\.(\d+)\.")
        for name, param in self.named_parameters():
            match = layer_of.match(name)
            if match:
                depth = int(match.group(1)) + 1
            elif name.startswith("encoder_model."):
                depth = 0  # token projection and the encoder's input LayerNorm
            else:
                depth = num_layers + 1  # head, projector, layer weights
            scale = self.cfg.layer_decay ** (num_layers + 1 - depth)
            param.optim_overrides = {"optimizer": {"lr_scale": scale}}

    def check_optimizer(self, optimizer):
        """Called by the task on the first update: layer decay is silently ignored by every
        fairseq optimizer except ``composite``, so refuse to train without it."""
        from fairseq.optim.amp_optimizer import AMPOptimizer
        from fairseq.optim.composite import CompositeOptimizer

        if self.cfg.layer_decay == 1.0:
            return
        if not isinstance(optimizer.optimizer, CompositeOptimizer):
            raise ValueError(
                f"model.layer_decay={self.cfg.layer_decay} needs optimizer._name=composite with "
                "optimizer.dynamic_groups=true and lr_scheduler._name=pass_through: add "
                "+optim=layer_decay (config/finetune/optim/layer_decay.yaml)"
            )
        if isinstance(optimizer, AMPOptimizer):
            # its GradScaler unscales through param_groups, which CompositeOptimizer lacks
            raise ValueError("model.layer_decay cannot train with common.amp=true: set it false")

    # ----------------------------------------------------------------------------------------
    def train(self, mode: bool = True):
        super().train(mode)
        if self.cfg.freeze_encoder:
            self.encoder_model.eval()  # no dropout, and BatchNorm statistics stay pretrained
        return self

    def spec_augment(self, source: torch.Tensor, padding_mask: Optional[torch.Tensor]):
        """One time and one mel-bin mask per clip, widths ~ U[0, width) as torchaudio's
        TimeMasking/FrequencyMasking draw them.  Masked values become the clip's mean log-mel
        energy, which the encoder's normalisation maps to about zero (a raw 0 would be loud)."""
        batch, frames, bins = source.shape
        lengths = torch.full((batch,), frames, device=source.device)
        if padding_mask is not None:
            lengths = (~padding_mask).sum(dim=1)
        valid = torch.arange(frames, device=source.device)[None, :] < lengths[:, None]
        mean = (source * valid[..., None]).sum(dim=(1, 2)) / (lengths * bins).clamp(min=1)

        def span(sizes, max_width, total):
            """(B, total) mask of one random span per clip inside its first ``sizes`` places."""
            draw = functools.partial(torch.rand, batch, device=source.device)
            widths = (draw() * torch.clamp(sizes, max=max_width)).long()
            starts = (draw() * (sizes - widths + 1)).long()
            starts = torch.minimum(starts, sizes - widths)
            positions = torch.arange(total, device=source.device)[None, :]
            return (positions >= starts[:, None]) & (positions < (starts + widths)[:, None])

        mask = torch.zeros_like(source, dtype=torch.bool)
        if self.cfg.time_mask_width > 0:
            mask |= span(lengths, self.cfg.time_mask_width, frames)[:, :, None]
        if self.cfg.freq_mask_width > 0:
            mask |= span(torch.full_like(lengths, bins), self.cfg.freq_mask_width, bins)[:, None, :]
        mask &= valid[..., None]  # padding stays as it is
        return torch.where(mask, mean[:, None, None].to(source.dtype), source)

    def mixup(self, source, padding_mask, target):
        """With probability ``mixup_prob`` per clip, mix it with another clip of the batch:
        ``lam x_i + (1 - lam) x_j`` and the same for the labels (one-hot for single-label
        tasks), lam ~ Beta(alpha, alpha).  Frames where x_j is padding keep x_i unmixed, and the
        padding mask stays that of x_i."""
        batch = source.shape[0]
        partner = torch.randperm(batch, device=source.device)
        beta = torch.distributions.Beta(self.cfg.mixup_alpha, self.cfg.mixup_alpha)
        lam = beta.sample((batch,)).to(source.device)
        mixed_clips = torch.rand(batch, device=source.device) < self.cfg.mixup_prob
        lam = torch.where(mixed_clips, lam, torch.ones_like(lam))
        mixed = lam[:, None, None] * source + (1 - lam[:, None, None]) * source[partner]
        if padding_mask is not None:
            mixed = torch.where(padding_mask[partner][..., None], source, mixed)
        if target.dim() == 1:
            target = F.one_hot(target, self.num_classes)
        target = target.to(source.dtype)
        mixed_target = lam[:, None] * target + (1 - lam[:, None]) * target[partner]
        return mixed, mixed_target

    def forward(self, source=None, padding_mask=None, fbank=None, target=None):
        """Waveforms ``source`` (B, S) with ``padding_mask`` (B, S) True at padded samples, whose
        filterbanks the encoder's front end computes here, or precomputed ``fbank`` (B, T, F)
        with ``padding_mask`` (B, T) (see ``mae_ast_plugin.features``); ``target``: class
        indices (B,) or multi-hot rows (B, C), needed only for mixup.  SpecAugment and mixup
        (training) act on the filterbanks.

        Returns ``logits`` (B, C), ``target``: what the loss should compare them with (the
        given target, or its mixed soft version), and ``pooled`` (B, D) clip embeddings.
        """
        fbank, padding_mask = self.front_end.inputs(source, padding_mask, fbank)
        if self.training:
            if self.cfg.time_mask_width > 0 or self.cfg.freq_mask_width > 0:
                fbank = self.spec_augment(fbank, padding_mask)
            if self.cfg.mixup_prob > 0 and target is not None:
                fbank, target = self.mixup(fbank, padding_mask, target)
        logits, pooled = self.classify(fbank, padding_mask)
        return {"logits": logits, "target": target, "pooled": pooled}

    def max_positions(self):
        return None
