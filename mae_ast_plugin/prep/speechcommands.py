"""Write keyword-spotting manifests for Google Speech Commands v2 (35 words) or v1 (SUPERB's
12-class task).

ROOT is the extracted dataset: one folder per word of ``{speaker}_nohash_{n}.wav`` files,
``_background_noise_/``, ``validation_list.txt`` and ``testing_list.txt`` (paths relative to
ROOT).  ``{dest}`` gets ``train``, ``valid``, ``test`` (``.tsv`` + ``.lbl``) and ``labels.csv``
(mid = display name = the class name).  Clips named in the two lists form valid and test; train
is everything else.

``--version 2`` (default): the 35 words are the classes; a folder that is not one of them is an
error (with ``--skip-invalid``: left out and counted).

``--version 1``: the 12 classes yes, no, up, down, left, right, on, off, stop, go, _unknown_
(every other word folder) and _silence_.  Silence clips are 1-s segments cut from
``_background_noise_/*.wav`` and written as wav files under ``{dest}/silence/{split}/``; each
noise recording is divided 80/10/10 by time between train, valid and test, so no split hears
another's noise.  ``--silence-clips`` sets how many per split (default: the mean size of the 10
word classes in that split).  Test is SUPERB's test set, the separate v0.01 test set
(``speech_commands_test_set_v0.01.tar.gz``, 3,081 clips: one folder per class including
_silence_ and _unknown_, 257 clips in each of the 12), given with ``--test-root``;
testing_list.txt clips are then used nowhere.  Without ``--test-root`` the command stops and
says where to get that set, unless ``--test-from-testing-list`` asks for a test split from
testing_list.txt instead (not SUPERB's protocol: 60% _unknown_).

The manifest root is the deepest directory holding every clip (ROOT itself for v2).

Example (from the repository root):
    mae-ast-prepare speechcommands /data/speech_commands_v0.02 --dest manifests/sc2
    mae-ast-prepare speechcommands /data/speech_commands_v0.01 --version 1 \\
        --test-root /data/speech_commands_test_set_v0.01 --dest manifests/sc1
"""

import os
import re
from collections import Counter

import numpy as np
import soundfile

from ..atomic_io import atomic_write_audio
from ..textfiles import iter_lines
from .audio import find_audio_files, measure_clips
from .common import ClassInfo, Entry, PrepError, existing_dir, existing_file, make_parser
from .manifests import write_outputs
from .splits import split_rng
from .summary import PrepSummary

SPLITS = ("train", "valid", "test")
NOISE_DIR = "_background_noise_"
SILENCE, UNKNOWN = "_silence_", "_unknown_"
V1_WORDS = ("yes", "no", "up", "down", "left", "right", "on", "off", "stop", "go")
V1_CLASSES = V1_WORDS + (UNKNOWN, SILENCE)  # SUPERB's order
V2_CLASSES = tuple(sorted((
    "backward", "bed", "bird", "cat", "dog", "down", "eight", "five", "follow", "forward", "four",
    "go", "happy", "house", "learn", "left", "marvin", "nine", "no", "off", "on", "one", "right",
    "seven", "sheila", "six", "stop", "three", "tree", "two", "up", "visual", "wow", "yes", "zero",
)))  # fmt: skip
# Share of each noise recording (by time) that each split's silence segments come from.
NOISE_PARTS = {"train": (0.0, 0.8), "valid": (0.8, 0.9), "test": (0.9, 1.0)}
SILENCE_SECONDS = 1.0
# SUPERB's KS1 test set (s3prl's speech_commands downstream; the TensorFlow dataset page).
SUPERB_TEST_SET_URL = "http://download.tensorflow.org/data/speech_commands_test_set_v0.01.tar.gz"


def get_parser(prog=None):
    root_help = "Speech Commands directory (word folders and the split lists)"
    parser = make_parser(__doc__, prog, root_help)
    parser.add_argument(
        "--version", type=int, choices=(1, 2), default=2,
        help="2: 35-word task; 1: SUPERB's 12-class task (default: %(default)s)",
    )  # fmt: skip
    parser.add_argument(
        "--test-root",
        help="version 1 only: SUPERB's test set, the extracted " + SUPERB_TEST_SET_URL
        + " (class folders incl. _silence_, _unknown_); required unless "
        "--test-from-testing-list",
    )
    parser.add_argument(
        "--test-from-testing-list",
        action="store_true",
        help="version 1 only: build test from testing_list.txt instead of SUPERB's test set "
        "(not the protocol of the speechcommands_v1 recipe)",
    )
    parser.add_argument(
        "--silence-clips",
        type=int,
        nargs=3,
        metavar=("TRAIN", "VALID", "TEST"),
        help="version 1 only: silence clips to cut per split (default: mean word-class size)",
    )
    return parser


