"""Tests for mae_ast_plugin/corpora/speech_synth.py and mae-ast-make-demo-corpus.

speech_synth.py is loaded by path where a test blocks one of its imports.
"""

import hashlib
import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from mae_ast_plugin.corpora import dsp, speech_synth

sf = pytest.importorskip("soundfile")

REPO = Path(__file__).resolve().parent.parent
SYNTH_PATH = REPO / "mae_ast_plugin" / "corpora" / "speech_synth.py"

# Small corpus: 8 pretraining + 48 keyword + 21 speaker clips.
SMALL = [
    "--num-pretrain", "6", "--num-pretrain-valid", "2",
    "--keyword-per-class", "2", "--keyword-eval-per-class", "1",
    "--num-speakers", "3", "--speaker-clips", "3", "--speaker-eval-clips", "2",
]
SPLITS = ("train", "valid", "test")


def _load(name, path):
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, path)
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return sys.modules[name]


@pytest.fixture(scope="module")
def ss():
    module = _load("_test_speech_synth", SYNTH_PATH)
    if not module.espeak_available():
        pytest.skip("espeakng-loader is not installed")
    return module


@pytest.fixture(scope="module")
def corpus_script(ss):
    from mae_ast_plugin.corpora import demo

    return demo


def _build_args(tmp, seed):
    return ["--out", str(tmp / "audio"), "--manifests", str(tmp / "manifests"),
            "--seed", str(seed), "--workers", "1"] + SMALL


