"""mae-ast-evaluate, mae-ast-results-table and mae-ast-predict."""

import json
import runpy
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile
import torch
from finetune_helpers import (
    checkpoint_of,
    pretrained_checkpoint,
    recipe_data,
)

from mae_ast_plugin.evaluation import evaluate, results_table
from mae_ast_plugin.features import AudioError
from mae_ast_plugin.tools import predict


def write_result(
    path, benchmark, value, name="MAE-AST Patch", layers=6, masking="Chunked", std=None
):
    result = {
        "benchmark": benchmark,
        "value": value,
        "metric": "accuracy",
        "model": {"name": name, "encoder_layers": layers, "masking": masking},
    }
    if std is not None:
        result["std"] = std
    path.write_text(json.dumps(result))
    return str(path)


def test_results_table_beside_the_paper(tmp_path):
    table_script = results_table
    files = [
        write_result(tmp_path / "esc.json", "ESC", 0.8712, std=0.0123),
        write_result(tmp_path / "ks2.json", "KS2", 0.9705),
        write_result(tmp_path / "er.json", "ER", 0.5, name="Scratch Patch", layers=2, masking="-"),
    ]
    assert table_script.main([*files, "--out", str(tmp_path / "table.md")]) == 0
    table = (tmp_path / "table.md").read_text()
    lines = table.splitlines()
    assert lines[0] == "| Model | Enc. Layers | Masking | AS | ESC | KS2 | KS1 | SID | ER |"
    assert (
        "| MAE-AST Patch (paper) | 6 | Chunked | 28.3 | 88.6 | 97.4 | 95.0 | 37.6 | 58.7 |" in lines
    )
    assert (
        "| SSAST Base Frame (paper) | 12 | Random | - | 85.9 | 98.1 | 96.7 | 80.8 | 60.5 |" in lines
    )
    ours = lines.index("| MAE-AST Patch (ours) | 6 | Chunked | - | 87.1 ± 1.2 | 97.0 | - | - | - |")
    assert lines[ours + 1] == "| Δ ours − paper | | |  | -1.5 | -0.4 |  |  |  |"
    assert "| Scratch Patch (ours) | 2 | - | - | - | - | - | - | 50.0 |" in lines


def test_results_table_rejects_unplaceable_results(tmp_path):
    table_script = results_table
    unknown = write_result(tmp_path / "x.json", None, 0.5)
    with pytest.raises(SystemExit, match="not a Table 1 column"):
        table_script.main([unknown, "--out", str(tmp_path / "t.md")])
    twice = [
        write_result(tmp_path / "a.json", "ESC", 0.5),
        write_result(tmp_path / "b.json", "ESC", 0.6),
    ]
    with pytest.raises(SystemExit, match="both give ESC"):
        table_script.main([*twice, "--out", str(tmp_path / "t.md")])


def evaluate_audioset(runs, manifest, out, *extra) -> int:
    """Exit status of mae-ast-evaluate on the AudioSet-style run's checkpoint, on CPU."""
    checkpoint = str(checkpoint_of(runs, "audioset_20k"))
    args = [checkpoint, str(manifest), "--out", str(out), "--device", "cpu", "--num-workers", "0"]
    return evaluate.main([*args, *extra])


@pytest.mark.slow
def test_evaluate_cli_on_a_manifest_path(runs, base, tmp_path, capsys):
    data = recipe_data(base, "audioset_20k")
    out = tmp_path / "as.json"
    assert evaluate_audioset(runs, data / "eval.tsv", out, "--model-name", "MAE-AST Patch") == 0
    result = json.loads(out.read_text())
    assert result["split"] == "eval" and result["metric"] == "mAP" and result["benchmark"] == "AS"
    assert "mAP:" in capsys.readouterr().out
    scored = [c for c in result["per_class"] if c["score"] is not None]
    assert len(scored) == 5 and all(c["support"] > 0 for c in scored)


@pytest.mark.slow
def test_predict_prints_top_k(runs, base, capsys):
    wav = sorted((recipe_data(base, "speechcommands_v2") / "audio").glob("test_*.wav"))[0]
    assert (
        predict.main(
            [
                str(checkpoint_of(runs, "speechcommands_v2")),
                str(wav),
                "--top-k",
                "3",
                "--device",
                "cpu",
            ]
        )
        == 0
    )
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == str(wav) and len(lines) == 4
    scores = [float(line.split()[0]) for line in lines[1:]]
    assert scores == sorted(scores, reverse=True) and 0 < sum(scores) <= 1.0
    assert "class" in lines[1] and "(/m/c" in lines[1]


@pytest.mark.slow
def test_predict_reports_unreadable_files(runs, tmp_path, capsys):
    bad = tmp_path / "not_audio.wav"
    bad.write_text("this is not audio")
    assert predict.main([str(checkpoint_of(runs, "esc50")), str(bad), "--device", "cpu"]) == 1
    assert "cannot read audio file" in capsys.readouterr().err


@pytest.mark.slow
def test_predict_refuses_a_pretraining_checkpoint(base):
    from mae_ast_plugin.model_io import NotAClassifierError

    with pytest.raises(NotAClassifierError, match="pretraining checkpoint without a classifier"):
        predict.load_classifier(pretrained_checkpoint(base))


