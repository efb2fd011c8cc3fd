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
