"""The authors' checkpoints (tests/fixtures/authors-mae-ast, see its README) load and reproduce
the authors' encoder outputs."""

from pathlib import Path

import numpy as np
import pytest
import torch
from fairseq import checkpoint_utils
from omegaconf import OmegaConf

import mae_ast_plugin  # noqa: F401
from mae_ast_plugin.encoder import load_encoder
from mae_ast_plugin.features import compute_fbank
from mae_ast_plugin.model_io.authors import IncompatibleCheckpointError, upgrade_authors_cfg

FIXTURES = Path(__file__).parent / "fixtures" / "authors-mae-ast"
KINDS = ["patch", "frame"]


def expected(kind):
    return np.load(FIXTURES / f"authors_{kind}_expected.npz")


@pytest.mark.parametrize("kind", KINDS)
def test_load_model_ensemble_and_task_reproduces_every_layer(kind):
    models, cfg, task = checkpoint_utils.load_model_ensemble_and_task(
        [str(FIXTURES / f"authors_{kind}_checkpoint.pt")]
    )
    model = models[0].eval()
    assert cfg.model.mask_type == ("chunk" if kind == "patch" else "random")
    ref = expected(kind)
    fbank = torch.stack([compute_fbank(torch.from_numpy(w), task.cfg.features) for w in ref["wav"]])
    assert np.abs(fbank.numpy() - ref["fbank"]).max() < 1e-2  # float rounding of log energies
    with torch.no_grad():
        out = model(fbank=torch.from_numpy(ref["fbank"]), mask=False)
    assert np.abs(out["x"].numpy() - ref["last_hidden_state"]).max() < 1e-4
    assert len(out["hidden_states"]) == ref["hidden_states"].shape[0]
    for ours, theirs in zip(out["hidden_states"], ref["hidden_states"], strict=True):
        assert np.abs(ours.numpy() - theirs).max() < 1e-4


@pytest.mark.parametrize("kind", KINDS)
def test_load_encoder_from_waveforms(kind):
    encoder = load_encoder(str(FIXTURES / f"authors_{kind}_checkpoint.pt"))
    ref = expected(kind)
    out = encoder.extract_features(ref["wav"], sample_rate=int(ref["sample_rate"]))
    assert np.abs(out.last_hidden_state.numpy() - ref["last_hidden_state"]).max() < 1e-4
    for ours, theirs in zip(out.hidden_states, ref["hidden_states"], strict=True):
        assert np.abs(ours.numpy() - theirs).max() < 1e-4
    assert not out.padding_mask.any()
    first = encoder.extract_features(ref["wav"], sample_rate=16000, layer=1)
    assert torch.allclose(first.last_hidden_state, out.hidden_states[0])


def test_extract_features_is_independent_of_batch_padding():
    encoder = load_encoder(str(FIXTURES / "authors_patch_checkpoint.pt"))
    wav = expected("patch")["wav"]
    short = wav[0][:20000]
    alone = encoder.extract_features([short], sample_rate=16000).last_hidden_state[0]
    batched = encoder.extract_features([short, wav[1]], sample_rate=16000)
    valid = ~batched.padding_mask[0]
    assert torch.allclose(batched.last_hidden_state[0, valid], alone, atol=1e-5)
    # the same through a padded tensor with a sample-level padding mask
    padded = torch.zeros(2, wav.shape[1])
    padded[0, : short.shape[0]] = torch.from_numpy(short)
    padded[1] = torch.from_numpy(wav[1])
    sample_padding = torch.zeros(2, wav.shape[1], dtype=torch.bool)
    sample_padding[0, short.shape[0]:] = True
    again = encoder.extract_features(padded, 16000, padding_mask=sample_padding)
    assert torch.allclose(again.last_hidden_state, batched.last_hidden_state, atol=1e-6)


def test_resampled_input_is_accepted():
    encoder = load_encoder(str(FIXTURES / "authors_frame_checkpoint.pt"))
    out = encoder.extract_features([np.zeros(44100, dtype=np.float32)], sample_rate=44100)
    assert out.last_hidden_state.shape == (1, 98 // 2, 64)


def authors_cfg():
    state = torch.load(FIXTURES / "authors_patch_checkpoint.pt", weights_only=False)
    return OmegaConf.create(state["cfg"])


@pytest.mark.parametrize(
    "section, key, value, message",
    [
        ("task", "feature_type", "wav", "feature_type='wav'"),
        ("task", "deltas", True, "deltas=True"),
        ("model", "layer_norm_first", True, "pre-LN"),
        ("model", "enc_conv_pos", True, "convolutional positional"),
        ("model", "ast_kernel_stride_time", 8, "overlapping tokens"),
    ],
)
def test_values_we_cannot_honour_fail_clearly(section, key, value, message):
    cfg = authors_cfg()
    cfg[section][key] = value
    with pytest.raises(IncompatibleCheckpointError, match=message):
        upgrade_authors_cfg(cfg)


def test_upgrade_maps_names():
    cfg = authors_cfg()
    upgrade_authors_cfg(cfg)
    assert cfg.model.token_frames == 16 and cfg.model.mask_ratio == 0.75
    assert cfg.task.features == {"sample_rate": 16000, "num_mel_bins": 128}
    assert "feature_type" not in cfg.task and "conv_pos" not in cfg.model
