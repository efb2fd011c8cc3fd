"""The Python batching helpers (used where fairseq runs from its unbuilt source tree) give the
batches of fairseq's compiled ``data_utils_fast``."""

import numpy as np
import pytest

from mae_ast_plugin import python_batching

fast = pytest.importorskip("fairseq.data.data_utils_fast")


def as_lists(batches):
    return [list(map(int, b)) for b in batches]


@pytest.mark.parametrize("seed", range(40))
def test_same_batches_as_fairseq_compiled(seed):
    rng = np.random.default_rng(seed)
    count = int(rng.integers(0, 300))
    indices = rng.permutation(count).astype(np.int64)
    sizes = rng.integers(1, 1000, count).astype(np.int64)
    if seed % 3 == 0:
        sizes[:] = 700  # equal lengths, as cropped 10-s clips
    max_tokens = int(rng.choice([-1, 1000, 2500, 6400, 100000]))
    max_sentences = int(rng.choice([-1, 1, 4, 7, 32]))
    bsz_mult = int(rng.choice([1, 2, 8]))
    expected = fast.batch_by_size_vec(indices, sizes, max_tokens, max_sentences, bsz_mult)
    got = python_batching.batch_by_size_vec(indices, sizes, max_tokens, max_sentences, bsz_mult)
    assert as_lists(got) == as_lists(expected)
    by_fn = python_batching.batch_by_size_fn(
        indices, lambda i: sizes[list(indices).index(i)], max_tokens, max_sentences, bsz_mult
    )
    assert as_lists(by_fn) == as_lists(expected)


def test_fixed_shapes_as_fairseq_compiled():
    rng = np.random.default_rng(0)
    indices = rng.permutation(200).astype(np.int64)
    sizes = rng.integers(1, 500, 200)
    shapes = np.array([[4, 500], [8, 300], [16, 100]], dtype=np.int64)
    expected = fast.batch_fixed_shapes_fast(indices, lambda i: sizes[i], shapes)
    got = python_batching.batch_fixed_shapes_fast(indices, lambda i: sizes[i], shapes)
    assert as_lists(got) == as_lists(expected)
