"""Data-parallel pretraining with fairseq's distributed training, on CPU (gloo, torchrun).

Two workers with a batch each per update must train exactly like one worker accumulating the
same two batches (``update_freq=2``): fairseq gives worker r of W every W-th batch, and the task
seeds each micro-batch's masks and dropout by its place in the global batch.  So the test
compares, update by update, what each run saw, logged and learned.

Run as a script, this file is the program of one worker: ``fairseq-hydra-train`` that also
records the clip ids of every micro-batch and, at the end, the worker's parameters, in
``$MAE_AST_TEST_RECORD/rank{RANK}.pt`` (instrumentation for the test; the plugin has none).
"""

import json
import os
import re
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch

# Every test here starts a Python process (README, "Commands": the test tiers).
pytestmark = pytest.mark.slow

RECORD_ENV = "MAE_AST_TEST_RECORD"
HERE = Path(__file__).resolve()

CPU = ["common.cpu=true", "distributed_training.distributed_backend=gloo"]
# torchrun on CPU: fairseq derives each worker's device from the GPU count unless the init
# method and the rank are given (on GPUs +run=torchrun is all it takes).
CPU_TORCHRUN = [
    "+run=torchrun",
    *CPU,
    "distributed_training.distributed_init_method=env://",
    "distributed_training.distributed_no_spawn=true",
    "distributed_training.distributed_rank=${oc.env:RANK}",
]


def records(stdout, tag):
    return [json.loads(m) for m in re.findall(r"\[" + tag + r"\]\[INFO\] - (\{.*\})", stdout)]


def recorded_run(launcher, out_dir: Path, overrides, worker_envs=({},), cwd=None, timeout=240):
    """Start one ``launcher`` process running this file per entry of ``worker_envs`` (extra
    environment variables) and return their stdout, joined, and each worker's record."""
    from conftest import REPO

    out_dir.mkdir(parents=True, exist_ok=True)
    cmd = [
        *launcher,
        str(HERE),
        "--config-dir",
        str(REPO / "config" / "pretrain"),
        "--config-name",
        "mae_ast_patch",
        f"common.user_dir={REPO / 'mae_ast_plugin'}",
        *overrides,
    ]
    env = dict(os.environ, HYDRA_FULL_ERROR="1", PYTHONWARNINGS="ignore")
    env[RECORD_ENV] = str(out_dir)
    procs = [
        subprocess.Popen(
            cmd,
            cwd=cwd or REPO,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env={**env, **extra},
        )
        for extra in worker_envs
    ]
    outputs = [proc.communicate(timeout=timeout) for proc in procs]
    for proc, (stdout, stderr) in zip(procs, outputs, strict=True):
        if proc.returncode != 0:
            raise AssertionError(f"{' '.join(cmd)} failed:\n{stdout[-4000:]}\n{stderr[-6000:]}")
    ranks = [torch.load(path, weights_only=False) for path in sorted(out_dir.glob("rank*.pt"))]
    return "".join(stdout for stdout, _ in outputs), ranks


def short_run_overrides(corpus, *extra):
    from conftest import TINY_MODEL

    return [
        f"task.data={corpus}",
        *TINY_MODEL,
        "optimization.max_update=8",  # one epoch is 5-6 updates: crosses into epoch 2
        "dataset.max_tokens=80000",  # 10-12 batches of 1-4 clips per epoch
        # fairseq drops an epoch's last batch unless its size is a multiple of this (8)
        "dataset.required_batch_size_multiple=1",
        "dataset.num_workers=0",
        "dataset.disable_validation=true",
        "common.log_interval=1",
        "common.amp=false",
        "common.cpu=true",
        "common.tensorboard_logdir=null",
        *extra,
    ]


@pytest.fixture(scope="module")
def two_workers_and_one(tiny_corpus, tmp_path_factory):
    torchrun = [str(Path(sys.executable).parent / "torchrun"), "--standalone", "--nproc_per_node=2"]
    ddp_dir, single_dir = tmp_path_factory.mktemp("ddp"), tmp_path_factory.mktemp("single")
    ddp = recorded_run(
        torchrun,
        ddp_dir,
        short_run_overrides(tiny_corpus, *CPU_TORCHRUN, f"hydra.run.dir={ddp_dir / 'run'}"),
    )
    single = recorded_run(
        [sys.executable],
        single_dir,
        short_run_overrides(
            tiny_corpus, "optimization.update_freq=[2]", f"hydra.run.dir={single_dir / 'run'}"
        ),
    )
    return ddp, single


def test_workers_get_disjoint_shards_of_the_manifest(two_workers_and_one, tiny_corpus):
    (ddp_stdout, (rank0, rank1)), (_, (single,)) = two_workers_and_one
    assert len(rank0["batches"]) == len(rank1["batches"]) == len(single["batches"]) == 8
    updates = zip(rank0["batches"], rank1["batches"], single["batches"], strict=True)
    for update, (mine, other, accumulated) in enumerate(updates):
        # rank r of 2 gets the r-th of the two batches one worker accumulates (an odd batch
        # count leaves rank 1 an empty dummy batch at the end of the epoch)
        assert mine == accumulated[:1], f"update {update + 1}"
        assert [batch for batch in other if batch] == accumulated[1:], f"update {update + 1}"
        assert not set(mine[0]) & set(other[0])
    # epoch 1 shows every clip of the manifest to exactly one of the workers, once (its number
    # of updates depends on how many clips fit max_tokens: sizes are 16 kHz samples)
    epoch1_updates = sum(r["epoch"] == 1 for r in records(ddp_stdout, "train_inner"))
    assert 0 < epoch1_updates < 8
    epoch1 = [
        i for record in (rank0, rank1) for update in record["batches"][:epoch1_updates]
        for i in (update[0] if update else [])
    ]
    num_clips = len((tiny_corpus / "train.tsv").read_text().splitlines()) - 1
    assert sorted(epoch1) == list(range(num_clips))


