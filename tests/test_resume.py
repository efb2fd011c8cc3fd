"""Preemption safety: a run killed at any point and relaunched with the same command continues
from its last checkpoint and trains exactly as if it had never been interrupted.

Run as a script, this file is ``fairseq-hydra-train`` that kills itself (SIGKILL, as a
preempting scheduler would) when update ``$MAE_AST_TEST_KILL_AT_UPDATE`` starts.
"""

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from conftest import REPO, TINY_MODEL
from test_distributed import records

KILL_ENV = "MAE_AST_TEST_KILL_AT_UPDATE"
CHECKPOINT_EVERY = 7  # an epoch is 12 updates: the checkpoint falls inside epoch 1
MAX_UPDATE = 14  # the resumed part crosses into epoch 2
LOGGED = ("loss", "loss_recon", "loss_infonce", "infonce_acc", "gnorm", "lr", "bsz", "epoch")


def train(corpus, run_dir, kill_at=None):
    """The same command every time (as a relaunch after preemption); ``kill_at`` only arms the
    self-kill."""
    cmd = [
        sys.executable,
        str(Path(__file__).resolve()),
        "--config-dir",
        "config/pretrain",
        "--config-name",
        "mae_ast_patch",
        "common.user_dir=mae_ast_plugin",
        f"task.data={corpus}",
        *TINY_MODEL,  # dropout and LayerDrop stay on: their random draws must resume too
        f"optimization.max_update={MAX_UPDATE}",
        f"checkpoint.save_interval_updates={CHECKPOINT_EVERY}",
        "dataset.max_tokens=80000",
        "dataset.required_batch_size_multiple=1",
        "dataset.num_workers=1",  # a loader process, as in real runs
        "common.log_interval=1",
        "common.amp=false",
        "common.tensorboard_logdir=null",
        f"hydra.run.dir={run_dir}",
    ]
    env = dict(os.environ, HYDRA_FULL_ERROR="1", PYTHONWARNINGS="ignore")
    env.pop(KILL_ENV, None)
    if kill_at is not None:
        env[KILL_ENV] = str(kill_at)
    return subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=240, env=env)


def logged(proc):
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]
    logs = records(proc.stdout, "train_inner")
    return {int(r["num_updates"]): {key: r[key] for key in LOGGED} for r in logs}


@pytest.fixture(scope="module")
def straight_and_resumed(tiny_corpus, tmp_path_factory):
    straight_dir = tmp_path_factory.mktemp("straight")
    straight = train(tiny_corpus, straight_dir)
    resumed_dir = tmp_path_factory.mktemp("resumed")
    killed = train(tiny_corpus, resumed_dir, kill_at=CHECKPOINT_EVERY + 3)
    relaunched = train(tiny_corpus, resumed_dir)
    return straight, straight_dir, killed, relaunched, resumed_dir


@pytest.mark.slow
def test_killed_run_resumes_from_its_mid_epoch_checkpoint(straight_and_resumed):
    _, _, killed, relaunched, _ = straight_and_resumed
    assert killed.returncode == -signal.SIGKILL
    assert records(killed.stdout, "train_inner")[-1]["num_updates"] == str(CHECKPOINT_EVERY + 2)
    # fairseq's "Loaded checkpoint ... (epoch 1 @ 7 updates)"
    assert f"(epoch 1 @ {CHECKPOINT_EVERY} updates)" in relaunched.stdout
    assert sorted(logged(relaunched)) == list(range(CHECKPOINT_EVERY + 1, MAX_UPDATE + 1))


@pytest.mark.slow
def test_resumed_run_logs_and_learns_exactly_what_an_uninterrupted_run_does(straight_and_resumed):
    straight, straight_dir, _, relaunched, resumed_dir = straight_and_resumed
    uninterrupted, resumed = logged(straight), logged(relaunched)
    assert {1, 2} <= {r["epoch"] for r in resumed.values()}  # resumed across an epoch end
    for update, values in resumed.items():
        assert values == uninterrupted[update], f"update {update}"
    final = [
        torch.load(path / "checkpoints" / "checkpoint_last.pt", weights_only=False)
        for path in (straight_dir, resumed_dir)
    ]
    assert final[0]["optimizer_history"][-1]["num_updates"] == MAX_UPDATE
    for name, value in final[0]["model"].items():
        assert torch.equal(value, final[1]["model"][name]), name


def test_checkpoint_last_is_replaced_atomically(tmp_path, monkeypatch):
    """fairseq copies checkpoint_<epoch>_<updates>.pt over checkpoint_last.pt; a job killed
    during the copy must leave the previous checkpoint_last.pt whole."""
    import shutil

    from fairseq.file_io import PathManager

    from mae_ast_plugin.fairseq_fixes import install_atomic_checkpoint_copy

    install_atomic_checkpoint_copy()
    last, new = tmp_path / "checkpoint_last.pt", tmp_path / "checkpoint_1_14.pt"
    last.write_bytes(b"previous checkpoint")
    new.write_bytes(b"new checkpoint " * 1000)

    def copy_interrupted(src, dst):
        Path(dst).write_bytes(Path(src).read_bytes()[:100])
        raise KeyboardInterrupt("killed during the copy")

    with monkeypatch.context() as patch:
        patch.setattr(shutil, "copyfile", copy_interrupted)
        with pytest.raises(KeyboardInterrupt):
            PathManager.copy(str(new), str(last), overwrite=True)
    assert last.read_bytes() == b"previous checkpoint"
    assert PathManager.copy(str(new), str(last), overwrite=True)
    assert last.read_bytes() == new.read_bytes()


def _train_and_kill_at_update():
    import fairseq_cli.hydra_train
    from fairseq.trainer import Trainer

    kill_at = int(os.environ.get(KILL_ENV, 0))
    train_step = Trainer.train_step

    def train_step_or_die(self, samples, raise_oom=False):
        if self.get_num_updates() + 1 == kill_at:
            sys.stdout.flush()
            os.kill(os.getpid(), signal.SIGKILL)
        return train_step(self, samples, raise_oom)

    Trainer.train_step = train_step_or_die
    fairseq_cli.hydra_train.cli_main()


if __name__ == "__main__":
    _train_and_kill_at_update()
