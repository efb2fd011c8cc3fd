"""Through fairseq-hydra-train on CPU: the model's own fbank front end and the fbank cache, static
shapes and torch.compile inside fairseq's trainer train alike, compile nothing after warm-up,
and leave checkpoints that load and resume without compile."""

import pytest
import torch
from conftest import TINY_MODEL, hydra_train, short_run_overrides
from test_distributed import records

# Every test here starts a Python process (README, "Commands": the test tiers).
pytestmark = pytest.mark.slow

# No dropout or LayerDrop: compiled code draws its own random numbers for them (the masks are
# drawn eagerly, so they match), and these runs must be comparable update by update.
DETERMINISTIC = [
    "model.dropout=0",
    "model.attention_dropout=0",
    "model.dropout_input=0",
    "model.encoder_layerdrop=0",
]
COMPARED = ("loss", "loss_recon", "loss_infonce", "bsz")


def train(corpus, run_dir, *extra, max_update=6):
    proc = hydra_train(
        "mae_ast_patch",
        [
            f"task.data={corpus}",
            *TINY_MODEL,
            *DETERMINISTIC,
            "task.max_sample_len_s=2.0",
            *short_run_overrides(run_dir, max_update),
            "dataset.batch_size=4",
            *extra,
        ],
    )
    return proc, records(proc.stdout, "train_inner")


def assert_same_losses(run, reference, rel=1e-4):
    assert len(run) == len(reference) > 0
    for a, b in zip(run, reference, strict=True):
        for key in COMPARED:
            assert float(a[key]) == pytest.approx(float(b[key]), rel=rel, abs=1e-5), key


@pytest.fixture(scope="module")
def eager_static(tiny_corpus, tmp_path_factory):
    return train(tiny_corpus, tmp_path_factory.mktemp("eager"), "task.static_shapes=true")[1]


def test_cached_fbank_trains_like_the_models_front_end(eager_static, tiny_corpus, tmp_path):
    """Batches of cached filterbanks (net_input ``fbank``) train as batches of waveforms whose
    filterbanks the model computes (net_input ``source``)."""
    from mae_ast_plugin.data.fbank_cache import build_split
    from mae_ast_plugin.features import FbankConfig

    cache = tmp_path / "cache"
    build_split(str(tiny_corpus / "train.tsv"), str(cache), "train", FbankConfig())
    _, logs = train(
        tiny_corpus, tmp_path / "run", "task.static_shapes=true", f"task.fbank_cache={cache}"
    )
    assert_same_losses(logs, eager_static)


def test_static_shapes_count_only_real_clips(eager_static, tiny_corpus, tmp_path):
    """Static batches hold the same clips (plus fillers, which are not counted as clips); their
    masks differ, since the random draws take the padded shapes."""
    _, logs = train(tiny_corpus, tmp_path)
    assert [r["bsz"] for r in logs] == [r["bsz"] for r in eager_static]
    assert any(int(r["bsz"]) < 4 for r in logs)  # some batches really were filled up


def test_compiled_static_step_equals_eager_without_recompiling_and_resumes(
    eager_static, tiny_corpus, tmp_path
):
    # aot_eager: dynamo and AOT autograd as with inductor, without minutes of C++ builds on CPU
    compile_opts = [
        "task.static_shapes=true",
        "task.compile=true",
        "task.compile_backend=aot_eager",
    ]
    proc, logs = train(tiny_corpus, tmp_path, *compile_opts)
    assert_same_losses(logs, eager_static)
    compiled = [int(r["compiled_graphs"]) for r in logs]
    assert sum(compiled[:2]) > 0  # it really compiled
    assert compiled[2:] == [0] * (len(logs) - 2), compiled  # and never again after warm-up

    state = torch.load(tmp_path / "checkpoints" / "checkpoint_last.pt", weights_only=False)
    assert not any("_orig_mod" in key for key in state["model"])
    # resume without compile (another machine, an older torch): picks up at update 6
    proc, resumed = train(
        tiny_corpus, tmp_path, "task.static_shapes=true", "task.compile=false", max_update=8
    )
    assert "@ 6 updates" in proc.stdout + proc.stderr
    assert [int(r["num_updates"]) for r in resumed] == [7, 8]
