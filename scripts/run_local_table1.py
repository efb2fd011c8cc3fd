#!/usr/bin/env python3
"""Table 1 of the MAE-AST paper in miniature, on data this machine makes.

    python scripts/run_local_table1.py                 # the small preset: about an hour on 2 CPU cores
    python scripts/run_local_table1.py --preset large  # more data, a bigger model, for a GPU

Steps, each skipped when its result file exists (so an interrupted run continues where it
stopped; a half-finished run directory is deleted and the run redone, so timings stay whole):

1. data: ``scripts/make_local_benchmark.py`` (pretraining corpus; keyword, speaker and
   sound-event tasks), under ``--manifests`` / ``--audio``;
2. pretraining of SSAST and MAE-AST with patch and frame tokens
   (config/pretrain/{ssast,mae_ast}_{patch,frame}.yaml + config/local/table1/pretrain.yaml, the
   same encoder and number of updates for all), ``--jobs`` runs at a time with one core each,
   measuring each run's CPU time, wall time and the peak RSS of its training process
   (``os.wait4``); result: ``{out}/pretrain/{row}/result.json``;
3. fine-tuning of every row (and of encoders trained from scratch) on every task, for each seed
   (config/finetune/esc50.yaml + config/local/table1/finetune.yaml), ``--jobs`` runs at a time;
   the checkpoint best on valid is scored once on test (mae-ast-evaluate); result:
   ``{out}/finetune/{row}/{task}/seed{k}/result.json``;
4. ``{out}/results.json``, the pretraining loss curves (``--figure``) and the report
   (``--report``).  The report's text between the ``generated`` markers is rewritten; text
   outside them (the discussion) is kept.
"""

import argparse
import datetime
import importlib.util
import json
import os
import platform
import shlex
import shutil
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import numpy as np

REPO = Path(__file__).resolve().parents[1]
HYDRA_TRAIN = str(Path(sys.executable).parent / "fairseq-hydra-train")
SEARCHPATH = "hydra.searchpath=[file://config/local]"  # relative: commands run from REPO
if importlib.util.find_spec("mae_ast_plugin") is None:  # not installed: use this checkout
    sys.path.insert(0, str(REPO))


@dataclass(frozen=True)
class Row:
    label: str
    pretrain_config: Optional[str]  # config/pretrain/<name>.yaml; None: no pretraining
    tokens: str  # "patch" or "frame"


ROWS = {
    "ssast_patch": Row("SSAST Patch", "ssast_patch", "patch"),
    "ssast_frame": Row("SSAST Frame", "ssast_frame", "frame"),
    "mae_ast_patch": Row("MAE-AST Patch", "mae_ast_patch", "patch"),
    "mae_ast_frame": Row("MAE-AST Frame", "mae_ast_frame", "frame"),
    "scratch_patch": Row("No pretraining, Patch", None, "patch"),
    "scratch_frame": Row("No pretraining, Frame", None, "frame"),
}
TOKENS = {  # the token shapes of config/pretrain's patch and frame configs
    "patch": {"token_frames": 16, "token_mel_bins": 16},
    "frame": {"token_frames": 2, "token_mel_bins": 128},
}


@dataclass(frozen=True)
class Task:
    label: str
    paper_column: str  # the Table 1 column it stands in for
    train_crop_s: float  # task.max_sample_len_s: random crops in training
    eval_crop_s: Optional[float]  # task.eval_max_sample_len_s (0: whole clips)


TASKS = {
    "keyword": Task("Keywords", "KS1", 1.0, None),
    # SUPERB's SID recipe: train on crops, score whole utterances (here 1-6 s)
    "speaker": Task("Speakers", "SID", 3.0, 0.0),
    "events": Task("Sound events", "ESC", 2.0, None),
}

# The paper's numbers for the cells the miniature stands in for (paper.md §1.1 and §7.4):
# MAE-AST with its 6-layer encoder (Table 1), SSAST Base (12 layers, Table 1) and SSAST's
# from-scratch rows (SSAST paper, patch-vs-frame table).
PAPER = {
    "ssast_patch": {"keyword": 96.0, "speaker": 64.3, "events": 88.8},
    "ssast_frame": {"keyword": 96.7, "speaker": 80.8, "events": 85.9},
    "mae_ast_patch": {"keyword": 95.0, "speaker": 37.6, "events": 88.6},
    "mae_ast_frame": {"keyword": 96.6, "speaker": 58.6, "events": 88.0},
    "scratch_patch": {"keyword": 87.2, "speaker": 30.1, "events": 41.9},
    "scratch_frame": {"keyword": 91.7, "speaker": 54.9, "events": 53.7},
}


