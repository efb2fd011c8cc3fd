"""mae-ast-export: the authors' format read by s3prl's real ``mae_ast`` upstream, and the
safetensors folder read in a process where fairseq cannot be imported.

Checkpoints: ours (a tiny patch and a tiny frame model from fairseq-hydra-train, a fine-tuned
classifier) and the authors' fixtures (tests/fixtures/authors-mae-ast)."""

import contextlib
import dataclasses
import io
import json
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import REPO
from finetune_helpers import (
    checkpoint_of,
    pretrained_checkpoint,
    recipe_data,
)

from mae_ast_plugin import load_encoder
from mae_ast_plugin.export import main as export_main
from mae_ast_plugin.features import FbankConfig
from mae_ast_plugin.model_io.authors import NotExportableError, authors_cfg

# Every test here starts a Python process (README, "Commands": the test tiers).
pytestmark = pytest.mark.slow

FIXTURES = REPO / "tests" / "fixtures" / "authors-mae-ast"
EXPORT = str(Path(sys.executable).parent / "mae-ast-export")
# Clip lengths in samples.  ALIGNED: whole 16-frame patch rows (400 + 160 (F - 1) samples for
# F = 32, 80, 128 frames), so no token is partly padding when they are batched.  Elsewhere the
# authors' model counts a token holding the clip's last frames as real and ours as padding
# (ours never lets padded values into a token), so unaligned clips are compared one at a time.
ALIGNED = (5360, 13040, 20720)
UNALIGNED = (7001, 16000, 23456)


def export_script(*args) -> subprocess.CompletedProcess:
    """The installed ``mae-ast-export`` console script, in its own process."""
    return subprocess.run(
        [EXPORT, *map(str, args)], cwd=REPO, capture_output=True, text=True, timeout=300
    )


def export(*args) -> subprocess.CompletedProcess:
    """``mae-ast-export ARGS`` as the console script's ``main`` in this process, its exit status
    and output as ``export_script`` returns them: an interpreter start with torch and fairseq
    costs seconds per call, and these tests are about the files written.  The script itself runs
    in test_authors_format_refuses_options_it_lacks and
    test_folder_with_unknown_encoder_field_is_refused."""
    argv = [str(arg) for arg in args]
    stdout, stderr = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
        code = export_main(argv)
    return subprocess.CompletedProcess([EXPORT, *argv], code, stdout.getvalue(), stderr.getvalue())


def clip(samples: int, seed: int) -> torch.Tensor:
    rng = np.random.default_rng(seed)
    t = np.arange(samples) / 16000
    wave = 0.3 * np.sin(2 * np.pi * (200 + 300 * t) * t) + 0.05 * rng.standard_normal(samples)
    return torch.from_numpy(wave.astype(np.float32))


@pytest.fixture(scope="module")
def checkpoints(base, tiny_pretrained):
    return {
        "ours_patch": pretrained_checkpoint(base),
        "ours_frame": lambda: tiny_pretrained("mae_ast_frame"),
        "ours_ssast": lambda: tiny_pretrained("ssast_patch"),
        "authors_patch": FIXTURES / "authors_patch_checkpoint.pt",
        "authors_frame": FIXTURES / "authors_frame_checkpoint.pt",
    }


def checkpoint(checkpoints, name) -> Path:
    """The checkpoint ``name``; the frame and SSAST models are trained on first use."""
    made = checkpoints[name]
    return made() if callable(made) else made


# --------------------------------------------------------------------------------------------
# The authors' format, read by s3prl 0.4.18's mae_ast upstream (mae_ast_local)
def s3prl_fields():
    from s3prl.upstream.mae_ast.load_model import MAE_AST_Pretraining_Config
    from s3prl.upstream.mae_ast.mae_ast import MAE_AST_Config

    return (
        {f.name for f in dataclasses.fields(MAE_AST_Config)},
        {f.name for f in dataclasses.fields(MAE_AST_Pretraining_Config)},
    )


