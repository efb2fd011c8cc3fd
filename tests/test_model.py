import math

import pytest
import torch
import torch.nn.functional as F
from conftest import TINY_ARCH

from mae_ast_plugin.criterions.mae_ast_criterion import masked_prediction_losses
from mae_ast_plugin.models.mae_ast import MaeAstModel, MaeAstModelConfig
from mae_ast_plugin.modules.masking import num_masked_tokens


def tiny(**overrides):
    cfg = dict(TINY_ARCH, **overrides)
    torch.manual_seed(0)
    return MaeAstModel(MaeAstModelConfig(**cfg))


def test_defaults_are_the_papers():
    cfg = MaeAstModelConfig()
    assert (cfg.token_frames, cfg.token_mel_bins, cfg.mask_type, cfg.mask_ratio) == (
        16,
        16,
        "chunk",
        0.75,
    )
    assert (cfg.encoder_layers, cfg.decoder_layers, cfg.encoder_embed_dim) == (6, 2, 768)
    assert (cfg.encoder_attention_heads, cfg.encoder_ffn_embed_dim) == (12, 3072)


def test_pretraining_forward_shapes_and_encoder_sees_only_visible_tokens():
    model = tiny()
    seen = []
    model.encoder.register_forward_hook(lambda mod, args, out: seen.append(args[0].shape[1]))
    source = torch.randn(3, 998, 128)  # 10 s: 62 x 8 = 496 patch tokens
    out = model(fbank=source)
    masked = num_masked_tokens(496, 0.75)
    assert masked == 372
    for key in ("recon", "cls", "target"):
        assert out[key].shape == (3, masked, 256)
    assert seen == [496 - masked]  # 124 visible tokens, as in the paper


def test_frame_tokens_shapes():
    model = tiny(token_frames=2, token_mel_bins=128, mask_type="random")
    out = model(fbank=torch.randn(2, 998, 128))
    assert out["target"].shape == (2, 499 - int(0.25 * 499), 256)


def test_padded_clip_features_do_not_depend_on_the_batch():
    model = tiny().eval()
    short, long = torch.randn(1, 300, 128), torch.randn(1, 500, 128)
    alone = model(fbank=short, mask=False)["x"]
    batch = torch.zeros(2, 500, 128)
    batch[0, :300], batch[1] = short[0], long[0]
    padding = torch.zeros(2, 500, dtype=torch.bool)
    padding[0, 300:] = True
    out = model(fbank=batch, padding_mask=padding, mask=False)
    valid = ~out["padding_mask"][0]
    assert valid.sum() == alone.shape[1]
    assert torch.allclose(out["x"][0, valid], alone[0], atol=1e-5)


def test_padded_tokens_never_reach_the_encoder_as_visible():
    model = tiny()
    batch = torch.randn(2, 480, 128)
    padding = torch.zeros(2, 480, dtype=torch.bool)
    padding[1, 200:] = True
    torch.manual_seed(5)
    out = model(fbank=batch, padding_mask=padding)
    valid_tokens = (200 // 16) * 8
    real_slots = ~out["masked_padding"][1]
    assert out["masked_idx"][1][real_slots].max() < valid_tokens
    assert real_slots.sum() == num_masked_tokens(valid_tokens, 0.75)  # its own share
    assert out["target"].shape[1] == num_masked_tokens(480 // 16 * 8, 0.75)


def test_batchnorm_statistics_ignore_padding():
    model = tiny()
    real = torch.randn(1, 300, 128) * 3 + 5
    batch = torch.cat([real, torch.zeros(1, 200, 128)], dim=1)
    padding = torch.zeros(1, 500, dtype=torch.bool)
    padding[0, 300:] = True
    model.train()
    model.normalize(batch, padding)
    momentum = model.batch_norm.momentum
    expected_mean = momentum * real.mean()
    assert torch.allclose(model.batch_norm.running_mean, expected_mean.view(1), atol=1e-4)


def test_normalisation_matches_batchnorm2d_in_training_and_eval():
    model = tiny()
    reference = torch.nn.BatchNorm2d(1, affine=False)
    for _ in range(3):
        x = torch.randn(4, 64, 128) * 3 + 2
        model.train()
        reference.train()
        assert torch.allclose(
            model.normalize(x, None), reference(x.unsqueeze(1)).squeeze(1) * 0.5, atol=1e-5
        )
    assert torch.allclose(model.batch_norm.running_mean, reference.running_mean)
    assert torch.allclose(model.batch_norm.running_var, reference.running_var)
    assert model.batch_norm.num_batches_tracked == reference.num_batches_tracked == 3
    model.eval()
    reference.eval()
    x = torch.randn(2, 32, 128)
    assert torch.allclose(
        model.normalize(x, None), reference(x.unsqueeze(1)).squeeze(1) * 0.5, atol=1e-5
    )


def test_normalisation_is_batchnorm_times_half():
    model = tiny().train()
    x = torch.randn(4, 64, 128) * 2 + 1
    normed = model.normalize(x, None)
    assert abs(normed.mean().item()) < 1e-5
    assert math.isclose(normed.std(unbiased=False).item(), 0.5, rel_tol=1e-3)


def test_losses_on_known_inputs():
    target = torch.tensor([[[1.0, 0.0], [0.0, 1.0]]])  # one clip, two masked tokens
    recon = torch.tensor([[[1.0, 1.0], [0.0, 1.0]]])
    cls = torch.tensor([[[2.0, 0.0], [0.0, 1.0]]])
    mse, infonce, correct = masked_prediction_losses(recon, cls, target)
    assert torch.allclose(mse, torch.tensor([0.25]))  # one wrong value of four
    # token 0: logits (2, 0) -> -log softmax = log(1 + e^-2); token 1: (0, 1) -> log(1 + e^-1)
    expected = (math.log(1 + math.exp(-2)) + math.log(1 + math.exp(-1))) / 2
    assert torch.allclose(infonce, torch.tensor([expected]))
    assert correct.tolist() == [2]


def test_infonce_negatives_come_from_the_same_clip_only():
    torch.manual_seed(0)
    target = torch.randn(2, 5, 8)
    cls = torch.randn(2, 5, 8)
    _, joint, _ = masked_prediction_losses(cls, cls, target)
    _, first, _ = masked_prediction_losses(cls[:1], cls[:1], target[:1])
    assert torch.allclose(joint[0], first[0])
    logits = cls[0] @ target[0].T
    assert torch.allclose(first[0], F.cross_entropy(logits, torch.arange(5)))


def test_remove_pretraining_modules_keeps_a_working_encoder():
    model = tiny()
    model.remove_pretraining_modules()
    assert model.decoder is None and not hasattr(model, "decoder_mask_emb")
    out = model.eval()(fbank=torch.randn(1, 64, 128), mask=False)
    assert out["x"].shape == (1, 32, 32)


def test_too_short_input_is_a_clear_error():
    with pytest.raises(ValueError, match="shorter than one token"):
        tiny()(fbank=torch.randn(1, 10, 128), mask=False)
