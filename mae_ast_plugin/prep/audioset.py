"""Write AudioSet manifests for fine-tuning (AudioSet-20K) or pretraining.

ROOT holds the official csvs: ``balanced_train_segments.csv``,
``unbalanced_train_segments.csv``, ``eval_segments.csv`` (three ``#`` comment lines, then
``YTID, start_seconds, end_seconds, "mid1,mid2"``) and ``class_labels_indices.csv``
(``index,mid,display_name``).  The audio is a directory of downloaded clips (``--audio-dir``,
default ROOT, searched recursively).  Downloads follow no single naming standard, so a file
belongs to a segment when its name (without extension) contains the segment's YTID, as in
``{YTID}.flac``, ``Y{YTID}.wav`` or ``{YTID}_{start}.wav``; any extension soundfile reads.

``--mode finetune``: ``train`` = balanced train less a held-out part, ``valid`` = that
deterministic ``--valid-fraction`` of balanced train (AudioSet has no validation set, and the
eval set must not select checkpoints), ``eval`` = eval_segments; ``.tsv`` + ``.lbl`` (multi-label:
comma-separated class indices) and ``labels.csv`` (the class_labels_indices rows).  The held-out
part keeps each YouTube video on one side and is stratified over the 527 labels (iterative
stratification): every class gets about ``--valid-fraction`` of its clips, and at least one, in
valid; the summary names any class too rare for that.

``--mode pretrain``: unlabelled ``train.tsv`` = balanced + unbalanced train less the
fine-tuning validation clips, ``valid.tsv`` = those validation clips (the same ones as in
``--mode finetune``, so pretraining never sees them: both modes read the balanced labels and the
class list to draw them); eval clips are never used.

Segments without audio are counted and reported, not an error: AudioSet downloads are always
incomplete.  The held-out part is drawn from the listed segments, not from the downloaded ones,
so a clip's split does not change when more audio is downloaded.

Example (from the repository root):
    mae-ast-prepare audioset /data/audioset --audio-dir /data/audioset/audio \\
        --dest manifests/audioset_20k --mode finetune
"""

import csv
import io
import os

from ..textfiles import read_text
from .audio import find_audio_files, measure_clips
from .common import ClassInfo, Entry, PrepError, existing_dir, existing_file, make_parser
from .manifests import LABELS_HEADER, write_outputs
from .splits import grouped_stratified_holdout, note_classes_not_held_out, split_rng
from .summary import PrepSummary

BALANCED = "balanced_train_segments.csv"
UNBALANCED = "unbalanced_train_segments.csv"
EVAL = "eval_segments.csv"
CLASS_CSV = "class_labels_indices.csv"
YTID_LENGTH = 11  # YouTube ids are 11 characters of [A-Za-z0-9_-]


def get_parser(prog=None):
    parser = make_parser(__doc__, prog, "directory holding the AudioSet segment and class csvs")
    parser.add_argument(
        "--mode", choices=("finetune", "pretrain"), default="finetune",
        help="labelled AudioSet-20K splits or unlabelled pretraining splits (default: %(default)s)",
    )  # fmt: skip
    parser.add_argument("--audio-dir", help="directory of downloaded clips (default: ROOT)")
    parser.add_argument(
        "--valid-fraction",
        type=float,
        default=0.1,
        help="fraction of balanced train held out as valid (default: %(default)s)",
    )
    return parser


def read_classes(path: str):
    """Classes of ``class_labels_indices.csv``, checking indices run 0, 1, 2..."""
    classes = []
    with io.StringIO(read_text(path, PrepError), newline="") as handle:
        reader = csv.reader(handle)
        header = ",".join(field.strip() for field in next(reader, []))
        if header != LABELS_HEADER:
            raise PrepError(f"{path}:1: expected the header {LABELS_HEADER!r}, got {header!r}")
        for row in reader:
            if not row:
                continue
            where = f"{path}:{reader.line_num}"
            if len(row) != 3 or row[0].strip() != str(len(classes)):
                expected = f"{len(classes)},<mid>,<display_name>"
                raise PrepError(f"{where}: expected '{expected}', got {row}")
            classes.append(ClassInfo(row[1].strip(), row[2].strip()))
    if not classes:
        raise PrepError(f"{path}: no classes listed")
    return classes


def read_segments(path: str, index_of_mid, skip_invalid: bool, summary: PrepSummary):
    """``[(ytid, labels, where)]`` of a segment csv, in file order.  With ``index_of_mid``
    None the labels are not needed (pretraining) and are returned empty."""
    segments, seen = [], set()
    with io.StringIO(read_text(path, PrepError), newline="") as handle:
        reader = csv.reader(handle, skipinitialspace=True)
        for row in reader:
            where = f"{path}:{reader.line_num}"
            if not row or row[0].lstrip().startswith("#"):
                continue
            if len(row) != 4:
                raise PrepError(f"{where}: expected 'YTID, start, end, \"mid1,mid2\"', got {row}")
            ytid = row[0].strip()
            if ytid in seen:
                summary.count(f"duplicate segments in {os.path.basename(path)}", ytid)
                continue
            seen.add(ytid)
            labels = ()
            if index_of_mid is not None:
                mids = [mid.strip() for mid in row[3].split(",") if mid.strip()]
                unknown = [mid for mid in mids if mid not in index_of_mid]
                if unknown:
                    raise PrepError(
                        f"{where}: unknown label id(s) {', '.join(unknown)} (not in {CLASS_CSV})"
                    )
                if not mids:
                    message = f"{where}: segment {ytid} has no label"
                    if not skip_invalid:
                        raise PrepError(message + "; use --skip-invalid to leave it out")
                    summary.count("segments without labels", ytid)
                    continue
                labels = tuple(sorted({index_of_mid[mid] for mid in mids}))
            segments.append((ytid, labels, where))
    if not segments:
        raise PrepError(f"{path}: no segments listed")
    return segments


