"""Shared test helpers: small generated audio corpora and a fairseq-hydra-train runner."""

import contextlib
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile

REPO = Path(__file__).resolve().parents[1]
HYDRA_TRAIN = str(Path(sys.executable).parent / "fairseq-hydra-train")


# The test tiers (pyproject.toml's `slow` marker; README, "Commands"): a test that starts a
# Python process (fairseq-hydra-train, a console script, torchrun, `python -c`) pays seconds of
# interpreter, torch and fairseq start-up, so it must be marked slow, directly or through its
# fixtures.  The guard below makes an unmarked one fail, so `make test-fast` stays fast.
_BIN = os.path.dirname(os.path.abspath(sys.executable))


def _python_program(args) -> str | None:
    """The program a ``subprocess.Popen(args)`` call starts if it is a Python process of this
    environment (an interpreter or a script of its bin directory), else None."""
    first = args.split()[0] if isinstance(args, str) else args[0] if args else ""
    program = os.path.abspath(os.fsdecode(first))
    if os.path.dirname(program) == _BIN or os.path.basename(program).startswith("python"):
        return program
    return None


@contextlib.contextmanager
def _slow_guard(item):
    """While an unmarked test is set up or run, starting a Python process fails it."""
    if item.get_closest_marker("slow") is not None:
        yield
        return
    original = subprocess.Popen.__init__

    def guarded(self, args, *rest, **kwargs):
        program = _python_program(args)
        if program is not None:
            pytest.fail(
                f"{item.nodeid} starts {program} but is not marked slow: add "
                "@pytest.mark.slow to it (or to the test using the fixture that starts it)",
                pytrace=False,
            )
        original(self, args, *rest, **kwargs)

    subprocess.Popen.__init__ = guarded
    try:
        yield
    finally:
        subprocess.Popen.__init__ = original


@pytest.hookimpl(wrapper=True)
def pytest_runtest_setup(item):
    with _slow_guard(item):
        return (yield)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item):
    with _slow_guard(item):
        return (yield)


def console_script(name: str) -> str:
    """An installed console script of this environment (setup.py's entry points), e.g.
    ``mae-ast-predict``: tests run the commands as users do."""
    return str(Path(sys.executable).parent / name)

# A model small enough for a few CPU updates in a second or two: as config fields, and as
# fairseq-hydra-train overrides.
TINY_ARCH = dict(
    encoder_layers=2,
    encoder_embed_dim=32,
    decoder_embed_dim=32,
    encoder_ffn_embed_dim=64,
    encoder_attention_heads=2,
    decoder_layers=1,
)
TINY_MODEL = [f"model.{key}={value}" for key, value in TINY_ARCH.items()]


def synth_clip(rng: np.random.Generator, seconds: float, sample_rate: int, channels: int = 1):
    """A chirp with harmonics and noise: structured enough to learn from, cheap to make."""
    t = np.arange(int(seconds * sample_rate)) / sample_rate
    f0 = rng.uniform(120, 900)
    sweep = f0 * (1 + rng.uniform(-0.5, 0.5) * t / max(seconds, 1e-3))
    phase = 2 * np.pi * np.cumsum(sweep) / sample_rate
    wave = sum(np.sin(k * phase) / k for k in (1, 2, 3)) * 0.2
    wave = wave + 0.02 * rng.standard_normal(len(t))
    if channels > 1:
        wave = np.stack([wave, 0.5 * wave], axis=1)
    return wave.astype(np.float32)


def write_corpus(root: Path, splits: dict, seed: int = 0, min_s: float = 0.8, max_s: float = 2.5):
    """Write wavs and fairseq manifests ``{split}.tsv`` under ``root``; ``splits`` maps a split
    name to a clip count.  Every third clip is 22.05 kHz and every fifth is stereo, so resampling
    and mixdown are exercised."""
    rng = np.random.default_rng(seed)
    audio = root / "audio"
    audio.mkdir(parents=True, exist_ok=True)
    for split, count in splits.items():
        lines = [str(audio)]
        for i in range(count):
            rate = 22050 if i % 3 == 2 else 16000
            clip = synth_clip(rng, rng.uniform(min_s, max_s), rate, channels=2 if i % 5 == 4 else 1)
            name = f"{split}_{i:03d}.wav"
            soundfile.write(audio / name, clip, rate)
            lines.append(f"{name}\t{clip.shape[0]}")
        (root / f"{split}.tsv").write_text("\n".join(lines) + "\n")
    return root


