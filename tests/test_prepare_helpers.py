"""The shared helpers of dataset preparation (mae_ast_plugin/prep/: common, splits, manifests)."""

import os
from collections import Counter

import numpy as np
import pytest
from prep_testing import PrepError, read_labels_csv

# ------------------------------------------------------------------------------------------
# Shared helpers


def test_prep_common_helpers(tmp_path):
    from mae_ast_plugin.prep import common, manifests, splits

    rng = splits.split_rng(0, 1)

    def holdout(items, fraction):
        kept, held, too_rare = splits.grouped_stratified_holdout(items, fraction, rng, lambda x: x)
        assert too_rare == []
        return kept, held

    kept, held = holdout(list(range(10)), 0.2)
    assert len(held) == 2 and sorted(kept + held) == list(range(10)) and held == sorted(held)
    assert holdout([7], 0.5) == ([7], [])  # a lone group is never held out
    assert len(holdout([1, 2], 0.01)[1]) == 1  # at least one, never all
    with pytest.raises(PrepError, match="fraction"):
        holdout([1, 2], 1.0)

    clips = [
        common.Clip(str(tmp_path / "a" / "x.wav"), 5, (0, 2)),
        common.Clip(str(tmp_path / "y.wav"), 7, (1,)),
    ]
    manifests.write_split(str(tmp_path / "out"), "train", str(tmp_path), clips, num_classes=3)
    assert (tmp_path / "out" / "train.tsv").read_text() == f"{tmp_path}\na/x.wav\t5\ny.wav\t7\n"
    assert (tmp_path / "out" / "train.lbl").read_text() == "0,2\n1\n"
    assert sorted(os.listdir(tmp_path / "out")) == ["train.lbl", "train.tsv"]  # no temp files
    with pytest.raises(PrepError, match="invalid class indices"):
        manifests.render_split(str(tmp_path), clips, num_classes=2)
    with pytest.raises(PrepError, match="not under the manifest root"):
        manifests.render_split(str(tmp_path / "a"), clips)

    classes = [common.ClassInfo("/m/1", 'Say "hi", twice')]
    manifests.write_labels_csv(str(tmp_path / "out"), classes)
    text = (tmp_path / "out" / "labels.csv").read_text()
    assert text == 'index,mid,display_name\n0,/m/1,"Say ""hi"", twice"\n'
    assert read_labels_csv(tmp_path / "out") == [("/m/1", 'Say "hi", twice')]


def test_grouped_stratified_holdout_keeps_groups_and_covers_classes():
    """Multi-label items in groups: no group on both sides, every class of kept in held out
    (about its share), and a class found in one group only is kept and reported."""
    from mae_ast_plugin.prep.splits import grouped_stratified_holdout, split_rng

    rng = np.random.default_rng(5)
    items = []  # (group, labels)
    for group in range(60):
        labels = tuple(sorted({int(c) for c in rng.integers(0, 6, size=rng.integers(1, 3))}))
        items += [(f"g{group}", labels)] * int(rng.integers(1, 4))
    items += [("g-rare", (6,)), ("g-rare", (6, 0))]  # class 6: a single group
    items += [("g-pair1", (7,)), ("g-pair2", (7,))]  # class 7: two groups, one each side
    kept, held, too_rare = grouped_stratified_holdout(
        items, 0.2, split_rng(0), group_of=lambda item: item[0], labels_of=lambda item: item[1]
    )
    assert sorted(kept + held) == sorted(items)
    assert not {g for g, _ in kept} & {g for g, _ in held}
    kept_classes = Counter(c for _, labels in kept for c in labels)
    held_classes = Counter(c for _, labels in held for c in labels)
    assert too_rare == [6] and 6 in kept_classes and 6 not in held_classes
    assert set(kept_classes) - {6} <= set(held_classes)
    for label in range(6):  # about 20% of each common class, to within a group or two
        share = held_classes[label] / (held_classes[label] + kept_classes[label])
        assert 0.1 <= share <= 0.35, (label, share)
    assert held_classes[7] == 1 and kept_classes[7] == 1
    again = grouped_stratified_holdout(
        items, 0.2, split_rng(0), group_of=lambda item: item[0], labels_of=lambda item: item[1]
    )
    assert again == (kept, held, too_rare)


# ------------------------------------------------------------------------------------------
# Carved splits keep their stated size


