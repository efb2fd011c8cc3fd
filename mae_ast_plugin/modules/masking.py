"""Token masking for masked pretraining, computed with tensor operations on the model's device.

Every mode ranks the tokens of each clip by a priority and masks the ``num_masked`` lowest:

* ``random``: independent uniform priorities, a fresh permutation per clip (the paper's frame
  setting).
* ``chunk``: SSAST-style square chunks.  Each clip draws one side C in [chunk_min, chunk_max]
  and a sequence of random C x C blocks on its (time x mel) token grid; a token's priority is
  the first block that covers it, so masking whole blocks in order and cutting the last one
  short gives exactly ``num_masked`` tokens (the paper's patch setting).  Blocks may start
  before the grid so that border tokens are covered as often as inner ones.
* ``span``: wav2vec2-style time spans of ``span_length`` token rows covering every mel block.
  The requested ratio is the fraction actually masked (the authors' ``retain_spans`` kept the
  spans and masked about 21% when asked for 75%).

Padded tokens get infinite priority, so they are never masked and never visible.  Every clip
masks its own share of its own tokens (:func:`num_masked_tokens` of its length, within one token
of ``mask_ratio`` x its tokens), whatever it is batched with.  The index tensors are rectangular:
``masked_idx`` (B, M_max) and ``visible_idx`` (B, V_max), with padding masks marking the slots a
shorter clip does not use (losses and InfoNCE negatives ignore padded masked slots).  M_max and
V_max are those of a full ``num_tokens`` clip (in a batch padded to its longest clip, the
longest clip's counts), so every shape depends only on the padded input's shape and no value is
ever copied to the host: a GPU step never waits for the host here.  Whether the padding masks
are given depends on host knowledge only (a ``token_padding`` tensor was passed, or
``fixed_counts``), never on its values.  A clip with no tokens at all (a batch filler of the
static-shape mode) masks nothing; a real clip too short to mask anything is refused by the
dataset (:func:`min_clip_tokens` sets the task's shortest clip).
"""

import math
from typing import NamedTuple, Optional

import torch

MASK_TYPES = ("random", "chunk", "span")


class TokenMask(NamedTuple):
    masked_idx: torch.Tensor  # (B, M) token indices to predict, ascending, padding slots last
    visible_idx: torch.Tensor  # (B, V) token indices the encoder sees, ascending, padding last
    visible_padding: Optional[torch.Tensor]  # (B, V) True at padding slots; None if no padding
    masked_padding: Optional[torch.Tensor] = None  # (B, M) True at padding slots; None if none


def num_masked_tokens(clip_tokens: int, mask_ratio: float) -> int:
    """Masked tokens of a clip of ``clip_tokens`` tokens: the authors' rule keeps
    ``int((1 - ratio) * L)`` tokens visible, at least one (``ssast``/``mae_ast`` code)."""
    num_visible = max(1, int((1.0 - mask_ratio) * clip_tokens))
    return clip_tokens - num_visible


def min_clip_tokens(mask_ratio: float) -> int:
    """The fewest tokens a clip needs so that :func:`num_masked_tokens` masks at least one."""
    tokens = 1
    while num_masked_tokens(tokens, mask_ratio) < 1:
        tokens += 1
    return tokens


