"""The precomputed fbank cache (task.fbank_cache, mae-ast-precompute-fbank): the same features
and errors as on the fly, and a clear error naming the shard when the cache is stale or corrupt;
builds resume after an interruption."""

import json
import shutil
import subprocess

import pytest
import torch
from conftest import REPO, TINY_MODEL, console_script, hydra_train
from test_bad_input import manifest_with
from test_distributed import records

from mae_ast_plugin.data import fbank_cache
from mae_ast_plugin.data.fbank_cache import FbankCache, FbankCacheError, build_split
from mae_ast_plugin.data.fbank_dataset import FbankAudioDataset
from mae_ast_plugin.data.manifest import read_manifest
from mae_ast_plugin.features import AudioError, FbankConfig, KaldiFbank

FEATURES = FbankConfig()
WHOLE_CLIPS = dict(max_sample_len_s=10.0, random_crop=False)  # the clips are up to 2.5 s: no crop


def build(corpus, cache_dir, split="train", **kwargs):
    kwargs.setdefault("clips_per_shard", 5)
    return build_split(str(corpus / f"{split}.tsv"), str(cache_dir), split, FEATURES, **kwargs)


def model_fbank(item) -> torch.Tensor:
    """The (frames, mel) fbank the model's front end computes from a dataset item's waveform."""
    return KaldiFbank(FEATURES)(item["source"].unsqueeze(0))[0][0]


def datasets(manifest_path, cache_dir, split="train", **kwargs):
    """The same dataset on the fly and from the cache."""
    manifest = read_manifest(str(manifest_path), skip_invalid=kwargs.get("skip_invalid", False))
    cache = FbankCache.open(str(cache_dir), split, manifest, FEATURES)
    return (
        FbankAudioDataset(manifest, FEATURES, **kwargs),
        FbankAudioDataset(manifest, FEATURES, fbank_cache=cache, **kwargs),
    )


@pytest.fixture(scope="module")
def cached_corpus(tiny_corpus, tmp_path_factory):
    cache_dir = tmp_path_factory.mktemp("fbank_cache")
    build(tiny_corpus, cache_dir, workers=2)
    return tiny_corpus, cache_dir


@pytest.mark.parametrize("random_crop", [True, False])
def test_cached_features_equal_on_the_fly_features(cached_corpus, random_crop):
    """Crops of 1 s of clips of 0.8-2.5 s (16 and 22.05 kHz, mono and stereo), two epochs."""
    corpus, cache_dir = cached_corpus
    on_the_fly, cached = datasets(
        corpus / "train.tsv",
        cache_dir,
        max_sample_len_s=1.0,
        random_crop=random_crop,
        min_frames=16,
    )
    for epoch in (1, 2):
        on_the_fly.set_epoch(epoch)
        cached.set_epoch(epoch)
        for index in range(len(on_the_fly)):
            got, expected = cached[index]["source"], model_fbank(on_the_fly[index])
            assert torch.equal(got, expected), (epoch, index)


def test_float16_cache_error_is_within_half_precision_rounding(tiny_corpus, tmp_path):
    build(tiny_corpus, tmp_path, dtype="float16")
    on_the_fly, cached = datasets(tiny_corpus / "train.tsv", tmp_path, **WHOLE_CLIPS)
    for index in range(len(on_the_fly)):
        exact, rounded = model_fbank(on_the_fly[index]), cached[index]["source"]
        # float16 keeps 11 significant bits: error <= 2^-11 |x| (and here |x| < 16: <= 2^-8)
        assert ((rounded - exact).abs() <= exact.abs() * 2.0**-11 + 1e-7).all()
        assert (rounded - exact).abs().max() <= 2.0**-8