def _arch(layers, dim, heads, decoder_layers=1):
    return {
        "encoder_layers": layers,
        "encoder_embed_dim": dim,
        "encoder_ffn_embed_dim": 4 * dim,
        "encoder_attention_heads": heads,
        "decoder_layers": decoder_layers,
        "decoder_embed_dim": dim,
    }


PRESETS = {
    # the test suite's: every step runs, in seconds, and measures nothing meaningful
    "tiny": dict(
        data=["--num-pretrain", "8", "--num-pretrain-valid", "2", "--keyword-per-class", "1",
              "--keyword-eval-per-class", "1", "--num-speakers", "3", "--speaker-clips", "2",
              "--speaker-eval-clips", "1", "--events-per-class", "1",
              "--events-eval-per-class", "1"],
        arch=_arch(layers=2, dim=32, heads=2),
        pretrain_updates=3, pretrain_validate=2, pretrain_extra=["dataset.max_tokens=200000"],
        finetune_updates=2, finetune_validate=1,
        finetune_extra=["dataset.batch_size=4", "dataset.batch_size_valid=8"],
        seeds=(1,),
    ),
    # 2 CPU cores, under an hour in all (docs/replication.md)
    "small": dict(
        data=[],
        arch=_arch(layers=3, dim=128, heads=4),
        pretrain_updates=2000, pretrain_validate=250, pretrain_extra=[],
        finetune_updates=500, finetune_validate=100, finetune_extra=[],
        seeds=(1, 2),
    ),
    # one GPU: five times the data, the paper's 3:1 ratio of encoder to decoder layers
    "large": dict(
        data=["--large"],
        arch=_arch(layers=6, dim=384, heads=6, decoder_layers=2),
        pretrain_updates=10000, pretrain_validate=500,
        pretrain_extra=["common.amp=true", "dataset.num_workers=4", "lr_scheduler.warmup_updates=1000"],
        finetune_updates=2000, finetune_validate=100,
        finetune_extra=["common.amp=true", "dataset.num_workers=4", "dataset.batch_size=32"],
        seeds=(1, 2, 3),
    ),
}

BEGIN_MARK = "<!-- generated by scripts/run_local_table1.py: begin -->"
END_MARK = "<!-- generated by scripts/run_local_table1.py: end -->"


# ----------------------------------------------------------------------------------------------
# Small helpers


def load_script(name):
    """A module of scripts/ (they are not a package)."""
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, REPO / "scripts" / f"{name}.py")
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return sys.modules[name]


def shown(path) -> str:
    """A path as commands show it: relative to the repository when inside it."""
    path = Path(path).resolve()
    try:
        return str(path.relative_to(REPO))
    except ValueError:
        return str(path)


