"""Dataset preparation of the sound tasks (``mae-ast-prepare esc50 | audioset``) on tiny fake
datasets in the real layouts."""

import os
from collections import Counter
from pathlib import Path

import pytest
from prep_testing import (
    SPLITS,
    PrepError,
    check_valid_labels,
    fake,
    read_labels_csv,
    read_split,
    run_command,
    run_main,
    tree_bytes,
)

# ------------------------------------------------------------------------------------------
# ESC-50


def test_esc50_folds(tmp_path, capsys):
    root, frames = fake.make_esc50(tmp_path)
    run_main("esc50", [root, "--dest", tmp_path / "out"])
    out = capsys.readouterr().out
    assert "ESC-50 summary" in out and "fold5/test" in out and "siren=2" in out

    classes = read_labels_csv(tmp_path / "out" / "fold1")
    assert len(classes) == 50 and classes[42] == ("siren", "siren") and classes[0] == ("dog", "dog")
    for fold in range(1, 6):
        directory = tmp_path / "out" / f"fold{fold}"
        splits = {split: read_split(directory, split, frames) for split in SPLITS}
        for rows in splits.values():
            check_valid_labels(rows, 50)
            for path, labels in rows:  # file names end in -{target}.wav
                assert labels == (int(Path(path).stem.rsplit("-", 1)[1]),)
        folds = {split: {Path(p).name[0] for p, _ in rows} for split, rows in splits.items()}
        assert folds["test"] == {str(fold)}
        assert str(fold) not in folds["train"] | folds["valid"]
        assert len(splits["test"]) == 6
        # valid: 1/8 of each class's 8 clips in the other folds, rounded up to one whole source
        # recording (its two takes); the rest in train.
        assert Counter(labels[0] for _, labels in splits["valid"]) == {0: 2, 42: 2, 49: 2}
        assert len(splits["train"]) == 18
        assert not {p for p, _ in splits["train"]} & {p for p, _ in splits["valid"]}
        labels_csv = (directory / "labels.csv").read_bytes()
        assert labels_csv == (tmp_path / "out" / "fold1" / "labels.csv").read_bytes()

    run_main("esc50", [root, "--dest", tmp_path / "again"])
    assert tree_bytes(tmp_path / "out") == tree_bytes(tmp_path / "again")


@pytest.mark.slow
def test_esc50_unknown_category_is_a_clean_error(tmp_path):
    root, _ = fake.make_esc50(tmp_path)
    meta = root / "meta" / "esc50.csv"
    lines = meta.read_text().splitlines(keepends=True)
    fields = lines[2].split(",")
    fields[3] = "dragon"
    lines[2] = ",".join(fields)
    meta.write_text("".join(lines))
    proc = run_command("esc50", [root, "--dest", tmp_path / "out"], wrapper=True)
    assert proc.returncode == 2
    assert f"{meta}:3: unknown category 'dragon'" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert not (tmp_path / "out").exists()


def test_esc50_inconsistent_target(tmp_path):
    root, _ = fake.make_esc50(tmp_path)
    meta = root / "meta" / "esc50.csv"
    lines = meta.read_text().splitlines(keepends=True)
    fields = lines[4].split(",")
    fields[2] = "7" if fields[2] != "7" else "8"
    lines[4] = ",".join(fields)
    meta.write_text("".join(lines))
    expected = rf"esc50\.csv:5: target {fields[2]} does not match category"
    with pytest.raises(PrepError, match=expected):
        run_main("esc50", [root, "--dest", tmp_path / "out"])


# ------------------------------------------------------------------------------------------
# AudioSet


def _audioset_expectations():
    segments = fake.audioset_segments()
    index_of = {mid: index for index, (mid, _) in enumerate(fake.AUDIOSET_CLASSES)}
    labels = {
        ytid: tuple(sorted({index_of[mid] for mid in mids}))  # a repeated mid counts once
        for listed in segments.values()
        for ytid, mids in listed
    }
    return segments, labels


def _ytid_of(path, ytids):
    matches = [ytid for ytid in ytids if ytid in Path(path).name]
    assert len(matches) == 1, path
    return matches[0]


