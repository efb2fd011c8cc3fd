"""The GPU check: everything issue-level speed claims rest on, measured in one call within a
fixed time budget (``mae_ast_plugin/bench/gpu_check.sh`` sets up a bare machine and runs this).

In order, each step bounded so that one slow step cannot eat the others' time:

1. the machine and the measured bf16 matmul peak (CUDA);
2. a generated corpus of 10-s clips (a third at 44.1 kHz, so the loader resamples);
3. a short real ``fairseq-hydra-train`` run (``mae_ast_patch +run=[gpu1,fast]``, 12 loader
   workers) that must exit within 30 s of "done training" (the exit hang of README "Known
   problems"), with its logged losses;
4. the trainer-path benchmark (fairseq's ``Trainer.train_step``, :mod:`.pretrain_trainer`), one
   process per configuration with its own timeout: MAE-AST and SSAST, patch and frame tokens,
   12 layers, eager (the configs' defaults, bf16 autocast) and ``fast`` (``+run=fast``), at
   batch 32 and at the largest batch predicted to fit (from batch 32's peak memory, powers of
   two up to ``--max-batch``), most important first; clips/s, peak memory, MFU against the
   measured peak, and the host waits left per update (:mod:`.host_syncs`, one counted step).

Writes ``gpu_check.json`` and ``gpu_check.md`` into ``--out``.  ``--device cpu --tiny`` runs the
same code with a tiny model, 1-s clips and a few steps, in about a minute (the test).
"""

import argparse
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from queue import Empty, Queue
from threading import Thread

from mae_ast_plugin.atomic_io import atomic_write_text, nan_to_null
from mae_ast_plugin.bench.data import generate_corpus
from mae_ast_plugin.bench.pretrain_configs import PAPER_SIZE, RESULT_PREFIX, TINY_SIZE, TOKENS
from mae_ast_plugin.bench.pretrain_trainer import TRAINER_RATES
from mae_ast_plugin.bench.report import markdown_table

REPO = Path(__file__).resolve().parents[2]
NUM_MEL_BINS = 128
EXIT_LIMIT_S = 30.0  # after "done training"


def stamp(start: float, message: str):
    """A progress line with the UTC time and the seconds since the start."""
    now = time.strftime("%H:%M:%S", time.gmtime())
    print(f"[gpu_check {now} +{time.monotonic() - start:5.0f}s] {message}", flush=True)


