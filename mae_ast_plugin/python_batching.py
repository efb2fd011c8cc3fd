"""fairseq's batching helpers (``fairseq.data.data_utils_fast``) in Python, for a fairseq run
from its unbuilt source tree (the GPU check's set-up), where the Cython module is missing and
``batch_by_size`` would raise ImportError.  Installed by :mod:`.fairseq_fixes` only when the
compiled module cannot be imported; the batches are the same (``tests/test_python_batching.py``
compares them with the compiled module's).

The rule (``batch_by_size_vec``): walk the indices in order, keeping a finished batch and a
tail of indices after it.  A batch's cost is its clip count times its longest clip.  While
batch + tail fits ``max_tokens`` and ``max_sentences``, the tail joins the batch whenever the
joined size is below ``bsz_mult`` or a multiple of it.  When the next index does not fit, the
batch is closed and the tail starts the next batch; if the tail alone (with the new index) does
not fit either, the tail is closed as a batch of its own and the new index starts the next.
"""

import numpy as np


def batch_by_size_vec(indices, num_tokens_vec, max_tokens, max_sentences, bsz_mult):
    """Split ``indices`` (int64 array) into batches; ``num_tokens_vec[i]`` is the size of
    ``indices[i]``; a limit <= 0 is no limit.  Returns a list of index arrays."""
    count = len(indices)
    if count == 0:
        return []
    if max_tokens > 0 and int(np.max(num_tokens_vec)) > max_tokens:
        raise AssertionError(f"Sentences lengths should not exceed max_tokens={max_tokens}")
    sizes = [int(n) for n in num_tokens_vec]
    ends = [0]  # ends[k]: where batch k ends; ends[-1] is the growing batch's
    start = 0  # where the growing batch starts
    batch_longest = tail_longest = 0
    for pos in range(count):
        tail_longest = max(tail_longest, sizes[pos])
        clips = pos + 1 - start
        longest = max(batch_longest, tail_longest)
        too_big = (0 < max_sentences < clips) or (0 < max_tokens < clips * longest)
        if too_big:
            if 0 < max_tokens < tail_longest * (pos + 1 - ends[-1]):
                ends.append(pos)  # the tail before pos becomes a batch of its own
                tail_longest = sizes[pos]
            start = ends[-1]
            ends.append(ends[-1])  # a new batch starts; its end is set below
            longest = tail_longest
        if too_big or clips < bsz_mult or clips % bsz_mult == 0:
            ends[-1] = pos + 1
            batch_longest = longest
            tail_longest = 0
    # ends[k]: where batch k ends; the indices after the last end form one more batch
    points = ends if ends[-1] != count else ends[:-1]
    return np.split(np.asarray(indices), points)


def batch_by_size_fn(indices, num_tokens_fn, max_tokens, max_sentences, bsz_mult):
    """:func:`batch_by_size_vec` with sizes from ``num_tokens_fn(index)``."""
    sizes = np.fromiter((num_tokens_fn(i) for i in indices), dtype=np.int64, count=len(indices))
    return batch_by_size_vec(indices, sizes, max_tokens, max_sentences, bsz_mult)


def batch_fixed_shapes_fast(indices, num_tokens_fn, fixed_shapes_sorted):
    """Batches that each fit one of ``fixed_shapes_sorted`` ((clips, tokens) rows, sorted),
    filled greedily in index order."""
    shapes = [tuple(int(v) for v in row) for row in fixed_shapes_sorted]
    batches, batch, longest, first = [], [], 0, 0
    for index in indices:
        longest = max(longest, int(num_tokens_fn(index)))
        fits = next(
            (k for k in range(first, len(shapes))
             if len(batch) + 1 <= shapes[k][0] and longest <= shapes[k][1]),
            -1,
        )
        if fits == -1:
            batches.append(batch)
            batch, longest, first = [], 0, 0
        else:
            first = fits
        batch.append(index)
    if batch:
        batches.append(batch)
    return batches
