"""Shared helpers of the dataset preparation tests (test_prepare_*.py): running
``mae-ast-prepare`` in-process or as a user does, and reading back what it wrote while checking
the manifest format contract on the way."""

import csv
import importlib
import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import soundfile

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))  # fake_datasets, next to this file
if importlib.util.find_spec("mae_ast_plugin") is None:  # not installed: use this checkout
    sys.path.insert(0, str(REPO))

import fake_datasets as fake  # noqa: E402, F401  (re-exported for the test modules)

from mae_ast_plugin.prep.common import PrepError  # noqa: E402, F401

SPLITS = ("train", "valid", "test")

def run_main(name, argv):
    """``prepare(args)`` of ``mae_ast_plugin.prep.{name}``: its summary; raises PrepError."""
    module = importlib.import_module(f"mae_ast_plugin.prep.{name}")
    return module.prepare(module.get_parser().parse_args([str(arg) for arg in argv]))


def run_command(name, argv, wrapper=False):
    """Run ``mae-ast-prepare {name} ...`` as a user does: a subprocess from the repository root
    (with ``wrapper``, through the thin ``scripts/prepare_{name}.py`` the docs still name)."""
    if wrapper:
        command = [sys.executable, f"scripts/prepare_{name}.py"]
    else:
        command = [str(Path(sys.executable).parent / "mae-ast-prepare"), name]
    command += [str(arg) for arg in argv]
    return subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=120)


def read_split(directory, split, frames, labelled=True):
    """Parse ``{split}.tsv`` (and ``.lbl``), checking the format contract on the way:
    absolute root, sizes equal to the written frames, one label row per manifest row.
    Returns ``[(absolute_path, labels)]``."""
    lines = (Path(directory) / f"{split}.tsv").read_text().splitlines()
    root = lines[0]
    assert os.path.isabs(root) and os.path.isdir(root)
    rows = []
    for line in lines[1:]:
        relative, size = line.split("\t")
        assert not os.path.isabs(relative) and ".." not in relative.split("/")
        path = os.path.join(root, relative)
        assert int(size) == frames[path], path
        rows.append(path)
    if not labelled:
        assert not (Path(directory) / f"{split}.lbl").exists()
        return [(path, ()) for path in rows]
    label_lines = (Path(directory) / f"{split}.lbl").read_text().splitlines()
    assert len(label_lines) == len(rows)
    labels = [tuple(int(index) for index in line.split(",")) for line in label_lines]
    return list(zip(rows, labels, strict=True))


def read_labels_csv(directory):
    with open(Path(directory) / "labels.csv", newline="") as handle:
        rows = list(csv.reader(handle))
    assert rows[0] == ["index", "mid", "display_name"]
    assert [int(row[0]) for row in rows[1:]] == list(range(len(rows) - 1))
    return [(row[1], row[2]) for row in rows[1:]]


def tree_bytes(directory):
    """``{relative path: bytes}`` of every file under ``directory``."""
    directory = Path(directory)
    files = sorted(path for path in directory.rglob("*") if path.is_file())
    return {str(path.relative_to(directory)): path.read_bytes() for path in files}


def add_silence_frames(dest, frames):
    """Record the sizes of the silence clips a Speech Commands v1 run cut under ``dest``."""
    silence = {
        str(path.resolve()): soundfile.info(str(path)).frames
        for path in (Path(dest) / "silence").rglob("*.wav")
    }
    frames.update(silence)
    return silence


def check_valid_labels(rows, num_classes):
    for _, labels in rows:
        assert labels and all(0 <= label < num_classes for label in labels)
