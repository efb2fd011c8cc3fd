"""Write 5-fold cross-validation manifests for ESC-50 (environmental sound classification).

ROOT is the extracted ESC-50 repository: ``meta/esc50.csv``
(``filename,fold,target,category,esc10,src_file,take``) and ``audio/*.wav`` (44.1 kHz, 5 s).
For k = 1..5, ``{dest}/fold{k}/`` gets ``train``, ``valid`` and ``test`` (``.tsv`` + ``.lbl``)
and ``labels.csv``:

* test  = the clips of ESC fold k (the official cross-validation fold);
* valid = a deterministic 1/8 of the other four folds, so that checkpoints are never selected
  on the test fold: whole source recordings (``src_file``: the takes A, B... cut from one
  recording stay together, so none is heard in both train and valid), stratified so that
  every class has about 1/8 of its clips, and at least one source, in valid;
* train = the rest of the other four folds.

Classes are the 50 ESC-50 categories, index = ``target``; ``labels.csv`` uses the category
name as both mid and display name.

Example (from the repository root):
    mae-ast-prepare esc50 /data/ESC-50-master --dest manifests/esc50
"""

import csv
import io
import os

from ..textfiles import read_text
from .audio import measure_clips
from .common import ClassInfo, Entry, PrepError, existing_dir, existing_file, make_parser
from .manifests import write_outputs
from .splits import grouped_stratified_holdout, note_classes_not_held_out, split_rng
from .summary import PrepSummary

# The official categories in target order (ESC-50's meta/esc50.csv); fixed by the dataset.
CATEGORIES = (
    "dog", "rooster", "pig", "cow", "frog", "cat", "hen", "insects", "sheep", "crow",
    "rain", "sea_waves", "crackling_fire", "crickets", "chirping_birds", "water_drops", "wind",
    "pouring_water", "toilet_flush", "thunderstorm",
    "crying_baby", "sneezing", "clapping", "breathing", "coughing", "footsteps", "laughing",
    "brushing_teeth", "snoring", "drinking_sipping",
    "door_wood_knock", "mouse_click", "keyboard_typing", "door_wood_creaks", "can_opening",
    "washing_machine", "vacuum_cleaner", "clock_alarm", "clock_tick", "glass_breaking",
    "helicopter", "chainsaw", "siren", "car_horn", "engine", "train", "church_bells", "airplane",
    "fireworks", "hand_saw",
)  # fmt: skip
NUM_FOLDS = 5
REQUIRED_COLUMNS = ("filename", "fold", "target", "category", "src_file")


def get_parser(prog=None):
    parser = make_parser(__doc__, prog, "ESC-50 directory (holds meta/esc50.csv and audio/)")
    parser.add_argument(
        "--valid-fraction",
        type=float,
        default=1 / 8,
        help="fraction of each class in the four training folds held out for validation, as "
        "whole source recordings (default: 1/8)",
    )
    return parser


def read_metadata(csv_path: str, audio_dir: str):
    """``[(Entry, fold, src_file)]`` in file order, checking each row against the official
    classes."""
    rows, seen = [], {}
    with io.StringIO(read_text(csv_path, PrepError), newline="") as handle:
        reader = csv.DictReader(handle)
        missing = [column for column in REQUIRED_COLUMNS if column not in (reader.fieldnames or [])]
        if missing:
            raise PrepError(f"{csv_path}:1: missing column(s) {', '.join(missing)} in the header")
        for row in reader:
            where = f"{csv_path}:{reader.line_num}"
            category = row["category"]
            if category not in CATEGORIES:
                raise PrepError(f"{where}: unknown category {category!r} (not an ESC-50 class)")
            try:
                target, fold = int(row["target"]), int(row["fold"])
            except (TypeError, ValueError):
                raise PrepError(f"{where}: target and fold must be integers") from None
            if target != CATEGORIES.index(category):
                raise PrepError(
                    f"{where}: target {target} does not match category {category!r} "
                    f"(whose target is {CATEGORIES.index(category)})"
                )
            if not 1 <= fold <= NUM_FOLDS:
                raise PrepError(f"{where}: fold must be 1..{NUM_FOLDS}, got {fold}")
            filename = row["filename"]
            if filename in seen:
                raise PrepError(f"{where}: {filename} is also listed on line {seen[filename]}")
            seen[filename] = reader.line_num
            source = row["src_file"].strip()
            if not source:
                raise PrepError(f"{where}: empty src_file (the source recording of the clip)")
            entry = Entry(os.path.join(audio_dir, filename), (target,), where)
            rows.append((entry, fold, source))
    if not rows:
        raise PrepError(f"{csv_path}: no clips listed")
    return rows


def prepare(args):
    root = existing_dir(args.root, "ESC-50 root")
    csv_path = existing_file(os.path.join(root, "meta", "esc50.csv"), "ESC-50 metadata")
    audio_dir = existing_dir(os.path.join(root, "audio"), "ESC-50 audio directory")
    rows = read_metadata(csv_path, audio_dir)
    rows.sort(key=lambda row: row[0].path)  # file order, not csv order, fixes the output

    summary = PrepSummary("ESC-50")
    clips = measure_clips(
        [entry for entry, _, _ in rows],
        skip_invalid=args.skip_invalid,
        summary=summary,
        workers=args.workers,
    )
    fold_of = {entry.path: fold for entry, fold, _ in rows}
    source_of = {entry.path: source for entry, _, source in rows}
    splits = {}
    for fold in range(1, NUM_FOLDS + 1):
        others = [clip for clip in clips if fold_of[clip.path] != fold]
        # Takes of one source recording stay together (the reason ESC-50 has folds).
        train, valid, _ = grouped_stratified_holdout(
            others, args.valid_fraction, split_rng(args.seed, fold),
            group_of=lambda clip: source_of[clip.path], labels_of=lambda clip: clip.labels,
            summary=summary, name=f"fold{fold}/valid",
        )  # fmt: skip
        note_classes_not_held_out(summary, f"fold{fold}/valid", train, valid, CATEGORIES)
        splits[f"fold{fold}/train"] = train
        splits[f"fold{fold}/valid"] = valid
        splits[f"fold{fold}/test"] = [clip for clip in clips if fold_of[clip.path] == fold]
    classes = [ClassInfo(name, name) for name in CATEGORIES]
    write_outputs(args.dest, audio_dir, splits, summary, classes)
    summary.print()
    return summary

