"""Loader workers are stopped when training ends, before interpreter shutdown
(where fairseq's persistent, pin-memory DataLoader iterators hung the exit on a GPU machine)."""

import multiprocessing

import pytest
from conftest import TINY_MODEL, hydra_train
from omegaconf import OmegaConf

from mae_ast_plugin.tasks.audio_task import shutdown_loader_workers
from mae_ast_plugin.tasks.mae_ast_pretraining import MaeAstPretrainingConfig, MaeAstPretrainingTask


def test_half_consumed_persistent_loader_is_stopped(tiny_corpus):
    cfg = OmegaConf.structured(MaeAstPretrainingConfig(data=str(tiny_corpus), seed=1))
    task = MaeAstPretrainingTask(cfg)
    task.load_dataset("train")
    epoch_itr = task.get_batch_iterator(task.dataset("train"), max_sentences=2, num_workers=2)
    assert epoch_itr.persistent_workers
    itr = epoch_itr.next_epoch_itr(shuffle=False)
    next(itr)  # batches in flight, as when max_update stops training mid-epoch
    assert len(multiprocessing.active_children()) >= 2
    assert shutdown_loader_workers() == 0
    assert not multiprocessing.active_children()


@pytest.mark.slow
def test_fairseq_hydra_train_with_4_workers_stops_them_and_exits(tiny_corpus, tmp_path):
    proc = hydra_train(
        "mae_ast_patch",
        [
            f"task.data={tiny_corpus}",
            *TINY_MODEL,
            "optimization.max_update=3",  # mid-epoch: the loader still holds batches
            "dataset.max_tokens=80000",
            "dataset.num_workers=4",
            "dataset.disable_validation=true",
            "common.amp=false",
            "common.tensorboard_logdir=null",
            f"hydra.run.dir={tmp_path}",
        ],
        timeout=300,
    )
    out = proc.stdout + proc.stderr
    assert "stopped the loader workers of 1 DataLoader iterators (0 worker processes left)" in out
