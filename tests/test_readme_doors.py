"""The README's "Use the encoder elsewhere" examples, run as they are written: its shell blocks
(the real hear-validator, mae-ast-export --format hf), then its Python blocks (long recordings,
HEAR, X-ARES, transformers), on a tiny model folder ``model/``."""

import json
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import soundfile
from conftest import REPO
from tiny_folders import tiny_folder, tone_clip

SECTION = "## Use the encoder elsewhere"


def readme_blocks():
    text = (REPO / "README.md").read_text(encoding="utf-8")
    start = text.index(SECTION)
    end = text.find("\n## ", start + len(SECTION))
    section = text[start : end if end > 0 else None]
    return re.findall(r"```(bash|python)\n(.*?)```", section, flags=re.S)


# Runs each Python block in a fresh namespace, then checks what the block made.
RUNNER = textwrap.dedent(
    """
    import json, sys
    blocks = json.load(open(sys.argv[1]))
    made = []
    for code in blocks:
        names = {}
        exec(compile(code, "README.md", "exec"), names)
        made.append(names)
    long, hear, xares, hf = made
    assert long["out"].last_hidden_state.shape == long["whole"].last_hidden_state.shape
    assert not long["out"].padding_mask.any()
    assert hear["embeddings"].shape[:2] == hear["timestamps"].shape
    assert float(hear["timestamps"].diff(dim=1).max()) == 40.0
    assert hear["scene"].shape == (4, hear["model"].scene_embedding_size)
    assert xares["features"].shape[2] == xares["encoder"].output_dim
    assert len(hf["out"].hidden_states) == hf["model"].config.num_hidden_layers + 1
    print("README blocks ok")
    """
)


@pytest.mark.slow
def test_readme_examples_run(tmp_path):
    blocks = readme_blocks()
    shell = [code for kind, code in blocks if kind == "bash"]
    python = [code for kind, code in blocks if kind == "python"]
    assert len(shell) == 2 and len(python) == 4
    tiny_folder(tmp_path / "model", "patch")
    soundfile.write(tmp_path / "meeting.wav", tone_clip(25.0, 1), 16000)
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}:{os.environ['PATH']}",
               PYTHONPATH=str(REPO), HF_HOME=str(tmp_path / "hf_home"), HF_HUB_OFFLINE="1")
    for code in shell:
        proc = subprocess.run(["bash", "-euc", code], cwd=tmp_path, env=env,
                              capture_output=True, text=True, timeout=600)
        assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
        if "hear-validator" in code:
            assert proc.stdout.rstrip().endswith("Looks good!")
            assert "Interval between timestamps is 40.0ms" in proc.stdout
    (tmp_path / "blocks.json").write_text(json.dumps(python))
    (tmp_path / "runner.py").write_text(RUNNER)
    proc = subprocess.run([sys.executable, "runner.py", "blocks.json"], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert "README blocks ok" in proc.stdout
