"""State that outlives a change is never silently stale: every cache, resumable output and
skipped run is keyed by everything it depends on (an audio file replaced by different content of
the same length included), and recomputed or refused with a message saying what changed; a
tool's own options decide its behaviour, not options saved in a checkpoint by an earlier run."""

import json
import os
import shutil

import numpy as np
import pytest
import soundfile
import torch
from conftest import synth_clip, write_corpus
from finetune_helpers import AUTHORS_CHECKPOINT, finetune, write_labelled_corpus

from mae_ast_plugin.data.manifest import read_manifest
from mae_ast_plugin.features import FbankConfig, compute_fbank, load_audio

FRAME_CHECKPOINT = AUTHORS_CHECKPOINT.parent / "authors_frame_checkpoint.pt"


def replace_audio(path, seed: int = 99, rate=None):
    """Write different audio of the same length (and byte size, for the same rate) over
    ``path``, as a re-recording or a fixed file would; its modification time moves on."""
    info = soundfile.info(str(path))
    rate = rate or info.samplerate
    frames = info.frames if rate == info.samplerate else int(info.frames * rate / info.samplerate)
    clip = synth_clip(np.random.default_rng(seed), frames / rate, rate, channels=info.channels)
    before = os.stat(path)
    soundfile.write(str(path), clip[:frames], rate, subtype=info.subtype)
    # a file system with coarse timestamps could give the same mtime within one tick
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns + 2_000_000_000))
    return frames


@pytest.fixture
def corpus(tmp_path):
    return write_corpus(tmp_path / "corpus", {"train": 5}, min_s=0.8, max_s=1.2)


def first_audio(corpus):
    manifest = read_manifest(str(corpus / "train.tsv"))
    return manifest, manifest.audio_path(0)


# ------------------------------------------------------------------------------------------
# Caches keyed by a path or a row


def test_probe_embedding_cache_sees_a_replaced_clip(corpus, tmp_path):
    from mae_ast_plugin import load_encoder
    from mae_ast_plugin.evaluation.probe_data import cached_embeddings, clip_embeddings

    encoder = load_encoder(str(AUTHORS_CHECKPOINT), device="cpu")
    manifest, audio = first_audio(corpus)
    key = {"checkpoint_sha256": "x", "random_init_seed": None}
    cache = str(tmp_path / "cache")
    first, status = cached_embeddings(encoder, manifest, cache, key, progress=False)
    assert status == "miss"
    assert cached_embeddings(encoder, manifest, cache, key, progress=False)[1] == "hit"
    size = os.path.getsize(audio)
    replace_audio(audio)
    assert os.path.getsize(audio) == size  # same manifest line, same length, new content
    again, status = cached_embeddings(encoder, manifest, cache, key, progress=False)
    assert status == "miss"
    np.testing.assert_array_equal(again, clip_embeddings(encoder, manifest, progress=False))
    assert not np.allclose(again[:, 0], first[:, 0])
    np.testing.assert_array_equal(again[:, 1:], first[:, 1:])


def test_native_rate_cache_sees_a_clip_replaced_at_another_rate(corpus):
    from mae_ast_plugin.data.manifest import native_sample_rates

    manifest, audio = first_audio(corpus)
    rates = native_sample_rates(manifest)
    assert (corpus / "train.tsv.rates.npz").is_file() and rates[0] == 16000
    replace_audio(audio, rate=8000)  # the manifest line is left as it was
    rates_now = native_sample_rates(read_manifest(str(corpus / "train.tsv")))
    assert rates_now[0] == 8000
    np.testing.assert_array_equal(rates_now[1:], rates[1:])


