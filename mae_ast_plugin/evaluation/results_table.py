"""``mae-ast-results-table``: our scores beside the paper's, laid out like Table 1 of the MAE-AST
paper.

Example:
    mae-ast-results-table outputs/**/metrics*.json outputs/*_cv/summary.json \
        --out results.md

Reads metrics files written by ``mae-ast-evaluate`` or summary files of ``mae-ast-cv`` (keys
``benchmark``, ``model``, ``value`` and, for cross-validation, ``std``), groups them into one row
per model (name, encoder layers, masking) and writes a Markdown table with the paper's six rows
first, then ours, each followed by its difference to the paper's row of the same model when there
is one.  Scores are percentages (accuracy, or mAP for AS).
"""

import argparse
import json
import math
import sys
from pathlib import Path

from ..atomic_io import atomic_write_text

COLUMNS = ["AS", "ESC", "KS2", "KS1", "SID", "ER"]

# paper.md §1.1 (Table 1): (model, encoder layers, masking) -> scores; None where the paper has "-"
PAPER_ROWS = {
    ("SSAST Base Patch", 12, "Chunked"): [28.6, 88.8, 98.0, 96.0, 64.3, 59.6],
    ("SSAST Base Frame", 12, "Random"): [None, 85.9, 98.1, 96.7, 80.8, 60.5],
    ("MAE-AST Patch", 6, "Chunked"): [28.3, 88.6, 97.4, 95.0, 37.6, 58.7],
    ("MAE-AST Frame", 6, "Random"): [25.9, 88.0, 97.8, 96.6, 58.6, 60.2],
    ("MAE-AST Patch", 12, "Chunked"): [30.6, 90.0, 97.9, 95.8, None, 59.8],
    ("MAE-AST Frame", 12, "Random"): [23.0, 88.9, 98.0, 97.3, 63.3, 62.1],
}


def read_results(paths):
    """{(name, layers, masking): {column: (percent, std percent or None, source path)}}."""
    rows = {}
    for path in paths:
        result = json.loads(Path(path).read_text())
        column = result.get("benchmark")
        if column not in COLUMNS:
            raise SystemExit(f"{path}: benchmark {column!r} is not a Table 1 column {COLUMNS} "
                             "(rerun mae-ast-evaluate with --benchmark)")
        model = result["model"]
        key = (model["name"], int(model["encoder_layers"]), model["masking"])
        std = result.get("std")
        for name, number in (("value", result.get("value")), ("std", std)):
            if (name == "value" or number is not None) and not is_finite_number(number):
                reason = result.get("value_undefined", "not a number")
                raise SystemExit(f"{path}: {name} is {number!r} ({reason}): there is no "
                                 f"{column} score to put in the table; leave the file out")
        cell = (100 * result["value"], None if std is None else 100 * std, str(path))
        if column in rows.setdefault(key, {}):
            raise SystemExit(f"{path} and {rows[key][column][2]} both give {column} for {key}")
        rows[key][column] = cell
    return rows


def is_finite_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def format_cell(value, std=None):
    if value is None:
        return "-"
    return f"{value:.1f}" if std is None else f"{value:.1f} ± {std:.1f}"


def make_table(rows) -> str:
    lines = [
        "| Model | Enc. Layers | Masking | " + " | ".join(COLUMNS) + " |",
        "|---|---|---|" + "---|" * len(COLUMNS),
    ]
    for (name, layers, masking), scores in PAPER_ROWS.items():
        cells = [format_cell(score) for score in scores]
        lines.append(f"| {name} (paper) | {layers} | {masking} | " + " | ".join(cells) + " |")
    for key in sorted(rows):
        name, layers, masking = key
        ours = rows[key]
        cells = [format_cell(*ours[c][:2]) if c in ours else "-" for c in COLUMNS]
        lines.append(f"| {name} (ours) | {layers} | {masking} | " + " | ".join(cells) + " |")
        paper = PAPER_ROWS.get(key)
        if paper:
            deltas = [
                f"{ours[c][0] - p:+.1f}" if c in ours and p is not None else ""
                for c, p in zip(COLUMNS, paper, strict=True)
            ]
            lines.append("| Δ ours − paper | | | " + " | ".join(deltas) + " |")
    notes = [
        "",
        "AS: mAP (%) on the AudioSet eval set after fine-tuning on AudioSet-20K; ESC: ESC-50 "
        "accuracy (%), 5-fold cross-validation; KS2: Speech Commands v2 (35 classes); KS1: Speech "
        "Commands v1 (SUPERB, 12 classes); SID: VoxCeleb1 speaker identification (1,251 "
        "speakers); ER: IEMOCAP emotion recognition (4 classes, 5 folds). ± is the sample "
        "standard deviation over folds.",
        "Paper rows: Table 1 of Baade, Peng, Harwath (2022); \"-\": not reported.",
    ]
    return "\n".join(lines + notes) + "\n"


def main(argv=None):
    parser = argparse.ArgumentParser(
        prog="mae-ast-results-table",
        description=__doc__.split("\n\n")[0],
        epilog="\n\n".join(__doc__.split("\n\n")[1:]),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("results", nargs="+", help="metrics.json / summary.json files")
    parser.add_argument("--out", default="results.md", help="Markdown file to write")
    args = parser.parse_args(argv)
    table = make_table(read_results(args.results))
    atomic_write_text(args.out, table)
    print(table, end="")
    return 0


if __name__ == "__main__":
    sys.exit(main())
