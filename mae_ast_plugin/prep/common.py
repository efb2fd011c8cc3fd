"""Shared helpers of the dataset preparation modules ``mae_ast_plugin/prep/<dataset>.py``
(command: ``mae-ast-prepare DATASET``), and the atomic file writers every tool uses.

Every dataset module turns a downloaded dataset into the files the plugin reads:

* ``{split}.tsv``: fairseq manifest; line 1 is the absolute audio root, then
  ``relative/path<TAB>num_samples`` with ``num_samples = soundfile.info(path).frames``
  (samples at the file's native rate, no resampling);
* ``{split}.lbl`` (labelled datasets): one line per manifest row, same order, holding the
  comma-separated integer class indices of that clip;
* ``labels.csv`` (labelled datasets): ``index,mid,display_name`` as in AST's
  ``class_labels_indices.csv``.

The helpers here keep the six dataset modules identical in shape: the same command line
(:func:`make_parser`), the same error handling (:class:`PrepError`, reported by :func:`run_cli`
as a one-line message with exit status 2), the same audio probing (:func:`measure_clips`), the
same validation hold-out (:func:`grouped_stratified_holdout`: whole source groups, every class
present), the same atomic, validated writing (:func:`write_outputs`, :func:`write_split`; the
other tools use :func:`atomic_write_text`, :func:`atomic_write_json` and :func:`atomic_target`
too) and the same closing summary (:class:`PrepSummary`).  Outputs depend only on the inputs
and ``--seed``: file lists are sorted and every random choice comes from :func:`split_rng`.
"""

import argparse
import json
import logging
import os
import sys
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
import soundfile

logger = logging.getLogger("mae_ast_plugin.prep")

# Extensions libsndfile reads without extra parameters (``.raw`` would need a sample format).
AUDIO_EXTENSIONS = frozenset(
    {".wav", ".flac", ".ogg", ".oga", ".opus", ".mp3"}
    | {".aiff", ".aif", ".au", ".w64", ".rf64", ".caf"}
)

LABELS_CSV = "labels.csv"
LABELS_HEADER = "index,mid,display_name"


class PrepError(Exception):
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
    if not os.path.isfile(path):
        raise PrepError(f"{what} {path} not found")
    return os.path.abspath(path)


def find_audio_files(directory: str, extensions: Iterable[str] = AUDIO_EXTENSIONS) -> list[str]:
    """Absolute paths of the audio files under ``directory`` (recursive), sorted so that every
    run lists them in the same order whatever the file system returns."""
    wanted = {ext.lower() for ext in extensions}
    found = []
    for dirpath, dirnames, filenames in os.walk(directory, followlinks=True):
        dirnames[:] = [name for name in dirnames if not name.startswith(".")]
        for name in filenames:
            if not name.startswith(".") and os.path.splitext(name)[1].lower() in wanted:
                found.append(os.path.join(dirpath, name))
    return sorted(os.path.abspath(path) for path in found)


# ----------------------------------------------------------------------------------------------
# Summary


