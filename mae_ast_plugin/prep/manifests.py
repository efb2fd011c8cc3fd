"""Writing what the plugin reads, checked before anything is written:

* ``{split}.tsv``: fairseq manifest; line 1 is the absolute audio root, then
  ``relative/path<TAB>num_samples`` with ``num_samples = soundfile.info(path).frames``
  (samples at the file's native rate, no resampling);
* ``{split}.lbl`` (labelled datasets): one line per manifest row, same order, holding the
  comma-separated integer class indices of that clip;
* ``labels.csv`` (labelled datasets): ``index,mid,display_name`` as in AST's
  ``class_labels_indices.csv``.

Every file is written atomically (:mod:`mae_ast_plugin.atomic_io`).  Used by the dataset
modules (:func:`write_outputs`) and the synthetic corpora (:func:`write_split`,
:func:`write_labels_csv`).
"""

import os
from collections.abc import Sequence

from ..atomic_io import atomic_write_text
from .common import ClassInfo, Clip, PrepError
from .summary import PrepSummary

LABELS_CSV = "labels.csv"
LABELS_HEADER = "index,mid,display_name"


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
    """Write ``{directory}/labels.csv`` (see :func:`labels_csv_text`)."""
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
