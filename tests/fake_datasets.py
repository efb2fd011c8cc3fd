"""Tiny fake copies of the datasets that ``mae-ast-prepare`` (mae_ast_plugin/prep/) reads, in
their real layouts.

Each builder writes a handful of very short noise clips at the dataset's native rate under a
directory and returns ``(root, frames)``, where ``frames`` maps every audio file written (absolute
path) to its length in samples, so tests can check manifest sizes without reading audio.
"""

from pathlib import Path

import numpy as np
import soundfile


class FakeWriter:
    """Writes noise clips of varying lengths and records their sizes."""

    def __init__(self, seed: int = 0):
        self.rng = np.random.default_rng(seed)
        self.frames = {}

    def clip(self, path: Path, rate: int, seconds: float = None) -> Path:
        if seconds is None:
            seconds = float(self.rng.uniform(0.05, 0.12))
        length = int(seconds * rate)
        path.parent.mkdir(parents=True, exist_ok=True)
        soundfile.write(path, 0.1 * self.rng.standard_normal(length), rate, subtype="PCM_16")
        self.frames[str(path.resolve())] = length
        return path


# ------------------------------------------------------------------------------------------
# LibriSpeech


def make_librispeech(base: Path):
    """``base/LibriSpeech/{train-clean-100,train-other-500,dev-clean}``; no train-clean-360."""
    writer = FakeWriter(1)
    corpus = base / "LibriSpeech"
    layout = {"train-clean-100": [(19, 198), (26, 495)], "train-other-500": [(20, 205)],
              "dev-clean": [(84, 121)]}  # fmt: skip
    for subset, chapters in layout.items():
        for speaker, chapter in chapters:
            for utt in range(2):
                name = f"{speaker}-{chapter}-{utt:04d}.flac"
                writer.clip(corpus / subset / str(speaker) / str(chapter) / name, 16000)
    (corpus / "README.TXT").write_text("fake\n")
    return base, writer.frames


# ------------------------------------------------------------------------------------------
# ESC-50

ESC_CLASSES = {"dog": 0, "siren": 42, "hand_saw": 49}
ESC_HEADER = "filename,fold,target,category,esc10,src_file,take\n"


def make_esc50(base: Path, sources: int = 1, rare: str = None):
    """5 folds x 3 classes x ``sources`` source recordings (``src_file``) x 2 takes (A, B), as
    the real dataset cuts several takes from one recording; the ``rare`` class has clips in
    fold 1 only (one source).  Rows in csv deliberately not sorted."""
    writer = FakeWriter(2)
    root = base / "ESC-50-master"
    rows = []
    for fold in range(1, 6):
        for category, target in ESC_CLASSES.items():
            for index in range(sources if category != rare else int(fold == 1)):
                source = 100000 + 1000 * index + 100 * fold + target
                for take in "AB":
                    name = f"{fold}-{source}-{take}-{target}.wav"
                    writer.clip(root / "audio" / name, 44100)
                    rows.append(f"{name},{fold},{target},{category},False,{source},{take}\n")
    (root / "meta").mkdir(parents=True)
    (root / "meta" / "esc50.csv").write_text(ESC_HEADER + "".join(reversed(rows)))
    return root, writer.frames


# ------------------------------------------------------------------------------------------
# AudioSet

AUDIOSET_CLASSES = [
    ("/m/09x0r", "Speech"),
    ("/m/05zppz", "Male speech, man speaking"),
    ("/m/0jbk", "Animal"),
    ("/m/04rlf", "Music"),
]
SEGMENTS_HEADER = (
    "# Segments csv created Sun Mar  5 10:54:31 2017\n"
    "# num_ytids=N, num_segs=N, num_unique_labels=4, num_positive_labels=N\n"
    "# YTID, start_seconds, end_seconds, positive_labels\n"
)


def _segment_line(ytid, mids):
    return f'{ytid}, 30.000, 40.000, "{",".join(mids)}"\n'


def audioset_segments():
    """``{csv name: [(ytid, [mids])]}``; YTIDs are 11 characters, some start with '-'."""
    mids = [mid for mid, _ in AUDIOSET_CLASSES]
    balanced = [(f"-bal{i:02d}xxxxx"[:11] if i % 4 == 0 else f"bal{i:02d}AbCdEf", [mids[i % 4]])
                for i in range(12)]  # fmt: skip
    balanced[1] = (balanced[1][0], [mids[0], mids[1], mids[3]])  # multi-label
    unbalanced = [(f"unb{i:02d}_-zYxW", [mids[(i + 1) % 4]]) for i in range(4)]
    evaluation = [(f"--ev{i:02d}QrStU", [mids[i % 4], mids[2]]) for i in range(4)]
    return {
        "balanced_train_segments.csv": balanced,
        "unbalanced_train_segments.csv": unbalanced,
        "eval_segments.csv": evaluation,
    }


def make_audioset(base: Path, missing=("bal03AbCdEf", "unb02_-zYxW", "--ev03QrStU")):
    """Csvs in ``base``, clips in ``base/audio/{balanced,unbalanced,eval}`` under assorted
    naming schemes; the YTIDs in ``missing`` get no audio."""
    writer = FakeWriter(3)
    base.mkdir(parents=True, exist_ok=True)
    rows = ["index,mid,display_name\n"]
    rows += [f'{index},{mid},"{name}"\n' for index, (mid, name) in enumerate(AUDIOSET_CLASSES)]
    (base / "class_labels_indices.csv").write_text("".join(rows))
    namings = ("{}.flac", "Y{}.wav", "{}_30.000.wav", "Y{}_30.000_40.000.flac")
    for csv_name, segments in audioset_segments().items():
        (base / csv_name).write_text(
            SEGMENTS_HEADER + "".join(_segment_line(ytid, mids) for ytid, mids in segments)
        )
        folder = base / "audio" / csv_name.split("_")[0]
        for index, (ytid, _) in enumerate(segments):
            if ytid not in missing:
                writer.clip(folder / namings[index % len(namings)].format(ytid), 16000)
    (base / "audio" / "download.log").write_text("not audio\n")
    return base, writer.frames


