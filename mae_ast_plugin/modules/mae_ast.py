"""MAE-AST: masked autoencoding audio spectrogram transformer (Baade, Peng, Harwath 2022).

Forward pass in pretraining (``mask=True``)::

    waveforms (B, S) -> Kaldi fbank (B, T, F) (or a precomputed fbank)
      -> BatchNorm(affine=False) x 0.5 -> tokens (B, L, 256) -> Linear -> +positions
      -> keep the visible 25% -> encoder -> scatter back among a learned mask token -> +positions
      -> decoder -> two linear heads at the masked positions (reconstruction, classification)

With ``mask=False`` the encoder runs over every token and the model returns its features.
"""

from dataclasses import dataclass, field
from typing import Optional

import torch
from torch import nn

from ..features import FbankConfig, KaldiFbank
from .masking import MASK_TYPES, TokenMask, sample_mask
from .tokens import mel_blocks, patchify, sinusoidal_positions, token_padding_mask
from .transformer import TransformerStack, init_bert_params

INIT_STYLES = ("bert", "authors")
# The Linear layers outside the Transformer stacks: the authors' code leaves them at PyTorch's
# default initialisation, this plugin's default (init_style=bert) gives them BERT's N(0, 0.02).
AUTHORS_DEFAULT_INIT = (
    "post_extract_proj",
    "post_enc_proj",
    "final_proj_reconstruction",
    "final_proj_classification",
)


@dataclass
class MaeAstConfig:
    """Defaults are the paper's: 16x16 patch tokens, chunked masking of 75%, 6-layer encoder,
    2-layer decoder, all 768 wide with 12 heads; regularisation as in the authors' yaml.

    A plain dataclass, so the network builds without fairseq; ``mae_ast_plugin.models`` extends
    it into the fairseq config of the registered ``mae_ast`` model."""

    token_frames: int = field(default=16, metadata={"help": "token size along time (frames)"})
    token_mel_bins: int = field(
        default=16,
        metadata={"help": "token size along mel bins; 128 with token_frames=2 for frames"},
    )
    encoder_layers: int = field(
        default=6, metadata={"help": "6 in the paper's default, 12 in Table 1"}
    )
    encoder_embed_dim: int = 768
    encoder_ffn_embed_dim: int = field(
        default=3072, metadata={"help": "FFN width, encoder and decoder"}
    )
    encoder_attention_heads: int = field(
        default=12, metadata={"help": "heads, encoder and decoder"}
    )
    encoder_layerdrop: float = field(
        default=0.05, metadata={"help": "probability of skipping a layer"}
    )
    decoder_layers: int = 2
    decoder_embed_dim: int = 768
    decoder_layerdrop: float = 0.0
    dropout: float = 0.1
    attention_dropout: float = 0.1
    activation_dropout: float = 0.0
    dropout_input: float = field(
        default=0.1, metadata={"help": "dropout on projected tokens, in masked pretraining only"}
    )
    mask_type: str = field(
        default="chunk",
        metadata={"help": "random (per clip), chunk (SSAST square chunks), span (time spans)"},
    )
    mask_ratio: float = field(default=0.75, metadata={"help": "fraction of tokens masked"})
    chunk_min_size: int = field(default=3, metadata={"help": "smallest chunk side, in tokens"})
    chunk_max_size: int = field(default=5, metadata={"help": "largest chunk side, in tokens"})
    span_length: int = field(default=10, metadata={"help": "span mode: span length in token rows"})
    checkpoint_activations: bool = field(
        default=False, metadata={"help": "recompute layer activations in backward to save memory"}
    )
    init_style: str = field(
        default="bert",
        metadata={
            "help": "bert (ours): BERT's N(0, 0.02) weights and zero biases for every Linear; "
            "authors: the token projection, post_enc_proj and both output heads keep PyTorch's "
            "default Linear init, as in the authors' code (only their Transformer stacks get "
            "BERT's)"
        },
    )