def test_fbank_cache_refuses_a_replaced_clip_and_rebuilds_its_shard(corpus, tmp_path):
    from mae_ast_plugin.data.fbank_cache import FbankCache, FbankCacheError, build_split

    features = FbankConfig()
    cache_dir = str(tmp_path / "cache")
    build_split(str(corpus / "train.tsv"), cache_dir, "train", features, clips_per_shard=2)
    manifest, audio = first_audio(corpus)
    cache = FbankCache.open(cache_dir, "train", manifest, features)
    cache.read(0)
    replace_audio(audio)
    with pytest.raises(FbankCacheError, match=r"stale for .*train.tsv:2 .*the audio file changed "
                       r"since it was cached.*mae-ast-precompute-fbank"):
        cache.read(0)
    cache.read(2)  # other clips are as they were
    logs = []
    build_split(str(corpus / "train.tsv"), cache_dir, "train", features, clips_per_shard=2,
                log=logs.append)
    assert "train: 5 clips in 3 shards; 2 complete, 1 to build" in logs
    rows, _ = FbankCache.open(cache_dir, "train", manifest, features).read(0)
    expected = compute_fbank(load_audio(audio, features.sample_rate), features).numpy()
    np.testing.assert_array_equal(rows, expected)


# ------------------------------------------------------------------------------------------
# Resumable outputs


def extract(*args):
    from mae_ast_plugin.tools.extract_features import main

    return main([*map(str, args), "--device", "cpu"])


def test_extract_features_resume_is_keyed_by_checkpoint_settings_and_audio(corpus, tmp_path):
    out = tmp_path / "features"
    manifest_path = corpus / "train.tsv"
    extract(AUTHORS_CHECKPOINT, manifest_path, out)
    first = [np.load(out / "features" / f"{row:08d}.npy") for row in range(5)]
    # an audio file replaced by different content of the same length: that row is redone
    replace_audio(first_audio(corpus)[1])
    extract(AUTHORS_CHECKPOINT, manifest_path, out)
    fresh = tmp_path / "fresh"
    extract(AUTHORS_CHECKPOINT, manifest_path, fresh)
    for row in range(5):
        now = np.load(out / "features" / f"{row:08d}.npy")
        np.testing.assert_array_equal(now, np.load(fresh / "features" / f"{row:08d}.npy"))
        assert np.array_equal(now, first[row]) == (row != 0)
    # a manifest edited: the rows that now name other files are redone, rows gone are removed
    lines = manifest_path.read_text().splitlines()
    manifest_path.write_text("\n".join([lines[0], lines[3], lines[4]]) + "\n")
    extract(AUTHORS_CHECKPOINT, manifest_path, out)
    assert sorted(os.listdir(out / "features")) == ["00000000.npy", "00000001.npy"]
    np.testing.assert_array_equal(np.load(out / "features/00000000.npy"),
                                  np.load(fresh / "features/00000002.npy"))
    # another layer, or another checkpoint at the same path: refused, naming what changed
    with pytest.raises(SystemExit, match=r"other settings \(layer: 2 then, 1 now\): give "
                       "another output directory"):
        extract(AUTHORS_CHECKPOINT, manifest_path, out, "--layer", "1")
    checkpoint = tmp_path / "model.pt"
    shutil.copy(AUTHORS_CHECKPOINT, checkpoint)
    extract(checkpoint, manifest_path, tmp_path / "moved")
    shutil.copy(FRAME_CHECKPOINT, checkpoint)
    with pytest.raises(SystemExit, match=r"other settings \(checkpoint_sha256: "):
        extract(checkpoint, manifest_path, tmp_path / "moved")


def test_cv_reuses_a_fold_only_when_its_inputs_are_the_same(tmp_path):
    from mae_ast_plugin.evaluation import cv

    data = write_labelled_corpus(tmp_path / "data" / "fold1", num_classes=3)
    pretrained = tmp_path / "pretrained.pt"
    shutil.copy(AUTHORS_CHECKPOINT, pretrained)
    run_dir = tmp_path / "out" / "fold1"
    run_dir.mkdir(parents=True)

    def inputs():
        return cv.fold_inputs("esc50", data, str(pretrained), ["optimization.max_update=2"], "test")

    (run_dir / cv.RUN_RECORD).write_text(json.dumps(inputs()))
    (run_dir / "metrics.json").write_text("{}")
    assert cv.check_fold_record("1", run_dir, inputs(), rerun=False)  # same: reused
    shutil.copy(FRAME_CHECKPOINT, pretrained)  # another model at the same path
    with pytest.raises(SystemExit, match=r"fold 1: .* holds a run of other inputs \(pretrained "
                       r"changed since it ran\): pass --rerun"):
        cv.check_fold_record("1", run_dir, inputs(), rerun=False)
    record = inputs()
    (run_dir / cv.RUN_RECORD).write_text(json.dumps(record))
    replace_audio(data / "audio" / "test_000.wav")  # a fold's clip re-recorded
    with pytest.raises(SystemExit, match=r"\(data changed since it ran\)"):
        cv.check_fold_record("1", run_dir, inputs(), rerun=False)
    assert not cv.check_fold_record("1", run_dir, inputs(), rerun=True)
    assert not run_dir.exists()  # --rerun starts the fold over, not from its checkpoints


