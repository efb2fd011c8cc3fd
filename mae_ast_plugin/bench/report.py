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


def memory_gib():
    """Total memory in GiB (one decimal) from /proc/meminfo, or None where there is none."""
    try:
        with open("/proc/meminfo") as handle:
            for line in handle:
                if line.startswith("MemTotal"):
                    return round(int(line.split()[1]) / 2**20, 1)
    except OSError:
        pass
    return None


def machine_info(device: str | None = None, **extra) -> dict:
    """The machine every report of the package names (benchmarks, the Table 1 miniature): date
    (UTC), Python, torch and numpy versions, platform, CPU model, online and usable cores,
    memory (GiB), torch's thread count and the 1/5/15-minute load average now; on
    ``device="cuda"`` the GPU's name, its memory (bytes) and the CUDA version.  ``extra`` items
    are added (and replace these)."""
    import numpy
    import torch

    info = {
        "date": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "numpy": numpy.__version__,
        "platform": platform.platform(),
        "cpu": cpu_model(),
        "cpu_count": os.cpu_count(),
        "usable_cores": len(os.sched_getaffinity(0)),
        "memory_gib": memory_gib(),
        "torch_threads": torch.get_num_threads(),
        "load_average": os.getloadavg(),
    }
    if device == "cuda":
        info["gpu"] = torch.cuda.get_device_name(0)
        info["gpu_memory_bytes"] = torch.cuda.get_device_properties(0).total_memory
        info["cuda"] = torch.version.cuda
    return {**info, **extra}


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
