"""A training step that never makes the host wait for the device: fairseq's real
``Trainer.train_step`` on padded, mixed-length batches from the real loader, both models, both
token kinds, eager and with the fast overlay's static shapes and fused AdamW (the model computes
the filterbanks on its device in both).  Every operator that reads a device value on the host
(or whose output shape depends on data) is counted by a dispatch mode and attributed to the code
that asked for it (mae_ast_plugin or fairseq).  One process per config (hydra composes one
config family per process)."""

import json
import subprocess
import sys

import pytest
import torch
from conftest import REPO, TINY_MODEL, write_corpus

from mae_ast_plugin.bench.host_syncs import HostSyncCounter, classify

# What fairseq's Trainer.train_step itself still reads per update on CPU (docs/benchmarks.md):
# the finite-gradient test that decides between stepping and FloatingPointError.
FAIRSEQ_PER_UPDATE = 1
# the defaults, and the fast overlay's settings that run on CPU (bf16 and compile do not)
VARIANTS = ["", "task.static_shapes=true,optimizer._name=adamw_fused"]


@pytest.fixture(scope="module")
def mixed_corpus(tmp_path_factory):
    return write_corpus(tmp_path_factory.mktemp("sync_corpus"), {"train": 16}, seed=3)


@pytest.mark.slow
@pytest.mark.parametrize(
    "config_name", ["mae_ast_patch", "mae_ast_frame", "ssast_patch", "ssast_frame"]
)
def test_train_step_reads_nothing_from_the_device(mixed_corpus, tmp_path, config_name):
    overrides = [
        "common.user_dir=mae_ast_plugin",
        f"task.data={mixed_corpus}",
        "task.max_sample_len_s=2.0",
        f"checkpoint.save_dir={tmp_path}",
        "common.tensorboard_logdir=null",
        "common.cpu=true",
        "common.amp=false",
        "dataset.num_workers=0",
        "dataset.batch_size=4",
        "dataset.max_tokens=80000",
        "dataset.disable_validation=true",
        *TINY_MODEL,
    ]
    variants = [arg for v in VARIANTS for arg in ("--variant", v)]
    cmd = [
        sys.executable,
        "-m",
        "mae_ast_plugin.bench.host_syncs",
        "--config",
        config_name,
        "--batches",
        "2",
        *variants,
        "--",
        *overrides,
    ]
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    results = [
        json.loads(line.split(" ", 1)[1])
        for line in proc.stdout.splitlines()
        if line.startswith("HOST_SYNCS ")
    ]
    assert len(results) == len(VARIANTS)
    for result in results:
        print(f"\n{config_name} {result['overrides'][len(overrides) :]}: per update")
        print("\n".join(result["sites"]))
        assert result["padded_batches"] == result["steps"] == 2  # every counted batch mixes lengths
        assert result["per_update"]["plugin"] == 0, result["sites"]
        assert result["per_update"]["other"] == 0, result["sites"]
        assert result["per_update"]["fairseq"] == FAIRSEQ_PER_UPDATE, result["sites"]
        assert all(
            "fairseq/trainer.py" in line and "in train_step" in line for line in result["sites"]
        )


def test_counter_sees_host_reads_and_data_dependent_shapes():
    """The dispatch mode really counts what it claims to (item, bool, equal, boolean indexing,
    nonzero) and nothing else."""
    x = torch.arange(6.0)
    with HostSyncCounter() as counter:
        x.sum().item()
        bool(x.any())
        torch.equal(x, x)
        x[x > 2]
        x.nonzero()
        x.clamp(min=1.0)  # a Python bound: no read
    assert counter.total() == 5
    assert classify(torch.ops.aten.add.Tensor, (x, x), {}) is None