def write_json(path: Path, content):
    """Atomically, so that a result file exists only when complete."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.tmp")
    temporary.write_text(json.dumps(content, indent=1) + "\n")
    os.replace(temporary, path)


def read_json(path: Path):
    return json.loads(Path(path).read_text())


def now_iso():
    return datetime.datetime.now().astimezone().isoformat(timespec="seconds")


class RunFailed(RuntimeError):
    pass


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


# ----------------------------------------------------------------------------------------------
# Commands


def pretrain_command(row: Row, config, data_dir: Path, run_dir: Path):
    overrides = [f"model.{key}={value}" for key, value in config["arch"].items()]
    return [
        HYDRA_TRAIN, "--config-dir", "config/pretrain", "--config-name", row.pretrain_config,
        SEARCHPATH, "+table1=pretrain", "common.user_dir=mae_ast_plugin",
        f"task.data={shown(data_dir)}", f"hydra.run.dir={shown(run_dir)}",
        f"optimization.max_update={config['pretrain_updates']}",
        f"dataset.validate_interval_updates={config['pretrain_validate']}",
        *overrides, *config["pretrain_extra"],
    ]


def encoder_overrides(row: Row, config, pretrained: Optional[Path]):
    """The pretrained checkpoint, or for a scratch row the same encoder, untrained."""
    if pretrained is not None:
        return [f"model.pretrained_checkpoint={shown(pretrained)}"]
    encoder = {k: v for k, v in config["arch"].items() if not k.startswith("decoder_")}
    encoder.update(TOKENS[row.tokens], encoder_layerdrop=0.0)
    return ["+init=scratch", *(f"model.encoder.{k}={v}" for k, v in encoder.items())]


def finetune_command(row: Row, task: Task, config, data_dir: Path, run_dir: Path, seed: int,
                     pretrained: Optional[Path]):
    eval_crop = "null" if task.eval_crop_s is None else task.eval_crop_s
    return [
        HYDRA_TRAIN, "--config-dir", "config/finetune", "--config-name", "esc50",
        SEARCHPATH, "+table1=finetune", "common.user_dir=mae_ast_plugin",
        f"task.data={shown(data_dir)}", f"hydra.run.dir={shown(run_dir)}", f"common.seed={seed}",
        f"optimization.max_update={config['finetune_updates']}",
        f"dataset.validate_interval_updates={config['finetune_validate']}",
        f"checkpoint.save_interval_updates={config['finetune_validate']}",
        f"task.max_sample_len_s={task.train_crop_s}", f"task.eval_max_sample_len_s={eval_crop}",
        *encoder_overrides(row, config, pretrained), *config["finetune_extra"],
    ]


# ----------------------------------------------------------------------------------------------
# Steps


def build_data(args, config):
    """The benchmark (a no-op when it is already built with the same parameters)."""
    make = load_script("make_local_benchmark")
    record = make.main(make.get_parser().parse_args(
        ["--out", str(args.audio), "--manifests", str(args.manifests), *config["data"]]
    ))
    shown_paths = ["--out", shown(args.audio), "--manifests", shown(args.manifests)]
    return record, ["python", "scripts/make_local_benchmark.py", *shown_paths, *config["data"]]


def training_log(run_dir: Path):
    """fairseq's json log records of a run (``mae_ast_plugin.plotting.read_training_log``)."""
    from mae_ast_plugin.plotting import read_training_log

    return read_training_log(str(run_dir / "hydra_train.log"))


def pretrain(args, config, row_key: str) -> dict:
    row = ROWS[row_key]
    run_dir = args.out / "pretrain" / row_key
    result_path = run_dir / "result.json"
    if result_path.exists():
        print(f"pretraining {row.label}: done before ({shown(result_path)})", flush=True)
        return read_json(result_path)
    fresh_run_dir(run_dir)
    cmd = pretrain_command(row, config, args.manifests / "pretrain", run_dir)
    print(f"pretraining {row.label} ...", flush=True)
    measured = run_measured(cmd, run_dir / "console.log", threads=args.threads_per_run)
    log = training_log(run_dir)
    # epoch records: "train_train_wall" is the epoch's summed step time ("train_wall" there is
    # the wall clock since the start)
    updates = int(max(r["train_num_updates"] for r in log["train"]))
    step_time = sum(r["train_train_wall"] for r in log["train"]) / updates
    valid = log["valid"][-1] if log["valid"] else {}
    result = {
        "row": row_key,
        "label": row.label,
        "command": shlex.join(["fairseq-hydra-train", *cmd[1:]]),
        "updates": updates,
        "step_time_s": round(step_time, 4),
        "valid_loss": valid.get("valid_loss"),
        "valid_loss_recon": valid.get("valid_loss_recon"),
        "valid_loss_infonce": valid.get("valid_loss_infonce"),
        "checkpoint": str(run_dir / "checkpoints" / "checkpoint_last.pt"),
        "finished": now_iso(),
        **measured,
    }
    write_json(result_path, result)
    print(f"  {row.label}: {measured['cpu_s']:.0f} s CPU, {measured['wall_s']:.0f} s wall, "
          f"peak RSS {measured['peak_rss_mb']:.0f} MB", flush=True)
    return result


def baseline_rss(args) -> dict:
    """Peak RSS of an interpreter that only imports torch, fairseq and the plugin: the part of a
    training process's RSS that is not the model, activations or data."""
    path = args.out / "baseline_rss.json"
    if path.exists():
        return read_json(path)
    code = "import torch, fairseq, hydra, mae_ast_plugin"
    measured = run_measured([sys.executable, "-c", code], args.out / "baseline_rss.log", 1)
    write_json(path, measured)
    return measured