def comparable(ours: torch.Tensor, mel_blocks: int, rows: int) -> torch.Tensor:
    """s3prl's view of our (B, L, C) hidden states: the ``mel_blocks`` tokens of one time step
    concatenated into one (mel_blocks x C) vector per step (so patch tokens become one vector per
    16 frames, frame tokens stay as they are), truncated to the ``rows`` steps s3prl keeps."""
    batch, length, dim = ours.shape
    return ours.reshape(batch, length // mel_blocks, mel_blocks * dim)[:, :rows]


@pytest.mark.parametrize("name", ["ours_patch", "ours_frame", "authors_patch", "authors_frame"])
def test_authors_format_loads_in_s3prl_with_the_same_hidden_states(name, checkpoints, tmp_path):
    from s3prl.upstream.mae_ast.expert import UpstreamExpert

    original = checkpoint(checkpoints, name)
    out = tmp_path / "exported.pt"
    proc = export(original, out, "--format", "authors", "--max-token-length", "2000")
    assert proc.returncode == 0, proc.stderr
    assert "authors' format" in proc.stdout

    # the authors' layout: a plain, weights_only-loadable dict with their keys and fields
    exported = torch.load(out, map_location="cpu", weights_only=True)
    reference = torch.load(FIXTURES / "authors_patch_checkpoint.pt", weights_only=True)
    assert set(exported) == set(reference)
    model_fields, task_fields = s3prl_fields()
    assert set(exported["cfg"]["model"]) == model_fields | {"_name"}
    assert set(exported["cfg"]["task"]) == task_fields | {"_name"}
    assert set(exported["model"]) == set(reference["model"])
    assert exported["model"]["enc_sine_pos_embed.pe"].shape[:2] == (1, 2000)
    assert exported["cfg"]["task"]["feature_type"] == "fbank"
    expected_mask = "chunk_mask" if name.endswith("patch") else "random_mask"
    assert exported["cfg"]["task"]["mask_type"] == expected_mask

    upstream = UpstreamExpert(str(out)).eval()  # load_state_dict(strict=True) inside
    encoder = load_encoder(str(original))
    mel_blocks = 128 // exported["cfg"]["model"]["ast_kernel_size_chan"]

    with torch.no_grad():
        # batched, clips of whole patch rows: compare each clip's real time steps
        waves = [clip(n, seed) for seed, n in enumerate(ALIGNED)]
        theirs = upstream(waves)["hidden_states"]
        ours = encoder.extract_features(waves, 16000)
        assert len(theirs) == len(ours.hidden_states) == encoder.num_layers
        for i in range(len(waves)):
            real = (~ours.padding_mask[i]).sum().item() // mel_blocks
            for theirs_layer, ours_layer in zip(theirs, ours.hidden_states, strict=True):
                expected = comparable(ours_layer[i : i + 1], mel_blocks, real)
                assert torch.allclose(theirs_layer[i : i + 1, :real], expected, atol=1e-4)
        # one clip at a time, any length
        for seed, samples in enumerate(UNALIGNED):
            wave = clip(samples, seed + 10)
            theirs = upstream([wave])["hidden_states"]
            ours = encoder.extract_features([wave], 16000).hidden_states
            for theirs_layer, ours_layer in zip(theirs, ours, strict=True):
                expected = comparable(ours_layer, mel_blocks, theirs_layer.shape[1])
                assert theirs_layer.shape == expected.shape
                assert torch.allclose(theirs_layer, expected, atol=1e-4)

    # and the export reads back into this plugin (through model_io.authors) as the same encoder
    again = load_encoder(str(out)).extract_features([clip(9000, 3)], 16000).last_hidden_state
    first = encoder.extract_features([clip(9000, 3)], 16000).last_hidden_state
    assert torch.allclose(again, first, atol=1e-5)


def test_authors_format_refuses_options_it_lacks(runs, checkpoints, tmp_path):
    from omegaconf import OmegaConf

    from mae_ast_plugin.models.mae_ast import MaeAstModelConfig

    def cfg(**changes):
        fields = dataclasses.asdict(MaeAstModelConfig())
        return OmegaConf.create({**fields, "_name": "mae_ast", **changes})

    fbank = FbankConfig()
    model, task = authors_cfg(cfg(), fbank, "/data", 48000)
    assert task["mask_type"] == "chunk_mask" and model["ast_kernel_size_time"] == 16
    cases = {
        "model._name=ssast": cfg(_name="ssast"),
        "model.mask_type=span": cfg(mask_type="span"),
        "model.chunk_min_size=2": cfg(chunk_min_size=2),
        "model.new_option": cfg(new_option=1),
    }
    for option, bad in cases.items():
        with pytest.raises(NotExportableError, match=option.replace(".", r"\.")):
            authors_cfg(bad, fbank, "/data", 48000)
    with pytest.raises(NotExportableError, match="frame_length_ms=20.0"):
        authors_cfg(cfg(), FbankConfig(frame_length_ms=20.0), "/data", 48000)

    proc = export(checkpoint_of(runs, "esc50"), tmp_path / "x.pt", "--format", "authors")
    assert proc.returncode == 2
    assert "model._name=mae_ast_classifier is a fine-tuned classifier" in proc.stderr
    proc = export_script(
        checkpoint(checkpoints, "ours_ssast"), tmp_path / "x.pt", "--format", "authors"
    )
    assert proc.returncode == 2 and "model._name=ssast is the SSAST baseline" in proc.stderr
    assert not (tmp_path / "x.pt").exists()


# --------------------------------------------------------------------------------------------
# The safetensors folder, loaded where fairseq (and omegaconf, hydra) cannot be imported
BLOCKED_RUNNER = textwrap.dedent(
    """
    import sys

    class Blocked:
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in ("fairseq", "omegaconf", "hydra"):
                raise ImportError(f"{name} is blocked in this test")
            return None

    sys.meta_path.insert(0, Blocked())
    import json
    import numpy as np
    import torch
    import mae_ast_plugin
    from mae_ast_plugin.model_io import load_classifier
    from mae_ast_plugin.tools import predict

    folder, clips, out, wav = sys.argv[1:5]
    assert not mae_ast_plugin.HAVE_FAIRSEQ
    waves = [torch.from_numpy(c) for c in np.load(clips, allow_pickle=False).values()]
    encoder = mae_ast_plugin.load_encoder(folder)
    result = encoder.extract_features(waves, 16000)
    arrays = {"last": result.last_hidden_state.numpy(), "padding": result.padding_mask.numpy()}
    for i, h in enumerate(result.hidden_states):
        arrays[f"layer{i}"] = h.numpy()
    if json.load(open(folder + "/config.json"))["classifier"]:
        model, task = load_classifier(folder)
        arrays["probabilities"] = predict.predict_file(model, task, wav).numpy()
        assert predict.main([folder, wav, "--top-k", "2", "--device", "cpu"]) == 0
    np.savez(out, **arrays)
    assert not any(m.split(".")[0] in ("fairseq", "omegaconf", "hydra") for m in sys.modules)
    """
)


def run_without_fairseq(folder, waves, tmp_path, wav=""):
    clips = tmp_path / "clips.npz"
    np.savez(clips, **{f"c{i}": w.numpy() for i, w in enumerate(waves)})
    script = tmp_path / "blocked.py"
    script.write_text(BLOCKED_RUNNER)
    out = tmp_path / "out.npz"
    proc = subprocess.run(
        [sys.executable, str(script), str(folder), str(clips), str(out), str(wav)],
        cwd=tmp_path, capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    return dict(np.load(out)), proc.stdout


def check_same_features(original, folder, tmp_path, wav=""):
    waves = [clip(n, seed) for seed, n in enumerate((7001, 16000, 23456))]
    exported, stdout = run_without_fairseq(folder, waves, tmp_path, wav)
    reference = load_encoder(str(original)).extract_features(waves, 16000)
    assert np.array_equal(exported["padding"], reference.padding_mask.numpy())
    assert np.allclose(exported["last"], reference.last_hidden_state.numpy(), atol=1e-5)
    for i, layer in enumerate(reference.hidden_states):
        assert np.allclose(exported[f"layer{i}"], layer.numpy(), atol=1e-5)
    return exported, stdout


@pytest.mark.parametrize(
    "name", ["ours_patch", "ours_frame", "ours_ssast", "authors_patch", "authors_frame"]
)
def test_safetensors_folder_gives_the_same_features_without_fairseq(name, checkpoints, tmp_path):
    original = checkpoint(checkpoints, name)
    folder = tmp_path / "model"
    proc = export(original, folder, "--format", "safetensors")
    assert proc.returncode == 0, proc.stderr
    assert sorted(p.name for p in folder.iterdir()) == ["config.json", "model.safetensors"]
    config = json.loads((folder / "config.json").read_text())
    assert config["model_type"] == ("ssast" if name == "ours_ssast" else "mae_ast")
    assert config["classifier"] is None
    assert config["features"] == dataclasses.asdict(FbankConfig())
    assert config["provenance"]["source_checkpoint"] == str(Path(original).resolve())
    assert config["provenance"]["num_updates"] == 3
    assert config["provenance"]["plugin_version"] == "0.1.0"

    from safetensors.torch import load_file

    weights = load_file(folder / "model.safetensors")
    assert "batch_norm.running_mean" in weights and "batch_norm.running_var" in weights
    assert not any(k.startswith(("decoder", "final_proj")) for k in weights)
    check_same_features(original, folder, tmp_path)


# The fine-tuning tests' runs (test_finetune.py makes them once per session): SID has the
# SUPERB head (layer weights, projector) and whole-utterance evaluation, ESC-50 SSAST's LayerNorm.
HEADS = {
    "voxceleb1_sid": (1251, {"layer_weighting": True, "projector_dim": 256,
                             "head_layer_norm": False}),
    "esc50": (50, {"layer_weighting": False, "projector_dim": 0, "head_layer_norm": True}),
}


@pytest.mark.parametrize("recipe", sorted(HEADS))
def test_classifier_folder_predicts_without_fairseq(recipe, runs, base, tmp_path):
    from mae_ast_plugin.tools import predict

    original = checkpoint_of(runs, recipe)
    folder = tmp_path / recipe
    assert export(original, folder, "--format", "safetensors").returncode == 0
    config = json.loads((folder / "config.json").read_text())
    head = config["classifier"]
    num_classes, options = HEADS[recipe]
    assert len(head["classes"]["display_name"]) == num_classes and head["multi_label"] is False
    assert {key: head[key] for key in options} == options
    assert config["provenance"]["source_model"] == "mae_ast_classifier"

    data = recipe_data(base, recipe) / ("fold1" if recipe == "esc50" else "")
    wav = sorted((data / "audio").glob("test_*.wav"))[0]
    exported, stdout = check_same_features(original, folder, tmp_path, wav)
    model, task = predict.load_classifier(str(original))
    expected = predict.predict_file(model, task, str(wav)).numpy()
    assert np.allclose(exported["probabilities"], expected, atol=1e-5)
    assert stdout.splitlines()[0] == str(wav) and len(stdout.splitlines()) == 3

    # a pretraining folder has no classes to predict
    encoder_folder = tmp_path / "encoder"
    export(pretrained_checkpoint(base), encoder_folder, "--format", "safetensors")
    assert predict.main([str(encoder_folder), str(wav)]) == 2


def test_folder_with_unknown_encoder_field_is_refused(checkpoints, tmp_path):
    from mae_ast_plugin.model_io import FolderFormatError

    folder = tmp_path / "model"
    exported = export_script(
        checkpoint(checkpoints, "authors_frame"), folder, "--format", "safetensors"
    )
    assert exported.returncode == 0, exported.stderr
    assert exported.stdout.startswith(f"wrote {folder}/: mae_ast encoder")
    config = json.loads((folder / "config.json").read_text())
    config["encoder"]["rotary_positions"] = True
    (folder / "config.json").write_text(json.dumps(config))
    with pytest.raises(FolderFormatError, match=r"\['rotary_positions'\].*upgrade"):
        load_encoder(str(folder))
