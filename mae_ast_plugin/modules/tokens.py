"""Spectrogram tokens: non-overlapping (time x mel) patches, flattened in the authors' order.

A (T, F) spectrogram is cut into blocks of ``token_frames x token_mel_bins``.  Tokens are ordered
time-major with the mel block fastest (token = t_block * mel_blocks + f_block), and each token's
values are ordered frame-major (value = frame * token_mel_bins + mel); this is exactly
``nn.Unfold(kernel=stride=(token_frames, token_mel_bins))`` on a (B, 1, T, F) input, as the
authors' code does.  Frames past the last whole block are dropped.
"""

import math

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


_position_cache = {}


def sinusoidal_positions(length: int, dim: int, device, dtype) -> torch.Tensor:
    """The Transformer sin/cos table (length, dim): even channels sin, odd channels cos, base
    10000, over the 1-D token index.  Computed on demand instead of stored, so checkpoints do
    not carry the authors' 48000 x 768 buffers and clips of any length work."""
    key = (length, dim, str(device), dtype)
    table = _position_cache.get(key)
    if table is None:
        position = torch.arange(length, dtype=torch.float32, device=device).unsqueeze(1)
        inverse_freq = torch.exp(
            torch.arange(0, dim, 2, dtype=torch.float32, device=device) * (-math.log(10000.0) / dim)
        )
        table = torch.zeros(length, dim, device=device)
        table[:, 0::2] = torch.sin(position * inverse_freq)
        table[:, 1::2] = torch.cos(position * inverse_freq[: dim // 2])
        table = table.to(dtype)
        if len(_position_cache) > 64:
            _position_cache.clear()
        _position_cache[key] = table
    return table