class PrepSummary:
    """Counts what a script wrote and what it had to leave out; printed at the end of a run."""

    MAX_EXAMPLES = 3  # example paths shown per kind of problem
    MAX_CLASSES_LISTED = 60  # beyond this, per-class counts are summarised (AudioSet: 527)

    def __init__(self, dataset: str):
        self.dataset = dataset
        self.splits: dict[str, tuple[int, Counter | None]] = {}
        self.class_names: list[str] | None = None
        self.problems: Counter = Counter()
        self.examples: dict[str, list[str]] = defaultdict(list)
        self.notes: list[str] = []
        self.dest: str | None = None

    def count(self, problem: str, example: str | None = None, amount: int = 1) -> None:
        """Record ``amount`` occurrences of a problem such as ``"missing audio"``."""
        self.problems[problem] += amount
        if example is not None and len(self.examples[problem]) < self.MAX_EXAMPLES:
            self.examples[problem].append(example)

    def note(self, text: str) -> None:
        self.notes.append(text)

    def add_split(self, name: str, clips: Sequence[Clip], class_names=None) -> None:
        per_class = None
        if class_names is not None:
            self.class_names = list(class_names)
            per_class = Counter(label for clip in clips for label in clip.labels)
        self.splits[name] = (len(clips), per_class)

    def _class_counts(self, per_class: Counter) -> list[str]:
        """Per-class counts as short items, to be joined with "; " (AudioSet display names
        contain commas)."""
        names = self.class_names
        counts = [per_class.get(i, 0) for i in range(len(names))]
        if len(set(counts)) == 1:
            return [f"{counts[0]} in each of the {len(names)} classes"]
        if len(names) <= self.MAX_CLASSES_LISTED:
            return [f"{name}={count}" for name, count in zip(names, counts, strict=True)]
        low, high = int(np.argmin(counts)), int(np.argmax(counts))
        return [
            f"{len(names)} classes",
            f"fewest {names[low]}={counts[low]}",
            f"most {names[high]}={counts[high]}",
            f"{counts.count(0)} without clips",
        ]

    @staticmethod
    def _wrap(items: list[str], indent: str, width: int = 100) -> list[str]:
        """Join items with "; " into lines of at most ``width`` characters, never splitting
        an item."""
        lines, current = [], indent
        for item in items:
            piece = item if current == indent else "; " + item
            if current != indent and len(current) + len(piece) + 1 > width:  # +1: the ";"
                lines.append(current + ";")
                current, piece = indent + "  ", item
            current += piece
        return lines + [current]

    def format(self) -> str:
        lines = [f"== {self.dataset} summary =="]
        if self.dest is not None:
            lines.append(f"written to {self.dest}")
        width = max((len(name) for name in self.splits), default=0)
        for name, (size, per_class) in self.splits.items():
            lines.append(f"{name:<{width}}  {size} clip{'' if size == 1 else 's'}")
            if per_class is not None:
                items = self._class_counts(per_class)
                items[0] = "per class: " + items[0]
                lines.extend(self._wrap(items, " " * (width + 4)))
        for problem in ("missing audio", "unreadable audio"):
            if problem not in self.problems:
                lines.append(f"{problem}: 0")
        for problem, amount in sorted(self.problems.items()):
            examples = self.examples.get(problem)
            suffix = f" (e.g. {', '.join(examples)})" if examples else ""
            lines.append(f"{problem}: {amount}{suffix}")
        lines.extend(self.notes)
        return "\n".join(lines)

    def print(self, file=None) -> None:
        print(self.format(), file=file if file is not None else sys.stdout, flush=True)


# ----------------------------------------------------------------------------------------------
# Audio


def _probe(path: str):
    try:
        return soundfile.info(path).frames
    except Exception as error:  # libsndfile raises several types; all mean "cannot read"
        return error


def measure_clips(
    entries: Sequence[Entry], *, skip_invalid: bool, summary: PrepSummary, workers: int = 1
) -> list[Clip]:
    """Probe every entry's audio header and return the readable ones as :class:`Clip`.

    A missing or unreadable file is a :class:`PrepError` naming the file (and the metadata line
    that listed it); with ``skip_invalid`` it is logged, counted in ``summary`` and left out.
    Problems are reported in input order, so the first error does not depend on ``workers``.
    """
    paths = [entry.path for entry in entries]
    if workers > 1 and len(paths) > 1:
        with ThreadPoolExecutor(max_workers=workers) as pool:  # header reads wait on I/O
            results = list(pool.map(_probe, paths, chunksize=64))
    else:
        results = [_probe(path) for path in paths]
    clips = []
    for entry, result in zip(entries, results, strict=True):
        if isinstance(result, int):
            clips.append(Clip(entry.path, result, entry.labels))
            continue
        missing = not os.path.isfile(entry.path)
        problem = "missing audio" if missing else "unreadable audio"
        detail = "not found" if missing else f"cannot be read ({result})"
        message = f"audio file {entry.path} {detail}"
        if entry.where:
            message = f"{entry.where}: {message}"
        if not skip_invalid:
            raise PrepError(message + "; use --skip-invalid to leave such files out")
        logger.warning("skipping: %s", message)
        summary.count(problem, entry.path)
    return clips


# ----------------------------------------------------------------------------------------------
# Deterministic splits


def split_rng(seed: int, *context: int) -> np.random.Generator:
    """A generator for one decision (e.g. one fold), so that the folds do not share a stream
    and changing one does not reshuffle another."""
    return np.random.default_rng([seed, *context])


