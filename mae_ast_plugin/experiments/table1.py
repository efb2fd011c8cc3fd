"""``mae-ast-table1``: Table 1 of the MAE-AST paper in miniature, on data this machine makes.

Examples::

    mae-ast-table1                 # the small preset: about an hour on 2 CPU cores
    mae-ast-table1 --preset large  # more data, a bigger model, for a GPU

Steps, each skipped when its result file exists and was made from the same command and inputs
(configs, data, pretrained checkpoint: ``runs.run_inputs``), so an interrupted run continues
where it stopped; a half-finished run directory, or one made from other inputs, is deleted and
the run redone, so timings stay whole and no result outlives a change of its inputs:

1. data: ``mae-ast-make-table1-corpus`` (pretraining corpus; keyword, speaker and
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
4. frozen-encoder linear probes (``mae-ast-probe``; ``mae_ast_plugin.evaluation.probe``) of
   every pretrained row's encoder on every task, and for the no-pretraining rows the same
   encoder at random initialisation (seed 1): per layer, C and the best layer chosen on valid,
   test scored once; result: ``{out}/probe/{row}/{task}/probe.json``;
5. ``{out}/results.json``, the pretraining loss curves (``--figure``) and the report
   (``--report``).  The report's text between the ``generated`` markers is rewritten; text
   outside them (the discussion) is kept.

This module is the driver (commands, steps, results.json); the rows, tasks and presets are
table1_design.py, the probe step table1_probe.py, the figure and the report table1_report.py,
the measured runs runs.py.  It runs from the repository checkout (config/, outputs/, docs/),
and says so elsewhere.
"""

import os
import shlex
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from mae_ast_plugin.cli import command_parser
from mae_ast_plugin.experiments.runs import (
    REPO,
    LoadMonitor,
    changed_inputs,
    fresh_run_dir,
    now_iso,
    read_json,
    require_checkout,
    run_inputs,
    run_measured,
    shown,
    write_json,
)
from mae_ast_plugin.experiments.table1_design import (
    PRESETS,
    ROWS,
    TASKS,
    TOKENS,
    Row,
    Task,
)
from mae_ast_plugin.experiments.table1_probe import probe

__all__ = ["get_parser", "main", "run_table1"]

HYDRA_TRAIN = str(Path(sys.executable).parent / "fairseq-hydra-train")
SEARCHPATH = "hydra.searchpath=[file://config/local]"  # relative: commands run from REPO


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


def encoder_overrides(row: Row, config, pretrained: Path | None):
    """The pretrained checkpoint, or for a scratch row the same encoder, untrained."""
    if pretrained is not None:
        return [f"model.pretrained_checkpoint={shown(pretrained)}"]
    encoder = {k: v for k, v in config["arch"].items() if not k.startswith("decoder_")}
    encoder.update(TOKENS[row.tokens], encoder_layerdrop=0.0)
    return ["+init=scratch", *(f"model.encoder.{k}={v}" for k, v in encoder.items())]


def finetune_command(row: Row, task: Task, config, data_dir: Path, run_dir: Path, seed: int,
                     pretrained: Path | None):
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
    from mae_ast_plugin.corpora import table1 as make

    record = make.build(make.get_parser().parse_args(
        ["--out", str(args.audio), "--manifests", str(args.manifests), *config["data"]]
    ))
    shown_paths = ["--out", shown(args.audio), "--manifests", shown(args.manifests)]
    return record, ["mae-ast-make-table1-corpus", *shown_paths, *config["data"]]


def training_log(run_dir: Path):
    """fairseq's json log records of a run (``mae_ast_plugin.plotting.read_training_log``)."""
    from mae_ast_plugin.plotting import read_training_log

    return read_training_log(str(run_dir / "hydra_train.log"))


def done_with(result_path: Path, inputs: dict) -> bool:
    """Whether a step's result file exists and was made from the same command and inputs
    (``run_inputs``); one made from others is reported and the step redone."""
    if not result_path.exists():
        return False
    changed = changed_inputs(read_json(result_path).get("inputs"), inputs)
    if changed:
        print(f"  {shown(result_path)} was made from other inputs ({changed} changed): redoing "
              "it", flush=True)
        return False
    return True


