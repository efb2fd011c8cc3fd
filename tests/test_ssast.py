"""The SSAST baseline model (``ssast``): shapes, what its encoder sees, and training runs of
config/pretrain/ssast_{patch,frame}.yaml through fairseq-hydra-train."""

import pytest
import torch
from conftest import TINY_ARCH

import mae_ast_plugin  # noqa: F401  (registers the models)
from mae_ast_plugin.models.mae_ast import MaeAstModel, MaeAstModelConfig
from mae_ast_plugin.models.ssast import SsastModel, SsastModelConfig

TINY = TINY_ARCH  # the tiny model's config fields
FRAME = dict(token_frames=2, token_mel_bins=128, mask_type="random")


def encoder_input_lengths(model, *args, **kwargs):
    """Token counts of every encoder call during ``model(*args, **kwargs)``."""
    lengths = []
    handle = model.encoder.register_forward_pre_hook(
        lambda module, a: lengths.append(a[0].shape[1])
    )
    try:
        out = model(*args, **kwargs)
    finally:
        handle.remove()
    return lengths, out


@pytest.mark.parametrize("tokens", [{}, FRAME], ids=["patch", "frame"])
def test_forward_shapes_and_keys(tokens):
    torch.manual_seed(0)
    model = SsastModel(SsastModelConfig(**TINY, **tokens))
    source = torch.randn(3, 300, 128)
    padding = torch.zeros(3, 300, dtype=torch.bool)
    padding[2, 200:] = True
    out = model(fbank=source, padding_mask=padding)
    assert set(out) == {
        "recon", "cls", "target", "masked_idx", "masked_padding", "token_padding",
        "visible_tokens", "visible_padding",  # for the criterion's mean-visible-token baseline
    }
    token_dim = 256
    batch, masked = out["masked_idx"].shape
    assert batch == 3 and masked > 0
    for key in ("recon", "cls", "target"):
        assert out[key].shape == (3, masked, token_dim)
    num_tokens = out["token_padding"].shape[1]
    assert num_tokens == (300 // 16) * 8 if not tokens else 300 // 2
    # Padded tokens are never masked.
    assert not out["token_padding"].gather(1, out["masked_idx"])[~out["masked_padding"]].any()
    # The mae_ast criterion's loss works on the output and reaches the mask embedding.
    from mae_ast_plugin.criterions.mae_ast_criterion import masked_prediction_losses

    mse, infonce, _ = masked_prediction_losses(
        out["recon"], out["cls"], out["target"], out["masked_padding"]
    )
    (10 * mse + infonce).sum().backward()
    assert model.encoder_mask_emb.grad is not None and model.encoder_mask_emb.grad.abs().sum() > 0


def test_parameters_are_ssast_not_mae():
    model = SsastModel(SsastModelConfig(**TINY))
    names = dict(model.named_parameters())
    assert names["encoder_mask_emb"].shape == (32,)
    assert names["final_proj_reconstruction.weight"].shape == (256, 32)
    assert names["final_proj_classification.weight"].shape == (256, 32)
    assert not any(
        n.startswith(("decoder", "post_enc_proj")) or n == "decoder_mask_emb" for n in names
    )
    assert torch.isfinite(model.encoder_mask_emb).all() and model.encoder_mask_emb.std() > 0


def test_ssast_encoder_sees_all_tokens_mae_only_visible():
    torch.manual_seed(0)
    source = torch.randn(2, 160, 128)  # 10 time blocks x 8 mel blocks = 80 patch tokens
    mae = MaeAstModel(MaeAstModelConfig(**TINY))
    ssast = SsastModel(SsastModelConfig(**TINY))
    mae_lengths, mae_out = encoder_input_lengths(mae, fbank=source)
    ssast_lengths, ssast_out = encoder_input_lengths(ssast, fbank=source)
    assert ssast_lengths == [80]
    assert mae_lengths == [80 - mae_out["masked_idx"].shape[1]] == [20]
    assert ssast_out["masked_idx"].shape == mae_out["masked_idx"].shape == (2, 60)


def test_masked_slots_hold_mask_embedding_plus_position():
    """The encoder input at masked slots is encoder_mask_emb + position; elsewhere the features."""
    torch.manual_seed(0)
    model = SsastModel(SsastModelConfig(**TINY, dropout_input=0.0)).eval()
    source = torch.randn(2, 160, 128)
    captured = {}
    handle = model.encoder.register_forward_pre_hook(lambda m, a: captured.setdefault("x", a[0]))
    with torch.no_grad():
        out = model(fbank=source, mask=True)
    handle.remove()
    x, masked_idx = captured["x"], out["masked_idx"]
    from mae_ast_plugin.modules.tokens import sinusoidal_positions

    positions = sinusoidal_positions(80, 32, "cpu", torch.float32)
    expected_masked = model.encoder_mask_emb + positions[masked_idx]  # (B, M, C)
    got_masked = x.gather(1, masked_idx.unsqueeze(-1).expand(-1, -1, 32))
    assert torch.allclose(got_masked, expected_masked, atol=1e-6)
    tokens, _, _ = model.tokenize(source, None)
    features = model.add_positions(model.post_extract_proj(tokens), None)
    visible = torch.ones(2, 80, dtype=torch.bool)
    visible.scatter_(1, masked_idx, False)
    assert torch.allclose(x[visible], features[visible], atol=1e-5)


def test_remove_pretraining_modules_keeps_feature_extraction():
    torch.manual_seed(0)
    model = SsastModel(SsastModelConfig(**TINY))
    model.remove_pretraining_modules()
    assert not hasattr(model, "encoder_mask_emb") or model.encoder_mask_emb is None
    assert model.final_proj_reconstruction is None and model.final_proj_classification is None
    model.eval()
    source = torch.randn(2, 160, 128)
    out = model(fbank=source, mask=False)
    assert out["x"].shape == (2, 80, 32) and len(out["hidden_states"]) == 2
    features, padding = model.extract_features(fbank=source)
    assert torch.equal(features, out["x"]) and padding is None


@pytest.mark.slow
@pytest.mark.parametrize("config_name,token_frames", [("ssast_patch", 16), ("ssast_frame", 2)])
def test_hydra_train_ssast_config_and_reload(tiny_pretrained, config_name, token_frames):
    """fairseq-hydra-train with the SSAST config (conftest.tiny_pretrained: a run shared with
    the export tests), then fairseq's own loader."""
    from fairseq import checkpoint_utils

    checkpoint = tiny_pretrained(config_name)
    assert checkpoint.is_file()
    models, cfg, task = checkpoint_utils.load_model_ensemble_and_task([str(checkpoint)])
    model = models[0]
    assert isinstance(model, SsastModel)
    assert cfg.model._name == "ssast"
    assert cfg.model.token_frames == token_frames
    assert model.encoder_mask_emb.shape == (32,)
    model.eval()
    with torch.no_grad():
        out = model(fbank=torch.randn(1, 200, 128), mask=False)
    assert out["x"].shape[-1] == 32
