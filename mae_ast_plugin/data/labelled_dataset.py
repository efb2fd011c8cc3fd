"""Class labels for manifests: ``labels.csv``, parallel ``{split}.lbl`` files, and a labelled
:class:`FbankAudioDataset`.

``labels.csv`` is AST's class list, ``index,mid,display_name`` with a header row and indices
0..C-1 in order.  ``{split}.lbl`` has one line per manifest row (line ``k`` of the label file
belongs to line ``k + 1`` of the manifest, whose first line is the audio root), each holding
comma-separated class indices: exactly one for single-label tasks, any number (zero included)
for multi-label ones.  Rows the manifest reader drops (``skip_invalid``) drop their labels too.
"""

import csv
import io
import os
from dataclasses import dataclass

import numpy as np
import torch

from ..errors import InputError
from ..textfiles import read_lines, read_text
from .fbank_dataset import FbankAudioDataset
from .manifest import Manifest, ManifestError


class LabelError(InputError):
    pass


@dataclass
class ClassList:
    """The classes of a task, in index order; travels in fine-tuned checkpoints."""

    mids: list[str]
    names: list[str]

    def __len__(self):
        return len(self.names)

    def to_state(self) -> dict:
        # plain lists, so the checkpoint unpickles without this class
        return {"mid": list(self.mids), "display_name": list(self.names)}

    @classmethod
    def from_state(cls, state: dict) -> "ClassList":
        return cls(mids=list(state["mid"]), names=list(state["display_name"]))


def read_class_list(path: str) -> ClassList:
    if not os.path.isfile(path):
        raise LabelError(f"class list {path} not found (expected 'index,mid,display_name' rows)")
    # Excel's "CSV UTF-8" (a byte-order mark, CRLF) is read as plain UTF-8
    with io.StringIO(read_text(path, LabelError), newline="") as handle:
        rows = csv.reader(handle)
        header = [field.strip() for field in next(rows, [])]
        if header[:3] != ["index", "mid", "display_name"]:
            raise LabelError(f"{path}:1: header must be 'index,mid,display_name', got {header}")
        mids, names = [], []
        for row in rows:
            if not row:
                continue
            line = rows.line_num
            if len(row) < 3:
                raise LabelError(f"{path}:{line}: expected index,mid,display_name, got {row}")
            if row[0].strip() != str(len(names)):
                raise LabelError(
                    f"{path}:{line}: index {row[0]!r}, expected {len(names)} (indices must run "
                    "0, 1, 2, ... in order)"
                )
            mids.append(row[1].strip())
            names.append(row[2].strip())
    if not names:
        raise LabelError(f"{path} lists no classes")
    return ClassList(mids=mids, names=names)


@dataclass
class ClipLabels:
    """Class indices of each manifest entry, stored flat (``values[offsets[i]:offsets[i+1]]``) so
    two million clips cost two arrays rather than two million Python lists."""

    values: np.ndarray
    offsets: np.ndarray

    def __len__(self):
        return len(self.offsets) - 1

    def of(self, index: int) -> np.ndarray:
        return self.values[self.offsets[index] : self.offsets[index + 1]]


def _read_lines(path: str, error=LabelError) -> list[str]:
    """The file's lines without line ends (CRLF or LF; a UTF-8 byte-order mark dropped); a blank
    last line is a line (an unlabelled clip)."""
    return read_lines(path, error)


def _count_rows(manifest_path: str) -> int:
    """Lines after the manifest's root line, trailing blank lines excluded (they hold no clip)."""
    lines = _read_lines(manifest_path, ManifestError)
    while lines and not lines[-1].strip():
        lines.pop()
    return len(lines) - 1


def read_clip_labels(
    path: str, manifest: Manifest, num_classes: int, multi_label: bool
) -> ClipLabels:
    """Read ``path`` (a ``.lbl`` file parallel to ``manifest``) and return the labels of the
    manifest's entries; every problem names the file and line."""
    if not os.path.isfile(path):
        raise LabelError(
            f"label file {path} not found (one line of class indices per row of {manifest.path})"
        )
    lines = _read_lines(path)
    manifest_rows = _count_rows(manifest.path)
    if len(lines) != manifest_rows:
        raise LabelError(
            f"{path} has {len(lines)} lines but {manifest.path} has {manifest_rows} rows after its "
            "root line: the label file must have one line per manifest row, in the same order"
        )
    values, offsets = [], [0]
    for manifest_line in manifest.line_numbers:
        line_no = int(manifest_line) - 1  # the manifest's line 1 is the audio root
        text = lines[line_no - 1].strip()
        try:
            indices = [int(item) for item in text.split(",")] if text else []
        except ValueError:
            raise LabelError(
                f"{path}:{line_no}: class indices must be comma-separated integers, got {text!r}"
            ) from None
        bad = [i for i in indices if not 0 <= i < num_classes]
        if bad:
            raise LabelError(
                f"{path}:{line_no}: class index {bad[0]} is out of range for the {num_classes} "
                "classes"
            )
        if not multi_label and len(indices) != 1:
            raise LabelError(
                f"{path}:{line_no}: expected exactly one class index (single-label task), got "
                f"{text!r} (set task.multi_label=true for multi-label data)"
            )
        values.extend(indices)
        offsets.append(len(values))
    return ClipLabels(np.asarray(values, dtype=np.int64), np.asarray(offsets, dtype=np.int64))


class LabelledFbankDataset(FbankAudioDataset):
    """:class:`FbankAudioDataset` whose batches also hold ``target``: class indices (B,) for
    single-label tasks, multi-hot float rows (B, C) for multi-label ones."""

    def __init__(
        self, manifest: Manifest, labels: ClipLabels, num_classes: int, multi_label: bool, **kwargs
    ):
        super().__init__(manifest, **kwargs)
        assert len(labels) == len(manifest)
        self.labels = labels
        self.num_classes = num_classes
        self.multi_label = multi_label

    def targets(self, ids: torch.Tensor) -> torch.Tensor:
        if not self.multi_label:
            return torch.from_numpy(self.labels.values[self.labels.offsets[ids.numpy()]])
        target = torch.zeros(len(ids), self.num_classes)
        for row, index in enumerate(ids.tolist()):
            target[row, torch.from_numpy(self.labels.of(index))] = 1.0
        return target

    def collater(self, samples):
        batch = super().collater(samples)
        if batch:  # batches whose clips were all skipped are empty
            batch["target"] = self.targets(batch["id"])
        return batch