def grouped_stratified_holdout(
    items: Sequence,
    fraction: float,
    rng: np.random.Generator,
    group_of: Callable,
    labels_of: Callable | None = None,
) -> tuple[list, list, list[int]]:
    """Split ``items`` into ``(kept, held_out, too_rare)`` for a validation split carved out of
    training data (issue 10: checkpoint selection must not be biased by leaked sources).

    * Groups stay whole: every item whose ``group_of(item)`` is equal lands on the same side
      (ESC-50 ``src_file``, an IEMOCAP dialogue, a YouTube video), so no source recording is
      heard in both parts.
    * Stratified by ``labels_of(item)`` (a tuple of class indices; several for multi-label
      data): each class gets about ``fraction`` of its items held out, and at least one group
      whenever it has two or more, so every class present in ``kept`` is present in
      ``held_out``.  A class found in one group only stays in ``kept`` (held out, it would be
      untrained) and is listed in ``too_rare`` (sorted class indices) for the summary.
      The method is iterative stratification (Sechidis, Tsoumakas and Vlahavas, ECML PKDD
      2011) over groups: classes in order of fewest groups first, each drawing random groups
      until it has its share.  A group is never held out if that would leave one of its
      classes without a group in ``kept``.
    * Without ``labels_of`` (unlabelled data): whole groups at random until
      ``round(fraction * len(items))`` items, at least one group and never all.

    Deterministic for a given ``rng`` state and item order; both parts keep the input order.
    """
    if not 0 <= fraction < 1:
        raise PrepError(f"a held-out fraction must be in [0, 1), got {fraction}")
    members: dict = {}  # group -> item indices, in input order
    for index, item in enumerate(items):
        members.setdefault(group_of(item), []).append(index)
    groups = sorted(members, key=str)
    order = [groups[i] for i in rng.permutation(len(groups))]
    held_groups = set()
    too_rare: list[int] = []  # classes of kept without a held-out item
    if fraction > 0 and len(groups) > 1 and labels_of is None:
        target = max(int(round(fraction * len(items))), 1)
        held_items = 0
        for group in order[:-1]:  # never all groups
            if held_items >= target:
                break
            held_groups.add(group)
            held_items += len(members[group])
    elif fraction > 0 and labels_of is not None:
        counts = {  # group -> Counter of its class labels
            group: Counter(label for i in members[group] for label in labels_of(items[i]))
            for group in groups
        }
        groups_of = defaultdict(list)  # class -> its groups, in the random order
        for group in order:
            for label in counts[group]:
                groups_of[label].append(group)
        total = Counter()
        for count in counts.values():
            total.update(count)
        kept_groups = {label: len(listed) for label, listed in groups_of.items()}
        held = Counter()
        for label in sorted(groups_of, key=lambda c: (len(groups_of[c]), c)):
            if len(groups_of[label]) < 2:
                continue  # one group: it stays in kept (listed in too_rare below)
            share = fraction * total[label]
            for group in groups_of[label]:
                if held[label] > 0 and held[label] + counts[group][label] / 2 > share:
                    break  # this class has its share (to the nearest group)
                if group in held_groups or any(kept_groups[c] < 2 for c in counts[group]):
                    continue  # taken already, or the last kept group of one of its classes
                held_groups.add(group)
                held.update(counts[group])
                for c in counts[group]:
                    kept_groups[c] -= 1
        present = {label for group in groups if group not in held_groups for label in counts[group]}
        too_rare = sorted(label for label in present if held[label] == 0)
    held_indices = {i for group in held_groups for i in members[group]}
    kept = [item for i, item in enumerate(items) if i not in held_indices]
    held_out = [item for i, item in enumerate(items) if i in held_indices]
    return kept, held_out, too_rare


def note_classes_not_held_out(
    summary: "PrepSummary",
    split: str,
    train: Sequence[Clip],
    held_out: Sequence[Clip],
    class_names: Sequence[str],
) -> None:
    """Say in the summary which classes of ``train`` have no clip in the held-out ``split``
    (written clips: a class can also go missing when its held-out audio is missing)."""
    present = {label for clip in held_out for label in clip.labels}
    absent = sorted({label for clip in train for label in clip.labels} - present)
    if absent:
        names = ", ".join(class_names[label] for label in absent)
        summary.note(
            f"{split}: {len(absent)} class(es) of train have no clip here (too few source "
            f"groups to hold one out, or its audio is missing): {names}"
        )


# ----------------------------------------------------------------------------------------------
# Writing


@contextmanager
def atomic_target(path: str):
    """Yield a temporary path in ``path``'s directory; on success it replaces ``path`` with
    ``os.replace``, so a reader (or a crash) never sees a half-written file."""
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    temporary = os.path.join(directory, f".{os.path.basename(path)}.{os.getpid()}.tmp")
    try:
        yield temporary
        os.replace(temporary, path)
    finally:
        if os.path.exists(temporary):
            os.remove(temporary)


def atomic_write_text(path: str, text: str) -> None:
    """Write ``text`` (UTF-8, ``\\n`` line ends) to ``path`` atomically."""
    with atomic_target(path) as temporary:
        # os.open with 0o666 honours the umask, unlike tempfile's private 0o600 files.
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o666)
        with os.fdopen(fd, "w", encoding="utf-8", newline="\n") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())


def atomic_write_json(path: str, content) -> None:
    """Write ``content`` as strict JSON (``allow_nan=False``: a NaN or infinity is a
    ``ValueError`` here, never a non-standard ``NaN`` token in the file) atomically."""
    atomic_write_text(path, json.dumps(content, indent=1, allow_nan=False) + "\n")


