"""Random training crops are a function of (seed, epoch, clip), whatever the loader workers: the
epoch reaches persistent workers (which outlive set_epoch's call in the training process), and
a run resumed at a later epoch crops as the uninterrupted run did."""

import hashlib
import logging

import numpy as np
import pytest
import soundfile
from fairseq import tasks
from fairseq.tasks import TASK_DATACLASS_REGISTRY
from omegaconf import OmegaConf

import mae_ast_plugin  # noqa: F401  (registers the tasks)

EPOCHS = 3
SETTINGS = [(0, True), (2, True), (2, False)]  # (dataset.num_workers, task.persistent_workers)


@pytest.fixture(scope="module")
def long_clips(tmp_path_factory):
    """8 training clips of 6 s (a chirp, so every crop differs) with labels, cropped to 0.5 s."""
    root = tmp_path_factory.mktemp("long_clips")
    rng = np.random.default_rng(0)
    rows = [str(root)]
    for i in range(8):
        t = np.arange(16000 * 6) / 16000
        wave = 0.3 * np.sin(2 * np.pi * np.cumsum(rng.uniform(150, 400) * (1 + 0.5 * t)) / 16000)
        wave = (wave + 0.05 * rng.standard_normal(len(t))).astype(np.float32)
        soundfile.write(root / f"clip{i}.wav", wave, 16000)
        rows.append(f"clip{i}.wav\t{len(wave)}")
    (root / "train.tsv").write_text("\n".join(rows) + "\n")
    (root / "train.lbl").write_text("".join(f"{i % 2}\n" for i in range(8)))
    (root / "labels.csv").write_text("index,mid,display_name\n0,/m/a,a\n1,/m/b,b\n")
    return root


def _task(name, data, persistent):
    cfg = OmegaConf.merge(
        OmegaConf.structured(TASK_DATACLASS_REGISTRY[name]),
        {"_name": name, "data": str(data), "max_sample_len_s": 0.5, "seed": 1,
         "persistent_workers": persistent},
    )
    task = tasks.setup_task(cfg)
    task.load_dataset("train")
    return task


def delivered_crops(name, data, workers, persistent, first_epoch=1, epochs=EPOCHS, batches=None):
    """{clip id: [hash of its crop in each epoch]} from the task's own batch iterator (what
    fairseq's trainer calls), starting at ``first_epoch`` as a resumed run does; the clip ids of
    each batch are appended to ``batches``."""
    logging.disable(logging.WARNING)  # pin_memory without a GPU
    try:
        task = _task(name, data, persistent)
        itr = task.get_batch_iterator(
            task.dataset("train"), max_sentences=4, num_workers=workers, epoch=first_epoch
        )
        crops = {}
        for _ in range(epochs):
            for batch in itr.next_epoch_itr(shuffle=True):
                if batches is not None:
                    batches.append(batch["id"].tolist())
                for row, index in enumerate(batch["id"].tolist()):
                    digest = hashlib.sha1(batch["net_input"]["source"][row].numpy().tobytes())
                    crops.setdefault(index, []).append(digest.hexdigest())
        return crops
    finally:
        logging.disable(logging.NOTSET)


@pytest.mark.parametrize("name", ["mae_ast_pretraining", "mae_ast_audio_classification"])
def test_crops_change_every_epoch_and_do_not_depend_on_workers(long_clips, name):
    by_setting = {s: delivered_crops(name, long_clips, *s) for s in SETTINGS}
    for setting, crops in by_setting.items():
        assert sorted(crops) == list(range(8))
        for index, hashes in crops.items():
            assert len(hashes) == EPOCHS
            assert len(set(hashes)) == EPOCHS, (setting, index, hashes)  # a new crop each epoch
    reference = by_setting[SETTINGS[0]]
    for setting, crops in by_setting.items():
        assert crops == reference, setting


def test_a_resumed_run_crops_and_batches_as_the_uninterrupted_one(long_clips):
    """A run restarted at epoch 3 (new workers, the dataset told epoch 3 when its iterator is
    made) delivers epoch 3's batches and crops of the run that never stopped (persistent
    workers).  The clips are all cropped to one size, so the length order is all ties: the
    batches differ if the tie-breaking order is drawn from the epoch the run starts at."""
    batches, resumed_batches = [], []
    uninterrupted = delivered_crops("mae_ast_pretraining", long_clips, 2, True, batches=batches)
    resumed = delivered_crops(
        "mae_ast_pretraining", long_clips, 2, True, first_epoch=3, epochs=1,
        batches=resumed_batches,
    )
    assert resumed == {index: hashes[2:] for index, hashes in uninterrupted.items()}
    assert len(batches) == 3 * len(resumed_batches)
    assert resumed_batches == batches[2 * len(resumed_batches) :]