def pretrain(args, config, row_key: str) -> dict:
    row = ROWS[row_key]
    run_dir = args.out / "pretrain" / row_key
    result_path = run_dir / "result.json"
    cmd = pretrain_command(row, config, args.manifests / "pretrain", run_dir)
    inputs = run_inputs(cmd)
    if done_with(result_path, inputs):
        print(f"pretraining {row.label}: done before ({shown(result_path)})", flush=True)
        return read_json(result_path)
    fresh_run_dir(run_dir)
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
        "inputs": inputs,
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
    data_dir = args.manifests / task_key
    cmd = finetune_command(row, task, config, data_dir, run_dir, seed, pretrained)
    inputs = run_inputs(cmd)
    if done_with(result_path, inputs):
        return read_json(result_path)
    fresh_run_dir(run_dir)
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
        "inputs": inputs,
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


def collect(finetuned, pretrained, baseline, config, rows, seeds, probes=None) -> dict:
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
        "probe": probes or {},
        "pretraining": pretrained,
        "baseline_rss_mb": baseline["peak_rss_mb"],
        "finetune_runs": finetuned,
        "config": {k: v for k, v in config.items() if k != "data"},
    }


# ----------------------------------------------------------------------------------------------
# Main


def get_parser():
    parser = command_parser("mae-ast-table1", __doc__)
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
    args.out, args.manifests, args.audio = (
        p.resolve() for p in (args.out, args.manifests, args.audio)
    )
    args.threads_per_run = max(1, len(os.sched_getaffinity(0)) // args.jobs)
    return args


def run_table1(argv=None) -> dict:
    """Every step of the experiment for the command line ``argv``; returns results.json's
    content."""
    args = resolve_args(get_parser().parse_args(argv))
    require_checkout("mae-ast-table1")
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
            trained = pool.map(lambda k: pretrain(args, config, k), pretrain_rows)
            done = dict(zip(pretrain_rows, trained, strict=True))
        pretrained = {k: done[k] for k in args.rows if k in done}
        baseline = baseline_rss(args)
        print(f"probing {len(args.rows)} frozen encoders x {len(TASKS)} tasks ...", flush=True)
        probes = {row_key: {task_key: probe(args, row_key, task_key, pretrained)
                            for task_key in TASKS} for row_key in args.rows}
        print(f"fine-tuning {len(args.rows)} rows x {len(TASKS)} tasks x {len(seeds)} seeds, "
              f"{args.jobs} at a time ...", flush=True)
        with ThreadPoolExecutor(max_workers=args.jobs) as pool:
            futures = [
                pool.submit(
                    finetune, args, config, row_key, task_key, seed,
                    Path(pretrained[row_key]["checkpoint"]) if row_key in pretrained else None,
                )
                for seed in seeds for row_key in args.rows for task_key in TASKS
            ]
            finetuned = [future.result() for future in futures]

    # A session counts towards the run time when it built or trained something; one that only
    # rereads finished results (to redo the report) does not.
    sessions_path = args.out / "sessions.json"
    sessions = read_json(sessions_path) if sessions_path.exists() else []
    runs = [*pretrained.values(), *finetuned]
    finished = [corpus.get("built", "")] + [r["finished"] for r in runs]
    if max(finished) >= session_start:
        sessions.append({"start": session_start, "end": now_iso(),
                         "wall_s": round(time.monotonic() - started, 1),
                         "load_1min": load.samples})
        write_json(sessions_path, sessions)

    from mae_ast_plugin.bench.report import machine_info
    from mae_ast_plugin.experiments.table1_report import (
        plot_losses,
        probe_table,
        results_table,
        write_report,
    )

    results = collect(finetuned, pretrained, baseline, config, args.rows, seeds, probes)
    results["corpus"] = corpus
    results["machine"] = machine_info()
    results["run"] = {
        "preset": args.preset,
        "command": ["mae-ast-table1",
                    *(argv if argv is not None else sys.argv[1:])],
        "data_command": data_command,
        # with no recorded session (all interrupted), the last result's own time
        "finished": sessions[-1]["end"] if sessions else max(finished),
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
    print("\n".join(probe_table(results)))
    return results


def main(argv=None):
    run_table1(argv)
    return 0


if __name__ == "__main__":
    sys.exit(main())
