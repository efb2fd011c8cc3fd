"""``mae-ast-demo``: the main job on the built-in demo data (what `make demo` runs).

1. builds the synthetic speech corpus (``mae-ast-make-demo-corpus``; skipped if already built),
2. pretrains a small MAE-AST on it with fairseq-hydra-train (config/pretrain/demo.yaml),
3. plots the loss curves and a masked reconstruction of a held-out clip,
4. probes the frozen pretrained encoder and the same architecture at random initialisation
   (mae-ast-probe: a linear classifier per layer on mean-pooled features; the two side by side)
   on the keyword task, whose valid and test voices are absent from its train split,
5. fine-tunes on the keyword task twice with the same budget, from the pretrained checkpoint
   and from scratch (config/finetune/demo_keyword.yaml), the two runs side by side with one
   core each, and scores both on the test split,
6. prints where everything is, the validation loss at the first and last evaluation (it fails
   if pretraining did not lower it clearly), each test accuracy with its standard error, whether
   pretraining's gain exceeds twice the standard error of the difference, and the wall time of
   each stage.

Re-running skips the training runs that finished with the same command and inputs
(``finished.json`` in the run directory: the command, and the content of the configs, data and
checkpoints it names, audio files by size and modification time) and continues interrupted ones
from their checkpoints; a run whose command or inputs changed is started over.  It runs from the
repository checkout (the configs and outputs live there).

Examples::

    mae-ast-demo                                      # what `make demo` runs
    mae-ast-demo optimization.max_update=200 --skip-finetune
"""

import json
import os
import shutil
import subprocess
import sys
import threading
import time
from contextlib import contextmanager
from pathlib import Path

from mae_ast_plugin.atomic_io import atomic_write_json
from mae_ast_plugin.cli import command_parser
from mae_ast_plugin.experiments.runs import REPO, changed_inputs, require_checkout, run_inputs

OUT = Path("outputs/demo")
FINISHED = "finished.json"  # in a run directory: the command and inputs that completed it
STARTED = "started.json"  # the command and inputs it was started with
MANIFESTS = Path("manifests/demo")
PRETRAIN_DIR = OUT / "pretrain"


def run(cmd):
    print("+ " + " ".join(str(c) for c in cmd), flush=True)
    subprocess.run([str(c) for c in cmd], cwd=REPO, check=True)


def summarize(line: str):
    """One short line for a fairseq json log record of training or validation, else None."""
    for tag, prefix, key in (("[train_inner]", "train", ""), ("[valid]", "valid", "valid_")):
        if tag in line:
            record = json.loads(line.split(" - ", 1)[1])
            updates = record.get(key + "num_updates")
            wanted = ("loss", "loss_recon", "loss_recon_mean_baseline", "loss_infonce",
                      "infonce_acc", "accuracy")
            shown = [f"{name.replace(key, '')} {value}" for name, value in record.items()
                     if name.replace(key, "") in wanted]
            return f"  {prefix:5s} update {updates:>5}: " + ", ".join(shown)
    return None


def hydra_train(config_dir: str, config_name: str, run_dir: Path, overrides):
    """Run fairseq-hydra-train from the repository root, echoing a summary of each log record."""
    hydra_train_together([(config_dir, config_name, run_dir, overrides)])