@pytest.fixture(scope="module")
def built(tmp_path_factory, ss):
    """Corpus built by running the console script, from the repo root."""
    tmp = tmp_path_factory.mktemp("corpus_a")
    result = subprocess.run(
        [str(Path(sys.executable).parent / "mae-ast-make-demo-corpus")] + _build_args(tmp, 7),
        cwd=REPO, capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert "keyword" in result.stdout and "speaker" in result.stdout
    return tmp


def _read_manifest(path):
    lines = Path(path).read_text().splitlines()
    return lines[0], [(rel, int(n)) for rel, n in (line.split("\t") for line in lines[1:])]


def _read_meta(path):
    return [json.loads(line) for line in Path(path).read_text().splitlines()]


def _manifests(root):
    m = root / "manifests"
    yield m / "train.tsv"
    yield m / "valid.tsv"
    for task in ("keyword", "speaker"):
        for split in SPLITS:
            yield m / task / f"{split}.tsv"


def _hashes(root):
    """sha256 of every wav (by relative path) and every manifest file except
    the tsv root lines and corpus.json, which name the output directory."""
    out = {}
    for path in sorted((root / "audio").rglob("*.wav")):
        rel = path.relative_to(root / "audio").as_posix()
        out[rel] = hashlib.sha256(path.read_bytes()).hexdigest()
    for path in sorted((root / "manifests").rglob("*")):
        if path.is_file() and path.name != "corpus.json":
            lines = path.read_text().splitlines()
            if path.suffix == ".tsv":
                lines = lines[1:]
            digest = hashlib.sha256("\n".join(lines).encode()).hexdigest()
            out[path.relative_to(root).as_posix()] = digest
    return out


# ---------------------------------------------------------------- speech_synth


@pytest.mark.slow
def test_import_without_espeakng_loader():
    # Blocking the package makes `import espeakng_loader` raise ImportError.
    code = f"""
import importlib.util, sys
sys.modules["espeakng_loader"] = None
spec = importlib.util.spec_from_file_location("s", {str(SYNTH_PATH)!r})
s = importlib.util.module_from_spec(spec); sys.modules["s"] = s; spec.loader.exec_module(s)
assert not s.espeak_available()
try:
    s.synthesize("hello")
except RuntimeError as exc:
    assert "pip install espeakng-loader" in str(exc), exc
else:
    raise AssertionError("no error")
"""
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr


def test_synthesize_plausible_audio(ss):
    word = ss.synthesize("yes", voice="en-us", variant="m3")
    sentence = ss.synthesize("the old farmer opened the heavy window near the river",
                             voice="en-gb", variant="f2", rate_wpm=175)
    slow = ss.synthesize("the old farmer opened the heavy window near the river",
                         voice="en-gb", variant="f2", rate_wpm=110)
    for audio in (word, sentence, slow):
        assert audio.dtype == np.float32 and audio.ndim == 1
        assert dsp.rms(audio) > 0.02 and np.max(np.abs(audio)) <= 1.0
    assert 0.15 < len(word) / 16000 < 1.0
    assert 1.5 < len(sentence) / 16000 < 6.0
    assert len(slow) > 1.3 * len(sentence)


def test_synthesize_is_deterministic_across_calls(ss):
    # espeak-ng keeps state between utterances; synthesize must not leak it.
    kwargs = dict(voice="en-us", variant="f2", rate_wpm=160, pitch=60, seed=5)
    first = ss.synthesize("stop the engine", **kwargs)
    ss.synthesize("something else entirely", voice="de", variant="m1")
    again = ss.synthesize("stop the engine", **kwargs)
    assert np.array_equal(first, again)
    other_voice = ss.synthesize("stop the engine", **dict(kwargs, variant="m3"))
    assert not np.array_equal(first, other_voice)


def test_voice_listing(ss):
    languages = {v.language for v in ss.list_voices()}
    assert {"en-us", "en-gb", "de", "fr-fr"} <= languages
    assert {"m1", "m7", "f1", "f4"} <= set(ss.list_variants())
    for language in ("fr-fr", "en-gb"):  # codes espeak-ng cannot select by itself
        assert len(ss.synthesize("bonjour", voice=language)) > 0


def test_unknown_voice_errors(ss):
    with pytest.raises(ss.UnknownVoiceError, match="no-such-voice"):
        ss.synthesize("hello", voice="no-such-voice")
    with pytest.raises(ValueError, match="no-such-variant"):
        ss.synthesize("hello", voice="en-us", variant="no-such-variant")
    with pytest.raises(ValueError, match="rate_wpm"):
        ss.synthesize("hello", rate_wpm=10)


def test_noise_and_mixing():
    n = 16000
    for kind in dsp.NOISE_KINDS:
        a = dsp.ambient_noise(n, np.random.default_rng(3), kind)
        b = dsp.ambient_noise(n, np.random.default_rng(3), kind)
        assert len(a) == n and np.array_equal(a, b)
        assert abs(dsp.rms(a) - 1.0) < 1e-3
    # pink/brown noise put more power in low frequencies than white noise
    low = [np.sum(np.abs(np.fft.rfft(f(n, np.random.default_rng(0))))[:200] ** 2)
           for f in (dsp.white_noise, dsp.pink_noise, dsp.brown_noise)]
    assert low[0] < low[1] < low[2]

    rng = np.random.default_rng(1)
    speech = np.sin(2 * np.pi * 440 * np.arange(n) / 16000).astype(np.float32)
    noise = dsp.pink_noise(3 * n, rng)
    mixed = dsp.mix_at_snr(speech, noise, 10.0, np.random.default_rng(2))
    residual = mixed - speech
    snr = 10 * np.log10(dsp.rms(speech) ** 2 / dsp.rms(residual) ** 2)
    assert len(mixed) == n and abs(snr - 10.0) < 1e-3


def test_resample_keeps_frequency():
    tone = np.sin(2 * np.pi * 1000 * np.arange(22050) / 22050).astype(np.float32)
    out = speech_synth.resample(tone, 22050, 16000)
    assert len(out) == 16000
    spectrum = np.abs(np.fft.rfft(out[2000:14000] * np.hanning(12000)))
    assert abs(np.argmax(spectrum) * 16000 / 12000 - 1000) < 2


# ---------------------------------------------------------------- corpus


@pytest.mark.slow
def test_manifest_format(built):
    for manifest in _manifests(built):
        root, rows = _read_manifest(manifest)
        assert Path(root).is_absolute() and Path(root) == (built / "audio").resolve()
        assert rows, manifest
        for rel, num_samples in rows:
            assert not Path(rel).is_absolute() and rel.endswith(".wav")
            info = sf.info(str(Path(root) / rel))
            assert info.frames == num_samples
            assert info.samplerate == 16000 and info.channels == 1
            assert info.subtype == "PCM_16"
    durations = [n / 16000 for _, n in _read_manifest(built / "manifests" / "train.tsv")[1]]
    assert all(1.0 <= d <= 4.0 for d in durations)
    for split in SPLITS:
        _, rows = _read_manifest(built / "manifests" / "keyword" / f"{split}.tsv")
        assert all(n == 16000 for _, n in rows)


@pytest.mark.slow
def test_labels_parallel_to_manifests(built):
    expected_rows = {"keyword": {"train": 12 * 2, "valid": 12, "test": 12},
                     "speaker": {"train": 3 * 3, "valid": 3 * 2, "test": 3 * 2}}
    for task in ("keyword", "speaker"):
        task_dir = built / "manifests" / task
        label_lines = (task_dir / "labels.csv").read_text().splitlines()
        assert label_lines[0] == "index,mid,display_name"
        table = [line.split(",") for line in label_lines[1:]]
        assert all(len(row) == 3 for row in table)
        assert [int(row[0]) for row in table] == list(range(len(table)))
        for split in SPLITS:
            _, rows = _read_manifest(task_dir / f"{split}.tsv")
            labels = (task_dir / f"{split}.lbl").read_text().splitlines()
            assert len(labels) == len(rows) == expected_rows[task][split]
            assert all(0 <= int(label) < len(table) for label in labels)
            meta = _read_meta(task_dir / f"{split}.meta.jsonl")
            assert [m["path"] for m in meta] == [rel for rel, _ in rows]
            assert [m["label"] for m in meta] == [int(label) for label in labels]
    names = [line.split(",")[1] for line in
             (built / "manifests" / "keyword" / "labels.csv").read_text().splitlines()[1:]]
    assert len(names) >= 12 and {"yes", "no", "stop", "go", "_unknown_", "_silence_"} <= set(names)
    # every class present in every keyword split
    for split in SPLITS:
        labels = (built / "manifests" / "keyword" / f"{split}.lbl").read_text().split()
        assert set(map(int, labels)) == set(range(len(names)))


@pytest.mark.slow
def test_keyword_test_voices_unseen(built):
    voices = {split: {m["identity"] for m in
                      _read_meta(built / "manifests" / "keyword" / f"{split}.meta.jsonl")}
              for split in SPLITS}
    assert voices["test"].isdisjoint(voices["train"] | voices["valid"])
    assert voices["valid"].isdisjoint(voices["train"])


@pytest.mark.slow
def test_speaker_splits(built):
    meta = {split: _read_meta(built / "manifests" / "speaker" / f"{split}.meta.jsonl")
            for split in SPLITS}
    sentences = {split: {m["text"] for m in rows} for split, rows in meta.items()}
    speakers = {split: {m["speaker"] for m in rows} for split, rows in meta.items()}
    assert sentences["test"].isdisjoint(sentences["train"])
    assert sentences["valid"].isdisjoint(sentences["train"])
    assert speakers["test"] <= speakers["train"] and speakers["valid"] <= speakers["train"]
    # a speaker is one (voice, variant, pitch, rate) identity
    identity = {}
    for rows in meta.values():
        for m in rows:
            key = (m["voice"], m["variant"], m["pitch"], m["rate_wpm"])
            assert identity.setdefault(m["speaker"], key) == key
    assert len(set(identity.values())) == len(identity) == 3


@pytest.mark.slow
def test_deterministic_and_seed_dependent(built, corpus_script, tmp_path):
    same = tmp_path / "same"
    corpus_script.build(corpus_script.get_parser().parse_args(_build_args(same, 7)))
    assert _hashes(same) == _hashes(built)

    other = tmp_path / "other"
    corpus_script.build(corpus_script.get_parser().parse_args(_build_args(other, 8)))
    a, b = _hashes(built), _hashes(other)
    assert a.keys() == b.keys()
    wavs = [k for k in a if k.endswith(".wav")]
    assert sum(a[k] != b[k] for k in wavs) == len(wavs)


@pytest.mark.slow
def test_rerun_is_skipped_unless_forced(built, corpus_script, capsys):
    record_path = built / "manifests" / "corpus.json"
    before = {p: p.stat().st_mtime_ns for p in (built / "audio").rglob("*.wav")}
    record = corpus_script.build(corpus_script.get_parser().parse_args(_build_args(built, 7)))
    assert "already built" in capsys.readouterr().out
    assert record == json.loads(record_path.read_text())
    assert record["total_clips"] == 8 + 48 + 21
    assert {p: p.stat().st_mtime_ns for p in before} == before

    # --force rebuilds (identical bytes); a smaller build removes stale clips
    corpus_script.build(corpus_script.get_parser().parse_args(_build_args(built, 7) + ["--force"]))
    assert "already built" not in capsys.readouterr().out
    smaller = _build_args(built, 7) + ["--num-pretrain", "3"]
    corpus_script.build(corpus_script.get_parser().parse_args(smaller))
    assert len(list((built / "audio" / "pretrain" / "train").glob("*.wav"))) == 3
    assert not list(built.rglob("*.tmp"))
    # restore the module fixture's corpus for any test running after this one
    corpus_script.build(corpus_script.get_parser().parse_args(_build_args(built, 7)))