# ------------------------------------------------------------------------------------------
# Speech Commands

SC_SPEAKERS = ("0a7c2a8d", "1b4c9b89", "2c5d8e3f", "3d6e7f10")
# The 10 words of the v1 task plus two that v1 maps to _unknown_ (all are v2 words).
SC_WORDS = ("yes", "no", "up", "down", "left", "right", "on", "off", "stop", "go", "bed", "marvin")


def make_speechcommands(base: Path, words=SC_WORDS):
    """Word folders with one clip per speaker, 12-s noise recordings and the split lists:
    speaker 1 is in validation_list.txt, speaker 2 in testing_list.txt."""
    writer = FakeWriter(4)
    root = base / "speech_commands"
    for word in words:
        for speaker in SC_SPEAKERS:
            writer.clip(root / word / f"{speaker}_nohash_0.wav", 16000)
    for noise in ("white_noise", "running_tap"):
        writer.clip(root / "_background_noise_" / f"{noise}.wav", 16000, seconds=12.0)
    (root / "_background_noise_" / "README.md").write_text("noise\n")
    (root / "LICENSE").write_text("cc-by\n")
    for list_name, speaker in (("validation_list.txt", 1), ("testing_list.txt", 2)):
        lines = [f"{word}/{SC_SPEAKERS[speaker]}_nohash_0.wav\n" for word in words]
        (root / list_name).write_text("".join(lines))
    return root, writer.frames


def make_speechcommands_test_set(base: Path, writer_seed: int = 5):
    """The official v0.01 test set layout: one folder per class, incl. _silence_/_unknown_."""
    writer = FakeWriter(writer_seed)
    root = base / "speech_commands_test_set"
    for folder in ("yes", "no", "_unknown_", "_silence_"):
        for index in range(2):
            writer.clip(root / folder / f"{folder.strip('_')}{index}_nohash_0.wav", 16000)
    return root, writer.frames


# ------------------------------------------------------------------------------------------
# VoxCeleb1

VOX_SPLIT = [  # (code, speaker, video, file)
    (1, "id10001", "1zcIwhmdeo4", "00001"),
    (1, "id10001", "1zcIwhmdeo4", "00002"),
    (2, "id10001", "7w0IBEWc9Qw", "00001"),
    (3, "id10001", "Y8hIVOBuels", "00001"),
    (1, "id10002", "0_laIeN-Q44", "00001"),
    (2, "id10002", "0_laIeN-Q44", "00002"),
    (3, "id10002", "6WO410QOeuo", "00001"),
    (1, "id10003", "na8-QEFmj44", "00003"),
    (3, "id10003", "tCq2LcKO6xY", "00001"),
]


def make_voxceleb1(base: Path, missing_line: int = None):
    """``iden_split.txt`` + ``wav/``; the file on 1-based line ``missing_line`` gets no audio."""
    writer = FakeWriter(6)
    root = base / "voxceleb1"
    lines = []
    for line_no, (code, speaker, video, name) in enumerate(VOX_SPLIT, start=1):
        relative = f"{speaker}/{video}/{name}.wav"
        lines.append(f"{code} {relative}\n")
        if line_no != missing_line:
            writer.clip(root / "wav" / relative, 16000)
    (root / "iden_split.txt").write_text("".join(lines))
    return root, writer.frames


# ------------------------------------------------------------------------------------------
# IEMOCAP

IEMOCAP_EMOTIONS = ("neu", "hap", "exc", "ang", "sad", "fru", "xxx", "neu", "ang", "sad")
EMO_HEADER = "% [START_TIME - END_TIME] TURN_NAME EMOTION [V, A, D]\n\n"


def iemocap_utterance(session: int, index: int, dialog: int = 1) -> str:
    gender = "F" if index % 2 == 0 else "M"
    return f"Ses{session:02d}F_impro{dialog:02d}_{gender}{index:03d}"


def make_iemocap(base: Path, dialogs: int = 1):
    """5 sessions, ``dialogs`` dialogues each, one utterance per emotion in
    ``IEMOCAP_EMOTIONS`` per dialogue."""
    writer = FakeWriter(7)
    root = base / "IEMOCAP_full_release"
    for session, number in ((s, n) for s in range(1, 6) for n in range(1, dialogs + 1)):
        session_dir = root / f"Session{session}"
        dialog = f"Ses{session:02d}F_impro{number:02d}"
        lines = [EMO_HEADER]
        for index, emotion in enumerate(IEMOCAP_EMOTIONS):
            utterance = iemocap_utterance(session, index, number)
            writer.clip(session_dir / "sentences" / "wav" / dialog / f"{utterance}.wav", 16000)
            start = 2.0 * index + 0.29
            lines.append(
                f"[{start:.4f} - {start + 1.5:.4f}]\t{utterance}\t{emotion}\t"
                "[2.5000, 2.5000, 2.5000]\n"
                "C-E1:\tNeutral;\t()\nA-E1:\tval 3; act 2; dom  2;\t()\n\n"
            )
        emo_dir = session_dir / "dialog" / "EmoEvaluation"
        (emo_dir / "Categorical").mkdir(parents=True, exist_ok=True)
        (emo_dir / f"{dialog}.txt").write_text("".join(lines))
        per_annotator = emo_dir / "Categorical" / f"{dialog}_e1_cat.txt"
        per_annotator.write_text(f"{dialog}_F000 :Neutral; ()\n")
    return root, writer.frames
