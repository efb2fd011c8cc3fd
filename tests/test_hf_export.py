"""mae-ast-export --format hf: the Hugging Face folder, loaded by the real ``transformers``
(AutoModel, AutoModelForAudioClassification, AutoFeatureExtractor with trust_remote_code) in a
process where neither fairseq nor mae_ast_plugin can be imported."""

import json
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import soundfile
import torch
from conftest import REPO
from tiny_folders import tiny_folder, tone_clip

from mae_ast_plugin import load_encoder
from mae_ast_plugin.export import main as export_main
from mae_ast_plugin.model_io import load_classifier
from mae_ast_plugin.tools import predict

AUTHORS = REPO / "tests" / "fixtures" / "authors-mae-ast"

# Loads every folder named on the command line with transformers' Auto classes and writes what
# they give for the clips; imports of fairseq and mae_ast_plugin fail in this process.
HF_RUNNER = textwrap.dedent(
    """
    import json, sys

    class Blocked:
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in ("fairseq", "mae_ast_plugin", "omegaconf", "hydra"):
                raise ImportError(f"{name} is blocked in this test")

    sys.meta_path.insert(0, Blocked())
    import numpy as np
    import torch
    from transformers import (AutoFeatureExtractor, AutoModel,
                              AutoModelForAudioClassification)

    clips, out = np.load(sys.argv[1]), {}
    for folder in sys.argv[3:]:
        extractor = AutoFeatureExtractor.from_pretrained(folder, trust_remote_code=True)
        model = AutoModel.from_pretrained(folder, trust_remote_code=True).eval()
        mono = extractor([clips["short"], clips["long"]], sampling_rate=16000)
        stereo = extractor(clips["stereo"], sampling_rate=44100, channel_axis=1)
        with torch.no_grad():
            for name, inputs in (("mono", mono), ("stereo", stereo)):
                result = model(**inputs)
                out[f"{folder}|{name}|padding"] = result.padding_mask.numpy()
                for i, state in enumerate(result.hidden_states):
                    out[f"{folder}|{name}|{i}"] = state.numpy()
            config = json.load(open(folder + "/config.json"))
            if "MaeAstForAudioClassification" in config["architectures"]:
                classifier = AutoModelForAudioClassification.from_pretrained(
                    folder, trust_remote_code=True).eval()
                for name in ("short", "long"):
                    inputs = extractor(clips[name], sampling_rate=16000)
                    out[f"{folder}|logits|{name}"] = classifier(**inputs).logits[0].numpy()
                out[f"{folder}|labels"] = np.array(
                    [classifier.config.id2label[i] for i in range(classifier.config.num_labels)])
    assert not any(m.split(".")[0] in ("fairseq", "mae_ast_plugin") for m in sys.modules)
    np.savez(sys.argv[2], **out)
    """
)


@pytest.fixture(scope="module")
def sources(tmp_path_factory):
    base = tmp_path_factory.mktemp("hf_sources")
    return {
        "patch folder": tiny_folder(base / "patch", "patch"),
        "frame classifier folder": tiny_folder(base / "frame_cls", "frame", classes=4, seed=1,
                                               superb_head=True),
        "authors' patch checkpoint": AUTHORS / "authors_patch_checkpoint.pt",
    }


@pytest.mark.slow
def test_hf_folders_match_load_encoder_and_predict(sources, tmp_path):
    rng = np.random.default_rng(0)
    clips = {"short": tone_clip(3.1, 1), "long": tone_clip(23.7, 2),  # the long one: windowed
             "stereo": (0.2 * rng.standard_normal((44100 * 2, 2))).astype(np.float32)}
    np.savez(tmp_path / "clips.npz", **clips)
    folders = {}
    for name, source in sources.items():
        folder = tmp_path / name.replace(" ", "_").replace("'", "")
        assert export_main([str(source), str(folder), "--format", "hf"]) == 0
        assert sorted(p.name for p in folder.iterdir()) == [
            "config.json", "configuration_mae_ast.py", "feature_extraction_mae_ast.py",
            "model.safetensors", "modeling_mae_ast.py", "preprocessor_config.json"]
        for code in folder.glob("*.py"):
            assert "mae_ast_plugin" not in code.read_text().replace("mae-ast-plugin", "")
            assert "fairseq" not in code.read_text()
        folders[name] = folder
    script = tmp_path / "hf_runner.py"
    script.write_text(HF_RUNNER)
    proc = subprocess.run(
        [sys.executable, str(script), str(tmp_path / "clips.npz"), str(tmp_path / "out.npz"),
         *map(str, folders.values())],
        cwd=tmp_path, capture_output=True, text=True, timeout=600,
        env={"PATH": "/usr/bin:/bin", "HF_HOME": str(tmp_path / "hf_home"),
             "HF_HUB_OFFLINE": "1"},
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    got = np.load(tmp_path / "out.npz")

    for name, source in sources.items():
        folder = str(folders[name])
        encoder = load_encoder(str(source))
        expected = {
            "mono": encoder.extract_features([clips["short"], clips["long"]], 16000),
            "stereo": encoder.extract_features([clips["stereo"]], 44100, channel_axis=1),
        }
        for batch, ours in expected.items():
            padding = got[f"{folder}|{batch}|padding"]
            assert np.array_equal(padding, ours.padding_mask.numpy()), (name, batch)
            assert len(ours.hidden_states) == encoder.num_layers
            for i, layer in enumerate(ours.hidden_states):
                theirs = got[f"{folder}|{batch}|{i + 1}"]
                real = ~padding
                assert np.allclose(theirs[real], layer.numpy()[real], atol=1e-5), (name, i)

    # the classifier: logits as mae-ast-predict scores the same files
    folder = str(folders["frame classifier folder"])
    config = json.loads((folders["frame classifier folder"] / "config.json").read_text())
    assert config["id2label"] == {str(i): f"class {i}" for i in range(4)}
    assert list(got[f"{folder}|labels"]) == [f"class {i}" for i in range(4)]
    model, task = load_classifier(str(sources["frame classifier folder"]))
    for name in ("short", "long"):
        wav = tmp_path / f"{name}.wav"
        soundfile.write(wav, clips[name], 16000, subtype="FLOAT")
        probabilities = predict.predict_file(model, task, str(wav))
        logits = torch.from_numpy(got[f"{folder}|logits|{name}"])
        assert torch.allclose(torch.softmax(logits, -1), probabilities, atol=1e-5)
