"""Tests for dataset preparation (``mae-ast-prepare``: mae_ast_plugin/prep/<dataset>.py) and its
shared helpers (common, audio, splits, manifests, summary in mae_ast_plugin/prep/), on tiny
fake datasets in the real layouts."""

import csv
import importlib
import importlib.util
import os
import subprocess
import sys
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import soundfile

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))  # fake_datasets, next to this file
if importlib.util.find_spec("mae_ast_plugin") is None:  # not installed: use this checkout
    sys.path.insert(0, str(REPO))

import fake_datasets as fake  # noqa: E402

from mae_ast_plugin.prep.common import PrepError  # noqa: E402

SPLITS = ("train", "valid", "test")


def run_main(name, argv):
    """``prepare(args)`` of ``mae_ast_plugin.prep.{name}``: its summary; raises PrepError."""
    module = importlib.import_module(f"mae_ast_plugin.prep.{name}")
    return module.prepare(module.get_parser().parse_args([str(arg) for arg in argv]))


def run_command(name, argv, wrapper=False):
    """Run ``mae-ast-prepare {name} ...`` as a user does: a subprocess from the repository root
    (with ``wrapper``, through the thin ``scripts/prepare_{name}.py`` the docs still name)."""
    if wrapper:
        command = [sys.executable, f"scripts/prepare_{name}.py"]
    else:
        command = [str(Path(sys.executable).parent / "mae-ast-prepare"), name]
    command += [str(arg) for arg in argv]
    return subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=120)


def read_split(directory, split, frames, labelled=True):
    """Parse ``{split}.tsv`` (and ``.lbl``), checking the format contract on the way:
    absolute root, sizes equal to the written frames, one label row per manifest row.
    Returns ``[(absolute_path, labels)]``."""
    lines = (Path(directory) / f"{split}.tsv").read_text().splitlines()
    root = lines[0]
    assert os.path.isabs(root) and os.path.isdir(root)
    rows = []
    for line in lines[1:]:
        relative, size = line.split("\t")
        assert not os.path.isabs(relative) and ".." not in relative.split("/")
        path = os.path.join(root, relative)
        assert int(size) == frames[path], path
        rows.append(path)
    if not labelled:
        assert not (Path(directory) / f"{split}.lbl").exists()
        return [(path, ()) for path in rows]
    label_lines = (Path(directory) / f"{split}.lbl").read_text().splitlines()
    assert len(label_lines) == len(rows)
    labels = [tuple(int(index) for index in line.split(",")) for line in label_lines]
    return list(zip(rows, labels, strict=True))


def read_labels_csv(directory):
    with open(Path(directory) / "labels.csv", newline="") as handle:
        rows = list(csv.reader(handle))
    assert rows[0] == ["index", "mid", "display_name"]
    assert [int(row[0]) for row in rows[1:]] == list(range(len(rows) - 1))
    return [(row[1], row[2]) for row in rows[1:]]


def tree_bytes(directory):
    """``{relative path: bytes}`` of every file under ``directory``."""
    directory = Path(directory)
    files = sorted(path for path in directory.rglob("*") if path.is_file())
    return {str(path.relative_to(directory)): path.read_bytes() for path in files}


def add_silence_frames(dest, frames):
    """Record the sizes of the silence clips a Speech Commands v1 run cut under ``dest``."""
    silence = {
        str(path.resolve()): soundfile.info(str(path)).frames
        for path in (Path(dest) / "silence").rglob("*.wav")
    }
    frames.update(silence)
    return silence


def check_valid_labels(rows, num_classes):
    for _, labels in rows:
        assert labels and all(0 <= label < num_classes for label in labels)


# ------------------------------------------------------------------------------------------
# LibriSpeech


def test_librispeech_cli_and_determinism(tmp_path):
    base, frames = fake.make_librispeech(tmp_path / "download")
    proc = run_command("librispeech", [base, "--dest", tmp_path / "out"])
    assert proc.returncode == 0, proc.stderr
    assert "LibriSpeech summary" in proc.stdout and "missing audio: 0" in proc.stdout

    corpus = str((base / "LibriSpeech").resolve())
    assert (tmp_path / "out" / "train.tsv").read_text().splitlines()[0] == corpus
    train = [path for path, _ in read_split(tmp_path / "out", "train", frames, labelled=False)]
    valid = [path for path, _ in read_split(tmp_path / "out", "valid", frames, labelled=False)]

    def subsets(paths):
        return {os.path.relpath(path, corpus).split(os.sep)[0] for path in paths}

    # Default train subsets: the ones present (train-clean-360 is not).
    assert subsets(train) == {"train-clean-100", "train-other-500"}
    assert len(train) == 6 and train == sorted(train)
    assert subsets(valid) == {"dev-clean"}
    assert len(valid) == 2
    assert sorted(os.listdir(tmp_path / "out")) == ["train.tsv", "valid.tsv"]  # no temp files left

    # The same inputs give byte-identical manifests (here from the LibriSpeech dir itself).
    again = tmp_path / "again"
    run_main("librispeech", [base / "LibriSpeech", "--dest", again, "--workers", 1])
    assert tree_bytes(tmp_path / "out") == tree_bytes(tmp_path / "again")