def atomic_write_audio(path: str, data: np.ndarray, sample_rate: int, subtype="PCM_16") -> None:
    """Write a wav file to ``path`` atomically."""
    with atomic_target(path) as temporary:
        soundfile.write(temporary, data, sample_rate, subtype=subtype, format="WAV")


def _csv_field(text: str, quote: bool) -> str:
    if quote or any(char in text for char in ',"\n\r'):
        return '"' + text.replace('"', '""') + '"'
    return text


def labels_csv_text(classes: Sequence[ClassInfo]) -> str:
    """``labels.csv`` in AST's layout (display names always quoted, as in AudioSet's
    ``class_labels_indices.csv``)."""
    rows = [LABELS_HEADER]
    for index, info in enumerate(classes):
        rows.append(f"{index},{_csv_field(info.mid, False)},{_csv_field(info.display_name, True)}")
    return "\n".join(rows) + "\n"


def render_split(
    audio_root: str, clips: Sequence[Clip], num_classes: int | None = None
) -> tuple[str, str | None]:
    """The texts of a split's ``.tsv`` and, when ``num_classes`` is given, ``.lbl`` (else
    None), after checking every clip: under ``audio_root``, labels valid, rows paired."""
    audio_root = os.path.abspath(audio_root)
    rows, label_rows = [audio_root], []
    for clip in clips:
        relative = os.path.relpath(clip.path, audio_root)
        if relative.startswith(os.pardir) or os.path.isabs(relative):
            raise PrepError(f"{clip.path} is not under the manifest root {audio_root}")
        if "\t" in relative or "\n" in relative:
            raise PrepError(f"{clip.path}: a tab or newline in a path cannot go in a manifest")
        rows.append(f"{relative}\t{clip.num_samples}")
        if num_classes is not None:
            if not clip.labels or not all(0 <= label < num_classes for label in clip.labels):
                raise PrepError(f"{clip.path}: invalid class indices {clip.labels}")
            label_rows.append(",".join(str(label) for label in clip.labels))
    tsv = "\n".join(rows) + "\n"
    if num_classes is None:
        return tsv, None
    # One label row per manifest row, in the same order: the loader pairs them by line.
    if len(label_rows) != len(rows) - 1:
        raise PrepError(f"{len(label_rows)} label rows for {len(rows) - 1} clips")
    return tsv, "\n".join(label_rows) + "\n"


def write_split(
    directory: str,
    split: str,
    audio_root: str,
    clips: Sequence[Clip],
    num_classes: int | None = None,
) -> None:
    """Write ``{directory}/{split}.tsv`` (and ``.lbl`` when ``num_classes`` is given)."""
    tsv, lbl = render_split(audio_root, clips, num_classes)
    atomic_write_text(os.path.join(directory, f"{split}.tsv"), tsv)
    if lbl is not None:
        atomic_write_text(os.path.join(directory, f"{split}.lbl"), lbl)


def write_labels_csv(directory: str, classes: Sequence[ClassInfo]) -> None:
    atomic_write_text(os.path.join(directory, LABELS_CSV), labels_csv_text(classes))


def write_outputs(
    dest: str,
    audio_root: str,
    splits: dict[str, Sequence[Clip]],
    summary: PrepSummary,
    classes: Sequence[ClassInfo] | None = None,
) -> None:
    """Check every split, then write them all: nothing is written if any split is invalid.

    ``splits`` maps a split name to its clips; a name with a slash (``"fold1/train"``) is
    written in that subdirectory of ``dest``.  With ``classes``, each split also gets a
    ``.lbl`` file and each directory holding splits gets ``labels.csv``; without, the data is
    unlabelled (pretraining) and only ``.tsv`` files are written.  ``audio_root`` becomes the
    manifests' first line; every clip must lie under it.  The splits are recorded in
    ``summary``.
    """
    num_classes = None if classes is None else len(classes)
    documents = {}  # output path -> text
    for name, clips in splits.items():
        if not clips:
            raise PrepError(f"split {name!r} would be empty: check the dataset root and options")
        try:
            tsv, lbl = render_split(audio_root, clips, num_classes)
        except PrepError as error:
            raise PrepError(f"split {name!r}: {error}") from None
        base = os.path.join(dest, *name.split("/"))
        documents[base + ".tsv"] = tsv
        if lbl is not None:
            documents[base + ".lbl"] = lbl
            documents[os.path.join(os.path.dirname(base), LABELS_CSV)] = labels_csv_text(classes)
    for path, text in documents.items():
        atomic_write_text(path, text)
    class_names = None if classes is None else [info.display_name for info in classes]
    for name, clips in splits.items():
        summary.add_split(name, clips, class_names)
    summary.dest = os.path.abspath(dest)
