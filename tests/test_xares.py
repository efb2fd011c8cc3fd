"""mae_ast_plugin.xares_encoder: the X-ARES encoder, checked by the xares package's own encoder
checker and built the way ``xares.run`` builds encoders."""

import numpy as np
import pytest
import torch
from conftest import REPO
from tiny_folders import tiny_folder, tone_clip
from xares import audio_encoder_checker  # installed by make install (--no-deps, + loguru)

from mae_ast_plugin import load_encoder
from mae_ast_plugin.xares_encoder import MaeAstXaresEncoder


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    base = tmp_path_factory.mktemp("xares")
    return {token: tiny_folder(base / token, token) for token in ("patch", "frame")}


@pytest.mark.parametrize("token, hop_ms, blocks", [("patch", 160.0, 8), ("frame", 20.0, 1)])
def test_xares_checker_accepts_the_encoder(token, hop_ms, blocks, folders, monkeypatch):
    from xares.utils import attr_from_py_path

    monkeypatch.chdir(REPO)  # xares.run names the encoder by its file's path
    monkeypatch.setenv("MAE_AST_CHECKPOINT", str(folders[token]))
    encoder = attr_from_py_path("mae_ast_plugin/xares_encoder.py", endswith="Encoder")()
    assert type(encoder) is MaeAstXaresEncoder
    assert audio_encoder_checker.check_audio_encoder(encoder)
    assert encoder.hop_size_in_ms == hop_ms and encoder.sampling_rate == 16000
    # variable lengths, one longer than a window: the rows are extract_features' tokens
    reference = load_encoder(str(folders[token]))
    for seconds in (3.0, 31.3):
        audio = torch.from_numpy(np.stack([tone_clip(seconds, 1), tone_clip(seconds, 2)]))
        out = encoder(audio)
        tokens = reference.extract_features(list(audio), 16000).last_hidden_state
        assert out.shape == (2, tokens.shape[1] // blocks, encoder.output_dim)
        assert torch.allclose(out, tokens.reshape(out.shape), atol=1e-6)


def test_xares_encoder_needs_a_model(monkeypatch):
    monkeypatch.delenv("MAE_AST_CHECKPOINT", raising=False)
    with pytest.raises(ValueError, match="MAE_AST_CHECKPOINT=PATH"):
        MaeAstXaresEncoder()