@pytest.fixture(scope="session")
def tiny_corpus(tmp_path_factory):
    return write_corpus(tmp_path_factory.mktemp("tiny_corpus"), {"train": 24, "valid": 6})


def short_run_overrides(run_dir, max_update: int) -> list:
    """fairseq-hydra-train overrides of a short CPU run: batches of up to 5 s of 16 kHz audio,
    no loader workers, no validation, a log line per update, fp32, no tensorboard."""
    return [
        f"optimization.max_update={max_update}",
        "dataset.max_tokens=80000",
        "dataset.num_workers=0",
        "dataset.disable_validation=true",
        "common.log_interval=1",
        "common.amp=false",
        "common.tensorboard_logdir=null",
        f"hydra.run.dir={run_dir}",
    ]


def hydra_train(config_name: str, overrides, config_dir="config/pretrain", check=True, timeout=600):
    """Run ``fairseq-hydra-train`` from the repository root, as a user would."""
    cmd = [
        HYDRA_TRAIN,
        "--config-dir",
        config_dir,
        "--config-name",
        config_name,
        "common.user_dir=mae_ast_plugin",
        *overrides,
    ]
    env = dict(os.environ, HYDRA_FULL_ERROR="1", PYTHONWARNINGS="ignore")
    proc = subprocess.run(
        cmd, cwd=REPO, capture_output=True, text=True, timeout=timeout, env=env
    )
    if check and proc.returncode != 0:
        raise AssertionError(
            f"fairseq-hydra-train failed ({proc.returncode}):\n"
            f"{proc.stdout[-4000:]}\n{proc.stderr[-6000:]}"
        )
    return proc


def tiny_pretraining(root: Path, config_name: str) -> Path:
    """A tiny model pretrained 3 updates with config/pretrain/CONFIG_NAME.yaml on 8 clips of
    0.5-1.5 s under ``root``; returns its checkpoint_last.pt."""
    corpus = write_corpus(root / "corpus", {"train": 8, "valid": 2}, min_s=0.5, max_s=1.5)
    hydra_train(
        config_name,
        [
            f"task.data={corpus}",
            f"hydra.run.dir={root / 'run'}",
            "optimization.max_update=3",
            "dataset.max_tokens=400000",
            "dataset.num_workers=0",
            "dataset.required_batch_size_multiple=1",
            "common.amp=false",
            *TINY_MODEL,
        ],
    )
    return root / "run" / "checkpoints" / "checkpoint_last.pt"


@pytest.fixture(scope="session")
def tiny_pretrained(tmp_path_factory):
    """``tiny_pretrained(config_name)``: the checkpoint of ``tiny_pretraining`` with that config,
    trained on first use and then shared by every module of the session (each run is an
    interpreter start with torch and fairseq plus training: seconds)."""
    made = {}

    def get(config_name: str) -> Path:
        if config_name not in made:
            made[config_name] = tiny_pretraining(tmp_path_factory.mktemp(config_name), config_name)
        return made[config_name]

    return get


# The fine-tuning tests' shared runs (finetune_helpers.py); fixtures live here so that every
# test module gets them without importing fixture names.
@pytest.fixture(scope="session")
def base(tmp_path_factory):
    """One directory per session, so the cached fine-tuning runs are shared by every module."""
    path = tmp_path_factory.getbasetemp() / "finetune"
    path.mkdir(exist_ok=True)
    return path


@pytest.fixture(scope="session")
def runs(base):
    from finetune_helpers import finetuned_runs

    return finetuned_runs(base)
