"""``mae-ast-prepare DATASET ROOT --dest DIR [options]``: write the manifests of one dataset.

One sub-command per dataset; each takes the options of its module in ``mae_ast_plugin/prep/``
(``mae-ast-prepare DATASET --help`` lists them).  Bad input stops with a one-line error naming
the file and line (exit status 2), or with ``--skip-invalid`` is logged, counted and left out.

Examples:
    mae-ast-prepare esc50 /data/ESC-50-master --dest manifests/esc50
    mae-ast-prepare speechcommands /data/speech_commands_v0.02 --dest manifests/sc2
    mae-ast-prepare librispeech /data/LibriSpeech --dest manifests/librispeech
"""

import argparse
import importlib
import sys

from .common import run_cli

# sub-command (= module of mae_ast_plugin.prep) -> one-line description
DATASETS = {
    "esc50": "ESC-50: 5-fold cross-validation (fold{k}/train, valid, test)",
    "speechcommands": "Speech Commands v2 (35 words) or v1 (SUPERB's 12 classes)",
    "voxceleb1": "VoxCeleb1 speaker identification (official iden_split.txt)",
    "iemocap": "IEMOCAP emotion recognition (4 classes, 5 sessions as folds)",
    "audioset": "AudioSet-20K fine-tuning or AudioSet pretraining manifests",
    "librispeech": "LibriSpeech pretraining manifests (unlabelled)",
}


def get_parser() -> argparse.ArgumentParser:
    datasets = "\n".join(f"  {name:<15} {text}" for name, text in DATASETS.items())
    parser = argparse.ArgumentParser(
        prog="mae-ast-prepare",
        usage="mae-ast-prepare DATASET ROOT --dest DIR [options]",
        description=__doc__.split("\n\n")[0] + "\n\ndatasets:\n" + datasets,
        epilog="\n\n".join(__doc__.split("\n\n")[1:]),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("dataset", metavar="DATASET", choices=sorted(DATASETS))
    parser.add_argument(
        "options", nargs=argparse.REMAINDER, metavar="ROOT", help="ROOT --dest DIR [options]"
    )
    return parser


def main(argv=None) -> int:
    """Run ``mae-ast-prepare``; returns the exit status (errors exit through argparse)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help") or argv[0] not in DATASETS:
        get_parser().parse_args(argv[:1])  # exits: the help, or the usage error
    name = argv[0]
    module = importlib.import_module(f"{__package__}.{name}")
    return run_cli(module.get_parser, module.prepare, argv[1:], prog=f"mae-ast-prepare {name}")


if __name__ == "__main__":
    sys.exit(main())
