import math

import pytest
import torch
from torch import nn

from mae_ast_plugin.modules.masking import _block_priority, num_masked_tokens, sample_mask
from mae_ast_plugin.modules.tokens import (
    patchify,
    sinusoidal_positions,
    token_padding_mask,
    unpatchify,
)


@pytest.mark.parametrize("frames, mels", [(16, 16), (2, 128), (4, 32)])
def test_patchify_matches_the_authors_unfold_order_and_round_trips(frames, mels):
    spec = torch.randn(3, 101, 128)
    tokens = patchify(spec, frames, mels)
    unfold = nn.Unfold(kernel_size=(frames, mels), stride=(frames, mels))
    expected = unfold(spec.unsqueeze(1)).transpose(1, 2)
    assert torch.equal(tokens, expected)
    assert tokens.shape == (3, (101 // frames) * (128 // mels), frames * mels)
    back = unpatchify(tokens, frames, mels, 128)
    assert torch.equal(back, spec[:, : (101 // frames) * frames])


def test_patch_token_index_is_time_major_with_mel_fastest():
    spec = torch.zeros(1, 32, 128)
    spec[0, 16:32, 16:32] = 1.0  # time block 1, mel block 1
    tokens = patchify(spec, 16, 16)
    assert tokens[0].sum(-1).nonzero().flatten().tolist() == [1 * 8 + 1]


def test_mel_bins_must_divide():
    with pytest.raises(ValueError, match="must divide the 128 mel bins"):
        patchify(torch.zeros(1, 32, 128), 16, 24)


def test_token_padding_marks_tokens_touching_padding():
    frame_padding = torch.zeros(1, 40, dtype=torch.bool)
    frame_padding[0, 20:] = True  # 20 real frames: one whole 16-frame block
    tokens = token_padding_mask(frame_padding, 16, 8)
    assert tokens.shape == (1, 16)
    assert tokens[0].tolist() == [False] * 8 + [True] * 8


def test_sinusoidal_positions_values():
    table = sinusoidal_positions(50, 8, "cpu", torch.float32)
    assert torch.allclose(table[0], torch.tensor([0.0, 1.0] * 4))
    p, i = 7, 2  # channel 2i = 4
    assert math.isclose(table[p, 2 * i].item(), math.sin(p / 10000 ** (2 * i / 8)), rel_tol=1e-5)
    assert math.isclose(
        table[p, 2 * i + 1].item(), math.cos(p / 10000 ** (2 * i / 8)), rel_tol=1e-5
    )


def _slots(index, padding, b):
    return index[b] if padding is None else index[b][~padding[b]]


def _check_partition(mask, padding, num_tokens):
    batch = mask.masked_idx.shape[0]
    for b in range(batch):
        valid = (
            set(range(num_tokens))
            if padding is None
            else set((~padding[b]).nonzero().flatten().tolist())
        )
        masked_slots = _slots(mask.masked_idx, mask.masked_padding, b)
        masked = set(masked_slots.tolist())
        visible_slots = _slots(mask.visible_idx, mask.visible_padding, b)
        visible = set(visible_slots.tolist())
        assert len(masked) == len(masked_slots)  # no duplicates
        assert len(visible) == len(visible_slots)
        assert not masked & visible
        assert masked | visible == valid  # padding is neither masked nor visible
        # each clip masks its own share of its own tokens
        assert masked_slots.tolist() == sorted(masked_slots.tolist())


@pytest.mark.parametrize("mask_type", ["random", "chunk", "span"])
@pytest.mark.parametrize("ratio", [0.5, 0.75])
def test_every_mode_masks_the_requested_fraction(mask_type, ratio):
    torch.manual_seed(0)
    batch, time_steps, freq = 16, 62, 8  # a 10 s clip in 16x16 patches: 496 tokens
    num_tokens = time_steps * freq
    mask = sample_mask(None, batch, num_tokens, freq, mask_type, ratio)
    expected = num_masked_tokens(num_tokens, ratio)
    assert mask.masked_idx.shape == (batch, expected)
    assert mask.visible_idx.shape == (batch, num_tokens - expected)
    assert mask.visible_padding is None
    assert abs(expected / num_tokens - ratio) < 1 / num_tokens + 1e-9
    _check_partition(mask, None, num_tokens)
    # a fresh mask per clip, not one shared by the batch
    assert len({tuple(m.tolist()) for m in mask.masked_idx}) == batch


def test_span_mode_masks_whole_time_rows_in_spans():
    torch.manual_seed(1)
    num_tokens = 499  # frame tokens of a 10 s clip: one mel block per time step
    mask = sample_mask(None, 4, num_tokens, 1, "span", 0.75, span_length=10)
    assert mask.masked_idx.shape[1] == num_tokens - int(0.25 * num_tokens)
    for row in mask.masked_idx:
        flags = torch.zeros(num_tokens, dtype=torch.bool)
        flags[row] = True
        runs = torch.diff(
            torch.nonzero(
                torch.diff(torch.cat([torch.tensor([0]), flags.int(), torch.tensor([0])]))
            ).flatten()
        )[::2]
        # spans of 10 merge into longer runs; only the last (cut) span and border spans are shorter
        assert (runs >= 10).float().mean() > 0.6


def test_chunk_blocks_are_squares_of_side_3_to_5():
    generator = torch.Generator().manual_seed(3)
    time_steps, freq = 62, 8
    lengths = torch.full((6,), time_steps * freq)
    sides = torch.tensor([3, 4, 5, 3, 4, 5])
    priority = _block_priority(lengths, time_steps, freq, sides, sides, 9, generator)
    num_blocks = math.ceil(3.0 * time_steps * freq / 9) + 1  # uncovered tokens get this value
    seen_full_square = set()
    for b in range(6):
        for block in priority[b].unique().tolist():
            if block >= num_blocks:
                continue
            tokens = (priority[b] == block).nonzero().flatten()
            t, f = tokens // freq, tokens % freq
            height, width = t.max() - t.min() + 1, f.max() - f.min() + 1
            side = int(sides[b])
            assert height <= side and width <= side  # a block never exceeds C x C
            if len(tokens) == side * side:
                seen_full_square.add(side)
    assert seen_full_square == {3, 4, 5}


@pytest.mark.parametrize("mask_type", ["random", "chunk", "span"])
@pytest.mark.parametrize("fixed_counts", [False, True])
def test_every_clip_masks_its_own_share_of_its_own_tokens(mask_type, fixed_counts):
    """Clips of 40, 25 and 12 time steps in one batch each mask 75% of their own
    tokens (the old rule gave every clip the shortest clip's count: 72 of 320 tokens)."""
    torch.manual_seed(2)
    num_tokens = 40 * 8
    padding = torch.zeros(3, num_tokens, dtype=torch.bool)
    padding[1, 25 * 8 :] = True
    padding[2, 12 * 8 :] = True
    mask = sample_mask(padding, 3, num_tokens, 8, mask_type, 0.75, fixed_counts=fixed_counts)
    assert mask.visible_padding is not None and mask.masked_padding is not None
    longest = num_masked_tokens(num_tokens, 0.75)
    assert mask.masked_idx.shape == (3, longest)
    assert mask.visible_idx.shape == (3, num_tokens - longest)
    for b, steps in enumerate((40, 25, 12)):
        tokens = steps * 8
        masked = _slots(mask.masked_idx, mask.masked_padding, b)
        assert len(masked) == num_masked_tokens(tokens, 0.75)
        assert abs(len(masked) - 0.75 * tokens) <= 1
        # visible padding slots point at the clip's padded tokens (harmless scatter targets)
        unused = mask.visible_idx[b][mask.visible_padding[b]]
        assert padding[b, unused].all()
    _check_partition(mask, padding, num_tokens)


def test_fixed_counts_give_shapes_of_a_full_clip_and_empty_fillers_mask_nothing():
    num_tokens = 30 * 8
    padding = torch.zeros(2, num_tokens, dtype=torch.bool)
    padding[1] = True  # a static-shape batch filler: no real token
    mask = sample_mask(padding, 2, num_tokens, 8, "chunk", 0.75, fixed_counts=True)
    full = num_masked_tokens(num_tokens, 0.75)
    assert mask.masked_idx.shape == (2, full)
    assert not mask.masked_padding[0].any() and mask.masked_padding[1].all()
    assert mask.visible_padding[1].all()
    without = sample_mask(None, 2, num_tokens, 8, "chunk", 0.75, fixed_counts=True)
    assert without.masked_padding is not None and not without.masked_padding.any()


def test_mask_lives_on_the_input_device_and_rejects_bad_ratio():
    mask = sample_mask(None, 2, 64, 8, "chunk", 0.75, device="cpu")
    assert mask.masked_idx.device.type == "cpu"
    with pytest.raises(ValueError, match="mask_ratio"):
        sample_mask(None, 2, 64, 8, "random", 1.0)
    with pytest.raises(ValueError, match="unknown mask_type"):
        sample_mask(None, 2, 64, 8, "blocks", 0.5)