def test_training_runs_are_skipped_only_with_the_same_inputs(tmp_path):
    """The demo's finished.json and the Table 1 steps: the command and the content of what it
    names (configs, data with its audio, checkpoints); the run directory is not an input."""
    from mae_ast_plugin.experiments.runs import changed_inputs, run_inputs

    data = write_corpus(tmp_path / "data", {"train": 3})
    checkpoint = tmp_path / "pretrained.pt"
    shutil.copy(AUTHORS_CHECKPOINT, checkpoint)
    cmd = ["fairseq-hydra-train", "--config-dir", "config/finetune", "--config-name", "esc50",
           f"task.data={data}", f"model.pretrained_checkpoint={checkpoint}",
           f"hydra.run.dir={tmp_path / 'run'}"]
    recorded = run_inputs(cmd)
    assert str(data) in recorded["inputs"] and str(checkpoint) in recorded["inputs"]
    assert any(path.endswith("config/finetune") for path in recorded["inputs"])
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "finished.json").write_text("{}")
    assert changed_inputs(recorded, run_inputs(cmd)) == ""
    replace_audio(data / "audio" / "train_000.wav")
    assert changed_inputs(recorded, run_inputs(cmd)) == str(data)
    recorded = run_inputs(cmd)
    shutil.copy(FRAME_CHECKPOINT, checkpoint)
    assert changed_inputs(recorded, run_inputs(cmd)) == str(checkpoint)
    assert changed_inputs(recorded, run_inputs(cmd[:-2] + cmd[-1:])) .startswith("the command")
    assert changed_inputs(None, recorded) == "no record of the inputs it was made from"


# ------------------------------------------------------------------------------------------
# Options inside checkpoints


@pytest.mark.slow
def test_evaluate_uses_its_own_options_not_the_training_runs(tmp_path):
    """A classifier fine-tuned with task.skip_invalid=true and an fbank cache: mae-ast-evaluate
    still stops at a bad clip unless given --skip-invalid, and reads the audio, not the training
    machine's cache directory."""
    from mae_ast_plugin.evaluation.evaluate import main as evaluate_main

    data = write_labelled_corpus(tmp_path / "data", num_classes=3)
    checkpoints = finetune("esc50", data, AUTHORS_CHECKPOINT, tmp_path / "run",
                           extra=["task.skip_invalid=true"])
    checkpoint = checkpoints / "checkpoint_best.pt"
    state = torch.load(checkpoint, map_location="cpu", weights_only=False)
    assert state["cfg"]["task"]["skip_invalid"] is True
    state["cfg"]["task"]["fbank_cache"] = str(tmp_path / "training-machine-cache")
    torch.save(state, checkpoint)
    bad = shutil.copytree(data, tmp_path / "bad")
    lines = (bad / "test.tsv").read_text().splitlines()
    lines[2] = "missing.wav\t16000"
    (bad / "test.tsv").write_text("\n".join(lines) + "\n")
    args = [str(checkpoint), str(bad), "--out", str(tmp_path / "m.json"), "--num-workers", "0",
            "--device", "cpu"]
    with pytest.raises(SystemExit) as caught:
        evaluate_main(args)
    assert caught.value.code == 1 and not (tmp_path / "m.json").exists()
    assert evaluate_main([*args, "--skip-invalid"]) == 0
    result = json.loads((tmp_path / "m.json").read_text())
    assert result["skipped_clips"] == 1 and result["num_clips"] == len(lines) - 1
