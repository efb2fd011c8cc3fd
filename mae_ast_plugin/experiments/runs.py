"""Running training commands from the checkout and keeping their results: what the experiment
drivers share (atomic JSON results, measured subprocess runs, interrupted runs started over,
the machine's load while they run).

The drivers are research tools of the repository, not of an installed package: they read
config/ and write data/, outputs/ and docs/ of the checkout, and ``require_checkout`` stops them
with a message elsewhere (the library itself uses the packaged configs: hydra_configs).
"""

import datetime
import json
import os
import shlex
import shutil
import subprocess
import threading
import time
from pathlib import Path

from mae_ast_plugin.atomic_io import atomic_write_json, nan_to_null

REPO = Path(__file__).resolve().parents[2]  # the checkout: configs, data, outputs and docs


def require_checkout(command: str) -> Path:
    """The repository checkout this package runs from (``REPO``); a package installed from a
    wheel has none, and ``command`` exits saying so instead of writing into site-packages."""
    if not ((REPO / "setup.py").is_file() and (REPO / "config" / "pretrain").is_dir()):
        raise SystemExit(
            f"{command} runs from the repository checkout (it reads config/ and writes data/, "
            f"outputs/ and docs/ there), but this mae_ast_plugin is installed in {REPO}: clone "
            "the repository, `pip install -e .` and run it there"
        )
    return REPO


def shown(path) -> str:
    """A path as commands show it: relative to the repository when inside it."""
    path = Path(path).resolve()
    try:
        return str(path.relative_to(REPO))
    except ValueError:
        return str(path)


def write_json(path: Path, content):
    """Atomically and strict (``atomic_io``), so that a result file exists only when complete;
    a measurement that could not be made (NaN) is written as null."""
    atomic_write_json(str(path), nan_to_null(content))


def read_json(path: Path):
    return json.loads(Path(path).read_text())


def now_iso():
    return datetime.datetime.now().astimezone().isoformat(timespec="seconds")


class RunFailed(RuntimeError):
    pass


# Overrides naming where a run writes, not what it reads.
OUTPUT_KEYS = ("hydra.run.dir", "checkpoint.save_dir", "common.tensorboard_logdir",
               "common.user_dir")


def run_inputs(cmd) -> dict:
    """What a training command's result depends on, to skip it only when nothing changed: the
    command itself and the content of every existing file or directory it names (config
    directories and search paths, ``task.data``, ``model.pretrained_checkpoint``...), by
    :func:`mae_ast_plugin.hashing.inputs_fingerprint` (file sha256; for a directory its
    manifests, label files, configs and the size and modification time of the audio the
    manifests list).  Paths are resolved against the checkout, where the commands run."""
    from mae_ast_plugin.hashing import inputs_fingerprint

    paths = []
    for arg in [str(c) for c in cmd[1:]]:
        key, has_value, value = arg.lstrip("+~").partition("=")
        if has_value and key in OUTPUT_KEYS:
            continue
        for candidate in (value if has_value else arg).strip("[]").split(","):
            candidate = candidate.strip().removeprefix("file://")
            if not candidate or candidate.startswith("-"):
                continue
            path = (REPO / candidate) if not os.path.isabs(candidate) else Path(candidate)
            if path.exists():
                paths.append(path)
    return {"command": [str(c) for c in cmd], "inputs": inputs_fingerprint(paths)}


def changed_inputs(recorded: dict | None, current: dict) -> str:
    """What differs between two :func:`run_inputs` records, in words ('' when nothing)."""
    if recorded is None:
        return "no record of the inputs it was made from"
    changes = []
    if recorded.get("command") != current["command"]:
        changes.append("the command")
    before, now = recorded.get("inputs") or {}, current["inputs"]
    changes += [shown(p) for p in sorted(set(before) | set(now)) if before.get(p) != now.get(p)]
    return ", ".join(changes)


def run_measured(cmd, log_path: Path, threads: int) -> dict:
    """Run ``cmd`` from the repository root with ``threads`` intra-op threads, output to
    ``log_path``; its wall time, CPU time and peak RSS (``os.wait4`` reports the child's own
    ``ru_maxrss``, unlike ``RUSAGE_CHILDREN``, which is the largest of all children so far)."""
    env = dict(os.environ, HYDRA_FULL_ERROR="1", PYTHONWARNINGS="ignore")
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        env[var] = str(threads)
    log_path.parent.mkdir(parents=True, exist_ok=True)
    load_before = os.getloadavg()[0]
    started = time.monotonic()
    with open(log_path, "w") as log:
        log.write("+ " + shlex.join(cmd) + "\n")
        log.flush()
        process = subprocess.Popen(cmd, cwd=REPO, stdout=log, stderr=subprocess.STDOUT, env=env)
        _, status, usage = os.wait4(process.pid, 0)
    process.returncode = os.waitstatus_to_exitcode(status)
    wall = time.monotonic() - started
    if process.returncode != 0:
        raise RunFailed(f"exit status {process.returncode}: {shlex.join(cmd)}\nsee {log_path}")
    return {
        "wall_s": round(wall, 2),
        "cpu_s": round(usage.ru_utime + usage.ru_stime, 2),
        "peak_rss_mb": round(usage.ru_maxrss / 1024, 1),  # Linux reports KiB
        "threads": threads,
        "load_1min_before": load_before,
        "load_1min_after": os.getloadavg()[0],
    }


def fresh_run_dir(run_dir: Path):
    """A run without its result file was interrupted: start it over (whole timings)."""
    if run_dir.exists():
        print(f"  removing the unfinished run {shown(run_dir)}", flush=True)
        shutil.rmtree(run_dir)
    run_dir.mkdir(parents=True)


class LoadMonitor:
    """Samples the 1-minute load average while the experiment runs (was the CPU shared?)."""

    def __init__(self, interval_s=15.0):
        self.samples = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, args=(interval_s,), daemon=True)

    def _sample(self, interval_s):
        while True:
            self.samples.append(os.getloadavg()[0])
            if self._stop.wait(interval_s):
                return

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        return False