def test_audioset_finetune(tmp_path, capsys):
    base, frames = fake.make_audioset(tmp_path / "audioset")
    segments, labels = _audioset_expectations()
    run_main("audioset", [base, "--dest", tmp_path / "ft", "--audio-dir", base / "audio"])
    out = capsys.readouterr().out
    assert "balanced_train_segments.csv segments without audio (not downloaded): 1" in out
    assert "eval_segments.csv segments without audio (not downloaded): 1" in out

    assert read_labels_csv(tmp_path / "ft") == fake.AUDIOSET_CLASSES
    rows = {s: read_split(tmp_path / "ft", s, frames) for s in ("train", "valid", "eval")}
    ids = {split: [_ytid_of(path, labels) for path, _ in rows[split]] for split in rows}
    balanced = {ytid for ytid, _ in segments["balanced_train_segments.csv"]} - {"bal03AbCdEf"}
    evaluation = {ytid for ytid, _ in segments["eval_segments.csv"]} - {"--ev03QrStU"}
    assert set(ids["train"]) | set(ids["valid"]) == balanced
    assert not set(ids["train"]) & set(ids["valid"])
    # at least one listed clip of every class in valid (a 10% share of 12 would be 1 clip); the
    # class of bal03AbCdEf (Music), whose audio is missing, has no clip left, and the summary
    # says so
    valid_classes = {label for _, row_labels in rows["valid"] for label in row_labels}
    assert valid_classes == {0, 1, 2} and len(ids["valid"]) == 3
    assert "valid: 1 class(es) of train have no clip here (too few" in out
    assert out.rstrip().endswith("its audio is missing): Music")
    assert set(ids["eval"]) == evaluation
    for split, split_rows in rows.items():
        check_valid_labels(split_rows, len(fake.AUDIOSET_CLASSES))
        for ytid, (_, row_labels) in zip(ids[split], split_rows, strict=True):
            assert row_labels == labels[ytid]
    multi_label = (0, 1, 3)  # bal01AbCdEf's three classes on one line
    assert multi_label in [row_labels for _, row_labels in rows["train"] + rows["valid"]]
    assert any(ytid.startswith("-") for ytid in ids["train"] + ids["valid"])

    again = tmp_path / "again"
    run_main("audioset", [base, "--dest", again, "--audio-dir", base / "audio"])
    assert tree_bytes(tmp_path / "ft") == tree_bytes(tmp_path / "again")


def test_audioset_pretrain(tmp_path):
    base, frames = fake.make_audioset(tmp_path / "audioset")
    segments, labels = _audioset_expectations()
    run_main("audioset", [base, "--dest", tmp_path / "ft", "--seed", 3])
    run_main("audioset", [base, "--dest", tmp_path / "pt", "--mode=pretrain", "--seed=3"])
    assert sorted(os.listdir(tmp_path / "pt")) == ["train.tsv", "valid.tsv"]

    def ytids(directory, split, labelled):
        rows = read_split(directory, split, frames, labelled=labelled)
        return [_ytid_of(path, labels) for path, _ in rows]

    train, valid = ytids(tmp_path / "pt", "train", False), ytids(tmp_path / "pt", "valid", False)
    listed = {
        ytid
        for name in ("balanced_train_segments.csv", "unbalanced_train_segments.csv")
        for ytid, _ in segments[name]
    } - {"bal03AbCdEf", "unb02_-zYxW"}
    assert set(train) | set(valid) == listed and not set(train) & set(valid)
    assert not any(ytid.startswith("--ev") for ytid in train + valid)  # eval never used
    # The pretraining valid clips are exactly the fine-tuning valid clips.
    assert valid == ytids(tmp_path / "ft", "valid", True)


def test_audioset_unknown_mid_and_unlabelled_segment(tmp_path):
    base, _ = fake.make_audioset(tmp_path / "audioset")
    csv_path = base / "eval_segments.csv"
    lines = csv_path.read_text().splitlines(keepends=True)
    good = lines[5]
    lines[5] = good.replace("/m/0jbk", "/m/nope")
    csv_path.write_text("".join(lines))
    with pytest.raises(PrepError, match=rf"{csv_path}:6: unknown label id\(s\) /m/nope"):
        run_main("audioset", [base, "--dest", tmp_path / "out"])

    lines[5] = good.split('"')[0] + '""\n'
    csv_path.write_text("".join(lines))
    with pytest.raises(PrepError, match=rf"{csv_path}:6: segment \S+ has no label"):
        run_main("audioset", [base, "--dest", tmp_path / "out"])
    summary = run_main("audioset", [base, "--dest", tmp_path / "out", "--skip-invalid"])
    assert summary.problems["segments without labels"] == 1


def test_esc50_valid_never_shares_a_source_recording(tmp_path, capsys):
    """Takes of one source recording on both sides of train/valid."""
    root, frames = fake.make_esc50(tmp_path, sources=4, rare="siren")
    run_main("esc50", [root, "--dest", tmp_path / "out"])
    out = capsys.readouterr().out

    def source(path):  # {fold}-{src_file}-{take}-{target}.wav
        return Path(path).name.split("-")[1]

    for fold in range(1, 6):
        splits = {s: read_split(tmp_path / "out" / f"fold{fold}", s, frames) for s in SPLITS}
        sources = {s: {source(p) for p, _ in rows} for s, rows in splits.items()}
        assert not sources["train"] & sources["valid"] and not sources["train"] & sources["test"]
        train_classes = {labels[0] for _, labels in splits["train"]}
        valid_classes = {labels[0] for _, labels in splits["valid"]}
        if fold == 1:  # siren (42) is only in fold 1: absent from training, nothing to report
            assert train_classes == valid_classes == {0, 49}
            assert "fold1/valid: 1 class(es)" not in out and "class(es) of train" not in out.split(
                "fold1/valid: ")[1].split("\n")[0]
        else:  # siren has one source in training: kept there, and the summary says so
            assert train_classes - valid_classes == {42} and valid_classes == {0, 49}
            assert f"fold{fold}/valid: 1 class(es) of train have no clip here" in out
            assert out.split(f"fold{fold}/valid: 1 class(es)")[1].split("\n")[0].endswith("siren")
        # the held-out share is stated, with the tolerance
        assert f"fold{fold}/valid: " in out and "stated 12.5% ± 2 points" in out
