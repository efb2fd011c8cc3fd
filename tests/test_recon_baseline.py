"""The trivial reconstruction baseline logged next to loss_recon, and model.init_style."""

import torch

from mae_ast_plugin.criterions.mae_ast_criterion import mean_visible_token_mse
from mae_ast_plugin.modules.mae_ast import AUTHORS_DEFAULT_INIT, MaeAst, MaeAstConfig

TINY = dict(encoder_layers=2, encoder_embed_dim=32, decoder_embed_dim=32,
            encoder_ffn_embed_dim=64, encoder_attention_heads=2, decoder_layers=1)


def test_mean_visible_token_mse_by_hand_and_with_padding():
    torch.manual_seed(0)
    target, visible = torch.randn(2, 5, 4), torch.randn(2, 3, 4)
    expected = torch.stack([
        (target[b] - visible[b].mean(0)).pow(2).mean() for b in range(2)
    ])
    assert torch.allclose(mean_visible_token_mse(target, visible), expected)
    # padding slots (garbage values) change neither the mean nor the error
    padded_visible = torch.cat([visible, torch.full((2, 2, 4), 50.0)], 1)
    visible_padding = torch.tensor([[False] * 3 + [True] * 2] * 2)
    padded_target = torch.cat([target, torch.full((2, 1, 4), -50.0)], 1)
    masked_padding = torch.tensor([[False] * 5 + [True]] * 2)
    got = mean_visible_token_mse(padded_target, padded_visible, visible_padding, masked_padding)
    assert torch.allclose(got, expected)


def test_model_returns_visible_tokens_in_target_units():
    torch.manual_seed(0)
    model = MaeAst(MaeAstConfig(**TINY))
    source = torch.randn(2, 300, 128)
    padding = torch.zeros(2, 300, dtype=torch.bool)
    padding[1, 200:] = True
    torch.manual_seed(1)
    out = model(fbank=source, padding_mask=padding)
    tokens, _, _ = model.tokenize(source, padding)  # same batch statistics: same normalisation
    for b in range(2):
        real = ~out["visible_padding"][b]
        index = out["masked_idx"][b]
        assert torch.allclose(out["target"][b], tokens[b, index], atol=1e-5)
        visible = out["visible_tokens"][b][real]
        assert len(visible) + len(index) <= tokens.shape[1]
    # the padded clip's visible slots beyond its length are flagged, and the baseline is finite
    assert out["visible_padding"][1].any() and not out["visible_padding"][0].any()
    baseline = mean_visible_token_mse(out["target"], out["visible_tokens"], out["visible_padding"])
    assert torch.isfinite(baseline).all() and (baseline > 0).all()


def test_init_style_authors_keeps_pytorch_default_outside_the_stacks():
    torch.manual_seed(3)
    ours = MaeAst(MaeAstConfig(**TINY))
    torch.manual_seed(3)
    theirs = MaeAst(MaeAstConfig(**TINY, init_style="authors"))
    assert MaeAstConfig().init_style == "bert"  # our default
    for name in AUTHORS_DEFAULT_INIT:
        a, b = getattr(ours, name), getattr(theirs, name)
        if a is None:
            continue
        assert torch.all(a.bias == 0) and not torch.all(b.bias == 0)
        assert abs(a.weight.std().item() - 0.02) < 0.005
        # nn.Linear's default: U(-1/sqrt(fan_in), 1/sqrt(fan_in)), std 1/sqrt(3 fan_in)
        fan_in = a.weight.shape[1]
        assert abs(b.weight.std().item() - (3 * fan_in) ** -0.5) < 0.2 * (3 * fan_in) ** -0.5
    # the Transformer stacks are BERT-initialised in both, identically for one seed
    for key, value in ours.encoder.state_dict().items():
        assert torch.equal(value, theirs.encoder.state_dict()[key]), key
    try:
        MaeAst(MaeAstConfig(**TINY, init_style="xavier"))
    except ValueError as err:
        assert "init_style must be one of bert, authors" in str(err)
    else:
        raise AssertionError("an unknown init_style was accepted")