def read_list(root: str, name: str):
    """Relative paths of a split list, as ``{relative: "file:line"}``."""
    path = existing_file(os.path.join(root, name), "split list")
    listed = {}
    for line_no, line in iter_lines(path, PrepError):
        relative = line.strip()
        if relative:
            listed[relative.replace("\\", "/")] = f"{path}:{line_no}"
    return listed


def word_folders(root: str):
    return sorted(
        name
        for name in os.listdir(root)
        if os.path.isdir(os.path.join(root, name))
        and name != NOISE_DIR
        and not name.startswith(".")
    )


def class_of_folder(folder: str, version: int, where: str, args, summary: PrepSummary):
    """Class index of a word folder, or None when the folder is skipped."""
    if version == 1:
        return V1_CLASSES.index(folder if folder in V1_WORDS else UNKNOWN)
    if folder in V2_CLASSES:
        return V2_CLASSES.index(folder)
    message = f"{where}: unexpected folder {folder!r} (not one of the 35 Speech Commands v2 words)"
    if not args.skip_invalid:
        raise PrepError(message + "; use --skip-invalid to leave it out")
    summary.count("unexpected folders left out", folder)
    return None


def official_split_entries(root: str, args, summary: PrepSummary):
    """``{split: [Entry]}`` from the word folders and the two lists."""
    valid_list = read_list(root, "validation_list.txt")
    test_list = read_list(root, "testing_list.txt")
    both = sorted(valid_list.keys() & test_list.keys())
    if both:
        raise PrepError(f"{valid_list[both[0]]}: {both[0]} is also in {test_list[both[0]]}")
    entries = {split: [] for split in SPLITS}
    on_disk = set()
    for folder in word_folders(root):
        label = class_of_folder(folder, args.version, os.path.join(root, folder), args, summary)
        if label is None:
            continue
        for path in find_audio_files(os.path.join(root, folder), [".wav"]):
            relative = os.path.relpath(path, root).replace(os.sep, "/")
            on_disk.add(relative)
            if relative in valid_list:
                entries["valid"].append(Entry(path, (label,), valid_list[relative]))
            elif relative in test_list:
                entries["test"].append(Entry(path, (label,), test_list[relative]))
            else:
                entries["train"].append(Entry(path, (label,)))
    # A listed clip that is not on disk would silently shrink valid or test.
    for listed in (valid_list, test_list):
        for relative in sorted(listed.keys() - on_disk):
            folder = relative.split("/")[0]
            if args.version == 2 and folder not in V2_CLASSES:
                continue  # its folder was skipped above
            message = f"{listed[relative]}: listed clip {os.path.join(root, relative)} not found"
            if not args.skip_invalid:
                raise PrepError(message + "; use --skip-invalid to leave it out")
            summary.count("missing audio", os.path.join(root, relative))
    return entries


def official_test_entries(test_root: str):
    """Entries of the official v1 test set: one folder per class."""
    entries = []
    for folder in word_folders(test_root):
        if folder not in V1_CLASSES:
            raise PrepError(
                f"{os.path.join(test_root, folder)}: unexpected folder in the test set "
                f"(expected the 12 classes {', '.join(V1_CLASSES)})"
            )
        label = V1_CLASSES.index(folder)
        paths = find_audio_files(os.path.join(test_root, folder), [".wav"])
        entries.extend(Entry(path, (label,)) for path in paths)
    if not entries:
        raise PrepError(f"{test_root}: no test clips found")
    return entries


def cut_silence(noise_files, split: str, count: int, out_dir: str, rng: np.random.Generator):
    """Cut ``count`` 1-s segments from this split's share of the noise recordings and write
    them under ``out_dir``; returns their entries."""
    sources = []
    for path in noise_files:
        info = soundfile.info(path)
        start, end = (int(share * info.frames) for share in NOISE_PARTS[split])
        length = int(round(SILENCE_SECONDS * info.samplerate))
        if end - start >= length:
            sources.append((path, info.samplerate, start, end - length, length))
    if count and not sources:
        first, last = NOISE_PARTS[split]
        raise PrepError(
            f"{NOISE_DIR}: no recording is long enough to cut {SILENCE_SECONDS:g}-s {split} "
            f"silence segments from its {last - first:.0%} share ({len(noise_files)} recordings)"
        )
    entries = []
    for index in range(count):
        path, rate, first, last, length = sources[int(rng.integers(len(sources)))]
        offset = int(rng.integers(first, last + 1))
        segment, _ = soundfile.read(path, frames=length, start=offset, always_2d=False)
        stem = os.path.splitext(os.path.basename(path))[0]
        out_path = os.path.join(out_dir, f"{split}_{index:05d}_{stem}_{offset}.wav")
        atomic_write_audio(out_path, segment, rate)
        entries.append(Entry(out_path, (V1_CLASSES.index(SILENCE),)))
    return entries


