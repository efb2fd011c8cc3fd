"""mae_ast_plugin.hear: what the HEAR 2021 API's embeddings and timestamps are.  The benchmark's
own ``hear-validator`` (hearvalidator on PyPI) runs on the module in test_readme_doors.py, as the
README shows it."""

import numpy as np
import pytest
import torch
from conftest import REPO
from tiny_folders import tiny_folder, tone_clip

from mae_ast_plugin import hear, load_encoder

AUTHORS = REPO / "tests" / "fixtures" / "authors-mae-ast"


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    base = tmp_path_factory.mktemp("hear")
    return {token: tiny_folder(base / token, token) for token in ("patch", "frame")}


@pytest.mark.parametrize("name, width", [("authors_patch_checkpoint.pt", 8),
                                         ("authors_frame_checkpoint.pt", 1)])
def test_hear_model_of_an_authors_checkpoint(name, width):
    model = hear.load_model(str(AUTHORS / name))
    encoder = load_encoder(str(AUTHORS / name))
    assert model.timestamp_embedding_size == width * encoder.embed_dim
    audio = torch.from_numpy(np.stack([tone_clip(1.5, 1), tone_clip(1.5, 2)]))
    scene = hear.get_scene_embeddings(audio, model)
    assert scene.shape == (2, model.scene_embedding_size) and torch.isfinite(scene).all()


@pytest.mark.parametrize("token, hop_ms, first_ms, repeats", [("patch", 40.0, 27.5, 4),
                                                              ("frame", 20.0, 17.5, 1)])
def test_timestamp_and_scene_embeddings(token, hop_ms, first_ms, repeats, folders):
    """Timestamp embeddings are the encoder's last-layer tokens of each time step (the mel
    blocks of a patch step concatenated), repeated to a hop of at most 50 ms; scene embeddings
    are their mean over time; a 25-s sound is encoded in windows as extract_features does."""
    model = hear.load_model(str(folders[token]))
    audio = torch.from_numpy(np.stack([tone_clip(25.0, 1), tone_clip(25.0, 2)]))
    embeddings, timestamps = hear.get_timestamp_embeddings(audio, model)
    out = load_encoder(str(folders[token])).extract_features(list(audio), 16000)
    hidden = out.last_hidden_state
    steps = hidden.reshape(2, -1, model.timestamp_embedding_size)
    assert model.timestamp_embedding_size == hidden.shape[-1] * (8 if token == "patch" else 1)
    assert embeddings.dtype == torch.float32 and timestamps.shape == embeddings.shape[:2]
    assert torch.allclose(embeddings[:, ::repeats], steps, atol=1e-6)
    assert torch.equal(embeddings[:, repeats - 1 :: repeats], embeddings[:, ::repeats])
    assert timestamps[0, 0].item() == first_ms
    assert torch.allclose(timestamps.diff(dim=1), torch.full((2, embeddings.shape[1] - 1), hop_ms))
    scene = hear.get_scene_embeddings(audio, model)
    assert scene.shape == (2, model.scene_embedding_size)
    assert torch.allclose(scene, embeddings.mean(dim=1), atol=1e-5)


def test_load_model_needs_a_path():
    with pytest.raises(ValueError, match="needs a checkpoint or exported folder"):
        hear.load_model()