def _esc50_shaped(seed):
    """50 classes x 40 clips from sources of 1-5 takes (ESC-50's src_file groups)."""
    rng = np.random.default_rng(seed)
    items = []
    for label in range(50):
        clips, source = 0, 0
        while clips < 40:
            takes = min(int(rng.choice([1, 1, 2, 3, 4, 5])), 40 - clips)
            items += [(f"c{label}s{source}", (label,))] * takes
            clips, source = clips + takes, source + 1
    return items


def _iemocap_shaped(seed):
    """120 dialogues of 10-90 utterances, each dialogue skewed towards some of 4 emotions."""
    rng = np.random.default_rng(seed)
    items = []
    for dialogue in range(120):
        weights = rng.dirichlet(np.full(4, 0.7))
        items += [(f"d{dialogue}", (int(rng.choice(4, p=weights)),))
                  for _ in range(int(rng.integers(10, 90)))]
    return items


def _unequal_multilabel(seed):
    """Multi-label groups of very unequal sizes: a few of 150-300 items, many of 1-3."""
    rng = np.random.default_rng(seed)
    items = []
    for group in range(200):
        size = int(rng.integers(150, 300)) if group % 40 == 0 else int(rng.integers(1, 4))
        for _ in range(size):
            labels = tuple(sorted({int(c) for c in rng.integers(0, 12, size=rng.integers(1, 4))}))
            items.append((f"g{group}", labels))
    return items


@pytest.mark.parametrize(
    "make, fraction",
    [(_esc50_shaped, 1 / 8), (_iemocap_shaped, 0.2), (_unequal_multilabel, 0.1),
     (_unequal_multilabel, 0.3)],
)
def test_carved_split_keeps_its_size_groups_and_classes(make, fraction):
    """The held-out share is within HOLDOUT_TOLERANCE of the fraction on every seed (IEMOCAP-
    shaped dialogues were 6 points off), groups stay whole, every class with two or more groups
    is on both sides, and the summary states the achieved share and the tolerance."""
    from mae_ast_plugin.prep.splits import (
        HOLDOUT_TOLERANCE,
        grouped_stratified_holdout,
        split_rng,
    )
    from mae_ast_plugin.prep.summary import PrepSummary

    for seed in range(10):
        items = make(seed)
        summary = PrepSummary("test")
        kept, held, too_rare = grouped_stratified_holdout(
            items, fraction, split_rng(0, seed), group_of=lambda item: item[0],
            labels_of=lambda item: item[1], summary=summary, name="fold1/valid",
        )
        assert sorted(kept + held) == sorted(items)
        assert abs(len(held) / len(items) - fraction) <= HOLDOUT_TOLERANCE, seed
        assert not {g for g, _ in kept} & {g for g, _ in held}
        groups_of = {}
        for group, labels in items:
            for label in labels:
                groups_of.setdefault(label, set()).add(group)
        kept_classes = {c for _, labels in kept for c in labels}
        held_classes = {c for _, labels in held for c in labels}
        assert kept_classes == set(groups_of)  # nothing trained on is lost
        assert {c for c, g in groups_of.items() if len(g) >= 2} <= held_classes
        assert too_rare == sorted(c for c, g in groups_of.items() if len(g) < 2)
        assert summary.notes == [
            f"fold1/valid: {len(held)} of {len(items)} clips held out "
            f"({100 * (len(held) / len(items)):.1f}%; stated {100 * fraction:.1f}% ± 2 points)"
        ]


def test_carved_split_says_when_its_groups_forbid_the_tolerance():
    """Two groups of 50 and 5 items cannot give 20%: the summary gives the achieved share and
    why (whole groups of these sizes)."""
    from mae_ast_plugin.prep.splits import grouped_stratified_holdout, split_rng
    from mae_ast_plugin.prep.summary import PrepSummary

    items = [("big", (0,))] * 50 + [("small", (0,))] * 5
    summary = PrepSummary("test")
    kept, held, _ = grouped_stratified_holdout(
        items, 0.2, split_rng(0), group_of=lambda item: item[0],
        labels_of=lambda item: item[1], summary=summary, name="valid",
    )
    assert len(held) == 5 and len(kept) == 50
    (note,) = summary.notes
    assert note.startswith("valid: 5 of 55 clips held out (9.1%; stated 20.0% ± 2 points)")
    assert "outside the tolerance" in note and "(5-50 clips each)" in note
