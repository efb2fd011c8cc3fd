"""Bad manifests and bad audio: a clear error naming manifest, line and file, or with
skip_invalid a logged, counted skip."""

import json
import re

import numpy as np
import pytest
import soundfile
from conftest import TINY_MODEL, hydra_train, synth_clip

from mae_ast_plugin.data.fbank_dataset import FbankAudioDataset
from mae_ast_plugin.data.manifest import ManifestError, read_manifest
from mae_ast_plugin.features import AudioError, FbankConfig


def make_bad_clip(path, kind):
    rng = np.random.default_rng(0)
    if kind == "corrupt":
        path.write_bytes(b"RIFF\x10\x00\x00\x00WAVEfmt garbage bytes")
    elif kind == "empty":
        soundfile.write(path, np.zeros(0, dtype=np.float32), 16000)
    elif kind == "short":
        soundfile.write(path, synth_clip(rng, 0.05, 16000), 16000)  # 3 frames < one 16-frame token
    elif kind == "nan":
        clip = synth_clip(rng, 1.0, 16000)
        clip[100] = np.inf
        soundfile.write(path, clip, 16000, subtype="FLOAT")


def manifest_with(tmp_path, bad_kind, good=3):
    rng = np.random.default_rng(1)
    lines = [str(tmp_path)]
    for i in range(good):
        soundfile.write(tmp_path / f"good{i}.wav", synth_clip(rng, 1.0, 16000), 16000)
        lines.append(f"good{i}.wav\t16000")
    if bad_kind != "missing":
        make_bad_clip(tmp_path / "bad.wav", bad_kind)
    lines.append("bad.wav\t16000")
    for split in ("train", "valid"):
        (tmp_path / f"{split}.tsv").write_text("\n".join(lines) + "\n")
    return tmp_path / "train.tsv", len(lines)  # the bad clip is on the last line


def dataset(manifest_path, skip_invalid=False):
    return FbankAudioDataset(
        read_manifest(str(manifest_path), skip_invalid=skip_invalid),
        FbankConfig(),
        max_sample_len_s=10.0,
        random_crop=False,
        min_frames=16,
        skip_invalid=skip_invalid,
    )


@pytest.mark.parametrize(
    "kind, reason",
    [
        ("missing", "cannot read audio file"),
        ("corrupt", "cannot read audio file"),
        ("empty", "is empty"),
        ("short", "fewer than the 16 frames the model needs"),
        ("nan", "NaN or infinite"),
    ],
)
def test_bad_clip_error_names_manifest_line_and_file(tmp_path, kind, reason):
    manifest, bad_line = manifest_with(tmp_path, kind)
    data = dataset(manifest)
    assert data[0]["source"].dim() == 1  # a waveform: the model computes the fbank
    with pytest.raises(AudioError) as info:
        data[len(data) - 1]
    message = str(info.value)
    assert f"{manifest}:{bad_line}" in message
    assert str(tmp_path / "bad.wav") in message
    assert reason in message
    assert "skip_invalid" in message  # says what to do


def test_skip_invalid_counts_skipped_clips_in_the_batch(tmp_path, caplog):
    manifest, _ = manifest_with(tmp_path, "corrupt")
    data = dataset(manifest, skip_invalid=True)
    batch = data.collater([data[i] for i in range(len(data))])
    assert batch["num_skipped"] == 1
    assert batch["net_input"]["source"].shape[0] == 3
    assert any("skipping" in r.message and "bad.wav" in r.message for r in caplog.records)


@pytest.mark.parametrize(
    "line, problem",
    [
        ("nofield", "expected 2 tab-separated fields"),
        ("a.wav\tabc", "num_samples must be an integer"),
        ("a.wav\t1\textra", "expected 2 tab-separated fields"),
    ],
)
def test_malformed_manifest_lines(tmp_path, line, problem):
    path = tmp_path / "train.tsv"
    path.write_text(f"{tmp_path}\nok.wav\t100\n{line}\n")
    with pytest.raises(ManifestError, match=re.escape(f"{path}:3: {problem}")):
        read_manifest(str(path))
    manifest = read_manifest(str(path), skip_invalid=True)
    assert len(manifest) == 1 and manifest.num_skipped_lines == 1


def test_missing_manifest_says_what_to_do(tmp_path):
    with pytest.raises(ManifestError, match="not found: create it with a prep script"):
        read_manifest(str(tmp_path / "train.tsv"))


def test_min_sample_size_filter_keeps_line_numbers(tmp_path):
    path = tmp_path / "train.tsv"
    path.write_text(f"{tmp_path}\nshort.wav\t10\nlong.wav\t20000\n")
    manifest = read_manifest(str(path), min_samples=100)
    assert len(manifest) == 1 and manifest.where(0) == f"{path}:3 ({tmp_path / 'long.wav'})"


@pytest.mark.slow
def test_training_with_skip_invalid_reports_the_count(tmp_path):
    manifest_with(tmp_path, "nan", good=10)
    proc = hydra_train(
        "mae_ast_patch",
        [
            f"task.data={tmp_path}",
            "task.skip_invalid=true",
            *TINY_MODEL,
            "optimization.max_update=2",
            "dataset.max_tokens=200000",
            "dataset.num_workers=0",
            "common.log_interval=1",
            "common.amp=false",
            f"hydra.run.dir={tmp_path / 'run'}",
        ],
    )
    epoch = [json.loads(m) for m in re.findall(r"\[train\]\[INFO\] - (\{.*\})", proc.stdout)]
    assert epoch and float(epoch[0]["train_skipped_clips"]) >= 1
    failing = hydra_train(
        "mae_ast_patch",
        [
            f"task.data={tmp_path}",
            *TINY_MODEL,
            "optimization.max_update=1",
            "dataset.max_tokens=200000",
            "dataset.num_workers=0",
            f"hydra.run.dir={tmp_path / 'run2'}",
        ],
        check=False,
    )
    assert failing.returncode != 0
    assert (
        "bad.wav" in failing.stdout + failing.stderr
        and "NaN or infinite" in failing.stdout + failing.stderr
    )
