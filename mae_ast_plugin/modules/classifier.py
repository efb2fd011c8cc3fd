"""Clip classifier on an MAE-AST (or SSAST) encoder: pool the encoder output, linear head.

The paper's fine-tuning (Fig. 1): the encoder over all tokens (no masking), its last outputs
mean-pooled over the clip's real tokens, a linear head.  Options for SUPERB-style heads: a
learned softmax-weighted sum of every layer's output (``layer_weighting``), a per-token
projection before pooling (``projector_dim``), a LayerNorm before the linear layer (SSAST's
``mlp_head``).  Plain PyTorch: the fairseq model ``mae_ast_classifier`` adds training-time
augmentation and the checkpoint plumbing on top, with the same parameter names, so an exported
classifier folder loads into this class without fairseq.
"""


import torch
from torch import nn


class ClipClassifier(nn.Module):
    """``encoder_model``: a MaeAst/Ssast network (pretraining modules removed); parameters
    ``layer_weights`` (N,) or None, ``projector`` Linear or None, ``head`` (LayerNorm or
    Identity, Linear)."""

    def __init__(
        self,
        encoder_model: nn.Module,
        num_classes: int,
        layer_weighting: bool = False,
        projector_dim: int = 0,
        head_layer_norm: bool = False,
        freeze_encoder: bool = False,
    ):
        super().__init__()
        self.num_classes = num_classes
        self.freeze_encoder = freeze_encoder
        self.encoder_model = encoder_model
        encoder_dim = encoder_model.cfg.encoder_embed_dim
        num_layers = len(encoder_model.encoder.layers)
        self.layer_weights = nn.Parameter(torch.zeros(num_layers)) if layer_weighting else None
        self.projector = None
        pooled_dim = encoder_dim
        if projector_dim > 0:
            self.projector = nn.Linear(encoder_dim, projector_dim)
            pooled_dim = projector_dim
        self.head = nn.Sequential(
            nn.LayerNorm(pooled_dim) if head_layer_norm else nn.Identity(),
            nn.Linear(pooled_dim, num_classes),
        )

    @property
    def min_frames(self) -> int:
        """Frames in one token: shorter clips cannot be classified."""
        return self.encoder_model.cfg.token_frames

    @property
    def front_end(self):
        """The encoder's front end (``features.KaldiFbank``): waveforms -> filterbanks."""
        return self.encoder_model.front_end

    def encode(self, fbank: torch.Tensor, padding_mask: torch.Tensor | None = None):
        """Encoder features (B, L, C) of filterbanks (B, T, F), the last layer's or the weighted
        sum of all layers', and the token padding mask (B, L) or None."""
        with torch.set_grad_enabled(torch.is_grad_enabled() and not self.freeze_encoder):
            out = self.encoder_model(fbank=fbank, padding_mask=padding_mask, mask=False)
        return self.combine_layers(out["x"], out["hidden_states"]), out["padding_mask"]

    def combine_layers(self, last: torch.Tensor, hidden_states) -> torch.Tensor:
        """What the head reads of the encoder outputs: ``last`` (B, L, C), or the softmax-weighted
        sum of ``hidden_states`` (one (B, L, C) per layer) with ``layer_weighting``."""
        if self.layer_weights is None:
            return last
        weights = torch.softmax(self.layer_weights, dim=0)
        stacked = torch.stack(tuple(hidden_states), dim=0)  # (N, B, L, C)
        return (weights[:, None, None, None] * stacked).sum(dim=0)

    def classify(self, fbank: torch.Tensor, padding_mask: torch.Tensor | None = None):
        """fbank: (B, T, F) filterbanks, padding_mask: (B, T) True at padded frames.
        Returns logits (B, classes) and the pooled clip embeddings (B, D)."""
        features, token_padding = self.encode(fbank, padding_mask)
        return self.pool_and_classify(features, token_padding)

    def pool_and_classify(self, features: torch.Tensor, token_padding: torch.Tensor | None):
        """Logits (B, classes) and pooled embeddings (B, D) of encoder features (B, L, C) (what
        :meth:`encode` returns), mean-pooled over the tokens where ``token_padding`` is False."""
        if self.projector is not None:
            features = self.projector(features)
        if token_padding is None:
            pooled = features.mean(dim=1)
        else:
            keep = (~token_padding).unsqueeze(-1).to(features.dtype)
            pooled = (features * keep).sum(dim=1) / keep.sum(dim=1).clamp(min=1)
        return self.head(pooled), pooled

    def forward(self, source=None, padding_mask=None, fbank=None, target=None):
        """As the fairseq model's forward without its training-time augmentation: waveforms
        ``source`` (B, S) with ``padding_mask`` (B, S), or precomputed ``fbank`` (B, T, F) with
        ``padding_mask`` (B, T) (see ``mae_ast_plugin.features``).  Returns ``logits``,
        ``target`` (passed through) and ``pooled``."""
        fbank, padding_mask = self.front_end.inputs(source, padding_mask, fbank)
        logits, pooled = self.classify(fbank, padding_mask)
        return {"logits": logits, "target": target, "pooled": pooled}
