"""Write pretraining manifests (``train.tsv``, ``valid.tsv``) for LibriSpeech.

ROOT is the directory that holds the extracted subsets (``train-clean-100/``, ``dev-clean/``...,
each ``{speaker}/{chapter}/{speaker}-{chapter}-{utt}.flac``), or its parent that holds
``LibriSpeech/``.  The manifest root is that LibriSpeech directory and rows are
``subset/speaker/chapter/file.flac<TAB>num_samples`` at 16 kHz.  No labels: MAE-AST pretrains
on the audio alone.

Example (from the repository root):
    mae-ast-prepare librispeech /data/LibriSpeech --dest manifests/librispeech
"""

import os

from .audio import find_audio_files, measure_clips
from .common import Entry, PrepError, existing_dir, make_parser
from .manifests import write_outputs
from .summary import PrepSummary

TRAIN_SUBSETS = ("train-clean-100", "train-clean-360", "train-other-500")
VALID_SUBSETS = ("dev-clean",)


def get_parser(prog=None):
    parser = make_parser(__doc__, prog, "LibriSpeech directory (or its parent)")
    parser.add_argument(
        "--train-subsets",
        nargs="+",
        metavar="SUBSET",
        help=f"subsets for train.tsv (default: those of {', '.join(TRAIN_SUBSETS)} that exist)",
    )
    parser.add_argument(
        "--valid-subsets",
        nargs="+",
        default=list(VALID_SUBSETS),
        metavar="SUBSET",
        help="subsets for valid.tsv (default: %(default)s)",
    )
    parser.add_argument(
        "--ext", default="flac", help="audio file extension (default: %(default)s)"
    )
    return parser


def librispeech_dir(root: str) -> str:
    root = existing_dir(root, "LibriSpeech root")
    nested = os.path.join(root, "LibriSpeech")
    return nested if os.path.isdir(nested) else root


def subset_entries(base: str, subsets, ext: str):
    entries = []
    for subset in subsets:
        directory = os.path.join(base, subset)
        if not os.path.isdir(directory):
            present = sorted(
                name for name in os.listdir(base) if os.path.isdir(os.path.join(base, name))
            )
            raise PrepError(
                f"subset {subset!r} not found: {directory} is not a directory "
                f"(subsets present: {', '.join(present) or 'none'})"
            )
        files = find_audio_files(directory, ["." + ext.lstrip(".")])
        if not files:
            raise PrepError(f"subset {subset!r}: no .{ext.lstrip('.')} files under {directory}")
        entries.extend(Entry(path) for path in files)
    return entries


def prepare(args):
    base = librispeech_dir(args.root)
    train_subsets = args.train_subsets
    if not train_subsets:
        train_subsets = [name for name in TRAIN_SUBSETS if os.path.isdir(os.path.join(base, name))]
        if not train_subsets:
            raise PrepError(
                f"none of the train subsets {', '.join(TRAIN_SUBSETS)} is in {base}; "
                "name the ones to use with --train-subsets"
            )
    overlap = sorted(set(train_subsets) & set(args.valid_subsets))
    if overlap:
        raise PrepError(f"subsets used for both train and valid: {', '.join(overlap)}")

    summary = PrepSummary("LibriSpeech")
    summary.note(
        f"train subsets: {', '.join(train_subsets)}; valid subsets: {', '.join(args.valid_subsets)}"
    )
    splits = {}
    for split, subsets in (("train", train_subsets), ("valid", args.valid_subsets)):
        entries = subset_entries(base, subsets, args.ext)
        splits[split] = measure_clips(
            entries, skip_invalid=args.skip_invalid, summary=summary, workers=args.workers
        )
    write_outputs(args.dest, base, splits, summary)
    summary.print()
    return summary