EVALUATE_LOCK = threading.Lock()  # one in-process evaluation at a time


def finetune(args, config, row_key: str, task_key: str, seed: int, pretrained) -> dict:
    row, task = ROWS[row_key], TASKS[task_key]
    run_dir = args.out / "finetune" / row_key / task_key / f"seed{seed}"
    result_path = run_dir / "result.json"
    if result_path.exists():
        return read_json(result_path)
    fresh_run_dir(run_dir)
    data_dir = args.manifests / task_key
    cmd = finetune_command(row, task, config, data_dir, run_dir, seed, pretrained)
    measured = run_measured(cmd, run_dir / "console.log", threads=args.threads_per_run)
    checkpoint = run_dir / "checkpoints" / "checkpoint_best.pt"
    with EVALUATE_LOCK:
        from mae_ast_plugin.evaluation.evaluate import evaluate

        metrics = evaluate(
            checkpoint, str(data_dir), split="test", out=run_dir / "metrics.json", device="cpu",
            model_name=row.label,
        )
    valid = training_log(run_dir)["valid"]
    result = {
        "row": row_key,
        "task": task_key,
        "seed": seed,
        "command": shlex.join(["fairseq-hydra-train", *cmd[1:]]),
        "test_accuracy": metrics["value"],
        "test_clips": metrics["num_clips"],
        "best_valid_accuracy": max((r["valid_accuracy"] for r in valid), default=None),
        "finished": now_iso(),
        **measured,
    }
    write_json(result_path, result)
    print(f"  {row.label:<22} {task.label:<13} seed {seed}: test accuracy "
          f"{100 * metrics['value']:.1f}% ({measured['wall_s']:.0f} s)", flush=True)
    return result


# ----------------------------------------------------------------------------------------------
# Results


def summarize(values, test_clips):
    values = np.asarray(values, dtype=float)
    mean = float(values.mean())
    std = float(values.std(ddof=1)) if len(values) > 1 else 0.0
    # standard error of the mean over seeds, plus the test set's own sampling error (every seed
    # is scored on the same clips, so the seed spread does not contain it)
    se = float(np.sqrt(std**2 / len(values) + mean * (1 - mean) / test_clips))
    return {"values": values.tolist(), "mean": mean, "std": std, "se": se, "n": len(values),
            "test_clips": test_clips}


def collect(finetuned, pretrained, baseline, config, rows, seeds) -> dict:
    table = {}
    for row_key in rows:
        table[row_key] = {}
        for task_key in TASKS:
            runs = [r for r in finetuned if r["row"] == row_key and r["task"] == task_key]
            table[row_key][task_key] = summarize(
                [r["test_accuracy"] for r in runs], runs[0]["test_clips"]
            )
    return {
        "rows": {k: ROWS[k].label for k in rows},
        "tasks": {k: TASKS[k].label for k in TASKS},
        "seeds": list(seeds),
        "accuracy": table,
        "pretraining": pretrained,
        "baseline_rss_mb": baseline["peak_rss_mb"],
        "finetune_runs": finetuned,
        "config": {k: v for k, v in config.items() if k != "data"},
    }


def plot_losses(pretrained: dict, args, path: Path):
    """Pretraining loss curves of every pretrained row: training loss and the two validation
    terms, against updates."""
    import logging

    logging.getLogger("matplotlib").setLevel(logging.WARNING)
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = (("train_inner", "loss", "training loss (10 x MSE + InfoNCE)"),
              ("valid", "valid_loss_recon", "valid reconstruction MSE"),
              ("valid", "valid_loss_infonce", "valid InfoNCE (nats)"))
    figure, axes = plt.subplots(1, 3, figsize=(11, 3.1))
    for row_key in pretrained:
        log = training_log(args.out / "pretrain" / row_key)
        style = "-" if ROWS[row_key].tokens == "patch" else "--"
        for ax, (kind, key, title) in zip(axes, panels):
            records = log[kind]
            x_key = "num_updates" if kind == "train_inner" else "valid_num_updates"
            ax.plot([r[x_key] for r in records], [r[key] for r in records], style,
                    marker="." if kind == "valid" else None, label=ROWS[row_key].label)
            ax.set_title(title, fontsize=9)
            ax.set_xlabel("updates", fontsize=8)
            ax.tick_params(labelsize=7)
            ax.grid(alpha=0.3)
    axes[0].legend(fontsize=7)
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.stem}.tmp.png")
    figure.savefig(temporary, dpi=80)
    os.replace(temporary, path)
    plt.close(figure)


