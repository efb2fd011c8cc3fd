"""SSAST baseline (Gong et al. 2022) on MAE-AST's tokens, masking, features and loss.

The MAE-AST paper compares against SSAST, whose encoder runs over **every** token: masked tokens
are not dropped but replaced by a learned mask embedding, and the prediction heads read the
encoder output at the masked positions directly (no decoder).  This model is exactly that and
nothing else differs from ``mae_ast`` (tokenizer, BatchNorm input normalisation, sinusoidal
positions, masking, the post-LN encoder, the two linear heads, the ``mae_ast`` criterion with its
10 x MSE + 1 x InfoNCE weights), so a comparison of the two isolates the architecture::

    waveforms -> fbank -> tokens -> Linear -> +positions
      -> masked slots := encoder_mask_emb + their position
      -> encoder over all tokens -> two linear heads at the masked positions

Differences from the original SSAST code, which are deliberate (they are the MAE-AST settings):
post-LN BERT layers instead of timm's pre-LN ViT, fixed sinusoidal instead of learned positions,
no cls/dist tokens, Linear heads instead of Linear-ReLU-Linear, and one forward pass computing
both losses with one mask (SSAST runs ``pretrain_mpc`` and ``pretrain_mpg`` as two passes with
independent masks, which doubles its cost per update).

The config is :class:`MaeAstConfig`; its decoder fields (``decoder_layers``,
``decoder_embed_dim``, ``decoder_layerdrop``) are accepted and ignored, so the same yaml files
and overrides work for both models.
"""

from dataclasses import dataclass

import torch
from torch import nn

from .mae_ast import MaeAst, MaeAstConfig, gather_tokens
from .masking import TokenMask
from .tokens import sinusoidal_positions


@dataclass
class SsastConfig(MaeAstConfig):
    """MAE-AST's config.  Unused here: ``decoder_layers``, ``decoder_embed_dim`` and
    ``decoder_layerdrop`` (SSAST has no decoder; the heads sit on the encoder)."""


class Ssast(MaeAst):
    """The SSAST network on MAE-AST's tokens (see the module docstring)."""

    def __init__(self, cfg: SsastConfig, features=None, static_shapes: bool = False):
        super().__init__(cfg, features, static_shapes)
        # SSAST initialises its (1, 1, d) mask embedding with xavier_normal_, i.e. N(0, 1/d).
        nn.init.normal_(self.encoder_mask_emb, std=cfg.encoder_embed_dim**-0.5)

    def build_pretraining_modules(self, token_dim: int):
        """A learned mask embedding for the encoder input and the two heads on the encoder
        width; no decoder."""
        dim = self.cfg.encoder_embed_dim
        self.encoder_mask_emb = nn.Parameter(torch.empty(dim))
        self.final_proj_reconstruction = nn.Linear(dim, token_dim)
        self.final_proj_classification = nn.Linear(dim, token_dim)

    def predict_masked(self, features, token_padding, token_mask: TokenMask) -> torch.Tensor:
        """Encode all tokens, the masked ones replaced by ``encoder_mask_emb`` plus their position
        embedding; returns the encoder output at the masked positions (B, M, C).

        ``features`` already hold their positions (zero at padded tokens, which are never masked
        and are excluded from attention by ``token_padding``)."""
        batch, length, dim = features.shape
        positions = sinusoidal_positions(length, dim, features.device, features.dtype)
        masked_slots = self.encoder_mask_emb.to(features.dtype) + positions  # (L, C)
        is_masked = torch.zeros(batch, length, dtype=torch.bool, device=features.device)
        if token_mask.masked_padding is None:
            is_masked.scatter_(1, token_mask.masked_idx, True)
        else:
            # Padding slots point at tokens no other slot holds: write False there.
            is_masked.scatter_(1, token_mask.masked_idx, ~token_mask.masked_padding)
        x = torch.where(is_masked.unsqueeze(-1), masked_slots.unsqueeze(0), features)
        encoded, _ = self.encoder(x, token_padding)
        return gather_tokens(encoded, token_mask.masked_idx)

    def remove_pretraining_modules(self):
        """Keep the encoder side only (as ``mae_ast`` does); ``forward(mask=False)`` and
        ``extract_features`` keep working."""
        heads = ("final_proj_reconstruction", "final_proj_classification")
        for name in ("post_enc_proj", "decoder", *heads):
            setattr(self, name, None)
        del self.encoder_mask_emb