@pytest.mark.parametrize("kind", ["missing", "corrupt", "empty", "short", "nan"])
def test_bad_clips_give_the_same_errors_as_on_the_fly(tmp_path, kind):
    manifest, _ = manifest_with(tmp_path, kind)
    cache_dir = tmp_path / "cache"
    build_split(str(manifest), str(cache_dir), "train", FEATURES)
    options = dict(WHOLE_CLIPS, min_frames=16)
    on_the_fly, cached = datasets(manifest, cache_dir, **options)
    assert torch.equal(cached[0]["source"], model_fbank(on_the_fly[0]))
    messages = []
    for dataset in (on_the_fly, cached):
        with pytest.raises(AudioError) as info:
            dataset[len(dataset) - 1]
        messages.append(str(info.value))
    assert messages[0] == messages[1]
    skipping = datasets(manifest, cache_dir, skip_invalid=True, **options)[1]
    assert skipping.collater([skipping[i] for i in range(len(skipping))])["num_skipped"] == 1


def test_stale_shard_is_named_and_only_it_is_rebuilt(tiny_corpus, tmp_path):
    corpus = tmp_path / "corpus"
    shutil.copytree(tiny_corpus, corpus, symlinks=True)
    cache_dir = tmp_path / "cache"
    build(corpus, cache_dir)
    lines = (corpus / "train.tsv").read_text().splitlines()
    # line 9 now names line 10's file
    lines[8] = lines[9].split("\t")[0] + "\t" + lines[8].split("\t")[1]
    (corpus / "train.tsv").write_text("\n".join(lines) + "\n")
    stale = r"train\.00001\.json is stale: lines 7-11 of .*train\.tsv changed"
    with pytest.raises(FbankCacheError, match=stale):
        FbankCache.open(str(cache_dir), "train", read_manifest(str(corpus / "train.tsv")), FEATURES)
    log = []
    build(corpus, cache_dir, log=log.append)
    assert "4 complete, 1 to build" in log[0]
    on_the_fly, cached = datasets(corpus / "train.tsv", cache_dir, **WHOLE_CLIPS)
    assert torch.equal(model_fbank(on_the_fly[7]), cached[7]["source"])


def test_appended_manifest_lines_are_reported_missing(tiny_corpus, tmp_path):
    corpus = tmp_path / "corpus"
    shutil.copytree(tiny_corpus, corpus, symlinks=True)
    build(corpus, tmp_path / "cache")
    with open(corpus / "train.tsv", "a") as handle:
        handle.write((corpus / "valid.tsv").read_text().splitlines()[1] + "\n")
    manifest = read_manifest(str(corpus / "train.tsv"))
    with pytest.raises(
        FbankCacheError, match=r"no entry for .*train\.tsv:26 \(1 entries missing\)"
    ):
        FbankCache.open(str(tmp_path / "cache"), "train", manifest, FEATURES)


def test_corrupt_data_fails_its_crc_naming_the_shard_and_verify_rebuilds_it(tiny_corpus, tmp_path):
    build(tiny_corpus, tmp_path)
    data = tmp_path / "train.00002.fbank"
    damaged = bytearray(data.read_bytes())
    damaged[1000] ^= 0xFF
    data.write_bytes(bytes(damaged))
    _, cached = datasets(tiny_corpus / "train.tsv", tmp_path, **WHOLE_CLIPS)
    with pytest.raises(
        FbankCacheError, match=r"train\.00002\.fbank is corrupt: .* manifest line 12"
    ):
        cached[10]
    log, verify_log = [], []
    build(tiny_corpus, tmp_path, log=log.append)
    assert "5 complete, 0 to build" in log[0]  # without --verify a build trusts complete shards
    build(tiny_corpus, tmp_path, verify=True, log=verify_log.append)
    assert "4 complete, 1 to build" in verify_log[0]
    _, cached = datasets(tiny_corpus / "train.tsv", tmp_path, **WHOLE_CLIPS)
    cached[10]


