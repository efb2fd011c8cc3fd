"""What every dataset module of ``mae_ast_plugin/prep/`` (command ``mae-ast-prepare DATASET``)
shares first: the records a dataset turns into (:class:`Entry` before probing, :class:`Clip`
after, :class:`ClassInfo` per class), the one error type (:class:`PrepError`), and the command
line: the common options (:func:`make_parser`), the entry point that reports a
:class:`PrepError` as one line and exit status 2 (:func:`run_cli`), and the checks of the
directories and files given on it.

The other shared pieces are modules of their own: finding and probing audio
(:mod:`.audio`), the closing summary (:mod:`.summary`), the validation hold-out and per-decision
random generators (:mod:`.splits`), and the validated writing of manifests, label files and
``labels.csv`` (:mod:`.manifests`).  Outputs depend only on the inputs and ``--seed``.
"""

import argparse
import logging
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass

from ..errors import InputError


class PrepError(InputError):
    """Bad input (a missing file, a malformed line, an unknown class...).

    The message names the file, and the line where there is one; :func:`run_cli` prints it
    without a traceback and exits with status 2.
    """


@dataclass(frozen=True)
class ClassInfo:
    """One row of ``labels.csv``; the row's index is the class's position in the class list."""

    mid: str  # stable identifier: AudioSet mid, speaker id, or the class name itself
    display_name: str


@dataclass(frozen=True)
class Entry:
    """A clip that a dataset's metadata asks for, before its audio has been probed."""

    path: str  # absolute path of the audio file
    labels: tuple[int, ...] = ()  # class indices; empty for unlabelled (pretraining) data
    where: str | None = None  # "file:line" of the metadata that listed it, for errors


@dataclass(frozen=True)
class Clip:
    """A probed clip: one manifest row (and one ``.lbl`` row when labelled)."""

    path: str
    num_samples: int
    labels: tuple[int, ...] = ()


# ----------------------------------------------------------------------------------------------
# Command line


def make_parser(description: str, prog: str | None, root_help: str) -> argparse.ArgumentParser:
    """The options every dataset shares; each dataset module adds its own after these.
    ``prog`` is the command name shown in usage and errors (``mae-ast-prepare esc50``)."""
    parser = argparse.ArgumentParser(
        prog=prog,
        description=description,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("root", metavar="ROOT", help=root_help)
    parser.add_argument(
        "--dest", required=True, metavar="DIR", help="output directory for the manifests (created)"
    )
    parser.add_argument(
        "--seed", type=int, default=0, help="seed for every random split (default: %(default)s)"
    )
    parser.add_argument(
        "--skip-invalid",
        action="store_true",
        help="skip (log and count) missing or unreadable audio and invalid entries "
        "instead of stopping with an error",
    )
    parser.add_argument(
        "--workers",
        type=int,
        default=min(8, os.cpu_count() or 1),
        help="threads that read audio headers; the output does not depend on it "
        "(default: %(default)s)",
    )
    return parser


def run_cli(
    get_parser: Callable[..., argparse.ArgumentParser], main, argv=None, prog=None
) -> int:
    """Entry point of a command: parse, run ``main(args)``, turn :class:`PrepError` into a
    clean ``prog: error: message`` on stderr and exit status 2 (argparse's own convention).
    Returns 0 on success."""
    parser = get_parser(prog)
    args = parser.parse_args(argv)
    logging.basicConfig(format="%(levelname)s: %(message)s", level=logging.INFO, stream=sys.stderr)
    try:
        main(args)
    except PrepError as error:
        parser.exit(2, f"{parser.prog}: error: {error}\n")
    return 0


def existing_dir(path: str, what: str) -> str:
    """``path`` made absolute, or a :class:`PrepError` saying which directory is missing."""
    if not os.path.isdir(path):
        raise PrepError(f"{what} {path} is not a directory")
    return os.path.abspath(path)


def existing_file(path: str, what: str) -> str:
    """``path`` made absolute, or a :class:`PrepError` saying which file is missing."""
    if not os.path.isfile(path):
        raise PrepError(f"{what} {path} not found")
    return os.path.abspath(path)
