"""The closing summary of a ``mae-ast-prepare`` run (:class:`PrepSummary`): clips per split
and per class, and every kind of problem counted with example paths, so that a skipped or
missing clip is never silent.
"""

import sys
from collections import Counter, defaultdict
from collections.abc import Sequence

import numpy as np

from .common import Clip


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
        """Add a line printed after the counts (e.g. classes without a held-out clip)."""
        self.notes.append(text)

    def add_split(self, name: str, clips: Sequence[Clip], class_names=None) -> None:
        """Record a written split; with ``class_names``, its clips are also counted per class."""
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
