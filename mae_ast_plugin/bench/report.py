"""What every benchmark's report shares: progress lines on stderr, the machine and the command
that produced the numbers, and the report itself (a table on stdout, JSON in ``--out``).

Numbers without the machine, the load and the command are not comparable, so every
``mae-ast-benchmark-*`` report carries :func:`machine_info` and :func:`command_line`.
"""

import datetime
import json
import os
import platform
import sys

from mae_ast_plugin.atomic_io import atomic_write_text, nan_to_null


def log(message):
    """A progress line on stderr (stdout carries the table)."""
    print(message, file=sys.stderr, flush=True)


def cpu_model():
    """The CPU's model name from /proc/cpuinfo, or None where there is none (not Linux)."""
    try:
        with open("/proc/cpuinfo") as handle:
            for line in handle:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return None


def machine_info(**extra) -> dict:
    """Date (UTC), Python, torch and numpy versions, platform, CPU model and count, and the
    1-minute/5-minute/15-minute load average now; ``extra`` items are added."""
    import numpy
    import torch

    return {
        "date": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "numpy": numpy.__version__,
        "platform": platform.platform(),
        "cpu": cpu_model(),
        "cpu_count": os.cpu_count(),
        "load_average": os.getloadavg(),
        **extra,
    }


def command_line() -> str:
    """The command as run (interpreter or console script name, then its arguments)."""
    return " ".join([os.path.basename(sys.executable), *sys.argv])


def markdown_table(header, rows) -> list:
    """The lines of a markdown table: ``header`` (the column titles), its rule, then one line per
    row of ``rows`` (each a sequence of cells, formatted already; other values go through str)."""
    def line(cells):
        return "| " + " | ".join(str(cell) for cell in cells) + " |"

    return [line(header), "|" + "---|" * len(header), *(line(row) for row in rows)]


def write_report(report: dict, table: str, out=None):
    """Print ``table`` (markdown) on stdout and, with ``out``, write ``report`` there as strict
    JSON (a measurement that could not be made, NaN, is written as null), atomically: a temporary
    file in the same directory, then a rename."""
    print(table)
    if not out:
        return
    atomic_write_text(out, json.dumps(nan_to_null(report), indent=2, allow_nan=False) + "\n")
