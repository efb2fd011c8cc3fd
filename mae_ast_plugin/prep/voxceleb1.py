"""Write speaker-identification manifests for VoxCeleb1 (the official identification split).

ROOT holds ``iden_split.txt`` (lines ``1 id10003/na8-QEFmj44/00003.wav``: 1 = train,
2 = valid, 3 = test) and the audio under ``wav/``.  ``{dest}`` gets ``train``, ``valid`` and
``test`` (``.tsv`` + ``.lbl``) and ``labels.csv``; the classes are the speakers listed in
``iden_split.txt`` in sorted order (1,251 in the real data), mid = display name = speaker id.

A listed file that is missing is an error naming the ``iden_split.txt`` line, or with
``--skip-invalid`` is left out and counted in the summary.

Example (from the repository root):
    mae-ast-prepare voxceleb1 /data/voxceleb1 --dest manifests/voxceleb1
"""

import os

from ..textfiles import iter_lines
from .audio import measure_clips
from .common import ClassInfo, Entry, PrepError, existing_dir, existing_file, make_parser
from .manifests import write_outputs
from .summary import PrepSummary

SPLIT_CODES = {"1": "train", "2": "valid", "3": "test"}


def get_parser(prog=None):
    parser = make_parser(__doc__, prog, "VoxCeleb1 directory (holds iden_split.txt and wav/)")
    parser.add_argument(
        "--split-file", help="identification split list (default: ROOT/iden_split.txt)"
    )
    parser.add_argument("--audio-dir", help="audio directory (default: ROOT/wav)")
    return parser


def read_split_file(path: str):
    """``[(split, relative_path, line_no)]``; malformed lines are errors naming the line."""
    listed, seen = [], {}
    for line_no, line in iter_lines(path, PrepError):
        fields = line.split()
        if not fields:
            continue
        where = f"{path}:{line_no}"
        if len(fields) != 2 or fields[0] not in SPLIT_CODES:
            raise PrepError(
                f"{where}: expected '<1|2|3> <speaker>/<video>/<file>.wav', "
                f"got {line.strip()!r}"
            )
        relative = fields[1]
        if relative.count("/") != 2 or os.path.isabs(relative) or ".." in relative.split("/"):
            raise PrepError(
                f"{where}: expected a path <speaker>/<video>/<file>, got {relative!r}"
            )
        if relative in seen:
            raise PrepError(f"{where}: {relative} is also listed on line {seen[relative]}")
        seen[relative] = line_no
        listed.append((SPLIT_CODES[fields[0]], relative, where))
    if not listed:
        raise PrepError(f"{path}: no files listed")
    return listed


def prepare(args):
    root = existing_dir(args.root, "VoxCeleb1 root")
    split_file = existing_file(
        args.split_file or os.path.join(root, "iden_split.txt"), "VoxCeleb1 split list"
    )
    audio_dir = existing_dir(
        args.audio_dir or os.path.join(root, "wav"), "VoxCeleb1 audio directory"
    )
    listed = read_split_file(split_file)

    speakers = sorted({relative.split("/")[0] for _, relative, _ in listed})
    index_of = {speaker: index for index, speaker in enumerate(speakers)}
    summary = PrepSummary("VoxCeleb1 speaker identification")
    splits = {}
    for split in SPLIT_CODES.values():
        entries = [
            Entry(os.path.join(audio_dir, relative), (index_of[relative.split("/")[0]],), where)
            for name, relative, where in sorted(listed, key=lambda item: item[1])
            if name == split
        ]
        splits[split] = measure_clips(
            entries, skip_invalid=args.skip_invalid, summary=summary, workers=args.workers
        )
    classes = [ClassInfo(speaker, speaker) for speaker in speakers]
    write_outputs(args.dest, audio_dir, splits, summary, classes)
    summary.print()
    return summary

