"""MAE-AST for Hugging Face ``transformers`` (custom code, inference): ``MaeAstModel`` (the
encoder; ``AutoModel``) and ``MaeAstForAudioClassification`` (a fine-tuned clip classifier;
``AutoModelForAudioClassification``).  Inputs are the filterbanks of ``MaeAstFeatureExtractor``.

Forward pass: filterbank (B, T, F) -> (x - running mean) / sqrt(running var + eps) x 0.5 (the
authors' BatchNorm, frozen) -> non-overlapping ``token_frames`` x ``token_mel_bins`` tokens,
time-major with the mel block fastest -> Linear -> + sinusoidal positions (Vaswani et al. 2017)
-> LayerNorm -> post-LayerNorm Transformer layers (BERT style).  A token holding any padded
frame is padding: it is never attended to.  Inputs longer than ``window_frames`` are encoded in
windows (see ``MaeAstConfig``), so each token sees the positions and context length of training.
"""

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from transformers import PreTrainedModel
from transformers.modeling_outputs import SequenceClassifierOutput
from transformers.utils import ModelOutput

from .configuration_mae_ast import MaeAstConfig


@dataclass
class MaeAstModelOutput(ModelOutput):
    """``last_hidden_state`` (B, L, C); ``hidden_states``: the input of the first layer, then
    every layer's output ((B, L, C) each, num_hidden_layers + 1 of them); ``padding_mask``
    (B, L) bool, True at tokens that hold padding.  L = time steps x mel blocks, time-major."""

    last_hidden_state: torch.FloatTensor | None = None
    hidden_states: tuple[torch.FloatTensor, ...] | None = None
    padding_mask: torch.BoolTensor | None = None