def test_librispeech_subset_options_and_errors(tmp_path):
    base, frames = fake.make_librispeech(tmp_path / "download")
    dest = ["--dest", tmp_path / "out"]
    run_main("librispeech", [base, *dest, "--train-subsets", "train-other-500"])
    assert len(read_split(tmp_path / "out", "train", frames, labelled=False)) == 2
    with pytest.raises(PrepError, match=r"subset 'train-clean-360' not found.*train-clean-100"):
        run_main("librispeech", [base, *dest, "--train-subsets", "train-clean-360"])
    with pytest.raises(PrepError, match="subset 'dev-other' not found"):
        run_main("librispeech", [base, *dest, "--valid-subsets", "dev-other"])


def test_unreadable_audio_is_an_error_or_a_counted_skip(tmp_path, capsys):
    base, frames = fake.make_librispeech(tmp_path / "download")
    broken = base / "LibriSpeech" / "dev-clean" / "84" / "121" / "84-121-0009.flac"
    broken.write_bytes(b"not a flac file")
    with pytest.raises(PrepError, match=r"84-121-0009\.flac cannot be read.*--skip-invalid"):
        run_main("librispeech", [base, "--dest", tmp_path / "out"])
    assert not (tmp_path / "out").exists()  # an error leaves no partial output

    run_main("librispeech", [base, "--dest", tmp_path / "out", "--skip-invalid"])
    assert len(read_split(tmp_path / "out", "valid", frames, labelled=False)) == 2
    assert "unreadable audio: 1" in capsys.readouterr().out


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


# ------------------------------------------------------------------------------------------
# Speech Commands


def _word(path):
    return Path(path).parent.name


def _speaker(path):
    return Path(path).name.split("_")[0]


def test_speechcommands_v2(tmp_path, capsys):
    root, frames = fake.make_speechcommands(tmp_path)
    run_main("speechcommands", [root, "--dest", tmp_path / "out"])
    assert "Speech Commands v2 summary" in capsys.readouterr().out
    classes = [name for name, _ in read_labels_csv(tmp_path / "out")]
    assert len(classes) == 35 and classes == sorted(classes) and "_background_noise_" not in classes
    speakers = {"train": {fake.SC_SPEAKERS[0], fake.SC_SPEAKERS[3]}, "valid": {fake.SC_SPEAKERS[1]},
                "test": {fake.SC_SPEAKERS[2]}}  # fmt: skip
    for split, expected in speakers.items():
        rows = read_split(tmp_path / "out", split, frames)
        check_valid_labels(rows, 35)
        assert {_speaker(path) for path, _ in rows} == expected
        assert all(classes[labels[0]] == _word(path) for path, labels in rows)
        assert len(rows) == len(fake.SC_WORDS) * len(expected)

    # An unexpected folder: an error, or with --skip-invalid a counted skip.
    fake.FakeWriter(9).clip(root / "banana" / "0a7c2a8d_nohash_0.wav", 16000)
    with pytest.raises(PrepError, match="unexpected folder 'banana'"):
        run_main("speechcommands", [root, "--dest", tmp_path / "x"])
    skip = tmp_path / "skip"
    summary = run_main("speechcommands", [root, "--dest", skip, "--skip-invalid"])
    assert summary.problems["unexpected folders left out"] == 1
    assert (skip / "train.tsv").read_bytes() == (tmp_path / "out" / "train.tsv").read_bytes()