class MaeAst(nn.Module):
    """The MAE-AST network; ``cfg`` is a :class:`MaeAstConfig` or any object with its fields
    (fairseq passes a DictConfig).

    ``features``: the filterbank settings of its front end (:class:`KaldiFbank`, the
    checkpoint's ``task.features``; default the paper's).  ``static_shapes`` (the training
    task's option, not saved): every tensor's shape depends only on the input's shape (masked
    and visible counts of a full-length clip, padding masks always built) and no value is copied
    to the host, so ``torch.compile`` sees one graph per run."""

    def __init__(
        self, cfg: MaeAstConfig, features: FbankConfig | None = None, static_shapes: bool = False
    ):
        super().__init__()
        if str(cfg.mask_type) not in MASK_TYPES:
            raise ValueError(
                f"mask_type must be one of {', '.join(MASK_TYPES)}, got {cfg.mask_type!r}"
            )
        init_style = str(getattr(cfg, "init_style", "bert"))  # older configs lack the field
        if init_style not in INIT_STYLES:
            raise ValueError(
                f"init_style must be one of {', '.join(INIT_STYLES)}, got {init_style!r}"
            )
        self.cfg = cfg
        self.static_shapes = bool(static_shapes)
        self.front_end = KaldiFbank(features)
        token_dim = cfg.token_frames * cfg.token_mel_bins
        self.batch_norm = nn.BatchNorm2d(1, affine=False)
        self.post_extract_proj = nn.Linear(token_dim, cfg.encoder_embed_dim)
        self.dropout_input = nn.Dropout(cfg.dropout_input)
        self.encoder = self._stack(cfg.encoder_layers, cfg.encoder_embed_dim, cfg.encoder_layerdrop)
        self.build_pretraining_modules(token_dim)
        self.apply(init_bert_params)
        if init_style == "authors":
            # The authors apply init_bert_params inside their TransformerEncoder only; the layers
            # around the stacks keep nn.Linear's default (Kaiming-uniform weights, uniform bias).
            # Re-drawn after the stacks, so one seed gives both styles the same stacks.
            for name in AUTHORS_DEFAULT_INIT:
                module = getattr(self, name, None)
                if module is not None:
                    module.reset_parameters()
        if hasattr(self, "decoder_mask_emb"):
            nn.init.uniform_(self.decoder_mask_emb)  # the authors' U[0, 1) initialisation

    def _stack(self, num_layers, embed_dim, layerdrop):
        cfg = self.cfg
        return TransformerStack(
            num_layers=num_layers,
            embed_dim=embed_dim,
            ffn_dim=cfg.encoder_ffn_embed_dim,
            num_heads=cfg.encoder_attention_heads,
            dropout=cfg.dropout,
            attention_dropout=cfg.attention_dropout,
            activation_dropout=cfg.activation_dropout,
            layerdrop=layerdrop,
            checkpoint_activations=cfg.checkpoint_activations,
        )

    def build_pretraining_modules(self, token_dim: int):
        """The decoder side, used only in pretraining (dropped by remove_pretraining_modules)."""
        cfg = self.cfg
        self.post_enc_proj = (
            nn.Linear(cfg.encoder_embed_dim, cfg.decoder_embed_dim)
            if cfg.decoder_embed_dim != cfg.encoder_embed_dim
            else None
        )
        self.decoder_mask_emb = nn.Parameter(torch.empty(cfg.decoder_embed_dim))
        self.decoder = self._stack(cfg.decoder_layers, cfg.decoder_embed_dim, cfg.decoder_layerdrop)
        self.final_proj_reconstruction = nn.Linear(cfg.decoder_embed_dim, token_dim)
        self.final_proj_classification = nn.Linear(cfg.decoder_embed_dim, token_dim)

    # ----------------------------------------------------------------------------------------
    def normalize(self, source: torch.Tensor, padding_mask: Optional[torch.Tensor]) -> torch.Tensor:
        """The authors' in-model normalisation, ``BatchNorm2d(1, affine=False)(x) * 0.5``.

        Training uses the batch's mean and variance over real frames only (padding does not
        shift them) and updates the running statistics exactly as BatchNorm does.  They are
        computed with one reduction rather than BatchNorm's per-channel kernel, which is slow
        for a single channel holding the whole batch (3 ms of an 18 ms H100 step)."""
        bn = self.batch_norm
        if not self.training:
            return (source - bn.running_mean) * torch.rsqrt(bn.running_var + bn.eps) * 0.5
        values = source.float()
        # A mask that happens to mark nothing gives the same statistics: whether to mask is
        # decided on the host, never by reading the mask (a GPU step would wait for the copy).
        if padding_mask is not None:
            real = (~padding_mask).unsqueeze(-1).float()
            count = real.sum() * source.shape[-1]
            mean = (values * real).sum() / count
            var = ((values - mean).square() * real).sum() / count
        else:
            count = float(values.numel())  # a Python number: no host-device copy (CUDA graphs)
            var, mean = torch.var_mean(values, correction=0)
        with torch.no_grad():
            bn.running_mean.lerp_(mean.reshape(1).to(bn.running_mean.dtype), bn.momentum)
            unbiased = var * count / (count - 1)
            bn.running_var.lerp_(unbiased.reshape(1).to(bn.running_var.dtype), bn.momentum)
            bn.num_batches_tracked += 1
        normed = (values - mean) * torch.rsqrt(var + bn.eps) * 0.5
        if padding_mask is not None:
            normed = normed.masked_fill(padding_mask.unsqueeze(-1), 0.0)
        return normed.to(source.dtype)

    def tokenize(self, source, padding_mask):
        """Normalised spectrogram tokens (B, L, P), their token padding mask (or None) and the
        number of mel blocks per time step."""
        normed = self.normalize(source, padding_mask)
        freq_blocks = mel_blocks(source.shape[-1], self.cfg.token_mel_bins)
        tokens = patchify(normed, self.cfg.token_frames, self.cfg.token_mel_bins)
        if tokens.shape[1] == 0:
            raise ValueError(
                f"input of {source.shape[1]} frames is shorter than one token "
                f"({self.cfg.token_frames} frames)"
            )
        token_padding = None
        if padding_mask is not None:
            token_padding = token_padding_mask(padding_mask, self.cfg.token_frames, freq_blocks)
        return tokens, token_padding, freq_blocks

    @staticmethod
    def add_positions(x: torch.Tensor, token_padding: Optional[torch.Tensor]) -> torch.Tensor:
        positions = sinusoidal_positions(x.shape[1], x.shape[2], x.device, x.dtype).unsqueeze(0)
        if token_padding is not None:
            positions = positions * (~token_padding).unsqueeze(-1).to(x.dtype)
        return x + positions

    def forward(
        self,
        source: Optional[torch.Tensor] = None,
        padding_mask: Optional[torch.Tensor] = None,
        fbank: Optional[torch.Tensor] = None,
        mask: bool = True,
        features_only: bool = False,
        output_layer: Optional[int] = None,
    ):
        """Either ``source`` (B, S) float32 waveforms at ``features.sample_rate`` with
        ``padding_mask`` (B, S) True at padded samples, whose Kaldi fbank the front end computes
        here, or precomputed ``fbank`` (B, T, F) with ``padding_mask`` (B, T) True at padded
        frames (``mae_ast_plugin.features`` documents both).

        ``mask=False`` (or ``features_only``): encoder over all tokens, returns ``x`` (B, L, C),
        ``padding_mask`` (B, L) or None, ``hidden_states`` (one per layer run; ``output_layer``
        stops after that many layers).  ``mask=True``: returns the reconstruction and
        classification predictions and targets at the masked positions, each (B, M, P), with
        ``masked_idx`` (B, M) and ``masked_padding`` (B, M) True at the slots of clips that mask
        fewer than M tokens (or None), ``token_padding`` (B, L) (or None), and the normalised
        visible tokens ``visible_tokens`` (B, V, P) with ``visible_padding`` (B, V) True at
        padding slots (or None).
        """
        fbank, padding_mask = self.front_end.inputs(source, padding_mask, fbank)
        tokens, token_padding, freq_blocks = self.tokenize(fbank, padding_mask)
        features = self.post_extract_proj(tokens)
        if features_only or not mask:
            x, hidden_states = self.encoder(
                self.add_positions(features, token_padding), token_padding, num_layers=output_layer
            )
            return {"x": x, "padding_mask": token_padding, "hidden_states": hidden_states}

        token_mask = sample_mask(
            token_padding,
            batch_size=tokens.shape[0],
            num_tokens=tokens.shape[1],
            freq_blocks=freq_blocks,
            mask_type=str(self.cfg.mask_type),
            mask_ratio=self.cfg.mask_ratio,
            chunk_min=self.cfg.chunk_min_size,
            chunk_max=self.cfg.chunk_max_size,
            span_length=self.cfg.span_length,
            device=tokens.device,
            fixed_counts=self.static_shapes,
        )
        features = self.add_positions(self.dropout_input(features), token_padding)
        predicted = self.predict_masked(features, token_padding, token_mask)
        return {
            "recon": self.final_proj_reconstruction(predicted),
            "cls": self.final_proj_classification(predicted),
            "target": gather_tokens(tokens, token_mask.masked_idx),
            "masked_idx": token_mask.masked_idx,
            "masked_padding": token_mask.masked_padding,
            # the visible tokens in the target's units, for the criterion's trivial baseline
            "visible_tokens": gather_tokens(tokens, token_mask.visible_idx),
            "visible_padding": token_mask.visible_padding,
            "token_padding": token_padding,
        }

    def predict_masked(self, features, token_padding, token_mask: TokenMask) -> torch.Tensor:
        """MAE: encode the visible tokens only, then decode all positions with a mask token in the
        masked slots; returns the decoder output at the masked positions (B, M, C)."""
        visible = gather_tokens(features, token_mask.visible_idx)
        encoded, _ = self.encoder(visible, token_mask.visible_padding)
        if self.post_enc_proj is not None:
            encoded = self.post_enc_proj(encoded)
        batch, length, _ = features.shape
        full = self.decoder_mask_emb.to(encoded.dtype).expand(batch, length, -1)
        # Padding slots of ``visible_idx`` point at padded tokens, which attention ignores.
        index = token_mask.visible_idx.unsqueeze(-1).expand(-1, -1, encoded.shape[-1])
        full = full.scatter(1, index, encoded)
        decoded, _ = self.decoder(self.add_positions(full, token_padding), token_padding)
        # Padding slots of ``masked_idx`` read some other token; the losses ignore them.
        return gather_tokens(decoded, token_mask.masked_idx)

    def extract_features(self, source=None, padding_mask=None, fbank=None, output_layer=None):
        """Encoder output (B, L, C) and token padding mask (B, L) or None; inputs as forward's."""
        out = self.forward(source, padding_mask, fbank, mask=False, output_layer=output_layer)
        return out["x"], out["padding_mask"]

    def remove_pretraining_modules(self):
        for name in (
            "post_enc_proj",
            "decoder",
            "final_proj_reconstruction",
            "final_proj_classification",
        ):
            setattr(self, name, None)
        del self.decoder_mask_emb


def gather_tokens(x: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """x: (B, L, C), index: (B, K) -> (B, K, C)."""
    return x.gather(1, index.unsqueeze(-1).expand(-1, -1, x.shape[-1]))