def sinusoid_table(length: int, dim: int, device) -> torch.Tensor:
    position = torch.arange(length, dtype=torch.float32, device=device).unsqueeze(1)
    inverse_freq = torch.exp(
        torch.arange(0, dim, 2, dtype=torch.float32, device=device) * (-math.log(10000.0) / dim))
    table = torch.zeros(length, dim, device=device)
    table[:, 0::2] = torch.sin(position * inverse_freq)
    table[:, 1::2] = torch.cos(position * inverse_freq[: dim // 2])
    return table


class MaeAstSelfAttention(nn.Module):
    def __init__(self, config: MaeAstConfig):
        super().__init__()
        dim = config.hidden_size
        self.num_heads = config.num_attention_heads
        self.q_proj, self.k_proj = nn.Linear(dim, dim), nn.Linear(dim, dim)
        self.v_proj, self.out_proj = nn.Linear(dim, dim), nn.Linear(dim, dim)

    def forward(self, x, attend):
        batch, length, dim = x.shape

        def heads(projection):
            return projection(x).view(batch, length, self.num_heads, -1).transpose(1, 2)

        out = F.scaled_dot_product_attention(
            heads(self.q_proj), heads(self.k_proj), heads(self.v_proj), attn_mask=attend)
        return self.out_proj(out.transpose(1, 2).reshape(batch, length, dim))


class MaeAstLayer(nn.Module):
    """x = LN(x + attention(x)); x = LN(x + fc2(gelu(fc1(x))))."""

    def __init__(self, config: MaeAstConfig):
        super().__init__()
        dim, eps = config.hidden_size, config.layer_norm_eps
        self.self_attn = MaeAstSelfAttention(config)
        self.self_attn_layer_norm = nn.LayerNorm(dim, eps=eps)
        self.fc1 = nn.Linear(dim, config.intermediate_size)
        self.fc2 = nn.Linear(config.intermediate_size, dim)
        self.final_layer_norm = nn.LayerNorm(dim, eps=eps)

    def forward(self, x, attend):
        x = self.self_attn_layer_norm(x + self.self_attn(x, attend))
        return self.final_layer_norm(x + self.fc2(F.gelu(self.fc1(x))))


class MaeAstStack(nn.Module):
    def __init__(self, config: MaeAstConfig):
        super().__init__()
        self.layer_norm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.layers = nn.ModuleList(MaeAstLayer(config) for _ in range(config.num_hidden_layers))

    def forward(self, x, padding):
        attend = None
        if padding is not None and padding.any():
            attend = (~padding | padding.all(1, keepdim=True))[:, None, None, :]
        x = self.layer_norm(x)
        states = [x]
        for layer in self.layers:
            x = layer(x, attend)
            states.append(x)
        return states


class MaeAstPreTrainedModel(PreTrainedModel):
    config_class = MaeAstConfig
    base_model_prefix = "mae_ast"
    main_input_name = "input_values"

    def _init_weights(self, module):
        if isinstance(module, nn.Linear):
            module.weight.data.normal_(mean=0.0, std=0.02)
            if module.bias is not None:
                module.bias.data.zero_()


class MaeAstModel(MaeAstPreTrainedModel):
    """The encoder.  ``forward(input_values (B, T, F), attention_mask (B, T) 1 at real frames)``
    -> :class:`MaeAstModelOutput`; hidden states of every layer are always returned."""

    def __init__(self, config: MaeAstConfig):
        super().__init__(config)
        self.batch_norm = nn.BatchNorm2d(1, affine=False, eps=config.batch_norm_eps)
        self.post_extract_proj = nn.Linear(
            config.token_frames * config.token_mel_bins, config.hidden_size)
        self.encoder = MaeAstStack(config)
        self.post_init()

    @property
    def mel_blocks(self) -> int:
        return self.config.num_mel_bins // self.config.token_mel_bins

    def encode(self, fbank: torch.Tensor, frames: torch.Tensor):
        """One pass over a padded batch: fbank (B, T, F), frames (B,) real frames per row ->
        (per-layer states, token padding (B, L))."""
        cfg = self.config
        normed = (fbank - self.batch_norm.running_mean) * torch.rsqrt(
            self.batch_norm.running_var + self.batch_norm.eps) * 0.5
        batch, length, mels = normed.shape
        steps = length // cfg.token_frames
        tokens = normed[:, : steps * cfg.token_frames].reshape(
            batch, steps, cfg.token_frames, self.mel_blocks, cfg.token_mel_bins
        ).permute(0, 1, 3, 2, 4).reshape(batch, steps * self.mel_blocks, -1)
        real_steps = torch.div(frames, cfg.token_frames, rounding_mode="floor")
        padding = (torch.arange(steps, device=fbank.device)[None] >= real_steps[:, None])
        padding = padding.repeat_interleave(self.mel_blocks, dim=1)
        x = self.post_extract_proj(tokens)
        positions = sinusoid_table(x.shape[1], x.shape[2], x.device).to(x.dtype)
        x = x + positions[None] * (~padding).unsqueeze(-1).to(x.dtype)
        return self.encoder(x, padding), padding

    def window_plan(self, steps: int):
        """(window starts, kept [first, last) steps per window) in token time steps."""
        cfg = self.config
        window = cfg.window_frames // cfg.token_frames
        if cfg.window_frames <= 0 or steps <= window:
            return [0], [(0, steps)]
        hop = min(window, max(1, round(cfg.hop_frames / cfg.token_frames)))
        starts = list(range(0, steps - window, hop)) + [steps - window]
        # step t stays in the earlier window while t - its centre <= the next centre - t
        pairs = zip(starts, starts[1:], strict=False)
        bounds = [0] + [(a + b + window - 1) // 2 + 1 for a, b in pairs] + [steps]
        return starts, list(zip(bounds, bounds[1:], strict=False))

    def forward(self, input_values, attention_mask=None, output_hidden_states=None,
                return_dict=None, **kwargs):
        cfg = self.config
        batch, length, _ = input_values.shape
        if attention_mask is None:
            frames = torch.full((batch,), length, dtype=torch.long, device=input_values.device)
        else:
            frames = attention_mask.long().sum(1)
        steps = torch.div(frames, cfg.token_frames, rounding_mode="floor").tolist()
        plans = [self.window_plan(n) for n in steps]
        if all(len(starts) == 1 for starts, _ in plans):
            states, padding = self.encode(input_values, frames)
        else:
            states, padding = self.encode_windowed(input_values, frames, plans)
        return MaeAstModelOutput(last_hidden_state=states[-1], hidden_states=tuple(states),
                                 padding_mask=padding)

    def encode_windowed(self, fbank, frames, plans):
        """Each window (and each clip of one window) encoded as a clip of its own, in batches of
        ``batch_windows``; each clip's tokens stitched from the windows that keep them."""
        cfg, per_step = self.config, self.mel_blocks
        window = (cfg.window_frames // cfg.token_frames) * cfg.token_frames
        jobs = []  # (row, first frame, frames, first kept step, last kept step), window-relative
        for row, (starts, keep) in enumerate(plans):
            if len(starts) == 1:
                jobs.append((row, 0, int(frames[row]), 0, keep[0][1]))
                continue
            for start, (first, last) in zip(starts, keep, strict=True):
                jobs.append((row, start * cfg.token_frames, window, first - start, last - start))
        pieces = [[] for _ in plans]
        for begin in range(0, len(jobs), cfg.batch_windows):
            chunk = jobs[begin : begin + cfg.batch_windows]
            longest = max(job[2] for job in chunk)
            inputs = fbank.new_zeros((len(chunk), longest, fbank.shape[-1]))
            for i, (row, offset, count, _, _) in enumerate(chunk):
                inputs[i, :count] = fbank[row, offset : offset + count]
            counts = torch.tensor([job[2] for job in chunk], device=fbank.device)
            states, _ = self.encode(inputs, counts)
            for i, (row, _, _, first, last) in enumerate(chunk):
                pieces[row].append([s[i, first * per_step : last * per_step] for s in states])
        lengths = [sum(p[0].shape[0] for p in row) for row in pieces]
        longest = max(lengths)
        stitched = []
        for depth in range(len(pieces[0][0])):
            out = fbank.new_zeros((len(plans), longest, cfg.hidden_size))
            for row, row_pieces in enumerate(pieces):
                out[row, : lengths[row]] = torch.cat([p[depth] for p in row_pieces])
            stitched.append(out)
        positions = torch.arange(longest, device=fbank.device)
        padding = positions[None] >= torch.tensor(lengths, device=fbank.device)[:, None]
        return stitched, padding


class MaeAstForAudioClassification(MaeAstPreTrainedModel):
    """A fine-tuned clip classifier: the encoder's last layer (or, with ``layer_weighting``, a
    softmax-weighted sum of every layer's output), an optional Linear projection, the mean over
    the clip's real tokens, an optional LayerNorm, a Linear layer to ``num_labels`` logits
    (``config.id2label`` names them; independent sigmoids when ``multi_label``, else softmax).
    Inputs are first cropped to ``eval_crop_frames`` frames, as the model was evaluated."""

    def __init__(self, config: MaeAstConfig):
        super().__init__(config)
        self.mae_ast = MaeAstModel(config)
        dim = config.hidden_size
        self.layer_weights = (nn.Parameter(torch.zeros(config.num_hidden_layers))
                              if config.layer_weighting else None)
        self.projector = nn.Linear(dim, config.projector_dim) if config.projector_dim else None
        pooled = config.projector_dim or dim
        self.head = nn.Sequential(
            nn.LayerNorm(pooled) if config.head_layer_norm else nn.Identity(),
            nn.Linear(pooled, config.num_labels))
        self.post_init()

    def forward(self, input_values, attention_mask=None, labels=None, **kwargs):
        crop = self.config.eval_crop_frames
        if crop:
            input_values = input_values[:, :crop]
            attention_mask = None if attention_mask is None else attention_mask[:, :crop]
        out = self.mae_ast(input_values, attention_mask)
        features = out.last_hidden_state
        if self.layer_weights is not None:
            weights = torch.softmax(self.layer_weights, dim=0)
            features = (weights[:, None, None, None] * torch.stack(out.hidden_states[1:])).sum(0)
        if self.projector is not None:
            features = self.projector(features)
        keep = (~out.padding_mask).unsqueeze(-1).to(features.dtype)
        pooled = (features * keep).sum(1) / keep.sum(1).clamp(min=1)
        logits = self.head(pooled)
        loss = None
        if labels is not None:
            if self.config.multi_label:
                loss = F.binary_cross_entropy_with_logits(logits, labels.to(logits.dtype))
            else:
                loss = F.cross_entropy(logits, labels)
        return SequenceClassifierOutput(loss=loss, logits=logits, hidden_states=out.hidden_states)
