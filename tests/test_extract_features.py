"""mae-ast-extract-features: mean-pooled and per-token encoder features, resuming, and bad
clips."""

import contextlib
import io
import os
import subprocess
import sys

import numpy as np
import pytest
from conftest import REPO, console_script, write_corpus

from mae_ast_plugin import load_encoder
from mae_ast_plugin.data.manifest import read_manifest
from mae_ast_plugin.features import load_audio
from mae_ast_plugin.tools.extract_features import main as extract_main

CHECKPOINT = REPO / "tests" / "fixtures" / "authors-mae-ast" / "authors_frame_checkpoint.pt"


def command(*args) -> list:
    return [str(CHECKPOINT), *map(str, args), "--device", "cpu"]


def extract_script(*args) -> subprocess.CompletedProcess:
    """The installed console script, in its own process."""
    return subprocess.run(
        [console_script("mae-ast-extract-features"), *command(*args)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )


def extract(*args) -> subprocess.CompletedProcess:
    """The command's ``main`` in this process, with the exit status and output the script
    would give (a ``SystemExit`` message goes to stderr with status 1, as the interpreter does):
    each interpreter start with torch and fairseq costs seconds.  test_token_features_and_bad_clip
    runs the script itself."""
    stdout, stderr = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
        try:
            code = extract_main(command(*args))
        except SystemExit as exit_:
            code = exit_.code
            if isinstance(code, str):
                print(code, file=sys.stderr)
                code = 1
    return subprocess.CompletedProcess(args, code or 0, stdout.getvalue(), stderr.getvalue())


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    return write_corpus(tmp_path_factory.mktemp("extract"), {"clips": 5})


def test_mean_pooled_features_match_the_encoder_and_resume(corpus, tmp_path):
    out = tmp_path / "emb"
    proc = extract(corpus / "clips.tsv", out, "--batch-size", "2", "--layer", "1")
    assert proc.returncode == 0, proc.stderr
    assert "5 clips embedded, 0 already done" in proc.stdout
    index = (out / "index.tsv").read_text().splitlines()
    assert index[0] == "row\taudio\tfeatures\tshape" and len(index) == 6
    assert index[1].split("\t")[3] == "64"

    manifest = read_manifest(str(corpus / "clips.tsv"))
    encoder = load_encoder(str(CHECKPOINT))
    wave = load_audio(manifest.audio_path(3), 16000)
    expected = encoder.extract_features([wave], 16000, layer=1).last_hidden_state[0].mean(0)
    assert np.allclose(np.load(out / "features" / "00000003.npy"), expected.numpy(), atol=1e-5)

    os.remove(out / "features" / "00000002.npy")
    again = extract(corpus / "clips.tsv", out, "--batch-size", "2", "--layer", "1")
    assert "1 clips embedded, 4 already done" in again.stdout
    assert (out / "features" / "00000002.npy").exists()

    clash = extract(corpus / "clips.tsv", out, "--layer", "2")
    assert clash.returncode != 0 and "other settings" in clash.stderr


@pytest.mark.slow
def test_token_features_and_bad_clip(corpus, tmp_path):
    tsv = tmp_path / "with_bad.tsv"
    tsv.write_text((corpus / "clips.tsv").read_text() + "missing.wav\t16000\n")
    out = tmp_path / "tok"
    failed = extract_script(tsv, out, "--pooling", "tokens")
    assert failed.returncode != 0 and f"{tsv}:7" in failed.stderr and "missing.wav" in failed.stderr
    proc = extract(tsv, out, "--pooling", "tokens", "--skip-invalid")
    assert proc.returncode == 0 and "1 skipped" in proc.stdout
    tokens = np.load(out / "features" / "00000000.npy")
    assert tokens.ndim == 2 and tokens.shape[1] == 64