def machine_info() -> dict:
    cpu = "unknown"
    with open("/proc/cpuinfo") as handle:
        for line in handle:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    memory_gib = None
    with open("/proc/meminfo") as handle:
        for line in handle:
            if line.startswith("MemTotal"):
                memory_gib = round(int(line.split()[1]) / 2**20, 1)
    import torch

    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "usable_cores": len(os.sched_getaffinity(0)),
        "memory_gib": memory_gib,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "platform": platform.platform(),
    }


# ----------------------------------------------------------------------------------------------
# Report


def pct(cell):
    if cell["n"] > 1:
        return f"{100 * cell['mean']:.1f} ± {100 * cell['std']:.1f}"
    return f"{100 * cell['mean']:.1f}"


def difference(results, row_a, row_b, task):
    """(a - b in points, its standard error in points, clear?): a difference is called clear
    when it exceeds twice its standard error."""
    a, b = results["accuracy"][row_a][task], results["accuracy"][row_b][task]
    diff = 100 * (a["mean"] - b["mean"])
    se = 100 * float(np.hypot(a["se"], b["se"]))
    return diff, se, abs(diff) > 2 * se


def describe_difference(results, row_a, row_b, task):
    diff, se, clear = difference(results, row_a, row_b, task)
    verdict = "clear" if clear else "within noise"
    return f"{diff:+.1f} ± {se:.1f} ({verdict})"


def paper_difference(row_a, row_b, task):
    return f"{PAPER[row_a][task] - PAPER[row_b][task]:+.1f}"


def results_table(results) -> list:
    pre = results["pretraining"]
    baseline = results["baseline_rss_mb"]
    header = ("| Model | " + " | ".join(f"{t.label} ({t.paper_column}-like)" for t in TASKS.values())
              + " | Pretraining CPU (s) | wall (s) | step (s / update) | Peak RSS (MB) |")
    lines = [header, "|" + "---|" * (len(TASKS) + 5)]
    for row_key, label in results["rows"].items():
        cells = [pct(results["accuracy"][row_key][task]) for task in TASKS]
        if row_key in pre:
            p = pre[row_key]
            cells += [f"{p['cpu_s']:.0f}", f"{p['wall_s']:.0f}", f"{p['step_time_s']:.3f}",
                      f"{p['peak_rss_mb']:.0f} ({p['peak_rss_mb'] - baseline:+.0f})"]
        else:
            cells += ["-"] * 4
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return lines


def paper_table(results) -> list:
    lines = ["| Model (paper) | " + " | ".join(t.paper_column for t in TASKS.values()) + " |",
             "|" + "---|" * (len(TASKS) + 1)]
    names = {"ssast_patch": "SSAST Base Patch (12 layers)",
             "ssast_frame": "SSAST Base Frame (12 layers)",
             "mae_ast_patch": "MAE-AST Patch (6 layers)", "mae_ast_frame": "MAE-AST Frame (6 layers)",
             "scratch_patch": "Patch, from scratch (SSAST paper)",
             "scratch_frame": "Frame, from scratch (SSAST paper)"}
    for row_key in results["rows"]:
        lines.append(f"| {names[row_key]} | "
                     + " | ".join(f"{PAPER[row_key][t]:.1f}" for t in TASKS) + " |")
    return lines


def ratio(pre, slow, fast, key, offset=0.0) -> str:
    """``slow / fast`` of a pretraining measurement (minus ``offset``) as "2.10×", or n/a when
    the denominator is not positive."""
    denominator = pre[fast][key] - offset
    return f"{(pre[slow][key] - offset) / denominator:.2f}×" if denominator > 0 else "n/a"


