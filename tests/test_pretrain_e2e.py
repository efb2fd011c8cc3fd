"""fairseq-hydra-train runs of the shipped configs, checkpoint loading and resuming."""

import json
import re

import pytest
import torch
from conftest import TINY_MODEL, hydra_train
from fairseq import checkpoint_utils

import mae_ast_plugin  # noqa: F401

# Every test here starts a Python process (README, "Commands": the test tiers).
pytestmark = pytest.mark.slow


def records(stdout, tag):
    return [json.loads(m) for m in re.findall(r"\[" + tag + r"\]\[INFO\] - (\{.*\})", stdout)]


def short_run(corpus, run_dir, max_update, *extra, config="mae_ast_patch"):
    return hydra_train(
        config,
        [
            f"task.data={corpus}",
            *TINY_MODEL,
            f"optimization.max_update={max_update}",
            "dataset.max_tokens=160000",
            "dataset.num_workers=0",
            "common.log_interval=1",
            "common.amp=false",
            "dataset.validate_interval_updates=2",
            f"hydra.run.dir={run_dir}",
            *extra,
        ],
    )


@pytest.fixture(scope="module")
def patch_run(tiny_corpus, tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("patch_run")
    proc = short_run(tiny_corpus, run_dir, 3)
    return run_dir, proc


def test_patch_config_trains_and_logs_natural_units(patch_run):
    run_dir, proc = patch_run
    train = records(proc.stdout, "train_inner")
    assert [int(r["num_updates"]) for r in train] == [1, 2, 3]
    for r in train:
        keys = ("loss", "loss_recon", "loss_recon_mean_baseline", "loss_infonce", "infonce_acc")
        for key in keys:
            assert key in r
        assert "ppl" not in r and "nll_loss" not in r
        # loss = 10 x MSE + 1 x InfoNCE, per clip, in nats
        assert float(r["loss"]) == pytest.approx(
            10 * float(r["loss_recon"]) + float(r["loss_infonce"]), abs=2e-3
        )
    valid = records(proc.stdout, "valid")
    assert valid and "valid_loss" in valid[-1]
    assert (run_dir / "checkpoints" / "checkpoint_last.pt").is_file()


def test_checkpoint_loads_with_fairseq(patch_run):
    run_dir, _ = patch_run
    models, cfg, task = checkpoint_utils.load_model_ensemble_and_task(
        [str(run_dir / "checkpoints" / "checkpoint_last.pt")]
    )
    model = models[0].eval()
    assert type(model).__name__ == "MaeAstModel"
    assert cfg.task.features.num_mel_bins == 128  # the feature configuration travels along
    with torch.no_grad():
        out = model(fbank=torch.randn(1, 200, 128), mask=False)
    assert out["x"].shape == (1, 12 * 8, 32)


def test_resume_from_checkpoint_last(patch_run, tiny_corpus, tmp_path):
    """The 3-update run, copied (the other tests read it) and relaunched with a later
    max_update, continues from its checkpoint_last.pt."""
    import shutil

    run_dir = tmp_path / "resume"
    shutil.copytree(patch_run[0], run_dir)
    proc = short_run(tiny_corpus, run_dir, 5)
    assert "Loaded checkpoint" in proc.stdout and "@ 3 updates" in proc.stdout
    assert [int(r["num_updates"]) for r in records(proc.stdout, "train_inner")] == [4, 5]
    state = torch.load(run_dir / "checkpoints" / "checkpoint_last.pt", weights_only=False)
    assert state["optimizer_history"][-1]["num_updates"] == 5


@pytest.mark.parametrize("config", ["mae_ast_frame", "demo"])
def test_other_configs_compose_and_train(tiny_corpus, tiny_pretrained, tmp_path, config):
    if config == "mae_ast_frame":  # the session's 3-update run, which test_export exports
        checkpoint, updates = tiny_pretrained(config), 3
    else:
        proc = short_run(tiny_corpus, tmp_path / config, 2, config=config)
        assert len(records(proc.stdout, "train_inner")) == 2
        checkpoint, updates = tmp_path / config / "checkpoints" / "checkpoint_last.pt", 2
    state = torch.load(checkpoint, weights_only=False)
    assert state["optimizer_history"][-1]["num_updates"] == updates
    expected_tokens = (2, 128) if config == "mae_ast_frame" else (16, 16)
    assert (
        state["cfg"]["model"]["token_frames"],
        state["cfg"]["model"]["token_mel_bins"],
    ) == expected_tokens
    assert state["cfg"]["model"]["mask_type"] == (
        "random" if config == "mae_ast_frame" else "chunk"
    )


def test_documented_launch_line_resolves_relative_paths(tiny_corpus, tmp_path):
    """From the repository root, with hydra.job.chdir false, relative paths work."""
    import shutil

    from conftest import REPO

    rel = REPO / "outputs" / "pytest_relative_data"
    shutil.rmtree(rel, ignore_errors=True)
    shutil.copytree(tiny_corpus, rel)
    try:
        proc = short_run("outputs/pytest_relative_data", "outputs/pytest_relative_run", 1)
        assert (
            REPO / "outputs" / "pytest_relative_run" / "checkpoints" / "checkpoint_last.pt"
        ).is_file()
        assert proc.returncode == 0
    finally:
        shutil.rmtree(rel, ignore_errors=True)
        shutil.rmtree(REPO / "outputs" / "pytest_relative_run", ignore_errors=True)


def test_plots_of_a_run(patch_run, tiny_corpus, tmp_path):
    """The demo's pictures: loss curves from the log, and a masked reconstruction."""
    import subprocess

    from conftest import REPO, console_script

    from mae_ast_plugin.plotting import plot_losses, read_training_log

    run_dir, _ = patch_run
    log = run_dir / "hydra_train.log"
    parsed = read_training_log(str(log))
    assert [int(r["num_updates"]) for r in parsed["train_inner"]] == [1, 2, 3]
    assert parsed["valid"] and isinstance(parsed["valid"][0]["valid_loss"], float)
    assert isinstance(parsed["valid"][0]["valid_loss_recon_mean_baseline"], float)
    plot_losses(str(log), str(tmp_path / "losses.png"))
    assert (tmp_path / "losses.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    audio = tiny_corpus / "audio" / "valid_000.wav"
    proc = subprocess.run(
        [
            console_script("mae-ast-plot-reconstruction"),
            str(run_dir / "checkpoints" / "checkpoint_last.pt"),
            str(audio),
            "--out",
            str(tmp_path / "recon.png"),
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "recon.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    masked = float(proc.stdout.split("(")[1].split("%")[0]) / 100
    assert 0.6 < masked < 0.85  # about 75% of the plotted spectrogram is masked