def hydra_train_together(runs, threads=None):
    """Run several fairseq-hydra-train jobs at once, ``threads`` intra-op threads each (None:
    torch's default), echoing each log record's summary prefixed with the run directory when
    there is more than one.  On 2 cores, two one-thread runs of the demo's small models finish
    sooner than the same runs one after the other with two threads each.

    ``runs``: tuples (config_dir, config_name, run_dir, overrides).  Raises SystemExit naming
    the log of any run that failed, after printing the last lines of its output.
    """
    env = dict(os.environ, PYTHONWARNINGS="ignore")
    if threads:
        for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
            env[var] = str(threads)
    jobs = []
    for config_dir, config_name, run_dir, overrides in runs:
        cmd = [
            Path(sys.executable).parent / "fairseq-hydra-train",
            "--config-dir", config_dir,
            "--config-name", config_name,
            "common.user_dir=mae_ast_plugin",
            f"hydra.run.dir={run_dir}",
            *overrides,
        ]
        cmd = [str(c) for c in cmd]
        # fairseq resumed from a finished run's checkpoint_last trains one more update (and a
        # fine-tuning run one more epoch), so a finished run is skipped, not resumed
        marker = Path(run_dir) / FINISHED
        inputs = run_inputs(cmd)
        if marker.is_file() and not changed_inputs(json.loads(marker.read_text()), inputs):
            print(f"  {run_dir}: finished by an earlier run of the same command and inputs, "
                  "skipped", flush=True)
            continue
        started = Path(run_dir) / STARTED
        if Path(run_dir).exists():
            # a run of other inputs (finished, or interrupted) would be resumed from its
            # checkpoints: start it over
            recorded = json.loads(started.read_text()) if started.is_file() else None
            changed = changed_inputs(recorded, inputs)
            if changed:
                print(f"  {run_dir}: made from other inputs ({changed} changed): starting it over",
                      flush=True)
                shutil.rmtree(run_dir)
        Path(run_dir).mkdir(parents=True, exist_ok=True)
        atomic_write_json(str(started), inputs)
        print("+ " + " ".join(cmd), flush=True)
        proc = subprocess.Popen(
            cmd, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env,
        )
        prefix = f"[{Path(run_dir).name}] " if len(runs) > 1 else ""
        tail = []
        reader = threading.Thread(target=_echo_summaries, args=(proc, prefix, tail), daemon=True)
        reader.start()
        jobs.append((run_dir, cmd, proc, reader, tail))
    failed = []
    for run_dir, cmd, proc, reader, tail in jobs:
        proc.wait()
        reader.join()
        if proc.returncode != 0:
            sys.stdout.write("".join(tail))
            failed.append(f"{run_dir}/hydra_train.log (exit {proc.returncode})")
        else:
            atomic_write_json(str(Path(run_dir) / FINISHED), run_inputs(cmd))
    if failed:
        raise SystemExit("training failed; log: " + ", ".join(failed))


def _echo_summaries(proc, prefix: str, tail: list):
    """Print the summary of each log record of ``proc``; keep its last 40 lines in ``tail``."""
    for line in proc.stdout:
        tail.append(line)
        del tail[:-40]
        summary = summarize(line)
        if summary:
            print(prefix + summary, flush=True)


STAGE_TIMES = {}


@contextmanager
def stage(name: str):
    """Time one stage of the demo (wall clock), for the summary."""
    started = time.monotonic()
    try:
        yield
    finally:
        STAGE_TIMES[name] = time.monotonic() - started


def comparison_lines(title: str, pretrained: dict, control: dict, control_name: str):
    """Lines that show two test accuracies with their standard errors and say whether the gain
    exceeds twice the standard error of the difference (``probe.gain_over_control``)."""
    from mae_ast_plugin.evaluation.probe import gain_over_control

    result = gain_over_control(pretrained, control)
    verdict = "exceeds" if result["exceeds_2se"] else "does NOT exceed"
    return result, [
        title,
        f"  pretrained encoder: {result['pretrained']:.3f} ± {result['pretrained_se']:.3f}",
        f"  {control_name + ':':19s} {result['control']:.3f} ± {result['control_se']:.3f}",
        f"  gain {result['gain']:+.3f}, standard error of the difference "
        f"{result['se_of_difference']:.3f}: the gain {verdict} twice its standard error",
    ]