def claims(results) -> list:
    rows, pre = results["rows"], results["pretraining"]
    lines = ["Differences are in accuracy points, ± their standard error (seeds and test-set "
             "sampling); \"clear\" means larger than twice the standard error.  The paper's "
             "difference for the same cells follows in brackets.", ""]
    lines.append("**Claim 1: MAE-AST pretraining helps compared with no pretraining.**")
    for tokens in TOKENS:
        mae, scratch = f"mae_ast_{tokens}", f"scratch_{tokens}"
        if mae in rows and scratch in rows:
            parts = [f"{TASKS[t].label.lower()} {describe_difference(results, mae, scratch, t)} "
                     f"[{paper_difference(mae, scratch, t)}]" for t in TASKS]
            lines.append(f"- {rows[mae]} − {rows[scratch]}: " + "; ".join(parts) + ".")
    lines += ["", "**Claim 2: MAE-AST matches SSAST's accuracy while pretraining several times "
              "faster (paper: 3× faster, 2× less memory).**"]
    baseline = results["baseline_rss_mb"]
    for tokens in TOKENS:
        mae, ssast = f"mae_ast_{tokens}", f"ssast_{tokens}"
        if mae in pre and ssast in pre:
            parts = [f"{TASKS[t].label.lower()} {describe_difference(results, mae, ssast, t)} "
                     f"[{paper_difference(mae, ssast, t)}]" for t in TASKS]
            lines.append(
                f"- {rows[mae]} − {rows[ssast]}: " + "; ".join(parts) + f".  SSAST's "
                f"pretraining took {ratio(pre, ssast, mae, 'cpu_s')} MAE-AST's CPU time "
                f"({ratio(pre, ssast, mae, 'wall_s')} its wall time, "
                f"{ratio(pre, ssast, mae, 'step_time_s')} its time per training step), its peak RSS "
                f"{ratio(pre, ssast, mae, 'peak_rss_mb')} "
                f"({ratio(pre, ssast, mae, 'peak_rss_mb', baseline)} above the "
                f"{baseline:.0f} MB of an idle interpreter with torch and fairseq)."
            )
    lines += ["", "**Claim 3: frame tokens do better on speaker identity, patch tokens on "
              "non-speech sounds.**"]
    for model in ("mae_ast", "ssast", "scratch"):
        frame, patch = f"{model}_frame", f"{model}_patch"
        if frame in rows and patch in rows:
            lines.append(
                f"- {rows[frame]} − {rows[patch]}: speakers "
                f"{describe_difference(results, frame, patch, 'speaker')} "
                f"[{paper_difference(frame, patch, 'speaker')}]; sound events "
                f"{describe_difference(results, frame, patch, 'events')} "
                f"[{paper_difference(frame, patch, 'events')}]; keywords "
                f"{describe_difference(results, frame, patch, 'keyword')} "
                f"[{paper_difference(frame, patch, 'keyword')}]."
            )
    return lines