def test_speechcommands_v1_unknown_and_silence(tmp_path):
    root, frames = fake.make_speechcommands(tmp_path)
    dest = tmp_path / "out"
    run_main("speechcommands", [root, "--dest", dest, "--version", 1, "--test-from-testing-list"])
    classes = [name for name, _ in read_labels_csv(dest)]
    assert classes == list(fake.SC_WORDS[:10]) + ["_unknown_", "_silence_"]
    silence = add_silence_frames(dest, frames)
    assert silence and set(silence.values()) == {16000}  # 1 s at the noise files' 16 kHz

    for split, speaker in (("train", 0), ("valid", 1), ("test", 2)):
        rows = read_split(dest, split, frames)
        check_valid_labels(rows, 12)
        names = Counter(classes[labels[0]] for _, labels in rows)
        words = [path for path, labels in rows if classes[labels[0]] != "_silence_"]
        num_speakers = 2 if split == "train" else 1
        assert {_speaker(path) for path in words} >= {fake.SC_SPEAKERS[speaker]}
        assert all(names[word] == num_speakers for word in classes[:10])
        assert names["_unknown_"] == 2 * num_speakers  # bed and marvin
        # The silence count defaults to the mean size of the 10 word classes.
        assert names["_silence_"] == num_speakers
        for path, labels in rows:
            if classes[labels[0]] == "_silence_":
                assert Path(path).parent == dest / "silence" / split

    # Explicit silence counts, the official test set, determinism.
    test_root, test_frames = fake.make_speechcommands_test_set(tmp_path)
    frames.update(test_frames)
    args = [root, "--version", 1, "--test-root", test_root, "--silence-clips", 3, 2, 99]
    run_main("speechcommands", args + ["--dest", tmp_path / "official"])
    official = tmp_path / "official"
    add_silence_frames(official, frames)
    test_rows = read_split(official, "test", frames)
    assert {Path(path).parent for path, _ in test_rows} == {
        test_root / name for name in ("yes", "no", "_unknown_", "_silence_")
    }
    assert all(classes[labels[0]] == Path(path).parent.name for path, labels in test_rows)
    assert not (official / "silence" / "test").exists()
    for split, count in (("train", 3), ("valid", 2)):
        rows = read_split(official, split, frames)
        assert sum(classes[labels[0]] == "_silence_" for _, labels in rows) == count
    # Silence files live under --dest, so compare a rerun into the same directory.
    first = tree_bytes(official)
    run_main("speechcommands", args + ["--dest", official])
    assert tree_bytes(official) == first
    # A rerun with fewer silence clips removes the clips it no longer lists.
    fewer = [root, "--version", 1, "--test-root", test_root, "--silence-clips", 1, 1, 0]
    run_main("speechcommands", fewer + ["--dest", official])
    assert len(list((official / "silence").rglob("*.wav"))) == 2


def test_speechcommands_v1_needs_superbs_test_set(tmp_path):
    """The README's v1 command builds SUPERB's test set, or stops saying where to get it."""
    root, frames = fake.make_speechcommands(tmp_path)
    proc = run_command("speechcommands", [root, "--version", 1, "--dest", tmp_path / "out"])
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "speech_commands_test_set_v0.01.tar.gz" in proc.stderr and "--test-root" in proc.stderr
    assert not (tmp_path / "out").exists()
    test_root, test_frames = fake.make_speechcommands_test_set(tmp_path)
    frames.update(test_frames)
    args = [root, "--version", 1, "--test-root", test_root, "--dest", tmp_path / "out"]
    summary = run_main("speechcommands", args)
    test_rows = read_split(tmp_path / "out", "test", frames)
    test_dirs = {Path(path).parent.parent for path, _ in test_rows}
    assert test_dirs == {test_root}  # every test clip from SUPERB's set, none from testing_list
    assert "speakers in both train and valid: 0" in summary.notes
    assert "speakers in both train and test: 0" in summary.notes
    with pytest.raises(PrepError, match="not both"):
        run_main("speechcommands", [root, "--version", 1, "--test-root", test_root,
                                    "--test-from-testing-list", "--dest", tmp_path / "x"])


def test_speechcommands_listed_clip_missing(tmp_path):
    root, _ = fake.make_speechcommands(tmp_path)
    os.remove(root / "yes" / f"{fake.SC_SPEAKERS[2]}_nohash_0.wav")
    expected = r"testing_list\.txt:1: listed clip .*yes/2c5d8e3f_nohash_0\.wav not found"
    with pytest.raises(PrepError, match=expected):
        run_main("speechcommands", [root, "--dest", tmp_path / "out"])


# ------------------------------------------------------------------------------------------
# VoxCeleb1


def test_voxceleb1_splits(tmp_path, capsys):
    root, frames = fake.make_voxceleb1(tmp_path)
    run_main("voxceleb1", [root, "--dest", tmp_path / "out"])
    assert "VoxCeleb1 speaker identification summary" in capsys.readouterr().out
    speakers = sorted({speaker for _, speaker, _, _ in fake.VOX_SPLIT})
    assert read_labels_csv(tmp_path / "out") == [(s, s) for s in speakers]
    for code, split in ((1, "train"), (2, "valid"), (3, "test")):
        rows = read_split(tmp_path / "out", split, frames)
        expected = {
            str((root / "wav" / speaker / video / f"{name}.wav").resolve())
            for c, speaker, video, name in fake.VOX_SPLIT
            if c == code
        }
        assert {path for path, _ in rows} == expected
        for path, labels in rows:
            assert speakers[labels[0]] == Path(path).parts[-3]


