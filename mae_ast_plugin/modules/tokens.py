"""Spectrogram tokens: non-overlapping (time x mel) patches, flattened in the authors' order.

A (T, F) spectrogram is cut into blocks of ``token_frames x token_mel_bins``.  Tokens are ordered
time-major with the mel block fastest (token = t_block * mel_blocks + f_block), and each token's
values are ordered frame-major (value = frame * token_mel_bins + mel); this is exactly
``nn.Unfold(kernel=stride=(token_frames, token_mel_bins))`` on a (B, 1, T, F) input, as the
authors' code does.  Frames past the last whole block are dropped.
"""

import math
from collections import OrderedDict

import torch


def mel_blocks(num_mel_bins: int, token_mel_bins: int) -> int:
    if num_mel_bins % token_mel_bins:
        raise ValueError(
            f"token_mel_bins={token_mel_bins} must divide the {num_mel_bins} mel bins of the "
            "features"
        )
    return num_mel_bins // token_mel_bins


def patchify(spec: torch.Tensor, token_frames: int, token_mel_bins: int) -> torch.Tensor:
    """(B, T, F) -> (B, (T // token_frames) * mel_blocks, token_frames * token_mel_bins)."""
    batch, frames, mels = spec.shape
    time_blocks = frames // token_frames
    freq_blocks = mel_blocks(mels, token_mel_bins)
    blocks = spec[:, : time_blocks * token_frames].reshape(
        batch, time_blocks, token_frames, freq_blocks, token_mel_bins
    )
    return blocks.permute(0, 1, 3, 2, 4).reshape(
        batch, time_blocks * freq_blocks, token_frames * token_mel_bins
    )


def unpatchify(
    tokens: torch.Tensor, token_frames: int, token_mel_bins: int, num_mel_bins: int
) -> torch.Tensor:
    """Inverse of :func:`patchify`: (B, L, P) -> (B, (L // mel_blocks) * token_frames, F)."""
    batch, length, _ = tokens.shape
    freq_blocks = mel_blocks(num_mel_bins, token_mel_bins)
    time_blocks = length // freq_blocks
    blocks = tokens.reshape(batch, time_blocks, freq_blocks, token_frames, token_mel_bins)
    return blocks.permute(0, 1, 3, 2, 4).reshape(batch, time_blocks * token_frames, num_mel_bins)


def token_padding_mask(frame_padding: torch.Tensor, token_frames: int, freq_blocks: int):
    """Frame padding (B, T) -> token padding (B, L): a token containing any padded frame is padding,
    so padded values never reach a visible token."""
    batch, frames = frame_padding.shape
    time_blocks = frames // token_frames
    padded_blocks = (
        frame_padding[:, : time_blocks * token_frames]
        .reshape(batch, time_blocks, token_frames)
        .any(-1)
    )
    return padded_blocks.repeat_interleave(freq_blocks, dim=1)


# One table per (dim, device, dtype): the longest length asked for so far; shorter requests get
# a slice of it.  Bounded by _POSITION_KEYS keys (least recently used dropped first).
_position_cache: "OrderedDict[tuple, torch.Tensor]" = OrderedDict()
_POSITION_KEYS = 4


def _position_table(length: int, dim: int, device) -> torch.Tensor:
    position = torch.arange(length, dtype=torch.float32, device=device).unsqueeze(1)
    inverse_freq = torch.exp(
        torch.arange(0, dim, 2, dtype=torch.float32, device=device) * (-math.log(10000.0) / dim)
    )
    table = torch.zeros(length, dim, device=device)
    table[:, 0::2] = torch.sin(position * inverse_freq)
    table[:, 1::2] = torch.cos(position * inverse_freq[: dim // 2])
    return table


def sinusoidal_positions(length: int, dim: int, device, dtype) -> torch.Tensor:
    """The Transformer sin/cos table (length, dim) of ``dtype`` on ``device``: even channels
    sin, odd channels cos, base 10000, over the 1-D token index (Vaswani et al. 2017, Sec. 3.5,
    as the authors' MAE-AST code).  Computed on demand instead of stored, so checkpoints do not
    carry the authors' 48000 x 768 buffers and clips of any length work.

    Memory kept between calls is bounded: one table per (dim, device, dtype), as long as the
    longest ``length`` requested so far (a shorter request returns a view of its first rows,
    the same values a table of that length has), for at most 4 such keys, the least recently
    used dropped first.  So the cache holds at most 4 x longest length x dim x element size
    bytes; one (dim, device, dtype) in practice: e.g. 62 x 8 = 496 patch tokens of a 10 s
    window at dim 768 in float32 is 1.5 MB, a 30-minute clip encoded whole (no windowing)
    89,992 tokens, 264 MB.  Returns a read-only view: do not write into it."""
    key = (dim, str(device), dtype)
    table = _position_cache.get(key)
    if table is None or table.shape[0] < length:
        table = _position_table(length, dim, device).to(dtype)
        _position_cache[key] = table
        while len(_position_cache) > _POSITION_KEYS:
            _position_cache.popitem(last=False)
    _position_cache.move_to_end(key)
    return table[:length]