def generated_report(results) -> str:
    run, machine, corpus = results["run"], results["machine"], results["corpus"]
    config, pre = results["config"], results["pretraining"]
    counts = corpus["counts"]
    loads = run["load_1min"] or [float("nan")]  # nan: no session of this run was recorded
    arch = config["arch"]
    lines = [
        BEGIN_MARK,
        f"Preset `{run['preset']}`; finished {run['finished']}; total run time "
        f"{run['total_wall_s'] / 60:.1f} min over {len(run['sessions'])} session(s) "
        f"(data {run['data_s']:.0f} s as measured when built).",
        "",
        f"Machine: {machine['cpu']}, {machine['usable_cores']} usable cores "
        f"({machine['cores']} online), {machine['memory_gib']} GiB RAM; Python "
        f"{machine['python']}, torch {machine['torch']}, {machine['platform']}.  1-minute load "
        f"average during the run: mean {np.mean(loads):.1f}, max {np.max(loads):.1f} "
        f"({len(loads)} samples; this experiment alone keeps it near {run['own_load']}).",
        "",
        "Test accuracy (%), mean ± sample standard deviation over fine-tuning seeds "
        f"{', '.join(map(str, results['seeds']))}; each pretraining ran once.  Pretraining cost "
        "is the training process's CPU time (user + system, start-up and validation included; "
        "with one thread per run it hardly depends on what else the machine runs, unlike the "
        "wall time), fairseq's time per training step (`train_wall` summed over the run, per "
        "update: model and optimizer only, no data loading) and peak RSS (in brackets: "
        f"above the {results['baseline_rss_mb']:.0f} MB of an interpreter that only imports "
        "torch, fairseq and the plugin).",
        "",
        *results_table(results),
        "",
        "The paper's numbers for the cells these stand in for (Table 1; scratch rows from the "
        "SSAST paper):",
        "",
        *paper_table(results),
        "",
        *claims(results),
        "",
        "### Setup",
        "",
        f"- Data (`scripts/make_local_benchmark.py`, seed {corpus['params']['seed']}): "
        f"pretraining {counts['pretrain']['train']} clips "
        f"({corpus['durations_s']['pretrain']['train'] / 60:.0f} min; "
        f"half speech, half synthetic sound scenes), valid {counts['pretrain']['valid']}; "
        + "; ".join(
            f"{TASKS[t].label.lower()} {counts[t]['classes']} classes, train/valid/test "
            f"{counts[t]['train']}/{counts[t]['valid']}/{counts[t]['test']} clips" for t in TASKS
        ) + ".",
        f"- Encoder {arch['encoder_layers']} layers × {arch['encoder_embed_dim']} wide "
        f"({arch['encoder_attention_heads']} heads, FFN {arch['encoder_ffn_embed_dim']}); "
        f"MAE-AST decoder {arch['decoder_layers']} layer(s) × {arch['decoder_embed_dim']}; "
        f"75% masking; pretraining {config['pretrain_updates']} updates for every row "
        f"(`config/local/table1/pretrain.yaml`), fine-tuning {config['finetune_updates']} "
        f"updates with validation every {config['finetune_validate']} "
        "(`config/local/table1/finetune.yaml`), checkpoint chosen on valid accuracy, test "
        "scored once.",
        f"- Pretraining and fine-tuning ran {run['jobs']} processes at a time with "
        f"{run['threads_per_run']} thread(s) each.",
        "",
        "### Commands",
        "",
        "From the repository root, with the virtual environment's `python` and "
        "`fairseq-hydra-train`:",
        "",
        "```bash",
        shlex.join(run["data_command"]),
        shlex.join(run["command"]),
        "```",
        "",
        "<details><summary>The runs it makes</summary>",
        "",
        "Fine-tuning runs once per seed (`common.seed=<seed>`); each is scored by "
        "`mae-ast-evaluate <run>/checkpoints/checkpoint_best.pt <task data> --split test "
        "--out <run>/metrics.json`, called in-process.",
        "",
        "```bash",
        *(p["command"] for p in pre.values()),
    ]
    first_seed = results["seeds"][0]
    lines += [r["command"].replace(f"common.seed={first_seed}", "common.seed=<seed>")
              .replace(f"seed{first_seed}", "seed<seed>")
              for r in results["finetune_runs"] if r["seed"] == first_seed]
    lines += ["```", "", "</details>", END_MARK]
    return "\n".join(lines)


REPORT_HEAD = """# Table 1 in miniature

The MAE-AST paper's Table 1 comparisons, replayed on a synthetic benchmark this machine builds
(`scripts/make_local_benchmark.py`) with models and schedules small enough for 2 CPU cores
(`scripts/run_local_table1.py`).  The script rewrites the part between its `generated` markers
on every run; the discussion after it is written by hand.

![Pretraining loss curves]({figure})

"""

DISCUSSION_PLACEHOLDER = """
## Discussion

(to be written after looking at the numbers above)
"""


def write_report(results, path: Path, figure: Path):
    generated = generated_report(results)
    if path.exists() and BEGIN_MARK in path.read_text() and END_MARK in path.read_text():
        text = path.read_text()
        before, rest = text.split(BEGIN_MARK, 1)
        after = rest.split(END_MARK, 1)[1]
        text = before + generated + after
    else:
        figure_link = os.path.relpath(figure, path.parent)
        text = REPORT_HEAD.format(figure=figure_link) + generated + "\n" + DISCUSSION_PLACEHOLDER
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.tmp")
    temporary.write_text(text)
    os.replace(temporary, path)


# ----------------------------------------------------------------------------------------------
# Main


