"""Deterministic splits of the dataset modules: one random generator per decision
(:func:`split_rng`) and the validation split carved out of training data
(:func:`grouped_stratified_holdout`: whole source groups, stratified so every class is present),
with the summary note for classes left without a held-out clip.
"""

from collections import Counter, defaultdict
from collections.abc import Callable, Sequence

import numpy as np

from .common import Clip, PrepError
from .summary import PrepSummary


def split_rng(seed: int, *context: int) -> np.random.Generator:
    """A generator for one decision (e.g. one fold), so that the folds do not share a stream
    and changing one does not reshuffle another."""
    return np.random.default_rng([seed, *context])


def grouped_stratified_holdout(
    items: Sequence,
    fraction: float,
    rng: np.random.Generator,
    group_of: Callable,
    labels_of: Callable | None = None,
) -> tuple[list, list, list[int]]:
    """Split ``items`` into ``(kept, held_out, too_rare)`` for a validation split carved out of
    training data (checkpoint selection must not be biased by leaked sources).

    * Groups stay whole: every item whose ``group_of(item)`` is equal lands on the same side
      (ESC-50 ``src_file``, an IEMOCAP dialogue, a YouTube video), so no source recording is
      heard in both parts.
    * Stratified by ``labels_of(item)`` (a tuple of class indices; several for multi-label
      data): each class gets about ``fraction`` of its items held out, and at least one group
      whenever it has two or more, so every class present in ``kept`` is present in
      ``held_out``.  A class found in one group only stays in ``kept`` (held out, it would be
      untrained) and is listed in ``too_rare`` (sorted class indices) for the summary.
      The method is iterative stratification (Sechidis, Tsoumakas and Vlahavas, ECML PKDD
      2011) over groups: classes in order of fewest groups first, each drawing random groups
      until it has its share.  A group is never held out if that would leave one of its
      classes without a group in ``kept``.
    * Without ``labels_of`` (unlabelled data): whole groups at random until
      ``round(fraction * len(items))`` items, at least one group and never all.

    Deterministic for a given ``rng`` state and item order; both parts keep the input order.
    """
    if not 0 <= fraction < 1:
        raise PrepError(f"a held-out fraction must be in [0, 1), got {fraction}")
    members: dict = {}  # group -> item indices, in input order
    for index, item in enumerate(items):
        members.setdefault(group_of(item), []).append(index)
    groups = sorted(members, key=str)
    order = [groups[i] for i in rng.permutation(len(groups))]
    held_groups = set()
    too_rare: list[int] = []  # classes of kept without a held-out item
    if fraction > 0 and len(groups) > 1 and labels_of is None:
        target = max(int(round(fraction * len(items))), 1)
        held_items = 0
        for group in order[:-1]:  # never all groups
            if held_items >= target:
                break
            held_groups.add(group)
            held_items += len(members[group])
    elif fraction > 0 and labels_of is not None:
        counts = {  # group -> Counter of its class labels
            group: Counter(label for i in members[group] for label in labels_of(items[i]))
            for group in groups
        }
        groups_of = defaultdict(list)  # class -> its groups, in the random order
        for group in order:
            for label in counts[group]:
                groups_of[label].append(group)
        total = Counter()
        for count in counts.values():
            total.update(count)
        kept_groups = {label: len(listed) for label, listed in groups_of.items()}
        held = Counter()
        for label in sorted(groups_of, key=lambda c: (len(groups_of[c]), c)):
            if len(groups_of[label]) < 2:
                continue  # one group: it stays in kept (listed in too_rare below)
            share = fraction * total[label]
            for group in groups_of[label]:
                if held[label] > 0 and held[label] + counts[group][label] / 2 > share:
                    break  # this class has its share (to the nearest group)
                if group in held_groups or any(kept_groups[c] < 2 for c in counts[group]):
                    continue  # taken already, or the last kept group of one of its classes
                held_groups.add(group)
                held.update(counts[group])
                for c in counts[group]:
                    kept_groups[c] -= 1
        present = {label for group in groups if group not in held_groups for label in counts[group]}
        too_rare = sorted(label for label in present if held[label] == 0)
    held_indices = {i for group in held_groups for i in members[group]}
    kept = [item for i, item in enumerate(items) if i not in held_indices]
    held_out = [item for i, item in enumerate(items) if i in held_indices]
    return kept, held_out, too_rare


def note_classes_not_held_out(
    summary: PrepSummary,
    split: str,
    train: Sequence[Clip],
    held_out: Sequence[Clip],
    class_names: Sequence[str],
) -> None:
    """Say in the summary which classes of ``train`` have no clip in the held-out ``split``
    (written clips: a class can also go missing when its held-out audio is missing)."""
    present = {label for clip in held_out for label in clip.labels}
    absent = sorted({label for clip in train for label in clip.labels} - present)
    if absent:
        names = ", ".join(class_names[label] for label in absent)
        summary.note(
            f"{split}: {len(absent)} class(es) of train have no clip here (too few source "
            f"groups to hold one out, or its audio is missing): {names}"
        )
