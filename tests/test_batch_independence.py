"""A clip's embedding does not depend on what it is batched with or how it is padded, through
every door: load_encoder (one pass and windowed), the HEAR module, the X-ARES encoder and the
Hugging Face folder (the data2vec/EAT family's known failure: emotion2vec issues #37, #63)."""

import numpy as np
import pytest
import torch
from tiny_folders import tiny_folder, tone_clip

from mae_ast_plugin import hear, load_encoder
from mae_ast_plugin.export import main as export_main
from mae_ast_plugin.xares_encoder import MaeAstXaresEncoder

RATE = 16000
ATOL = 1e-5


@pytest.fixture(scope="module", params=["patch", "frame"])
def folder(request, tmp_path_factory):
    return tiny_folder(tmp_path_factory.mktemp(f"batch_{request.param}"), request.param)


def clips():
    """The clip under test (3.3 s), companions shorter and longer, and a 13-s clip (windowed)."""
    return {"clip": tone_clip(3.3, 1), "shorter": tone_clip(1.2, 2), "longer": tone_clip(7.9, 3),
            "long": tone_clip(13.0, 4)}


def real_rows(out, row):
    return out.last_hidden_state[row][~out.padding_mask[row]]


def test_load_encoder_and_windows(folder):
    encoder = load_encoder(str(folder))
    c = clips()
    for name in ("clip", "long"):
        alone = real_rows(encoder.extract_features([c[name]], RATE), 0)
        for companions in (["shorter"], ["longer"], ["longer", "shorter", "long"]):
            batch = encoder.extract_features([c[k] for k in companions] + [c[name]], RATE)
            assert torch.allclose(real_rows(batch, len(companions)), alone, atol=ATOL)
    # a padded (B, N) tensor, padding filled with noise rather than zeros
    clip = torch.from_numpy(c["clip"])
    padded = torch.randn(2, clip.numel() + 20000)
    padded[0, : clip.numel()] = clip
    mask = torch.ones_like(padded, dtype=torch.bool)
    mask[0, : clip.numel()] = False
    mask[1, :] = False
    out = encoder.extract_features(padded, RATE, padding_mask=mask)
    assert torch.allclose(real_rows(out, 0),
                          real_rows(encoder.extract_features([clip], RATE), 0), atol=ATOL)


def test_hear_and_xares(folder):
    """Both take (batch, samples) of equal lengths: a row's output does not depend on the other
    rows (nor on how many there are)."""
    c = clips()
    model = hear.load_model(str(folder))
    xares = MaeAstXaresEncoder(str(folder))
    for name in ("clip", "long"):
        n = len(c[name])
        alone = torch.from_numpy(c[name])[None]
        others = torch.from_numpy(np.stack([tone_clip(n / RATE, 7)[:n], c[name],
                                            np.zeros(n, np.float32)]))
        for door in (lambda a: hear.get_timestamp_embeddings(a, model)[0],
                     lambda a: hear.get_scene_embeddings(a, model), xares):
            assert torch.allclose(door(others)[1], door(alone)[0], atol=ATOL)


def test_hugging_face_folder(folder, tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf_home"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    from transformers import AutoFeatureExtractor, AutoModel

    out_dir = tmp_path / "hf"
    assert export_main([str(folder), str(out_dir), "--format", "hf"]) == 0
    extractor = AutoFeatureExtractor.from_pretrained(out_dir, trust_remote_code=True)
    model = AutoModel.from_pretrained(out_dir, trust_remote_code=True).eval()
    c = clips()
    with torch.no_grad():
        for name in ("clip", "long"):
            alone = model(**extractor(c[name], sampling_rate=RATE))
            expected = alone.last_hidden_state[0][~alone.padding_mask[0]]
            for companions in (["shorter"], ["longer", "long"]):
                inputs = extractor([c[k] for k in companions] + [c[name]], sampling_rate=RATE)
                batch = model(**inputs)
                row = len(companions)
                got = batch.last_hidden_state[row][~batch.padding_mask[row]]
                assert torch.allclose(got, expected, atol=ATOL)
            # more padding frames, holding noise instead of zeros
            inputs = extractor(c[name], sampling_rate=RATE)
            values, mask = inputs["input_values"], inputs["attention_mask"]
            extra = 300
            values = torch.cat((values, torch.randn(1, extra, values.shape[-1])), dim=1)
            mask = torch.cat((mask, torch.zeros(1, extra, dtype=mask.dtype)), dim=1)
            padded = model(input_values=values, attention_mask=mask)
            got = padded.last_hidden_state[0][~padded.padding_mask[0]]
            assert torch.allclose(got, expected, atol=ATOL)