def token_counts(tokens: str, clip_seconds: float, mask_ratio: float = 0.75) -> dict:
    """Tokens per clip (all, masked, visible) of a ``clip_seconds`` clip (25 ms windows every
    10 ms: 998 frames for 10 s)."""
    from mae_ast_plugin.modules.masking import num_masked_tokens

    frames = 1 + (int(round(clip_seconds * 16000)) - 400) // 160
    kind = TOKENS[tokens]
    total = (frames // kind["token_frames"]) * (NUM_MEL_BINS // kind["token_mel_bins"])
    masked = num_masked_tokens(total, mask_ratio)
    return {"tokens": total, "masked_tokens": masked, "visible_tokens": total - masked}


def step_flops_per_clip(model: str, tokens: str, size: dict, layers: int, layerdrop=0.05) -> float:
    """Matrix-product FLOPs of one training step per clip (forward x 3), the encoder's layers
    weighted by LayerDrop's keep probability (the work a step does on average)."""
    from mae_ast_plugin.bench.pretrain_flops import layer_flops

    counts = token_counts(tokens, size["clip_seconds"])
    dim, ffn = size["embed_dim"], size["ffn_dim"]
    kind = TOKENS[tokens]
    token_dim = kind["token_frames"] * kind["token_mel_bins"]
    encoder_tokens = counts["visible_tokens"] if model == "mae_ast" else counts["tokens"]
    flops = 2 * counts["tokens"] * token_dim * dim
    flops += layers * (1 - layerdrop) * layer_flops(encoder_tokens, dim, ffn)
    if model == "mae_ast":
        flops += size["decoder_layers"] * layer_flops(counts["tokens"], dim, ffn)
    masked = counts["masked_tokens"]
    flops += 2 * (2 * masked * dim * token_dim) + 2 * masked * masked * token_dim
    return 3.0 * flops


def _corpus_part(job):
    root, count, seconds, seed = job
    generate_corpus(Path(root), count, seconds, TRAINER_RATES, seed=seed)


def parallel_corpus(root: Path, count: int, seconds: float, workers: int) -> Path:
    """:func:`generate_corpus` in ``workers`` processes (parts ``part<k>/``), one manifest
    ``root/train.tsv`` for all."""
    from multiprocessing import get_context

    parts = max(1, min(workers, count))
    jobs = [
        (str(root / f"part{k}"), count // parts + (k < count % parts), seconds, k)
        for k in range(parts)
    ]
    with get_context("spawn").Pool(parts) as pool:
        pool.map(_corpus_part, jobs)
    lines = [str(root)]
    for part_root, *_ in jobs:
        entries = Path(part_root, "train.tsv").read_text().splitlines()[1:]
        lines += [f"{Path(part_root).name}/audio/{entry}" for entry in entries]
    (root / "train.tsv").write_text("\n".join(lines) + "\n")
    return root


def hydra_run(args, corpus: Path, run_dir: Path, start: float) -> dict:
    """A short ``fairseq-hydra-train`` run; returns its losses, whether it exited within
    ``EXIT_LIMIT_S`` of "done training", and how long that took."""
    overrides = [
        "common.user_dir=mae_ast_plugin",
        f"task.data={corpus}",
        f"hydra.run.dir={run_dir}",
        f"optimization.max_update={args.hydra_updates}",
        "common.log_interval=10" if not args.tiny else "common.log_interval=1",
        "lr_scheduler.warmup_updates=10",
        "dataset.disable_validation=true",
        f"dataset.num_workers={args.hydra_workers}",
        "model.encoder_layers=12" if not args.tiny else "model.encoder_layers=2",
        *(_tiny_model_overrides() if args.tiny else []),
        *([] if args.device == "cuda" else ["common.cpu=true", "task.compile_backend=aot_eager"]),
    ]
    if args.tiny:
        overrides += [
            f"task.max_sample_len_s={TINY_SIZE['clip_seconds']}",
            "dataset.batch_size=4",
            "dataset.max_tokens=64000",
        ]
    cmd = [
        sys.executable,
        "-m",
        "fairseq_cli.hydra_train",
        "--config-dir",
        "config/pretrain",
        "--config-name",
        "mae_ast_patch",
        "+run=[gpu1,fast]",
        *overrides,
    ]
    stamp(start, "fairseq-hydra-train: " + " ".join(cmd[3:]))
    env = dict(os.environ, PYTHONUNBUFFERED="1", HYDRA_FULL_ERROR="1")
    result = watch_run(cmd, env, args.hydra_timeout, EXIT_LIMIT_S, start)
    result["command"] = " ".join(cmd[1:])
    return result


def watch_run(cmd, env, timeout: float, exit_limit: float, start: float) -> dict:
    """Run ``cmd`` (in ``REPO``, its own process group) until it logs "done training" or
    ``timeout`` seconds pass, then give it ``exit_limit`` seconds to exit.  A run still alive
    then gets SIGABRT first: with ``PYTHONFAULTHANDLER`` set, Python prints every thread's
    stack, so the report says where the exit hangs; then its whole group is killed.  Returns
    the losses logged by ``[train_inner]``, ``done_training``, ``exited_within_limit``,
    ``exit_after_done_s``, the log's last lines and every line after "done training"
    (``after_done``, the stacks included)."""
    env = dict(env, PYTHONFAULTHANDLER="1")
    # its own process group: a hung run is ended with its loader workers
    proc = subprocess.Popen(
        cmd,
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
        start_new_session=True,
    )
    began = time.monotonic()
    done_at, done_line, lines, losses = None, None, [], []
    deadline = began + timeout
    # A reader thread, so that a run that goes silent (compiling, or hung) cannot block the
    # check past its deadline.
    queue = Queue()

    def read():
        for text in proc.stdout:
            queue.put(text)
        queue.put(None)

    reader = Thread(target=read, daemon=True)
    reader.start()
    while True:
        try:
            line = queue.get(timeout=max(0.1, deadline - time.monotonic()))
        except Empty:
            break
        if line is None:
            break
        lines.append(line.rstrip())
        if "[train_inner]" in line:
            match = re.search(r'"loss": "([0-9.]+)".*"num_updates": "(\d+)"', line)
            if match:
                losses.append((int(match.group(2)), float(match.group(1))))
        # fairseq_cli/train.py's last line: "done training in X seconds"
        if "done training" in line and done_at is None:
            done_at, done_line = time.monotonic(), len(lines)
            stamp(start, "fairseq-hydra-train: done training")
            break
        if time.monotonic() > deadline:
            break
    exited, exit_s, aborted = False, None, False
    if done_at is not None:
        try:
            proc.wait(timeout=exit_limit)
            exited, exit_s = True, time.monotonic() - done_at
        except subprocess.TimeoutExpired:
            pass
    if proc.poll() is None:
        # where it hangs: faulthandler's dump of every thread (stderr, read with stdout)
        os.kill(proc.pid, signal.SIGABRT)
        aborted = True
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            pass
    try:
        os.killpg(proc.pid, signal.SIGKILL)  # the loader workers too, if any are left
    except ProcessLookupError:
        pass
    proc.wait()
    reader.join(timeout=5)  # the last lines, the stacks included
    while not queue.empty():
        line = queue.get()
        if line is not None:
            lines.append(line.rstrip())
    result = {
        "returncode": proc.returncode,
        "done_training": done_at is not None,
        "exited_within_limit": exited,
        "exit_after_done_s": exit_s,
        "aborted_for_stacks": aborted,
        "run_s": (done_at or time.monotonic()) - began,
        "losses": losses,
        "log_tail": lines[-15:],
        "after_done": lines[done_line:][:400] if done_line is not None else [],
    }
    stamp(
        start,
        f"fairseq-hydra-train: done={result['done_training']} exited={exited} "
        f"(after {exit_s if exit_s is None else round(exit_s, 1)} s) rc={proc.returncode}",
    )
    if aborted:
        stamp(start, "fairseq-hydra-train: stacks at the hang:\n" + "\n".join(result["after_done"]))
    return result


def _tiny_model_overrides() -> list:
    return [
        f"model.encoder_embed_dim={TINY_SIZE['embed_dim']}",
        f"model.decoder_embed_dim={TINY_SIZE['embed_dim']}",
        f"model.encoder_ffn_embed_dim={TINY_SIZE['ffn_dim']}",
        f"model.encoder_attention_heads={TINY_SIZE['heads']}",
        f"model.decoder_layers={TINY_SIZE['decoder_layers']}",
    ]


def bench_spec(args, corpus: Path, model: str, tokens: str, variant: str, batch: int) -> dict:
    size = TINY_SIZE if args.tiny else PAPER_SIZE
    return {
        "name": f"{model}-{tokens}-{args.layers}L-{variant}-b{batch}",
        "model": model,
        "tokens": tokens,
        "layers": args.layers,
        "variant": variant,
        "batch": batch,
        "device": args.device,
        "steps": args.steps,
        "warmup": args.warmup,
        "workers": args.bench_workers,
        "data": str(corpus),
        "compile_mode": None,
        "seed": 1,
        "threads": None,
        "kind": "trainer",
        "distinct_batches": 1,
        "skip_first_batch": False,
        "count_syncs": True,
        "overrides": [] if args.device == "cuda" else ["task.compile_backend=aot_eager"],
        **size,
    }


def run_spec(spec: dict, timeout: float) -> dict:
    """One configuration in its own process, killed after ``timeout`` seconds."""
    cmd = [sys.executable, "-m", "mae_ast_plugin.bench.pretrain", "--child", json.dumps(spec)]
    began = time.monotonic()
    try:
        proc = subprocess.run(
            cmd,
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
    except subprocess.TimeoutExpired:
        return {"name": spec["name"], "error": f"timed out after {timeout:.0f} s"}
    for line in proc.stdout.splitlines():
        if line.startswith(RESULT_PREFIX):
            result = json.loads(line[len(RESULT_PREFIX) :])
            result["wall_s"] = time.monotonic() - began
            return result
    oom = "out of memory" in proc.stderr.lower()
    return {
        "name": spec["name"],
        "error": (
            "out of memory"
            if oom
            else f"exit {proc.returncode}: " + " | ".join(proc.stderr.strip().splitlines()[-3:])
        )[:500],
    }


def predicted_max_batch(results, gpu_bytes: int, cap: int, base: int) -> int:
    """The largest power of two (from ``base`` to ``cap``) whose peak memory, extrapolated
    linearly from batch ``base``'s peaks (with a fixed part for weights and optimizer state),
    stays under 85% of the GPU's memory."""
    peaks = [r["peak_memory_bytes"] for r in results if r.get("peak_memory_bytes")]
    if not peaks or not gpu_bytes:
        return base
    per_clip = max(peaks) / base  # generous: the fixed part counted as per-clip
    batch = base
    while batch * 2 <= cap and per_clip * batch * 2 <= 0.85 * gpu_bytes:
        batch *= 2
    return batch


def add_mfu(result: dict, size: dict, peak_tflops: float | None):
    if "step_clips_per_s" not in result:
        return
    flops = step_flops_per_clip(result["model"], result["tokens"], size, result["layers"])
    result["model_tflops"] = flops * result["step_clips_per_s"] / 1e12
    result["mfu"] = result["model_tflops"] / peak_tflops if peak_tflops else None


def clips_per_step(result: dict) -> str:
    """The clips the timed steps trained on ("32", or "30-32" when they differed), "-" for a
    result that did not record them."""
    clips = result.get("step_clips")
    if not clips:
        return "-"
    low, high = min(clips), max(clips)
    return f"{low}" if low == high else f"{low}-{high}"


def markdown(report: dict) -> str:
    m = report["machine"]
    lines = [
        f"GPU check, {m.get('date_utc', '')}: {m.get('gpu', m.get('cpu_model', '?'))}, "
        f"torch {m.get('torch', '?')}; bf16 matmul peak "
        f"{report['bf16_peak_tflops'] or '-'} TFLOP/s",
        "",
    ]
    rows = []
    for r in report["results"]:
        if "error" in r:
            rows.append([r["name"], r.get("batch", "-"), "-", "-", "-", "-", "-", r["error"]])
            continue
        syncs = r.get("host_syncs") or {}
        per = syncs.get("per_update")
        sync_cell = (
            f"{per['plugin']:g} / {per['fairseq']:g}" if per else syncs.get("error", "-")[:40]
        )
        rows.append(
            [
                f"{r['model']} {r['tokens']} {r['variant']}",
                r["batch"],
                clips_per_step(r),
                f"{r['step_s'] * 1e3:.1f}",
                f"{r['step_clips_per_s']:.0f}",
                f"{r['peak_memory_bytes'] / 2**30:.2f}" if r.get("peak_memory_bytes") else "-",
                f"{100 * r['mfu']:.1f}" if r.get("mfu") else "-",
                sync_cell,
            ]
        )
    lines += markdown_table(
        [
            "config",
            "batch",
            "clips per step",
            "step ms",
            "clips/s",
            "peak GiB",
            "% of bf16 peak (MFU)",
            "host waits per update: plugin / fairseq",
        ],
        rows,
    )
    ratios = report.get("ratios", [])
    if ratios:
        lines += [
            "",
            *markdown_table(
                ["tokens", "variant", "batch", "MAE-AST / SSAST clips/s", "MAE-AST / SSAST memory"],
                [
                    [t, v, b, f"{s:.2f}x", f"{mem:.2f}" if mem else "-"]
                    for t, v, b, s, mem in ratios
                ],
            ),
        ]
    h = report.get("hydra_run")
    if h:
        lines += [
            "",
            f"fairseq-hydra-train (`{h['command'][:160]}...`): done training "
            f"{h['done_training']}, exited {h['exited_within_limit']} "
            f"({h['exit_after_done_s']} s after), losses {h['losses'][-4:]}",
        ]
        if h.get("aborted_for_stacks"):
            lines.append(
                "; it did not exit: its threads' stacks at the hang are the JSON's "
                "hydra_run.after_done"
            )
    return "\n".join(lines) + "\n"


def ratios(results):
    found = {}
    for r in results:
        if "error" not in r:
            found[(r["model"], r["tokens"], r["variant"], r["batch"])] = r
    out = []
    for (model, tokens, variant, batch), r in sorted(found.items()):
        other = found.get(("ssast", tokens, variant, batch))
        if model == "mae_ast" and other:
            mem = (r.get("peak_memory_bytes") or 0) / (other.get("peak_memory_bytes") or 1)
            out.append(
                (
                    tokens,
                    variant,
                    batch,
                    r["step_clips_per_s"] / other["step_clips_per_s"],
                    mem or None,
                )
            )
    return out


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cuda", choices=("cuda", "cpu"))
    parser.add_argument("--tiny", action="store_true", help="tiny model, 1-s clips (tests)")
    parser.add_argument("--out", default="gpu_check_out")
    parser.add_argument("--budget-s", type=float, default=470.0, help="whole run, seconds")
    parser.add_argument("--config-timeout-s", type=float, default=75.0)
    parser.add_argument("--layers", type=int)
    parser.add_argument("--batch", type=int)
    parser.add_argument("--max-batch", type=int, help="cap of the largest batch tried")
    parser.add_argument("--steps", type=int)
    parser.add_argument("--warmup", type=int)
    parser.add_argument("--clips", type=int, help="corpus size")
    parser.add_argument("--bench-workers", type=int)
    parser.add_argument("--hydra-workers", type=int, default=12)
    parser.add_argument("--hydra-updates", type=int)
    parser.add_argument("--hydra-timeout", type=float)
    parser.add_argument("--models", nargs="+", default=["mae_ast", "ssast"])
    parser.add_argument("--tokens", nargs="+", default=["patch", "frame"])
    parser.add_argument("--variants", nargs="+", default=["eager", "fast"])
    parser.add_argument("--skip-hydra", action="store_true")
    args = parser.parse_args(argv)
    tiny = args.tiny
    defaults = {
        "layers": 2 if tiny else 12,
        "batch": 2 if tiny else 32,
        "max_batch": 4 if tiny else 512,
        "steps": 2 if tiny else 8,
        "warmup": 1 if tiny else 3,
        "clips": 12 if tiny else 544,
        "bench_workers": 0,
        "hydra_updates": 3 if tiny else 40,
        "hydra_timeout": 240 if tiny else 150,
    }
    for key, value in defaults.items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    start = time.monotonic()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    import torch

    from mae_ast_plugin.bench.report import machine_info

    if args.device == "cuda" and not torch.cuda.is_available():
        print(
            "gpu_check: no CUDA device; use --device cpu --tiny for the CPU mode", file=sys.stderr
        )
        return 2
    size = TINY_SIZE if args.tiny else PAPER_SIZE
    report = {
        "machine": machine_info(args.device),
        "settings": vars(args).copy(),
        "bf16_peak_tflops": None,
        "results": [],
        "hydra_run": None,
    }
    report["machine"]["date_utc"] = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())

    def save():
        report["ratios"] = ratios(report["results"])
        report["wall_s"] = time.monotonic() - start
        atomic_write_text(
            out / "gpu_check.json",
            json.dumps(nan_to_null(report), indent=2, allow_nan=False) + "\n",
        )
        atomic_write_text(out / "gpu_check.md", markdown(report))

    if args.device == "cuda":
        from mae_ast_plugin.bench.pretrain_flops import measure_bf16_peak

        report["bf16_peak_tflops"] = round(measure_bf16_peak(), 1)
        stamp(start, f"bf16 matmul peak {report['bf16_peak_tflops']} TFLOP/s")
    corpus = Path(tempfile.mkdtemp(prefix="gpu_check_corpus_"))
    parallel_corpus(corpus, args.clips, size["clip_seconds"], min(16, os.cpu_count() or 1))
    stamp(start, f"corpus: {args.clips} clips of {size['clip_seconds']} s in {corpus}")
    save()

    if not args.skip_hydra:
        report["hydra_run"] = hydra_run(
            args, corpus, Path(tempfile.mkdtemp(prefix="gpu_check_run_")), start
        )
        save()

    def remaining():
        return args.budget_s - (time.monotonic() - start)

    def bench(model, tokens, variant, batch):
        left = remaining()
        name = f"{model}-{tokens}-{variant}-b{batch}"
        if left < 20:
            stamp(start, f"skip {name}: time budget spent")
            report["results"].append(
                {
                    "name": name,
                    "model": model,
                    "tokens": tokens,
                    "variant": variant,
                    "batch": batch,
                    "error": "skipped: time budget spent",
                }
            )
            return None
        stamp(start, f"run {name} (timeout {min(args.config_timeout_s, left):.0f} s)")
        result = run_spec(
            bench_spec(args, corpus, model, tokens, variant, batch),
            min(args.config_timeout_s, left),
        )
        result.update(
            {
                k: v
                for k, v in (
                    ("model", model),
                    ("tokens", tokens),
                    ("variant", variant),
                    ("batch", batch),
                )
                if k not in result
            }
        )
        add_mfu(result, size, report["bf16_peak_tflops"])
        report["results"].append(result)
        summary = result.get("error") or (
            f"{result['step_clips_per_s']:.0f} clips/s, step {result['step_s'] * 1e3:.1f} ms, "
            f"peak {(result.get('peak_memory_bytes') or 0) / 2**30:.2f} GiB, "
            f"MFU {100 * (result.get('mfu') or 0):.1f}%, "
            f"waits {(result.get('host_syncs') or {}).get('per_update')}"
        )
        stamp(start, f"{name}: {summary}")
        save()
        return result

    # Most important first: per token kind, batch 32 for every model and variant, then the
    # largest batch with the last variant (fast: the figure users want); the largest batch's
    # other variants last.
    gpu_bytes = report["machine"].get("gpu_memory_bytes") or (2**30 if args.tiny else 0)
    largest, later = {}, []

    def bench_largest(model, tokens, variant):
        result = bench(model, tokens, variant, largest[tokens])
        if result and result.get("error") == "out of memory":
            bench(model, tokens, variant, largest[tokens] // 2)

    for tokens in args.tokens:
        for variant in args.variants:
            for model in args.models:
                bench(model, tokens, variant, args.batch)
        base = [r for r in report["results"] if r.get("tokens") == tokens and "error" not in r]
        largest[tokens] = predicted_max_batch(base, gpu_bytes, args.max_batch, args.batch)
        if largest[tokens] <= args.batch:
            continue
        for model in args.models:
            bench_largest(model, tokens, args.variants[-1])
        later += [(m, tokens, v) for v in args.variants[:-1] for m in args.models]
    for model, tokens, variant in later:
        bench_largest(model, tokens, variant)
    save()
    stamp(start, f"wrote {out / 'gpu_check.json'} and {out / 'gpu_check.md'}")
    print(markdown(report))
    hydra_ok = args.skip_hydra or bool(
        report["hydra_run"] and report["hydra_run"]["exited_within_limit"]
    )
    measured = any("error" not in r for r in report["results"])
    return 0 if hydra_ok and measured else 1


if __name__ == "__main__":
    raise SystemExit(main())