def get_parser():
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--preset", choices=sorted(PRESETS), default="small")
    parser.add_argument("--out", type=Path, default=None,
                        help="run directory (default: outputs/local_table1/<preset>)")
    parser.add_argument("--manifests", type=Path, default=None,
                        help="benchmark manifests (default: manifests/local, tiny: inside --out)")
    parser.add_argument("--audio", type=Path, default=None,
                        help="benchmark audio (default: data/local, tiny: inside --out)")
    parser.add_argument("--report", type=Path, default=REPO / "docs" / "replication.md")
    parser.add_argument("--figure", type=Path, default=REPO / "docs" / "replication_losses.png")
    parser.add_argument("--rows", nargs="+", choices=list(ROWS), default=list(ROWS))
    parser.add_argument("--seeds", nargs="+", type=int, default=None,
                        help="fine-tuning seeds (default: the preset's)")
    parser.add_argument("--jobs", type=int, default=len(os.sched_getaffinity(0)),
                        help="training runs at a time (each gets cores / jobs threads)")
    return parser


def resolve_args(args):
    if args.out is None:
        args.out = REPO / "outputs" / "local_table1" / args.preset
    inside = args.preset == "tiny"  # the test preset keeps its small data to itself
    if args.manifests is None:
        args.manifests = args.out / "manifests" if inside else REPO / "manifests" / "local"
    if args.audio is None:
        args.audio = args.out / "audio" if inside else REPO / "data" / "local"
    args.out, args.manifests, args.audio = (p.resolve() for p in (args.out, args.manifests, args.audio))
    args.threads_per_run = max(1, len(os.sched_getaffinity(0)) // args.jobs)
    return args


def main(argv=None):
    args = resolve_args(get_parser().parse_args(argv))
    config = dict(PRESETS[args.preset])
    seeds = tuple(args.seeds or config["seeds"])
    session_start, started = now_iso(), time.monotonic()
    with LoadMonitor() as load:
        corpus, data_command = build_data(args, config)
        # SSAST and MAE-AST of one token type side by side, so they meet the same load
        pretrain_rows = sorted(
            (k for k in args.rows if ROWS[k].pretrain_config),
            key=lambda k: (list(TOKENS).index(ROWS[k].tokens), not k.startswith("ssast")),
        )
        with ThreadPoolExecutor(max_workers=args.jobs) as pool:
            done = dict(zip(pretrain_rows, pool.map(lambda k: pretrain(args, config, k), pretrain_rows)))
        pretrained = {k: done[k] for k in args.rows if k in done}
        baseline = baseline_rss(args)
        print(f"fine-tuning {len(args.rows)} rows x {len(TASKS)} tasks x {len(seeds)} seeds, "
              f"{args.jobs} at a time ...", flush=True)
        with ThreadPoolExecutor(max_workers=args.jobs) as pool:
            futures = [
                pool.submit(finetune, args, config, row_key, task_key, seed,
                            Path(pretrained[row_key]["checkpoint"]) if row_key in pretrained else None)
                for seed in seeds for row_key in args.rows for task_key in TASKS
            ]
            finetuned = [future.result() for future in futures]

    # A session counts towards the run time when it built or trained something; one that only
    # rereads finished results (to redo the report) does not.
    sessions_path = args.out / "sessions.json"
    sessions = read_json(sessions_path) if sessions_path.exists() else []
    finished = [corpus.get("built", "")] + [r["finished"] for r in [*pretrained.values(), *finetuned]]
    if max(finished) >= session_start:
        sessions.append({"start": session_start, "end": now_iso(),
                         "wall_s": round(time.monotonic() - started, 1),
                         "load_1min": load.samples})
        write_json(sessions_path, sessions)

    results = collect(finetuned, pretrained, baseline, config, args.rows, seeds)
    results["corpus"] = corpus
    results["machine"] = machine_info()
    results["run"] = {
        "preset": args.preset,
        "command": ["python", "scripts/run_local_table1.py",
                    *(argv if argv is not None else sys.argv[1:])],
        "data_command": data_command,
        "finished": sessions[-1]["end"] if sessions else now_iso(),
        "sessions": sessions,
        "total_wall_s": sum(s["wall_s"] for s in sessions),
        "data_s": corpus["build_seconds"],
        "load_1min": [x for s in sessions for x in s["load_1min"]],
        "own_load": args.jobs * args.threads_per_run,
        "jobs": args.jobs,
        "threads_per_run": args.threads_per_run,
    }
    write_json(args.out / "results.json", results)
    if pretrained:
        plot_losses(pretrained, args, args.figure)
    write_report(results, args.report, args.figure)
    print(f"results: {shown(args.out / 'results.json')}\nreport: {shown(args.report)}")
    print("\n".join(results_table(results)))
    return results


if __name__ == "__main__":
    main()