def test_voxceleb1_missing_file(tmp_path):
    root, frames = fake.make_voxceleb1(tmp_path, missing_line=5)
    proc = run_command("voxceleb1", [root, "--dest", tmp_path / "out"])
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    split_file = root / "iden_split.txt"
    missing = root / "wav" / "id10002" / "0_laIeN-Q44" / "00001.wav"
    assert f"{split_file}:5: audio file {missing} not found" in proc.stderr

    summary = run_main("voxceleb1", [root, "--dest", tmp_path / "out", "--skip-invalid"])
    assert summary.problems["missing audio"] == 1
    assert len(read_split(tmp_path / "out", "train", frames)) == 3


# ------------------------------------------------------------------------------------------
# IEMOCAP


def test_iemocap_folds(tmp_path, capsys):
    root, frames = fake.make_iemocap(tmp_path)
    run_main("iemocap", [root, "--dest", tmp_path / "out"])
    out = capsys.readouterr().out
    assert "IEMOCAP emotion recognition summary" in out
    assert "dropped utterances labelled 'fru': 5" in out
    assert "dropped utterances labelled 'xxx': 5" in out
    classes = [mid for mid, _ in read_labels_csv(tmp_path / "out" / "fold1")]
    assert classes == ["neu", "hap", "ang", "sad"]
    emotion_of = {
        fake.iemocap_utterance(session, index): emotion
        for session in range(1, 6)
        for index, emotion in enumerate(fake.IEMOCAP_EMOTIONS)
    }
    expected_class = {"neu": 0, "hap": 1, "exc": 1, "ang": 2, "sad": 3}
    for fold in range(1, 6):
        directory = tmp_path / "out" / f"fold{fold}"
        splits = {split: read_split(directory, split, frames) for split in SPLITS}
        sessions = {split: {Path(p).name[3:5] for p, _ in rows} for split, rows in splits.items()}
        assert sessions["test"] == {f"{fold:02d}"}
        assert f"{fold:02d}" not in sessions["train"] | sessions["valid"]
        assert len(splits["test"]) == 8  # 10 utterances less fru and xxx
        for rows in splits.values():
            check_valid_labels(rows, 4)
            for path, labels in rows:
                assert labels == (expected_class[emotion_of[Path(path).stem]],)  # exc -> hap
        # valid: 20% of each class of the 32 training utterances.
        assert Counter(labels[0] for _, labels in splits["valid"]) == {0: 2, 1: 2, 2: 2, 3: 2}
        assert len(splits["train"]) == 24
    run_main("iemocap", [root, "--dest", tmp_path / "again"])
    assert tree_bytes(tmp_path / "out") == tree_bytes(tmp_path / "again")


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


def test_esc50_valid_never_shares_a_source_recording(tmp_path, capsys):
    """Case 01 of issue 10: takes of one source recording on both sides of train/valid."""
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
            assert "fold1/valid: " not in out
        else:  # siren has one source in training: kept there, and the summary says so
            assert train_classes - valid_classes == {42} and valid_classes == {0, 49}
            assert f"fold{fold}/valid: 1 class(es) of train have no clip here" in out
            assert out.split(f"fold{fold}/valid: 1 class(es)")[1].split("\n")[0].endswith("siren")


def test_iemocap_valid_holds_whole_dialogues(tmp_path):
    root, frames = fake.make_iemocap(tmp_path, dialogs=5)
    run_main("iemocap", [root, "--dest", tmp_path / "out"])
    for fold in range(1, 6):
        splits = {s: read_split(tmp_path / "out" / f"fold{fold}", s, frames) for s in SPLITS}
        dialogs = {s: {Path(p).parent.name for p, _ in rows} for s, rows in splits.items()}
        assert not dialogs["train"] & dialogs["valid"]
        assert len(dialogs["valid"]) == 4  # 20% of the 20 training dialogues
        assert {labels[0] for _, labels in splits["valid"]} == {0, 1, 2, 3}


def test_iemocap_missing_wav_names_the_annotation_line(tmp_path):
    root, _ = fake.make_iemocap(tmp_path)
    utterance = fake.iemocap_utterance(2, 3)  # 4th utterance: line 3 + 4 * 3 of its file
    os.remove(root / "Session2" / "sentences" / "wav" / utterance[:-5] / f"{utterance}.wav")
    annotation = root / "Session2" / "dialog" / "EmoEvaluation" / f"{utterance[:-5]}.txt"
    expected = rf"{annotation}:15: audio file .*{utterance}\.wav not found"
    with pytest.raises(PrepError, match=expected):
        run_main("iemocap", [root, "--dest", tmp_path / "out"])
    summary = run_main("iemocap", [root, "--dest", tmp_path / "out", "--skip-invalid"])
    assert summary.problems["missing audio"] == 1
