"""``+run=fast`` (config/pretrain/run/fast.yaml) trains like the default path: fairseq-hydra-train
on CPU, update by update, with dropout and LayerDrop off so that the runs are comparable.  On
CPU bf16 autocast is a no-op; everything else of the overlay runs: static shapes, compiled
layers (aot_eager instead of inductor, which would spend minutes building C++ here), filterbanks
on the device, the fused AdamW optimizer, the batch of 32 (here 4) clips.  Clips are longer than
the crop and the epoch fills every batch, so the static shapes add no padding and both runs
draw the same masks."""

import pytest
from conftest import TINY_MODEL, hydra_train, write_corpus
from test_distributed import records

DETERMINISTIC = [
    "model.dropout=0",
    "model.attention_dropout=0",
    "model.dropout_input=0",
    "model.encoder_layerdrop=0",
]
COMPARED = ("loss", "loss_recon", "loss_infonce", "infonce_acc", "gnorm", "bsz")


def train(corpus, run_dir, config_name, *extra):
    proc = hydra_train(
        config_name,
        [
            *extra,
            f"task.data={corpus}",
            *TINY_MODEL,
            *DETERMINISTIC,
            "task.max_sample_len_s=1.0",
            "dataset.batch_size=4",
            "dataset.max_tokens=64000",
            "dataset.num_workers=0",
            "dataset.disable_validation=true",
            "optimization.max_update=6",
            "common.log_interval=1",
            "common.tensorboard_logdir=null",
            f"hydra.run.dir={run_dir}",
        ],
    )
    return proc, records(proc.stdout, "train_inner")


@pytest.mark.slow
@pytest.mark.parametrize("config_name", ["mae_ast_patch", "ssast_frame"])
def test_fast_overlay_trains_like_the_default_path(tmp_path, config_name):
    corpus = write_corpus(tmp_path / "corpus", {"train": 16}, min_s=1.5, max_s=2.5)
    _, default = train(corpus, tmp_path / "default", config_name, "common.amp=false")
    proc, fast = train(
        corpus, tmp_path / "fast", config_name, "+run=fast", "task.compile_backend=aot_eager"
    )
    assert "'optimizer': {'_name': 'adamw_fused'" in proc.stdout
    assert len(fast) == len(default) == 6
    assert sum(int(r["compiled_graphs"]) for r in fast) > 0  # the layers really compiled
    for a, b in zip(fast, default, strict=True):
        for key in COMPARED:
            assert float(a[key]) == pytest.approx(float(b[key]), rel=2e-3, abs=1e-4), key