def probe_keyword(checkpoint: Path) -> tuple:
    """Frozen-encoder probes of the keyword task (``mae-ast-probe``): of ``checkpoint``'s encoder
    and of the same architecture at random initialisation (seed 1), the two commands side by side
    with one core each.  Returns the two reports' best-layer entries (chosen on valid), each with
    the ``out`` directory of its probe.json and probe.png."""
    script = Path(sys.executable).parent / "mae-ast-probe"
    common = [script, checkpoint, MANIFESTS / "keyword", "--cache-dir", OUT / "probe_cache",
              "--seed", "1", "--no-progress"]
    outs = {False: OUT / "probe_pretrained", True: OUT / "probe_random_init"}
    threads = str(max(1, (os.cpu_count() or 1) // 2))
    env = dict(os.environ, OMP_NUM_THREADS=threads, MKL_NUM_THREADS=threads,
               OPENBLAS_NUM_THREADS=threads, PYTHONWARNINGS="ignore")
    procs = {}
    for random_init, out in outs.items():
        cmd = [str(c) for c in [*common, "--out-dir", out]] + (["--random-init"] * random_init)
        print("+ " + " ".join(cmd), flush=True)
        procs[random_init] = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.PIPE,
                                              stderr=subprocess.STDOUT, text=True)
    for proc in procs.values():
        output = proc.communicate()[0]
        print(output, end="", flush=True)
        if proc.returncode != 0:
            raise SystemExit(f"mae-ast-probe failed (exit {proc.returncode}); output above")
    reports = {key: json.loads((out / "probe.json").read_text()) for key, out in outs.items()}
    return tuple(dict(reports[key]["best"], out=outs[key]) for key in (False, True))


def finetune_keyword(runs: dict) -> dict:
    """Fine-tune on the keyword task once per entry of ``runs`` (name -> extra overrides), the
    runs side by side with one core each, then score each on the test split; returns, per name,
    the test accuracy (``test``) with its binomial standard error (``test_se``) and the number
    of clips."""
    from mae_ast_plugin.evaluation.probe import binomial_se

    data = f"task.data={MANIFESTS / 'keyword'}"
    run_dirs = {name: OUT / f"keyword_{name}" for name in runs}
    threads = max(1, (os.cpu_count() or 1) // len(runs))
    hydra_train_together([("config/finetune", "demo_keyword", run_dirs[name], [data, *overrides])
                          for name, overrides in runs.items()], threads=threads)
    results = {}
    for name, run_dir in run_dirs.items():
        metrics = run_dir / "test_metrics.json"
        run([sys.executable, "-m", "mae_ast_plugin.evaluation.evaluate",
             run_dir / "checkpoints" / "checkpoint_best.pt", MANIFESTS / "keyword",
             "--split", "test", "--out", metrics, "--num-workers", "0"])
        result = json.loads(metrics.read_text())
        value, clips = result["value"], result["num_clips"]
        results[name] = {"test": value, "test_se": binomial_se(value, clips), "clips": clips}
    return results


def encoder_overrides(checkpoint: Path):
    """From-scratch runs get the pretrained model's encoder size, so only the weights differ."""
    from mae_ast_plugin.model_io import encoder_source

    model = encoder_source(checkpoint).model_cfg  # the authors' cfg upgraded too
    keys = ("token_frames", "token_mel_bins", "encoder_layers", "encoder_embed_dim",
            "encoder_ffn_embed_dim", "encoder_attention_heads", "encoder_layerdrop")
    return [f"model.encoder.{key}={model[key]}" for key in keys]


def get_parser():
    parser = command_parser("mae-ast-demo", __doc__)
    parser.add_argument(
        "overrides", nargs="*",
        help="extra hydra overrides for pretraining, e.g. optimization.max_update=200",
    )
    parser.add_argument("--skip-finetune", action="store_true",
                        help="stop after pretraining and the plots")
    return parser


def main(argv=None):
    args = get_parser().parse_args(argv)
    os.chdir(require_checkout("mae-ast-demo"))
    started = time.monotonic()
    load_before = os.getloadavg()
    with stage("corpus"):
        run([sys.executable, "-m", "mae_ast_plugin.corpora.demo",
             "--out", "data/demo", "--manifests", MANIFESTS])
    with stage("pretraining"):
        hydra_train("config/pretrain", "demo", PRETRAIN_DIR, [f"task.data={MANIFESTS}",
                                                              *args.overrides])

    from mae_ast_plugin.plotting import plot_losses

    log = PRETRAIN_DIR / "hydra_train.log"
    checkpoint = PRETRAIN_DIR / "checkpoints" / "checkpoint_last.pt"
    with stage("plots"):
        records = plot_losses(str(log), str(OUT / "pretrain_losses.png"),
                              title="MAE-AST demo pretraining")
        first_clip = (MANIFESTS / "valid.tsv").read_text().splitlines()
        audio = Path(first_clip[0]) / first_clip[1].split("\t")[0]
        run([sys.executable, "-m", "mae_ast_plugin.tools.plot_reconstruction", checkpoint, audio,
             "--out", OUT / "reconstruction.png"])
    with stage("probes"):
        probed, control = probe_keyword(checkpoint)

    valid = records["valid"]
    first, last = valid[0]["valid_loss"], valid[-1]["valid_loss"]
    if not args.skip_finetune:
        with stage("fine-tuning"):
            tuned = finetune_keyword({
                "pretrained": [f"model.pretrained_checkpoint={checkpoint}"],
                "scratch": ["+init=scratch", *encoder_overrides(checkpoint)],
            })
            pretrained, scratch = tuned["pretrained"], tuned["scratch"]

    print()
    print(f"pretrained checkpoint: {checkpoint}")
    print(f"loss curves:           {OUT / 'pretrain_losses.png'}")
    print(f"reconstruction:        {OUT / 'reconstruction.png'}")
    print(f"pretraining log:       {log}")
    print(
        f"validation loss:       {first:.3f} at update {valid[0]['valid_num_updates']:.0f} -> "
        f"{last:.3f} at update {valid[-1]['valid_num_updates']:.0f} "
        f"({(first - last) / first:.0%} lower)"
    )
    recon = [(r["valid_loss_recon"], r["valid_loss_recon_mean_baseline"]) for r in valid
             if "valid_loss_recon_mean_baseline" in r]
    if recon:
        print(f"reconstruction MSE:    {recon[-1][0]:.3f} (valid); predicting each masked token as "
              f"its clip's mean visible token: {recon[-1][1]:.3f}")
    test_clips = len((MANIFESTS / "keyword" / "test.tsv").read_text().splitlines()) - 1
    print(f"keyword spotting, 12 classes, {test_clips} test clips of voices absent from the "
          "keyword train split; accuracy ± standard error:")
    _, lines = comparison_lines(
        f"  linear probe of the frozen encoder (layer chosen on valid: pretrained "
        f"{probed['layer']}, random init {control['layer']}; {probed['out']}, {control['out']}):",
        probed, control, "random init")
    print("\n".join("  " + line if i else line for i, line in enumerate(lines)))
    if not args.skip_finetune:
        _, lines = comparison_lines(
            f"  fine-tuned, same budget ({OUT / 'keyword_pretrained'}, {OUT / 'keyword_scratch'}):",
            pretrained, scratch, "from scratch")
        print("\n".join("  " + line if i else line for i, line in enumerate(lines)))
    print("wall time per stage: " + ", ".join(f"{name} {seconds:.0f} s"
                                              for name, seconds in STAGE_TIMES.items())
          + f"; total {time.monotonic() - started:.0f} s (load average at the start "
          f"{load_before[0]:.1f}, at the end {os.getloadavg()[0]:.1f}, on {os.cpu_count()} CPUs)")
    if not last < 0.9 * first:
        raise SystemExit("pretraining did not lower the validation loss clearly (by 10% or more)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
