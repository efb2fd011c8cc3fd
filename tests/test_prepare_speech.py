"""Dataset preparation of the speech tasks (``mae-ast-prepare librispeech | speechcommands |
voxceleb1 | iemocap``) on tiny fake datasets in the real layouts."""

import os
from collections import Counter
from pathlib import Path

import pytest
from prep_testing import (
    SPLITS,
    PrepError,
    add_silence_frames,
    check_valid_labels,
    fake,
    read_labels_csv,
    read_split,
    run_command,
    run_main,
    tree_bytes,
)

# ------------------------------------------------------------------------------------------
# LibriSpeech


@pytest.mark.slow
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


@pytest.mark.slow
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


@pytest.mark.slow
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