def test_results_table_refuses_scores_that_are_not_numbers(tmp_path):
    for value in (None, float("nan"), float("inf")):
        path = tmp_path / "as.json"
        path.write_text(
            json.dumps(
                {
                    "benchmark": "AS",
                    "value": value,
                    "metric": "mAP",
                    "model": {"name": "X", "encoder_layers": 1, "masking": "-"},
                }
            )
        )
        with pytest.raises(SystemExit, match="no AS score to put in the table"):
            results_table.main([str(path), "--out", str(tmp_path / "t.md")])
        assert not (tmp_path / "t.md").exists()


@pytest.mark.parametrize(
    "command", ["mae-ast-prepare", "mae-ast-evaluate", "mae-ast-results-table", "mae-ast-cv"]
)
def test_console_scripts_show_usage_and_an_example(command, monkeypatch, capsys):
    """The script pip installed, run as ``__main__`` in this process: an interpreter start with
    torch and fairseq costs seconds, and test_console_scripts starts one installed script."""
    script = Path(sys.executable).parent / command
    monkeypatch.setattr(sys, "argv", [str(script), "--help"])
    with pytest.raises(SystemExit) as exit_info:
        runpy.run_path(str(script), run_name="__main__")
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith(f"usage: {command}") and "Example" in out


@pytest.mark.slow
def test_evaluate_skip_invalid_is_the_remedy_it_offers(runs, base, tmp_path, capsys):
    """A test line too short for one token is an error naming the line
    and a remedy mae-ast-evaluate offers (--skip-invalid), which skips and counts it."""
    data = tmp_path / "data"
    shutil.copytree(recipe_data(base, "speechcommands_v2"), data)
    lines = (data / "test.tsv").read_text().splitlines()
    root = Path(lines[0])
    soundfile.write(root / "short.wav", np.zeros(1600, np.float32), 16000)  # 8 frames
    lines[4] = "short.wav\t1600"
    (data / "test.tsv").write_text("\n".join(lines) + "\n")
    args = [
        str(checkpoint_of(runs, "speechcommands_v2")),
        str(data),
        "--out",
        str(tmp_path / "m.json"),
        "--device",
        "cpu",
        "--num-workers",
        "0",
    ]
    with pytest.raises(SystemExit) as exit_info:
        evaluate.main(args)
    err = capsys.readouterr().err
    assert exit_info.value.code == 1 and "Traceback" not in err
    assert f"{data / 'test.tsv'}:5" in err and "--skip-invalid for mae-ast-evaluate" in err
    assert not (tmp_path / "m.json").exists()
    assert evaluate.main([*args, "--skip-invalid"]) == 0
    result = json.loads((tmp_path / "m.json").read_text())
    assert result["num_clips"] == 4 and result["skipped_clips"] == 1
    assert sum(c["support"] for c in result["per_class"]) == 3


@pytest.mark.slow
def test_evaluate_writes_null_not_nan_when_map_is_undefined(runs, base, tmp_path, capsys):
    """No positive label in the split: mAP null with the reason, strict
    JSON, exit status 1, and the results table refuses the file."""
    data = tmp_path / "data"
    shutil.copytree(recipe_data(base, "audioset_20k"), data)
    (data / "eval.lbl").write_text("\n" * 4)  # 4 clips, none with a label
    out = tmp_path / "as.json"
    assert evaluate_audioset(runs, data / "eval.tsv", out) == 1
    assert "mAP is undefined" in capsys.readouterr().err

    def no_constants(name):
        raise ValueError(f"non-standard JSON constant {name}")

    result = json.loads(out.read_text(), parse_constant=no_constants)
    assert result["value"] is None and "no class has a positive clip" in result["value_undefined"]
    assert result["classes_without_positives"] == 527
    assert all(c["score"] is None for c in result["per_class"])
    with pytest.raises(SystemExit, match="value is None"):
        results_table.main([str(out), "--out", str(tmp_path / "t.md")])


@pytest.mark.slow
def test_predict_clip_reads_an_array_like_its_file(runs, base, tmp_path):
    """A stereo 44.1 kHz 24-bit clip handed over as an array (soundfile's (samples, channels)
    int32 or torchaudio's (channels, samples) float) scores as the file does."""
    model, task = predict.load_classifier(checkpoint_of(runs, "speechcommands_v2"))
    rng = np.random.default_rng(3)
    stereo = 0.2 * rng.standard_normal((44100, 2))
    path = tmp_path / "stereo.flac"
    soundfile.write(path, stereo, 44100, subtype="PCM_24")
    expected = predict.predict_file(model, task, str(path))
    as_int, rate = soundfile.read(path, dtype="int32")
    as_float, _ = soundfile.read(path, dtype="float32")
    for clip, axis in ((as_int, 1), (as_float.T.copy(), 0)):
        got = predict.predict_clip(model, task, clip, sample_rate=rate, channel_axis=axis)
        assert torch.allclose(got, expected, atol=1e-6)
    with pytest.raises(AudioError, match=r"\(44100, 2\) has several channels"):
        predict.predict_clip(model, task, as_float, sample_rate=rate)
    with pytest.raises(ValueError, match="sample_rate"):
        predict.predict_clip(model, task, as_float)