def drop_overlap(keep, drop_from, csv_names, summary: PrepSummary):
    """Remove from ``drop_from`` (in place) the segments whose YTID is also in ``keep``."""
    kept = {ytid for ytid, _, _ in keep}
    overlapping = [segment for segment in drop_from if segment[0] in kept]
    for ytid, _, _ in overlapping:
        summary.count(f"segments of {csv_names[1]} also in {csv_names[0]}, left out", ytid)
    drop_from[:] = [segment for segment in drop_from if segment[0] not in kept]


def index_audio(audio_dir: str, wanted_ytids, summary: PrepSummary):
    """Map each wanted YTID to its audio file: the first file (in sorted order) whose name
    contains the YTID; further matches are counted as duplicates."""
    found = {}
    for path in find_audio_files(audio_dir):
        stem = os.path.splitext(os.path.basename(path))[0]
        # Look up every 11-character window of the name: one set lookup each, instead of a
        # substring search over two million ids.
        for start in range(len(stem) - YTID_LENGTH + 1):
            ytid = stem[start : start + YTID_LENGTH]
            if ytid in wanted_ytids:
                if ytid in found:
                    summary.count("duplicate audio files ignored", path)
                else:
                    found[ytid] = path
                break
    return found


def entries_for(segments, audio_of, summary: PrepSummary, csv_name: str):
    entries = []
    for ytid, labels, where in segments:
        if ytid in audio_of:
            entries.append(Entry(audio_of[ytid], labels, where))
        else:
            summary.count(f"{csv_name} segments without audio (not downloaded)", ytid)
    return entries


def prepare(args):
    root = existing_dir(args.root, "AudioSet root")
    audio_dir = existing_dir(args.audio_dir or root, "AudioSet audio directory")
    finetune = args.mode == "finetune"
    summary = PrepSummary(f"AudioSet ({args.mode})")

    # Both modes read the balanced labels: the held-out clips are stratified over classes.
    classes = read_classes(existing_file(os.path.join(root, CLASS_CSV), "AudioSet class list"))
    index_of_mid = {info.mid: index for index, info in enumerate(classes)}
    # Priority order: eval clips must never be trained on; balanced clips may be held out.
    csv_names = (EVAL, BALANCED) if finetune else (BALANCED, UNBALANCED)
    segments = {
        name: read_segments(
            existing_file(os.path.join(root, name), "AudioSet segment list"),
            None if name == UNBALANCED else index_of_mid,  # pretraining needs no labels
            args.skip_invalid,
            summary,
        )
        for name in csv_names
    }
    # A clip listed twice would land in two splits; the first csv named keeps it.
    drop_overlap(segments[csv_names[0]], segments[csv_names[1]], csv_names, summary)
    # The validation clips are drawn from the balanced list (sorted by YTID) in both modes.
    balanced_train, balanced_valid, _ = grouped_stratified_holdout(
        sorted(segments[BALANCED]), args.valid_fraction, split_rng(args.seed),
        group_of=lambda segment: segment[0], labels_of=lambda segment: segment[1],
        summary=summary, name="valid (of balanced train)",
    )  # fmt: skip
    if finetune:
        parts = {"train": [(BALANCED, balanced_train)], "valid": [(BALANCED, balanced_valid)],
                 "eval": [(EVAL, segments[EVAL])]}  # fmt: skip
    else:
        parts = {"train": [(BALANCED, balanced_train), (UNBALANCED, segments[UNBALANCED])],
                 "valid": [(BALANCED, balanced_valid)]}  # fmt: skip

    wanted = {ytid for listed in segments.values() for ytid, _, _ in listed}
    audio_of = index_audio(audio_dir, wanted, summary)
    splits = {}
    for split, sources in parts.items():
        entries = []
        for csv_name, listed in sources:
            entries.extend(entries_for(listed, audio_of, summary, csv_name))
        entries.sort(key=lambda entry: entry.path)
        splits[split] = measure_clips(
            entries, skip_invalid=args.skip_invalid, summary=summary, workers=args.workers
        )
    names = [info.display_name for info in classes]
    note_classes_not_held_out(summary, "valid", splits["train"], splits["valid"], names)
    write_outputs(args.dest, audio_dir, splits, summary, classes if finetune else None)
    summary.print()
    return summary

