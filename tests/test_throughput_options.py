"""Options of large runs, on CPU: activation checkpointing (the same training, less memory),
bf16 autocast (a no-op on CPU; which precision runs where), gradient accumulation."""

import pytest
import torch
from conftest import TINY_MODEL, hydra_train, short_run_overrides
from test_distributed import records

from mae_ast_plugin.tasks.audio_task import autocast_dtype

COMPARED = ("loss", "loss_recon", "loss_infonce", "infonce_acc", "gnorm", "bsz")


def train(corpus, run_dir, *extra, max_update=8):
    proc = hydra_train(
        "mae_ast_patch",
        [
            f"task.data={corpus}",
            *TINY_MODEL,  # dropout and LayerDrop on: recomputation must replay their draws
            *short_run_overrides(run_dir, max_update),
            "dataset.required_batch_size_multiple=1",  # every batch kept
            *extra,
        ],
    )
    logs = records(proc.stdout, "train_inner")
    return [{key: r[key] for key in (*COMPARED, "epoch")} for r in logs]


@pytest.fixture(scope="module")
def baseline(tiny_corpus, tmp_path_factory):
    return train(tiny_corpus, tmp_path_factory.mktemp("baseline"))


@pytest.mark.slow
def test_activation_checkpointing_trains_identically(baseline, tiny_corpus, tmp_path):
    assert len(baseline) == 8
    assert train(tiny_corpus, tmp_path, "model.checkpoint_activations=true") == baseline


@pytest.mark.slow
def test_bf16_autocast_is_a_no_op_on_cpu(baseline, tiny_corpus, tmp_path):
    assert train(tiny_corpus, tmp_path, "task.bf16_autocast=true") == baseline


@pytest.mark.parametrize(
    "bf16_requested, on_gpu, native_bf16, amp, expected",
    [
        (True, True, True, True, torch.bfloat16),  # A100/H100: bf16, whatever common.amp says
        (True, True, True, False, torch.bfloat16),
        (True, True, False, True, torch.float16),  # V100, T4: common.amp's fp16
        (True, True, False, False, None),
        (False, True, True, True, torch.float16),  # the paper's fp16
        (False, True, True, False, None),
        (True, False, False, True, None),  # CPU: float32
    ],
)
def test_precision_of_the_forward_pass(bf16_requested, on_gpu, native_bf16, amp, expected):
    assert autocast_dtype(bf16_requested, on_gpu, native_bf16, amp) is expected


@pytest.mark.slow
def test_update_freq_accumulates_consecutive_batches(baseline, tiny_corpus, tmp_path):
    """With update_freq=2 an update takes the next two batches of the same batch order: half
    the updates per epoch, twice the clips per update (gradients summed before the step; their
    equality with two data-parallel workers is tested in test_distributed.py)."""
    accumulated = train(tiny_corpus, tmp_path, "optimization.update_freq=[2]", max_update=7)
    assert [float(r["bsz"]) for r in accumulated[:4]] == [
        # an odd last batch has no partner
        float(a["bsz"]) + float(b["bsz"])
        for a, b in zip(baseline[0::2], baseline[1::2], strict=False)
    ]
    # an epoch of n batches is ceil(n / 2) updates (n depends on how many clips fit max_tokens)
    batches = len(epoch_batches(tiny_corpus))
    first = -(-batches // 2)
    assert first < 7
    assert [r["epoch"] for r in accumulated] == [1] * first + [2] * (7 - first)


def epoch_batches(corpus):
    """The train batches of an epoch as these runs form them (max_tokens 80000, multiple 1)."""
    from omegaconf import OmegaConf

    from mae_ast_plugin.tasks import mae_ast_pretraining as pretraining

    task = pretraining.MaeAstPretrainingTask(
        OmegaConf.structured(pretraining.MaeAstPretrainingConfig(data=str(corpus), seed=1337))
    )
    task.load_dataset("train")
    itr = task.get_batch_iterator(task.dataset("train"), max_tokens=80000, seed=1337)
    return list(itr.frozen_batches)


def test_persistent_workers_option_reaches_fairseqs_iterator(tiny_corpus):
    from omegaconf import OmegaConf

    from mae_ast_plugin.tasks.mae_ast_pretraining import (
        MaeAstPretrainingConfig,
        MaeAstPretrainingTask,
    )

    for persistent in (True, False):
        cfg = OmegaConf.structured(
            MaeAstPretrainingConfig(data=str(tiny_corpus), seed=1, persistent_workers=persistent)
        )
        task = MaeAstPretrainingTask(cfg)
        task.load_dataset("valid")
        iterator = task.get_batch_iterator(task.dataset("valid"), max_sentences=2, num_workers=1)
        assert iterator.persistent_workers is persistent
