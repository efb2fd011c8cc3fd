"""Loading a checkpoint never runs code from it: every loader of the project refuses a crafted
``.pt`` whose unpickling would run a shell command, and the command does not run."""

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile
import torch
from conftest import REPO, synth_clip

from mae_ast_plugin import load_encoder
from mae_ast_plugin.evaluation.evaluate import evaluate
from mae_ast_plugin.experiments import demo
from mae_ast_plugin.features import FbankConfig
from mae_ast_plugin.model_io import UnsafeCheckpointError, read_checkpoint
from mae_ast_plugin.tools import predict

# Every test here starts a Python process (README, "Commands": the test tiers).
pytestmark = pytest.mark.slow

FIXTURES = REPO / "tests" / "fixtures" / "authors-mae-ast"


class RunsCode:
    """Unpickles as a call of os.system, as a malicious checkpoint would."""

    def __init__(self, command: str):
        self.command = command

    def __reduce__(self):
        return (os.system, (self.command,))


@pytest.fixture
def crafted(tmp_path):
    """(a checkpoint-shaped file whose unpickling runs ``touch MARKER``, MARKER)."""
    marker = tmp_path / "code_ran"
    legit = torch.load(FIXTURES / "authors_patch_checkpoint.pt", weights_only=True)
    legit["extra_state"] = {"payload": RunsCode(f"touch {marker}")}
    path = tmp_path / "checkpoint_best.pt"
    torch.save(legit, path)
    return path, marker


def refuses(call, path):
    with pytest.raises(UnsafeCheckpointError, match=f"refusing to load {path}.*posix.system"):
        call()


def test_every_loader_refuses_a_checkpoint_that_would_run_code(
    crafted, tmp_path, capsys, monkeypatch
):
    from mae_ast_plugin.models.mae_ast_classifier import MaeAstClassifier, MaeAstClassifierConfig

    path, marker = crafted
    # torch's switch for its default does not reach our explicit weights_only=True (it would
    # make fairseq's own load_checkpoint_to_cpu, which passes no weights_only, run the code)
    monkeypatch.setenv("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD", "1")
    refuses(lambda: read_checkpoint(str(path)), path)
    refuses(lambda: load_encoder(str(path)), path)
    refuses(lambda: predict.load_classifier(str(path)), path)
    refuses(lambda: evaluate(path, str(tmp_path), out=tmp_path / "m.json"),
            path)
    refuses(lambda: demo.encoder_overrides(path), path)
    config = MaeAstClassifierConfig(pretrained_checkpoint=str(path))  # fine-tuning's encoder
    refuses(lambda: MaeAstClassifier.pretrained_config(config, FbankConfig()), path)

    wav = tmp_path / "a.wav"
    soundfile.write(wav, synth_clip(np.random.default_rng(0), 1.0, 16000), 16000)
    assert predict.main([str(path), str(wav), "--device", "cpu"]) == 2
    assert "refusing to load" in capsys.readouterr().err
    export = str(Path(sys.executable).parent / "mae-ast-export")
    for fmt, out in (("authors", tmp_path / "x.pt"), ("safetensors", tmp_path / "x")):
        proc = subprocess.run([export, str(path), str(out), "--format", fmt],
                              capture_output=True, text=True, timeout=300)
        assert proc.returncode == 2 and "refusing to load" in proc.stderr
        assert not out.exists()
    assert not marker.exists()

    # the file really is dangerous: an unsafe load runs the command
    torch.load(path, weights_only=False)
    assert marker.exists()