def add_silence(root: str, entries, args, summary: PrepSummary) -> str:
    """Version 1: add generated silence clips to every split that needs them; returns the
    directory that holds them."""
    noise_dir = existing_dir(os.path.join(root, NOISE_DIR), "background noise directory")
    noise_files = find_audio_files(noise_dir, [".wav"])
    silence_dir = os.path.join(os.path.abspath(args.dest), "silence")
    for index, split in enumerate(SPLITS):
        if split == "test" and args.test_root:
            continue  # the official test set has its own _silence_ folder
        if args.silence_clips is not None:
            count = args.silence_clips[index]
        else:
            per_class = Counter(entry.labels[0] for entry in entries[split])
            count = int(round(np.mean([per_class[V1_CLASSES.index(word)] for word in V1_WORDS])))
        rng = split_rng(args.seed, index)
        out_dir = os.path.join(silence_dir, split)
        entries[split] += cut_silence(noise_files, split, count, out_dir, rng)
        summary.note(f"{split}: {count} silence clips cut from {len(noise_files)} noise recordings")
    return silence_dir


def remove_stale_silence(silence_dir: str, current) -> None:
    """Delete silence clips an earlier run (with other counts) cut but this one did not
    write; only names this script generates are touched."""
    for path in find_audio_files(silence_dir, [".wav"]):
        name = os.path.basename(path)
        generated = re.fullmatch(r"(train|valid|test)_\d{5}_.+_\d+\.wav", name)
        if generated and path not in current:
            os.remove(path)


def speaker_of(path: str):
    """The speaker hash of a ``{speaker}_nohash_{n}.wav`` clip, or None for other names."""
    name = os.path.basename(path)
    return name.split("_nohash_")[0] if "_nohash_" in name else None


def note_shared_speakers(splits, summary: PrepSummary) -> None:
    """The official lists assign speakers (by a hash of their id) to one split each; report
    how many speakers a held-out split shares with train, so a list that leaks is seen."""
    speakers = {
        split: {speaker_of(clip.path) for clip in clips} - {None} for split, clips in splits.items()
    }
    for split in ("valid", "test"):
        shared = speakers["train"] & speakers[split]
        example = f" (e.g. {', '.join(sorted(shared)[:3])})" if shared else ""
        summary.note(f"speakers in both train and {split}: {len(shared)}{example}")


def prepare(args):
    root = existing_dir(args.root, "Speech Commands root")
    if args.version == 2 and (args.test_root or args.silence_clips or args.test_from_testing_list):
        raise PrepError(
            "--test-root, --test-from-testing-list and --silence-clips apply to --version 1 only"
        )
    if args.version == 1 and not args.test_root and not args.test_from_testing_list:
        raise PrepError(
            "Speech Commands v1 (SUPERB's KS1, the speechcommands_v1 recipe) is scored on "
            "SUPERB's test set (3,081 clips: 10 words, _unknown_ and _silence_, 257 each), not "
            f"on testing_list.txt: download {SUPERB_TEST_SET_URL}, extract it and pass its "
            "directory with --test-root DIR (or give --test-from-testing-list for a test split "
            "from testing_list.txt, which is not SUPERB's protocol)"
        )
    if args.test_root and args.test_from_testing_list:
        raise PrepError("give --test-root or --test-from-testing-list, not both")
    if args.silence_clips and min(args.silence_clips) < 0:
        raise PrepError(f"--silence-clips must not be negative, got {args.silence_clips}")
    summary = PrepSummary(f"Speech Commands v{args.version}")
    entries = official_split_entries(root, args, summary)
    audio_dirs, silence_dir = [root], None
    if args.version == 1:
        if args.test_root:
            test_root = existing_dir(args.test_root, "Speech Commands test set")
            unused = len(entries["test"])
            summary.note(f"test: official test set {test_root}; {unused} testing_list clips unused")
            entries["test"] = official_test_entries(test_root)
            audio_dirs.append(test_root)
        else:
            summary.note("test: testing_list.txt (--test-from-testing-list), not SUPERB's test set")
        silence_dir = add_silence(root, entries, args, summary)
        audio_dirs.append(silence_dir)
    splits = {}
    for split in SPLITS:
        splits[split] = measure_clips(
            sorted(entries[split], key=lambda entry: entry.path),
            skip_invalid=args.skip_invalid,
            summary=summary,
            workers=args.workers,
        )
    note_shared_speakers(splits, summary)
    class_names = V1_CLASSES if args.version == 1 else V2_CLASSES
    classes = [ClassInfo(name, name) for name in class_names]
    write_outputs(args.dest, os.path.commonpath(audio_dirs), splits, summary, classes)
    if silence_dir is not None:
        listed = {clip.path for clips in splits.values() for clip in clips}
        remove_stale_silence(silence_dir, listed)
    summary.print()
    return summary