def min_clip_frames(token_frames: int, freq_blocks: int, mask_ratio: float) -> int:
    """The fewest filterbank frames a pretraining clip needs: whole token rows (``token_frames``
    frames of ``freq_blocks`` tokens each) holding :func:`min_clip_tokens` tokens."""
    rows = -(-min_clip_tokens(mask_ratio) // freq_blocks)
    return token_frames * rows


def clip_mask_counts(lengths: torch.Tensor, mask_ratio: float):
    """Per-clip (masked, visible) token counts, each (B,) long, by :func:`num_masked_tokens`'s
    rule as tensor operations; a clip of 0 tokens gets (0, 0)."""
    visible = ((1.0 - mask_ratio) * lengths.double()).floor().long().clamp(min=1)
    visible = torch.minimum(visible, lengths)
    return lengths - visible, visible


def _padded_slots(index: torch.Tensor, counts: torch.Tensor, num_tokens: int):
    """Sort each row's first ``counts`` entries ascending and put the other (padding) slots
    last; returns the index and its padding mask (True at padding slots)."""
    slot = torch.arange(index.shape[1], device=index.device).unsqueeze(0)
    padding = slot >= counts.unsqueeze(1)
    sort_key = index + padding.long() * num_tokens
    return index.gather(1, sort_key.argsort(dim=1)), padding


def _block_priority(
    lengths, time_steps, freq_blocks, heights, widths, min_area, generator, max_h=None, max_w=None
):
    """Priority of each token = index of the first random (height x width) block covering it.
    ``max_h``/``max_w``: host-side bounds of ``heights``/``widths`` (read from them, a copy to
    the host, when not given)."""
    batch = lengths.shape[0]
    device = lengths.device
    total = time_steps * freq_blocks
    # Enough blocks to cover ~95% of the longest clip; tokens left uncovered rank after all blocks.
    num_blocks = int(math.ceil(3.0 * total / max(1, min_area))) + 1
    if max_h is None or max_w is None:
        max_h, max_w = int(heights.max()), int(widths.max())
    valid_rows = (lengths // freq_blocks).unsqueeze(1)  # (B, 1) time rows of each clip

    uniform = torch.rand(batch, num_blocks, 2, device=device, generator=generator)
    # Blocks start in rows [-(h-1), rows) and columns [-(w-1), freq_blocks), so that every token
    # has the same chance of being covered; a block as wide as the grid starts at column 0.
    row_range = valid_rows + heights.unsqueeze(1) - 1
    start_t = (uniform[..., 0] * row_range).long() - (heights.unsqueeze(1) - 1)
    col_range = freq_blocks + widths.unsqueeze(1) - 1
    start_f = (uniform[..., 1] * col_range).long() - (widths.unsqueeze(1) - 1)
    start_f = torch.where(widths.unsqueeze(1) >= freq_blocks, torch.zeros_like(start_f), start_f)

    dt = torch.arange(max_h, device=device).view(1, 1, max_h, 1)
    df = torch.arange(max_w, device=device).view(1, 1, 1, max_w)
    t = start_t.view(batch, num_blocks, 1, 1) + dt
    f = start_f.view(batch, num_blocks, 1, 1) + df
    inside = (
        (dt < heights.view(batch, 1, 1, 1))
        & (df < widths.view(batch, 1, 1, 1))
        & (t >= 0)
        & (t < valid_rows.view(batch, 1, 1, 1))
        & (f >= 0)
        & (f < freq_blocks)
    )
    token = torch.where(inside, t * freq_blocks + f, torch.full_like(t, total))  # total = discard
    block_index = torch.arange(num_blocks, device=device, dtype=torch.float32)
    block_index = block_index.view(1, num_blocks, 1, 1).expand_as(token)
    priority = torch.full((batch, total + 1), float(num_blocks), device=device)
    priority.scatter_reduce_(
        1,
        token.reshape(batch, -1),
        block_index.reshape(batch, -1),
        reduce="amin",
        include_self=True,
    )
    return priority[:, :total]


@torch.compiler.disable  # eager under torch.compile: the same masks as an eager run
def sample_mask(
    token_padding: Optional[torch.Tensor],
    batch_size: int,
    num_tokens: int,
    freq_blocks: int,
    mask_type: str,
    mask_ratio: float,
    chunk_min: int = 3,
    chunk_max: int = 5,
    span_length: int = 10,
    device=None,
    generator: Optional[torch.Generator] = None,
    fixed_counts: bool = False,
) -> TokenMask:
    """Choose masked and visible tokens for a batch of ``batch_size`` clips of ``num_tokens`` tokens
    (``freq_blocks`` tokens per time step), ``token_padding`` (B, L) marking padding.

    Each clip masks ``num_masked_tokens(its tokens)``.  Returns index tensors (B, M_max) and
    (B, V_max), M_max and V_max those of a ``num_tokens`` clip, with padding masks: given
    whenever ``token_padding`` is (or with ``fixed_counts``), None when ``token_padding`` is None
    (every clip fills its row).  Copies nothing to the host.  Raises ValueError for an unknown
    mode, a ratio outside (0, 1), or ``num_tokens`` too few to mask anything."""
    if mask_type not in MASK_TYPES:
        raise ValueError(f"unknown mask_type {mask_type!r}; choose one of {', '.join(MASK_TYPES)}")
    if not 0.0 < mask_ratio < 1.0:
        raise ValueError(f"mask_ratio must be in (0, 1), got {mask_ratio}")
    if token_padding is not None:
        device = token_padding.device
        lengths = (~token_padding).sum(1)
    else:
        lengths = torch.full((batch_size,), num_tokens, device=device, dtype=torch.long)
    num_masked, num_visible = clip_mask_counts(lengths, mask_ratio)
    # Counts grow with a clip's length: a full row's are every clip's maximum.
    max_masked = num_masked_tokens(num_tokens, mask_ratio)
    max_visible = num_tokens - max_masked
    if max_masked < 1 and not fixed_counts:
        raise ValueError(
            f"a clip of {num_tokens} tokens leaves nothing to mask at ratio {mask_ratio}; "
            "masked pretraining needs longer clips (raise task.min_sample_size to filter them)"
        )

    if mask_type == "random":
        priority = torch.rand(batch_size, num_tokens, device=device, generator=generator)
    else:
        time_steps = num_tokens // freq_blocks
        if mask_type == "chunk":
            heights = torch.randint(
                chunk_min, chunk_max + 1, (batch_size,), device=device, generator=generator
            )
            widths = heights
            min_area = chunk_min * min(chunk_min, freq_blocks)
            max_h = max_w = chunk_max
        else:
            heights = torch.full((batch_size,), span_length, device=device, dtype=torch.long)
            widths = torch.full((batch_size,), freq_blocks, device=device, dtype=torch.long)
            min_area = span_length * freq_blocks
            max_h, max_w = span_length, freq_blocks
        priority = _block_priority(
            lengths, time_steps, freq_blocks, heights, widths, min_area, generator, max_h, max_w
        )
        # Random order inside a block, so the last block is cut at random tokens.
        priority = priority + 0.5 * torch.rand(
            batch_size, num_tokens, device=device, generator=generator
        )
    if token_padding is not None:
        priority = priority.masked_fill(token_padding, float("inf"))

    # Rank r of a clip's tokens: masked if r < num_masked, visible if r < its length.  Slot j of
    # visible_idx is rank num_masked + j; slots past a clip's count land on ranks >= its length,
    # i.e. on its padded tokens (masked counts grow with length, so num_masked + V_max <= L_max).
    order = priority.argsort(dim=1)
    masked_idx, masked_padding = _padded_slots(order[:, :max_masked], num_masked, num_tokens)
    ranks = num_masked.unsqueeze(1) + torch.arange(max_visible, device=order.device).unsqueeze(0)
    visible_idx = order.gather(1, ranks.clamp(max=num_tokens - 1))
    visible_idx, visible_padding = _padded_slots(visible_idx, num_visible, num_tokens)
    if token_padding is None and not fixed_counts:
        # Every clip fills its row (known on the host): the mask-free path.
        masked_padding = visible_padding = None
    return TokenMask(masked_idx, visible_idx, visible_padding, masked_padding)
