"""mae-ast-benchmark-pretrain and mae-ast-benchmark-data in their --tiny modes, run as a user
would (subprocesses of the console scripts); checks the JSON reports."""

import json
import subprocess

import pytest
from conftest import REPO, console_script

# Every test here starts a Python process (README, "Commands": the test tiers).
pytestmark = pytest.mark.slow


def run_script(*args, timeout=300):
    proc = subprocess.run(
        [console_script(args[0]), *args[1:]],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert proc.returncode == 0, f"{args[0]} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-5000:]}"
    return proc


def test_benchmark_pretrain_tiny(tmp_path):
    out = tmp_path / "pretrain.json"
    proc = run_script(
        "mae-ast-benchmark-pretrain", "--tiny", "--tokens", "patch", "--out", str(out)
    )
    report = json.loads(out.read_text())
    assert "| config |" in proc.stdout and "MAE-AST / SSAST" in proc.stdout
    assert report["settings"]["device"] == "cpu" and report["settings"]["tiny"]
    assert report["failed"] == []
    results = {r["model"]: r for r in report["results"]}
    assert set(results) == {"mae_ast", "ssast"}
    for r in results.values():
        for key in (
            "name",
            "device",
            "batch",
            "layers",
            "tokens",
            "encoder_tokens",
            "step_time_s",
            "clips_per_s",
            "peak_memory_bytes",
            "tflops",
            "flops_per_step",
        ):
            assert key in r, key
        assert r["device"] == "cpu" and r["batch"] == 2 and r["layers"] == 2
        assert r["step_time_s"] > 0 and r["clips_per_s"] > 0 and r["peak_memory_bytes"] > 0
        assert len(r["step_times_s"]) == r["steps"]
        assert r["tokens_per_clip"] == 48  # 1 s = 98 frames -> 6 time blocks x 8 mel blocks
    mae, ssast = results["mae_ast"], results["ssast"]
    # The encoders really see different token counts: all of them for SSAST, the visible 25%
    # for MAE-AST, whose decoder sees all of them.
    assert ssast["encoder_tokens"] == ssast["tokens_per_clip"] == 48
    assert mae["encoder_tokens"] == 48 - mae["masked_tokens"] == 12
    assert mae["decoder_tokens"] == 48 and ssast["decoder_tokens"] == 0
    assert mae["masked_tokens"] == ssast["masked_tokens"] == 36
    assert mae["flops_per_step"] != ssast["flops_per_step"]
    (ratio,) = report["ratios"]
    assert ratio["tokens"] == "patch" and ratio["layers"] == 2
    assert abs(ratio["speedup"] - mae["clips_per_s"] / ssast["clips_per_s"]) < 1e-9
    assert abs(ratio["memory_ratio"] - mae["peak_memory_bytes"] / ssast["peak_memory_bytes"]) < 1e-9
    assert ratio["mae_ast_encoder_tokens"] == 12 and ratio["ssast_encoder_tokens"] == 48


def test_benchmark_data_tiny(tmp_path):
    out = tmp_path / "data.json"
    proc = run_script("mae-ast-benchmark-data", "--tiny", "--out", str(out))
    report = json.loads(out.read_text())
    assert "| loader workers |" in proc.stdout
    assert [r["workers"] for r in report["results"]] == [0, 1]
    for r in report["results"]:
        assert r["clips"] == 6 and r["batches"] == 3
        assert r["clips_per_s_incl_startup"] > 0 and r["clips_per_s"] > 0
        assert r["frames"] == 6 * 98  # 1 s clips at 16 kHz: 98 fbank frames each


def test_benchmark_pretrain_trainer_mode_times_fairseqs_train_step(tmp_path):
    """--trainer: fairseq's Trainer.train_step with the real task and loader, both models."""
    out = tmp_path / "trainer.json"
    proc = run_script(
        "mae-ast-benchmark-pretrain", "--trainer", "--tiny", "--tokens", "patch",
        "--variants", "static", "--out", str(out), timeout=600,
    )
    report = json.loads(out.read_text())
    assert "| model | tokens |" in proc.stdout and "MAE-AST / SSAST, patch 2L static" in proc.stdout
    assert report["failed"] == []
    assert {r["model"] for r in report["results"]} == {"mae_ast", "ssast"}
    for r in report["results"]:
        assert r["variant"] == "static"
        assert r["step_s"] > 0 and r["step_clips_per_s"] > 0 and r["loader_clips_per_s"] > 0


def test_benchmark_data_fbank_batched(tmp_path):
    out = tmp_path / "fbank.json"
    proc = run_script(
        "mae-ast-benchmark-data", "--fbank-batched", "--tiny", "--batch-size", "3",
        "--clip-seconds", "1.5", "--out", str(out),
    )
    report = json.loads(out.read_text())
    assert "torchaudio per clip, clips/s | batched, clips/s" in proc.stdout
    assert report["batch"] == 3 and report["device"] == "cpu"
    assert report["per_clip_clips_per_s"] > 0 and report["batched_clips_per_s"] > 0