def test_workers_draw_independent_masks_like_accumulation_steps(two_workers_and_one):
    """Masks and dropout come from the torch seed of each micro-batch: the workers' differ,
    and each equals that of the accumulation step that processes the same batch."""
    (_, (rank0, rank1)), (_, (single,)) = two_workers_and_one
    assert len(set(rank0["seeds"]) | set(rank1["seeds"])) == 16
    assert rank0["seeds"] == single["seeds"][0::2] and rank1["seeds"] == single["seeds"][1::2]
    assert rank0["seeds"] == [1337 + update for update in range(8)]  # fairseq's own seeds


def test_workers_end_with_identical_weights(two_workers_and_one):
    (_, (rank0, rank1)), _ = two_workers_and_one
    assert rank0["params"].keys() == rank1["params"].keys()
    for name, value in rank0["params"].items():
        assert torch.equal(value, rank1["params"][name]), name


def test_two_workers_train_like_one_worker_accumulating_two_batches(two_workers_and_one):
    (ddp_stdout, (rank0, _)), (single_stdout, (single,)) = two_workers_and_one
    ddp_logs = records(ddp_stdout, "train_inner")
    single_logs = records(single_stdout, "train_inner")
    assert [r["num_updates"] for r in ddp_logs] == [r["num_updates"] for r in single_logs] == [
        str(u) for u in range(1, 9)
    ]
    for ddp, one in zip(ddp_logs, single_logs, strict=True):
        assert ddp["bsz"] == one["bsz"] and ddp["wpb"] == one["wpb"]  # reduced over workers
        for key in ("loss", "loss_recon", "loss_infonce", "infonce_acc", "gnorm"):
            assert float(ddp[key]) == pytest.approx(float(one[key]), rel=1e-3, abs=2e-4), key
    for name, value in rank0["params"].items():
        torch.testing.assert_close(value, single["params"][name], rtol=1e-4, atol=1e-6, msg=name)


def test_slurm_overlay_starts_one_worker_per_task(tiny_corpus, tmp_path):
    """+run=slurm under an emulated ``srun --ntasks=2`` on one node: fairseq reads the SLURM
    variables (and ``scontrol show hostnames``), the tasks meet, share out the data, end with
    the same weights, and write to a run directory named after the job."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "scontrol").write_text("#!/bin/sh\necho localhost\n")
    (bin_dir / "scontrol").chmod(0o755)
    with socket.socket() as probe:
        probe.bind(("localhost", 0))
        port = probe.getsockname()[1]
    slurm = {
        "PATH": f"{bin_dir}:{os.environ['PATH']}",
        "SLURM_JOB_ID": "4242",
        "SLURM_JOB_NODELIST": "localhost",
        "SLURM_NNODES": "1",
        "SLURM_NTASKS": "2",
        "SLURM_NTASKS_PER_NODE": "2",
        "SLURM_NODEID": "0",
        "SLURM_LOCALID": "0",  # the task's GPU; on CPU both use "device" 0
    }
    _, (rank0, rank1) = recorded_run(
        [sys.executable],
        tmp_path / "record",
        short_run_overrides(
            tiny_corpus, "+run=slurm", *CPU, f"distributed_training.distributed_port={port}"
        ),
        worker_envs=[{**slurm, "SLURM_PROCID": str(rank)} for rank in (0, 1)],
        cwd=tmp_path,
    )
    for mine, other in zip(rank0["batches"], rank1["batches"], strict=True):
        assert mine[0] and not set(mine[0]) & set(other[0])
    for name, value in rank0["params"].items():
        assert torch.equal(value, rank1["params"][name]), name
    run_dir = tmp_path / "outputs/pretrain/mae_ast_patch/slurm_4242"  # named after the job
    assert (run_dir / "checkpoints" / "checkpoint_last.pt").is_file()


def _record_and_train():
    import fairseq_cli.hydra_train
    from fairseq.trainer import Trainer

    record = {"batches": []}
    train_step = Trainer.train_step

    def recording_train_step(self, samples, raise_oom=False):
        record["trainer"] = self
        # a worker whose shard ran out gets an empty batch (fairseq trains it as a dummy)
        record["batches"].append([sample["id"].tolist() if sample else [] for sample in samples])
        return train_step(self, samples, raise_oom)

    Trainer.train_step = recording_train_step

    from mae_ast_plugin.tasks.mae_ast_pretraining import MaeAstPretrainingTask

    record["seeds"] = []
    seed_micro_batch = MaeAstPretrainingTask._seed_micro_batch

    def recording_seed_micro_batch(self, update_num):
        seed_micro_batch(self, update_num)
        record["seeds"].append(torch.initial_seed())

    MaeAstPretrainingTask._seed_micro_batch = recording_seed_micro_batch
    fairseq_cli.hydra_train.cli_main()
    trainer = record.pop("trainer")
    params = trainer.get_model().named_parameters()
    record["params"] = {name: value.detach().clone() for name, value in params}
    torch.save(record, Path(os.environ[RECORD_ENV]) / f"rank{trainer.data_parallel_rank}.pt")


if __name__ == "__main__":
    _record_and_train()
