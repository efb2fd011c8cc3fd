"""The GPU check (mae_ast_plugin/bench/gpu_check.sh) cannot break on arrival: its CPU tiny mode
runs the same shell script and Python code (wheel set-up skipped where there is no .whl/), and
its arithmetic (tokens, FLOPs, the largest batch, the tables) is checked against the step
benchmark's."""

import json
import os
import subprocess
import sys

import pytest
from conftest import REPO

from mae_ast_plugin.bench import gpu_check
from mae_ast_plugin.bench.data import generate_corpus
from mae_ast_plugin.bench.pretrain_configs import PAPER_SIZE
from mae_ast_plugin.bench.pretrain_flops import step_flops
from mae_ast_plugin.bench.pretrain_trainer import TRAINER_RATES, peaks_kept, run_trainer_config


def test_token_counts_and_flops_match_the_step_benchmark():
    patch = gpu_check.token_counts("patch", 10.0)
    assert patch == {"tokens": 496, "masked_tokens": 372, "visible_tokens": 124}
    frame = gpu_check.token_counts("frame", 10.0)
    assert frame["tokens"] == 499 and frame["visible_tokens"] == 124
    for model in ("mae_ast", "ssast"):
        spec = {"model": model, "tokens": "patch", "layers": 12, "batch": 1, **PAPER_SIZE}
        counts = {
            "tokens": 496,
            "encoder_tokens": 124 if model == "mae_ast" else 496,
            "decoder_tokens": 496,
            "masked_tokens": 372,
        }
        ours = gpu_check.step_flops_per_clip(model, "patch", PAPER_SIZE, 12, layerdrop=0.0)
        assert ours == pytest.approx(step_flops(spec, counts))
    # the figure: about 112 GFLOP per clip for the 12-layer MAE-AST
    assert gpu_check.step_flops_per_clip("mae_ast", "patch", PAPER_SIZE, 12, 0.0) == (
        pytest.approx(112e9, rel=0.05)
    )


def test_largest_batch_is_predicted_from_batch_32s_peak():
    gib = 2**30
    results = [{"peak_memory_bytes": 4 * gib}, {"peak_memory_bytes": 7 * gib}]
    assert gpu_check.predicted_max_batch(results, 139 * gib, 512, 32) == 512
    assert gpu_check.predicted_max_batch(results, 40 * gib, 512, 32) == 128
    assert gpu_check.predicted_max_batch(results, 139 * gib, 128, 32) == 128
    assert gpu_check.predicted_max_batch([], 139 * gib, 512, 32) == 32


def test_each_timed_step_trains_on_the_batch_asked_for(tmp_path):
    # 6 clips: batches of 2 divide them; batches of 4 leave a remainder of 2, which the shuffled
    # epoch serves first with this seed (as the GPU check's 544 clips in batches of 512 did)
    corpus = tmp_path / "corpus"
    generate_corpus(corpus, 6, 1.0, TRAINER_RATES, seed=1)
    args = gpu_check.parse_args(["--device", "cpu", "--tiny", "--clips", "6"])
    for batch in (2, 4):
        spec = gpu_check.bench_spec(args, corpus, "mae_ast", "patch", "static", batch)
        spec["count_syncs"] = False
        result = run_trainer_config(spec)
        assert result["step_clips"] == [batch] * args.steps
        assert result["step_clips_per_s"] * result["step_s"] == pytest.approx(batch)
        assert gpu_check.clips_per_step(result) == str(batch)
    spec["distinct_batches"] = 2  # one full batch of 4 exists: refused, not timed on the rest
    with pytest.raises(RuntimeError, match="1 batches of 4 clips"):
        run_trainer_config(spec)


def test_the_peak_fairseq_resets_after_each_step_is_kept(monkeypatch):
    import torch

    allocated = iter([7, 5])  # the step's peak when fairseq resets it, then what stays
    monkeypatch.setattr(torch.cuda, "max_memory_allocated", lambda device=None: next(allocated))
    resets = []
    monkeypatch.setattr(torch.cuda, "reset_peak_memory_stats", lambda device=None: resets.append(1))
    peaks = []
    with peaks_kept(peaks):
        torch.cuda.reset_peak_memory_stats()  # as Trainer.train_step does at its end
    assert peaks == [7] and resets == [1]
    assert max([*peaks, torch.cuda.max_memory_allocated()]) == 7
    torch.cuda.reset_peak_memory_stats()  # restored: not recorded any more
    assert peaks == [7] and resets == [1, 1]


HANGS_AFTER_DONE = """
import threading, time
print('[train_inner] {"loss": "3.5", "num_updates": "1"}', flush=True)
print("done training in 0.1 seconds", flush=True)
def wait_for_ever():
    while True:
        time.sleep(1)
threading.Thread(target=wait_for_ever, name="stuck").start()  # joined at exit: never ends
"""


@pytest.mark.slow
def test_a_run_that_exits_is_timed_and_one_that_hangs_reports_its_stacks():
    exits = [sys.executable, "-c", "print('done training in 0.1 seconds')"]
    result = gpu_check.watch_run(exits, dict(os.environ), 60, 30, 0.0)
    assert result["done_training"] and result["exited_within_limit"]
    assert result["returncode"] == 0 and not result["aborted_for_stacks"]
    hangs = [sys.executable, "-c", HANGS_AFTER_DONE]
    result = gpu_check.watch_run(hangs, dict(os.environ), 60, 1, 0.0)
    assert result["done_training"] and not result["exited_within_limit"]
    assert result["aborted_for_stacks"] and result["losses"] == [(1, 3.5)]
    stacks = "\n".join(result["after_done"])
    assert "most recent call first" in stacks and "wait_for_ever" in stacks


@pytest.mark.slow
def test_gpu_check_script_runs_in_cpu_tiny_mode(tmp_path):
    env = dict(
        os.environ,
        PYTHON=sys.executable,
        GPU_CHECK_DEVICE="cpu",
        GPU_CHECK_TINY="1",
        OUT=str(tmp_path / "out"),
        PYTHONPATH=str(REPO),
    )
    proc = subprocess.run(
        [
            "bash",
            "mae_ast_plugin/bench/gpu_check.sh",
            "--tokens",
            "patch",
            "--variants",
            "eager",
            "fast",
            "--hydra-updates",
            "2",
            "--budget-s",
            "500",
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        env=env,
        timeout=900,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "[gpu_check " in proc.stdout  # timestamped progress
    report = json.loads((tmp_path / "out" / "gpu_check.json").read_text())
    hydra = report["hydra_run"]
    assert hydra["done_training"] and hydra["exited_within_limit"], hydra["log_tail"]
    names = {(r["model"], r["variant"]) for r in report["results"] if "error" not in r}
    assert names == {(m, v) for m in ("mae_ast", "ssast") for v in ("eager", "fast")}
    for result in report["results"]:
        assert result["host_syncs"]["per_update"]["plugin"] == 0
        assert result["step_clips_per_s"] > 0
    table = (tmp_path / "out" / "gpu_check.md").read_text()
    assert "| mae_ast patch fast | 2 | 2 |" in table and "MAE-AST / SSAST" in table