def test_corrupt_or_truncated_index_and_data_are_caught_on_open(tiny_corpus, tmp_path):
    build(tiny_corpus, tmp_path)
    manifest = read_manifest(str(tiny_corpus / "train.tsv"))
    index = tmp_path / "train.00003.index.npy"
    original = index.read_bytes()
    index.write_bytes(original[:-8] + b"\0" * 8)
    with pytest.raises(
        FbankCacheError, match=r"train\.00003\.index\.npy does not match its sha256"
    ):
        FbankCache.open(str(tmp_path), "train", manifest, FEATURES)
    index.write_bytes(original)
    data = tmp_path / "train.00003.fbank"
    data.write_bytes(data.read_bytes()[:-512])
    with pytest.raises(
        FbankCacheError, match=r"train\.00003\.fbank has .* bytes, expected .*: trunc"
    ):
        FbankCache.open(str(tmp_path), "train", manifest, FEATURES)


def test_interrupted_build_resumes(tiny_corpus, tmp_path, monkeypatch):
    built = []
    build_shard = fbank_cache._build_shard

    def build_two_then_die(job):
        if len(built) == 2:
            # a half-written data file, as a killed build leaves behind
            (tmp_path / (job[1] + ".fbank.tmp")).write_bytes(b"partial")
            raise KeyboardInterrupt
        built.append(job[1])
        return build_shard(job)

    with monkeypatch.context() as patch:
        patch.setattr(fbank_cache, "_build_shard", build_two_then_die)
        with pytest.raises(KeyboardInterrupt):
            build(tiny_corpus, tmp_path)
    manifest = read_manifest(str(tiny_corpus / "train.tsv"))
    with pytest.raises(
        FbankCacheError, match="no complete fbank cache of split 'train'.*precompute"
    ):
        FbankCache.open(str(tmp_path), "train", manifest, FEATURES)
    log = []
    build(tiny_corpus, tmp_path, log=log.append)
    assert "2 complete, 3 to build" in log[0]
    on_the_fly, cached = datasets(tiny_corpus / "train.tsv", tmp_path, **WHOLE_CLIPS)
    for index in range(len(on_the_fly)):
        assert torch.equal(model_fbank(on_the_fly[index]), cached[index]["source"])


def test_other_features_are_refused(cached_corpus):
    corpus, cache_dir = cached_corpus
    manifest = read_manifest(str(corpus / "train.tsv"))
    refused = "built with features .*'num_mel_bins': 128.*the task uses .*'num_mel_bins': 80"
    with pytest.raises(FbankCacheError, match=refused):
        FbankCache.open(str(cache_dir), "train", manifest, FbankConfig(num_mel_bins=80))


@pytest.mark.slow
def test_training_from_the_cache_logs_the_same_losses(tiny_corpus, tmp_path):
    """End to end: the script builds every split, and fairseq-hydra-train with task.fbank_cache
    trains exactly as without it."""
    cache_dir = tmp_path / "cache"
    script = [console_script("mae-ast-precompute-fbank"), str(tiny_corpus), str(cache_dir)]
    subprocess.run([*script, "--workers", "2"], cwd=REPO, check=True, capture_output=True)
    assert json.loads((cache_dir / "valid.json").read_text())["num_shards"] == 1
    losses = []
    for extra in ([], [f"task.fbank_cache={cache_dir}"]):
        proc = hydra_train(
            "mae_ast_patch",
            [
                f"task.data={tiny_corpus}",
                *TINY_MODEL,
                "task.max_sample_len_s=1.5",  # crops at random offsets
                "optimization.max_update=3",
                "dataset.max_tokens=80000",
                "dataset.num_workers=1",
                "dataset.validate_interval_updates=3",
                "common.log_interval=1",
                "common.amp=false",
                "common.tensorboard_logdir=null",
                f"hydra.run.dir={tmp_path / ('cached' if extra else 'audio')}",
                *extra,
            ],
        )
        train_logs = records(proc.stdout, "train_inner")
        losses.append([(r["loss"], r["loss_recon"], r["loss_infonce"]) for r in train_logs])
        losses[-1].append(records(proc.stdout, "valid")[-1]["valid_loss"])
    assert len(losses[0]) == 4 and losses[0] == losses[1]
