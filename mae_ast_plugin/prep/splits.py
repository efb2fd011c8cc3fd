"""Deterministic splits of the dataset modules: one random generator per decision
(:func:`split_rng`) and the validation split carved out of training data
(:func:`grouped_stratified_holdout`: whole source groups, stratified so every class is present,
within :data:`HOLDOUT_TOLERANCE` of its stated size), with the summary notes for its size and for
classes left without a held-out clip.
"""

from collections import Counter, defaultdict
from collections.abc import Callable, Sequence

import numpy as np

from .common import Clip, PrepError
from .summary import PrepSummary

# A carved split holds its stated fraction of the items to within this many (absolute) points:
# 0.02 is 2 percentage points, e.g. 18-22% for IEMOCAP's 20%.
HOLDOUT_TOLERANCE = 0.02


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
    summary: PrepSummary | None = None,
    name: str = "valid",
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
    * Size: stratifying class by class to the nearest group can overshoot or undershoot the
      total (large groups holding several classes: IEMOCAP dialogues were off by 6 points), so
      whole groups are then moved between the parts, those that bring the classes nearest
      their shares first, until the held-out share of items is within
      :data:`HOLDOUT_TOLERANCE` of ``fraction``, never breaking a group or the class coverage
      above.  With ``summary``, the achieved share is noted under ``name``, and when the
      group sizes or the coverage leave no split within the tolerance, the note says so and
      why.

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
    counts = {group: Counter() for group in groups}
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
    if fraction > 0 and len(groups) > 1:
        _balance_size(members, counts, order, held_groups, fraction, len(items))
    if labels_of is not None:
        held = Counter()
        for group in held_groups:
            held.update(counts[group])
        present = {label for group in groups if group not in held_groups for label in counts[group]}
        too_rare = sorted(label for label in present if held[label] == 0)
    held_indices = {i for group in held_groups for i in members[group]}
    kept = [item for i, item in enumerate(items) if i not in held_indices]
    held_out = [item for i, item in enumerate(items) if i in held_indices]
    if summary is not None and fraction > 0 and items:
        _note_size(summary, name, len(held_out), len(items), fraction, members, counts)
    return kept, held_out, too_rare


def _balance_size(members, counts, order, held_groups: set, fraction: float, num_items: int):
    """Move whole groups between kept and ``held_groups`` (in place) until the held-out items
    are within HOLDOUT_TOLERANCE of ``fraction``.

    A pass (:func:`_size_pass`) adds (or removes) groups, those whose classes are furthest below
    (above) their shares first, each only if it does not jump past the band.  When a pass
    cannot reach the band (the held side holds a group too large to remove without falling
    below it, or too few small groups to add), one group is swapped: each group of the side in
    excess is tried out with a pass in the other direction, and the trial that ends nearest the
    target is kept if it is nearer than before and keeps the coverage.  Every result keeps
    each class on the sides it had (a class that had two or more groups keeps one in kept and
    one held out)."""
    size = {group: len(members[group]) for group in members}
    total = Counter()
    for count in counts.values():
        total.update(count)
    target, band = fraction * num_items, HOLDOUT_TOLERANCE * num_items
    rank = {group: i for i, group in enumerate(order)}
    context = (size, counts, total, order, rank, fraction, target, band)
    best = _size_pass(context, set(held_groups))
    required = _both_sides(best[0], counts)
    for _ in range(len(order)):  # each round swaps one group; stops when no swap helps
        distance = abs(best[1] - target)
        if distance <= band:
            break
        excess = best[0] if best[1] > target else set(order) - best[0]
        trials = []
        for group in sorted(excess, key=lambda g: rank[g]):
            trial = _size_pass(context, set(best[0]) ^ {group})
            # coverage is checked after the pass has refilled the side
            if _keeps_coverage(trial[0], counts, len(order), required):
                trials.append(trial)
        nearer = [t for t in trials if abs(t[1] - target) < distance]
        if not nearer:
            break
        best = min(nearer, key=lambda t: abs(t[1] - target))
    held_groups.clear()
    held_groups.update(best[0])


def _both_sides(held_groups: set, counts) -> set:
    """The classes with a group on each side."""
    groups_with, held_with = Counter(), Counter()
    for group, count in counts.items():
        groups_with.update(count.keys())
        if group in held_groups:
            held_with.update(count.keys())
    return {c for c, n in groups_with.items() if 0 < held_with[c] < n}


def _keeps_coverage(held_groups: set, counts, num_groups: int, required: set) -> bool:
    """Whether every class of ``required`` has a group on each side (and the held side is
    neither empty nor everything)."""
    if not held_groups or len(held_groups) >= num_groups:
        return False
    return required <= _both_sides(held_groups, counts)


def _size_pass(context, held_groups: set):
    """One pass of :func:`_balance_size` towards the band; returns (held groups, held items)."""
    size, counts, total, order, rank, fraction, target, band = context
    held = Counter()
    for group in held_groups:
        held.update(counts[group])
    groups_with = Counter(label for count in counts.values() for label in count)
    held_with = Counter(label for g in held_groups for label in counts[g])
    held_items = sum(size[g] for g in held_groups)

    def surplus(group):  # > 0: its classes are above their shares in held
        return sum(n * (held[c] - fraction * total[c]) / total[c]
                   for c, n in counts[group].items())

    if held_items < target - band:  # add groups
        for group in sorted((g for g in order if g not in held_groups),
                            key=lambda g: (surplus(g), rank[g])):
            if held_items >= target - band or len(held_groups) + 1 >= len(order):
                break  # in the band, or never all groups
            if held_items + size[group] > target + band:
                continue  # would jump past the band
            if any(groups_with[c] - held_with[c] < 2 for c in counts[group]):
                continue  # the last kept group of one of its classes
            held_groups.add(group)
            held_items += size[group]
            held.update(counts[group])
            held_with.update(counts[group].keys())
    elif held_items > target + band:  # remove groups
        for group in sorted(held_groups, key=lambda g: (-surplus(g), rank[g])):
            if held_items <= target + band or len(held_groups) <= 1:
                break  # in the band, or at least one group
            if held_items - size[group] < target - band:
                continue  # would jump past the band
            if any(held_with[c] < 2 for c in counts[group]):
                continue  # the last held-out group of one of its classes
            held_groups.discard(group)
            held_items -= size[group]
            held.subtract(counts[group])
            held_with.subtract(counts[group].keys())
    return held_groups, held_items


def _note_size(summary, name, held_items, num_items, fraction, members, counts):
    """The summary line on a carved split's size, and why it is outside the tolerance if so."""
    share = held_items / num_items
    text = (
        f"{name}: {held_items} of {num_items} clips held out ({100 * share:.1f}%; stated "
        f"{100 * fraction:.1f}% ± {100 * HOLDOUT_TOLERANCE:g} points)"
    )
    if abs(share - fraction) > HOLDOUT_TOLERANCE + 1e-12:
        sizes = sorted(len(m) for m in members.values())
        why = "would overshoot the band"
        if any(counts.values()):
            why += " or leave a class without a clip on one side"
        text += (
            f"; outside the tolerance: its {len(sizes)} groups are kept whole ({sizes[0]}-"
            f"{sizes[-1]} clips each) and moving any one of them {why}"
        )
    summary.note(text)


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
