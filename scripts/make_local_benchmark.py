#!/usr/bin/env python3
"""Build the local miniature of Table 1's benchmarks: deterministic, synthetic, pip-only.

Four datasets, written as the plugin's manifests (``{split}.tsv``, ``{split}.lbl``,
``labels.csv`` through prep.common, plus a ``{split}.meta.jsonl`` per split describing every
clip) under ``--manifests`` (default ``manifests/local``), with 16 kHz wavs under ``--out``
(default ``data/local``):

* ``pretrain/``: unlabelled ``train``/``valid`` clips, half speech (espeak-ng sentences and
  foreign word strings, as in the demo corpus; the LibriSpeech stand-in) and half sound scenes of
  one to three synthetic events (the AudioSet stand-in).
* ``keyword/`` (Speech Commands style, Table 1's KS1): 10 command words, ``_unknown_`` (other
  words) and ``_silence_`` (noise only), 1 s clips.
* ``speaker/`` (VoxCeleb1 style, SID): a speaker is a (voice, variant, pitch, rate) identity;
  every split has every speaker, speaking sentences no other split uses.
* ``events/`` (ESC-50 style, ESC): ten classes of synthetic sounds that differ in
  spectral-temporal structure (:data:`EVENT_CLASSES`), 2 s clips with background noise.

Split rules (what keeps the test sets honest, checked by tests/test_local_table1.py):

* Voices: espeak-ng voice *variants* (the timbre: m1, f2, adam, ...) are split into keyword
  train / valid / test sets.  Keyword test clips use variants that no keyword training clip,
  no pretraining clip and no speaker of the speaker task uses, in any accent: unseen voices.
* Speakers: test clips are new sentences (never in the speaker task's train or valid split) by
  the known speakers (the demo corpus's planner).
* Sound events: each clip's main frequency (carrier, fundamental or band centre, 250-3000 Hz)
  and its temporal rate (modulation, click, pip or burst rate, 3-24 Hz) are drawn from
  log-spaced bands that belong to one split (:data:`BAND_SPLITS`): test clips sit in frequency
  and rate bands that no training clip and no pretraining sound uses (interpolation between
  training bands, not extrapolation), and every clip also has its own seed.

The same ``--seed`` and sizes give byte-identical files; each clip is planned from its own RNG
seeded by (seed, part, split, index).  A finished build is recorded in ``{manifests}/corpus.json``
and rerunning with the same parameters is a no-op (``--force`` rebuilds).

    python scripts/make_local_benchmark.py            # small, for 2 CPU cores
    python scripts/make_local_benchmark.py --large    # about 5x more, for a GPU
"""

import os

# Rendering runs in worker processes: keep each single-threaded (before numpy is imported).
for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import argparse  # noqa: E402
import datetime  # noqa: E402
import importlib.util  # noqa: E402
import json  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
if importlib.util.find_spec("mae_ast_plugin") is None:  # not installed: use this checkout
    sys.path.insert(0, str(REPO))

from mae_ast_plugin import speech_synth as ss  # noqa: E402
from mae_ast_plugin.prep.common import ClassInfo, atomic_write_text, write_labels_csv  # noqa: E402


def _load_demo_corpus():
    """scripts/make_demo_corpus.py as a module (registered, so that its functions pickle into
    the rendering worker processes)."""
    name = "make_demo_corpus"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, Path(__file__).with_name(f"{name}.py"))
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return sys.modules[name]


demo = _load_demo_corpus()

FORMAT_VERSION = 1  # bump when the audio changes for the same parameters
SAMPLE_RATE = demo.SAMPLE_RATE
SPLITS = demo.SPLITS_LABELLED  # train, valid, test
TASKS = ("keyword", "speaker", "events")

# Fractions of the voice variants held out for keyword valid and test.
KEYWORD_VALID_VARIANTS = 0.15
KEYWORD_TEST_VARIANTS = 0.2

EVENT_CLASSES = (
    "pure_tone",  # one steady sinusoid
    "harmonic_complex",  # a steady fundamental with 3-8 harmonics
    "chirp_up",  # a tone gliding up 1-3 octaves
    "chirp_down",  # the same, gliding down
    "fm_warble",  # a tone with sinusoidal vibrato (5-20 % deep)
    "am_tone",  # a tone with sinusoidal tremolo
    "tone_pips",  # a tone switched on and off regularly (a beeping alarm)
    "click_train",  # regular clicks (short damped resonances)
    "noise_bursts",  # band noise switched on and off at random times
    "noise_sweep",  # a band of noise whose centre glides up or down
)
EVENT_SECONDS = 2.0
FREQ_RANGE_HZ = (250.0, 3000.0)
RATE_RANGE_HZ = (3.0, 24.0)
# Both ranges are cut into 10 log-spaced bands; a clip draws its frequency and its rate from
# bands of its own split.  Test and valid bands lie between training bands.
BAND_SPLITS = (
    "train", "train", "test", "train", "valid", "train", "test", "train", "valid", "train"
)

PRESETS = {
    # 2 CPU cores: builds in a few minutes
    "small": dict(
        num_pretrain=2400, num_pretrain_valid=100,
        keyword_per_class=40, keyword_eval_per_class=20,
        num_speakers=16, speaker_clips=16, speaker_eval_clips=8,
        events_per_class=40, events_eval_per_class=20,
    ),
    # a GPU: about five times the data
    "large": dict(
        num_pretrain=8000, num_pretrain_valid=400,
        keyword_per_class=200, keyword_eval_per_class=60,
        num_speakers=40, speaker_clips=40, speaker_eval_clips=15,
        events_per_class=200, events_eval_per_class=60,
    ),
}
SIZE_OPTIONS = tuple(PRESETS["small"])


# --------------------------------------------------------------------------
# Command line
# --------------------------------------------------------------------------


def get_parser():
    parser = argparse.ArgumentParser(
        description="Build the synthetic pretraining corpus and the keyword, speaker and "
        "sound-event tasks of the local Table 1 miniature.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--out", default="data/local", metavar="DIR", help="audio directory")
    parser.add_argument("--manifests", default="manifests/local", metavar="DIR",
                        help="manifest directory (pretrain/, keyword/, speaker/, events/)")
    parser.add_argument("--seed", type=int, default=1, help="random seed (>= 0)")
    parser.add_argument("--large", action="store_true", help="the larger preset (for a GPU)")
    help_of = {
        "num_pretrain": "pretraining train clips (half speech, half sounds)",
        "num_pretrain_valid": "pretraining valid clips",
        "keyword_per_class": "keyword train clips per class",
        "keyword_eval_per_class": "keyword valid clips and test clips per class (each)",
        "num_speakers": "speakers of the speaker task",
        "speaker_clips": "speaker train clips per speaker",
        "speaker_eval_clips": "speaker valid clips and test clips per speaker (each)",
        "events_per_class": "sound-event train clips per class",
        "events_eval_per_class": "sound-event valid clips and test clips per class (each)",
    }
    for name in SIZE_OPTIONS:
        parser.add_argument(f"--{name.replace('_', '-')}", type=int, default=None,
                            help=f"{help_of[name]} (default: from the preset)")
    parser.add_argument("--min-snr", type=float, default=0.0, help="lowest SNR in dB")
    parser.add_argument("--max-snr", type=float, default=20.0, help="highest SNR in dB")
    parser.add_argument("--workers", type=int, default=min(2, os.cpu_count() or 1),
                        help="speech rendering processes (does not change the output)")
    parser.add_argument("--force", action="store_true", help="rebuild even if up to date")
    return parser


def resolve_sizes(args):
    """Fill the size options left unset from the preset, and check them."""
    preset = PRESETS["large" if args.large else "small"]
    for name in SIZE_OPTIONS:
        if getattr(args, name) is None:
            setattr(args, name, preset[name])
        if getattr(args, name) < 1:
            raise SystemExit(f"--{name.replace('_', '-')} must be >= 1")
    if args.num_pretrain < 2 or args.num_pretrain_valid < 2:
        raise SystemExit("pretraining needs at least 2 train and 2 valid clips (speech + sounds)")
    if args.seed < 0 or args.workers < 1 or args.min_snr > args.max_snr:
        raise SystemExit("need --seed >= 0, --workers >= 1 and --min-snr <= --max-snr")
    return args


# --------------------------------------------------------------------------
# Voices
# --------------------------------------------------------------------------


def split_variants(seed, variants):
    """Disjoint voice-variant sets for keyword train / valid / test (None = the default voice
    of each accent, a timbre of its own)."""
    order = demo.clip_rng(seed, "local", "variants").permutation(len(variants))
    shuffled = [variants[i] for i in order]
    n_test = max(1, int(round(len(shuffled) * KEYWORD_TEST_VARIANTS)))
    n_valid = max(1, int(round(len(shuffled) * KEYWORD_VALID_VARIANTS)))
    if len(shuffled) < n_test + n_valid + 1:
        raise SystemExit(f"only {len(shuffled)} espeak-ng voice variants: need at least 3")
    return {
        "test": shuffled[:n_test],
        "valid": shuffled[n_test : n_test + n_valid],
        "train": shuffled[n_test + n_valid :],
    }


def plan_keyword(args, variants_of_split):
    """Keyword clips as the demo corpus plans them, but voices drawn from the split's own
    variants (in any accent), so test voices are timbres never heard in training."""
    plans = {}
    for split in SPLITS:
        count = args.keyword_per_class if split == "train" else args.keyword_eval_per_class
        variants = variants_of_split[split]
        clips = []
        for label, name in enumerate(demo.keyword_classes()):
            for i in range(count):
                rng = demo.clip_rng(args.seed, "local-keyword", split, name, i)
                voice = str(rng.choice(demo.ENGLISH_VOICES))
                variant = variants[int(rng.integers(len(variants)))]
                if name == demo.SILENCE_CLASS:
                    text = None
                elif name == demo.UNKNOWN_CLASS:
                    text = str(rng.choice(demo.UNKNOWN_WORDS))
                else:
                    text = name
                clips.append(demo._clip(
                    f"keyword/{split}/{name}/{i:04d}.wav", text, voice, variant,
                    rng.integers(110, 221), rng.integers(20, 81), rng.integers(20, 81), rng, args,
                    layout={"fixed_s": 1.0}, label=label, kind="speech",
                    identity=demo._identity_name(voice, variant),
                    silence_dbfs=round(float(rng.uniform(-50.0, -25.0)), 2),
                ))
        plans[split] = clips
    return plans


# --------------------------------------------------------------------------
# Sound events
# --------------------------------------------------------------------------


def band_edges(value_range):
    low, high = value_range
    return np.geomspace(low, high, len(BAND_SPLITS) + 1)


def draw_in_bands(rng, value_range, split):
    """A log-uniform value from one of ``split``'s bands; returns (value, band index)."""
    edges = band_edges(value_range)
    bands = [i for i, owner in enumerate(BAND_SPLITS) if owner == split]
    band = bands[int(rng.integers(len(bands)))]
    value = float(np.exp(rng.uniform(np.log(edges[band]), np.log(edges[band + 1]))))
    return round(value, 3), band


def event_params(rng, name, split):
    """Every random choice of one event: the split-owned frequency and rate and the free ones."""
    freq, freq_band = draw_in_bands(rng, FREQ_RANGE_HZ, split)
    rate, rate_band = draw_in_bands(rng, RATE_RANGE_HZ, split)
    return {
        "class": name,
        "freq_hz": freq,
        "freq_band": freq_band,
        "rate_hz": rate,
        "rate_band": rate_band,
        "octaves": round(float(rng.uniform(1.0, 3.0)), 3),  # chirp / sweep extent
        "depth": round(float(rng.uniform(0.05, 0.2)), 3),  # FM depth
        "am_depth": round(float(rng.uniform(0.7, 1.0)), 3),
        "duty": round(float(rng.uniform(0.25, 0.5)), 3),  # tone pips
        "harmonics": int(rng.integers(3, 9)),
        "tilt": round(float(rng.uniform(0.5, 1.5)), 3),  # harmonic amplitudes ~ 1/k^tilt
        "direction": int(rng.choice([-1, 1])),  # noise sweep
        "seed": int(rng.integers(0, 2**31)),
    }


def _sine_from_frequency(freq_track):
    """A unit sinusoid following a per-sample frequency track (Hz)."""
    return np.sin(2 * np.pi * np.cumsum(freq_track) / SAMPLE_RATE)


def _gate(t, rate, duty, ramp_s=0.005):
    """Regular on/off gating with raised-cosine edges: 1 for ``duty`` of each period."""
    period = 1.0 / rate
    phase = np.mod(t, period)
    on = duty * period
    ramp = min(ramp_s, on / 2)
    rise = np.clip(phase / ramp, 0, 1)
    fall = np.clip((on - phase) / ramp, 0, 1)
    return 0.5 - 0.5 * np.cos(np.pi * np.minimum(rise, fall))


def synth_event(params, seconds):
    """One event, unit peak, ``seconds`` long; deterministic in ``params``."""
    rng = np.random.default_rng(params["seed"])
    n = int(round(seconds * SAMPLE_RATE))
    t = np.arange(n) / SAMPLE_RATE
    f, rate, name = params["freq_hz"], params["rate_hz"], params["class"]
    nyquist_safe = 0.45 * SAMPLE_RATE
    if name == "pure_tone":
        x = _sine_from_frequency(np.full(n, f))
    elif name == "harmonic_complex":
        f0 = f / 2
        x = sum(
            np.sin(2 * np.pi * k * f0 * t + rng.uniform(0, 2 * np.pi)) / k ** params["tilt"]
            for k in range(1, params["harmonics"] + 1) if k * f0 < nyquist_safe
        )
    elif name in ("chirp_up", "chirp_down"):
        sign = 1 if name == "chirp_up" else -1
        octaves = sign * params["octaves"] * (t / seconds - 0.5)  # centred on f
        x = _sine_from_frequency(np.clip(f * 2.0**octaves, 50, nyquist_safe))
    elif name == "fm_warble":
        x = _sine_from_frequency(f * (1 + params["depth"] * np.sin(2 * np.pi * rate * t)))
    elif name == "am_tone":
        tremolo = 1 - params["am_depth"] * 0.5 * (1 - np.cos(2 * np.pi * rate * t))
        x = tremolo * _sine_from_frequency(np.full(n, f))
    elif name == "tone_pips":
        x = _gate(t, rate, params["duty"]) * _sine_from_frequency(np.full(n, f))
    elif name == "click_train":
        # clicks at twice the rate (6-48 per second): each a 2-4 ms damped resonance at f
        x = np.zeros(n)
        click_t = np.arange(int(0.04 * SAMPLE_RATE)) / SAMPLE_RATE
        click = np.exp(-click_t / rng.uniform(0.002, 0.004)) * np.sin(2 * np.pi * f * click_t)
        for start in np.arange(rng.uniform(0, 0.5 / rate), seconds, 0.5 / rate):
            i = int(start * SAMPLE_RATE)
            x[i : i + len(click)] += click[: n - i]
    elif name == "noise_bursts":
        # Poisson burst onsets at the rate's mean, bursts 20-100 ms: irregular, unlike pips
        envelope = np.zeros(n)
        onset = rng.exponential(1.0 / rate)
        while onset < seconds:
            i, length = int(onset * SAMPLE_RATE), int(rng.uniform(0.02, 0.1) * SAMPLE_RATE)
            envelope[i : i + length] = np.hanning(length)[: n - i]
            onset += rng.exponential(1.0 / rate)
        x = envelope * ss.band_noise(n, rng, f / np.sqrt(2), f * np.sqrt(2), SAMPLE_RATE)
    elif name == "noise_sweep":
        # 40 random-phase partials spread over 1/3 octave around a gliding centre
        centre = f * 2.0 ** (params["direction"] * params["octaves"] * (t / seconds - 0.5))
        spread = 2.0 ** rng.uniform(-1 / 6, 1 / 6, size=40)
        x = sum(
            _sine_from_frequency(np.clip(centre * s, 50, nyquist_safe)) * rng.uniform(0.5, 1)
            for s in spread
        )
    else:
        raise ValueError(f"unknown event class {name!r}")
    x = np.asarray(x, dtype=np.float64)
    x = demo._fade(x.astype(np.float32), int(0.01 * SAMPLE_RATE))
    peak = float(np.max(np.abs(x)))
    return x / peak if peak > 0 else x


def _sound_clip(path, rng, args, events, length_s, **extra):
    """A sound clip spec: events as (params, onset_s, duration_s, gain) plus background noise."""
    return {
        "path": path,
        "kind": "sound",
        "length_s": length_s,
        "events": events,
        "noise": str(rng.choice(ss.NOISE_KINDS)),
        "snr_db": round(float(rng.uniform(args.min_snr, args.max_snr)), 2),
        "render_seed": int(rng.integers(0, 2**31)),
        **extra,
    }


def plan_events(args):
    """One event of the clip's class per clip, 0.6-1.8 s long at a random onset in 2 s."""
    plans = {}
    for split in SPLITS:
        count = args.events_per_class if split == "train" else args.events_eval_per_class
        clips = []
        for label, name in enumerate(EVENT_CLASSES):
            for i in range(count):
                rng = demo.clip_rng(args.seed, "local-events", split, name, i)
                duration = round(float(rng.uniform(0.6, 1.8)), 3)
                onset = round(float(rng.uniform(0, EVENT_SECONDS - duration)), 3)
                event = (event_params(rng, name, split), onset, duration, 1.0)
                clips.append(_sound_clip(
                    f"events/{split}/{name}/{i:04d}.wav", rng, args, [event], EVENT_SECONDS,
                    label=label,
                ))
        plans[split] = clips
    return plans


def plan_pretrain(args, train_variants):
    """Half the demo corpus's pretraining speech (voices from the keyword-train variants only),
    half scenes of 1-3 events of any class, with training-band parameters only."""
    speech_args = argparse.Namespace(**{
        **vars(args),
        "num_pretrain": (args.num_pretrain + 1) // 2,
        "num_pretrain_valid": (args.num_pretrain_valid + 1) // 2,
    })
    plans = demo.plan_pretrain(speech_args, train_variants)
    for split, count in (("train", args.num_pretrain), ("valid", args.num_pretrain_valid)):
        for clip in plans[split]:
            clip["kind"] = "speech"
        for i in range(count - len(plans[split])):
            rng = demo.clip_rng(args.seed, "local-pretrain-sounds", split, i)
            length = round(float(rng.uniform(1.0, 4.0)), 3)
            events = []
            for _ in range(int(rng.integers(1, 4))):
                duration = round(float(rng.uniform(0.3, min(2.0, length))), 3)
                onset = round(float(rng.uniform(0, length - duration)), 3)
                name = str(rng.choice(EVENT_CLASSES))
                gain = round(float(rng.uniform(0.3, 1.0)), 3)
                events.append((event_params(rng, name, "train"), onset, duration, gain))
            plans[split].append(
                _sound_clip(f"pretrain/{split}/sound_{i:05d}.wav", rng, args, events, length)
            )
    return plans


def render_sound(spec, out_root):
    """Render one sound clip; returns (path, num_samples)."""
    rng = np.random.default_rng(spec["render_seed"])
    n = int(round(spec["length_s"] * SAMPLE_RATE))
    signal = np.zeros(n, dtype=np.float64)
    for params, onset, duration, gain in spec["events"]:
        event = synth_event(params, duration)
        start = int(round(onset * SAMPLE_RATE))
        end = min(n, start + len(event))
        signal[start:end] += gain * event[: end - start]
    events_only = signal.astype(np.float32)
    noise = ss.ambient_noise(n, rng, spec["noise"], SAMPLE_RATE)
    # SNR measured over the sounding part, as the demo measures speech without its padding
    sounding = events_only[np.abs(events_only) > 0] if np.any(events_only) else events_only
    audio = ss.mix_at_snr(events_only, noise, spec["snr_db"], reference=sounding)
    audio = audio * np.float32(rng.uniform(0.3, 0.9) / max(float(np.max(np.abs(audio))), 1e-9))
    pcm = ss.to_pcm16(audio)
    demo.write_wav_atomic(Path(out_root) / spec["path"], pcm, SAMPLE_RATE)
    return spec["path"], len(pcm)


def render(specs, out_root, workers):
    """Speech through the demo corpus's parallel renderer, sounds (cheap numpy) in-process."""
    speech = [spec for spec in specs if spec["kind"] == "speech"]
    frames = demo.render_all(speech, out_root, workers)
    frames.update(render_sound(spec, out_root) for spec in specs if spec["kind"] == "sound")
    return frames


# --------------------------------------------------------------------------
# Build
# --------------------------------------------------------------------------


def class_lists(speakers):
    return {
        "keyword": [ClassInfo(c, c) for c in demo.keyword_classes()],
        "speaker": [
            ClassInfo(s["mid"], f"{demo._identity_name(s['voice'], s['variant'])} "
                      f"pitch={s['pitch']} rate={s['rate_wpm']}wpm")
            for s in sorted(speakers, key=lambda s: s["index"])
        ],
        "events": [ClassInfo(c, c) for c in EVENT_CLASSES],
    }


def _params(args, variants):
    return {
        "format_version": FORMAT_VERSION,
        "seed": args.seed,
        **{name: getattr(args, name) for name in SIZE_OPTIONS},
        "min_snr": args.min_snr,
        "max_snr": args.max_snr,
        "sample_rate": SAMPLE_RATE,
        "variants": [v for v in variants if v is not None],
        "audio_root": os.path.realpath(args.out),
        "synth": ss.espeak_versions(),
    }


def _manifest_paths(manifest_dir):
    paths = [manifest_dir / "pretrain" / f"{split}.tsv" for split in ("train", "valid")]
    for task in TASKS:
        paths.append(manifest_dir / task / "labels.csv")
        paths += [manifest_dir / task / f"{split}.{ext}" for split in SPLITS for ext in ("tsv", "lbl")]
    return paths


def existing_build(manifest_dir, params):
    """The corpus.json record if the build on disk has these parameters and all its files."""
    try:
        record = json.loads((manifest_dir / "corpus.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if record.get("params") != params:
        return None
    for path in _manifest_paths(manifest_dir):
        if not path.exists():
            return None
        if path.suffix == ".tsv":
            root, *rows = path.read_text(encoding="utf-8").splitlines()
            if any(not (Path(root) / row.split("\t")[0]).exists() for row in rows):
                return None
    return record


def remove_stale_audio(out_root, keep):
    """Delete wavs of an earlier, larger build that no manifest lists any more."""
    removed = 0
    for part in ("pretrain", *TASKS):
        for path in sorted((Path(out_root) / part).rglob("*.wav")):
            if path.relative_to(out_root).as_posix() not in keep:
                path.unlink()
                removed += 1
    return removed


def format_summary(record):
    lines = [f"manifests: {record['manifest_dir']}", f"audio:     {record['params']['audio_root']}"]
    for part, counts in record["counts"].items():
        sizes = ", ".join(
            f"{split} {n} ({record['durations_s'][part][split] / 60:.1f} min)"
            for split, n in counts.items() if split != "classes"
        )
        classes = f" {counts['classes']} classes," if "classes" in counts else ""
        lines.append(f"{part:<9}{classes} {sizes}")
    lines.append(f"keyword voice variants: {record['variants']}")
    return "\n".join(lines)


def main(args):
    resolve_sizes(args)
    if not ss.espeak_available():
        raise SystemExit(f"espeak-ng is not available: {ss.INSTALL_HINT}")
    out_root = Path(os.path.realpath(args.out))
    manifest_dir = Path(os.path.realpath(args.manifests))
    available = set(ss.list_variants())
    variants = [v for v in demo.VARIANTS if v is None or v in available]
    params = _params(args, variants)
    if not args.force:
        record = existing_build(manifest_dir, params)
        if record:
            print(f"benchmark already built with these parameters ({manifest_dir / 'corpus.json'})")
            print(format_summary(record))
            return record

    started = time.time()
    variants_of_split = split_variants(args.seed, variants)
    speakers, speaker = demo.plan_speakers(args, variants_of_split["train"])
    for clips in speaker.values():
        for clip in clips:
            clip["kind"] = "speech"
    parts = {
        "pretrain": plan_pretrain(args, variants_of_split["train"]),
        "keyword": plan_keyword(args, variants_of_split),
        "speaker": speaker,
        "events": plan_events(args),
    }
    all_specs = [clip for plans in parts.values() for clips in plans.values() for clip in clips]
    frames = render(all_specs, str(out_root), args.workers)

    for part, plans in parts.items():
        for split, clips in plans.items():
            demo.write_manifest(manifest_dir / part, split, clips, frames, str(out_root),
                                with_labels=part != "pretrain")
    for task, classes in class_lists(speakers).items():
        write_labels_csv(str(manifest_dir / task), classes)
    removed = remove_stale_audio(out_root, set(frames))

    def seconds(clips):
        return round(sum(frames[c["path"]] for c in clips) / SAMPLE_RATE, 2)

    record = {
        "generator": "scripts/make_local_benchmark.py",
        "params": params,
        "manifest_dir": str(manifest_dir),
        "variants": {s: [str(v) for v in vs] for s, vs in variants_of_split.items()},
        "counts": {
            part: dict(
                {split: len(clips) for split, clips in plans.items()},
                **({"classes": len(class_lists(speakers)[part])} if part != "pretrain" else {}),
            )
            for part, plans in parts.items()
        },
        "durations_s": {
            part: {split: seconds(clips) for split, clips in plans.items()}
            for part, plans in parts.items()
        },
        "total_clips": len(all_specs),
        "build_seconds": round(time.time() - started, 1),
        "built": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
    }
    # written last: its presence marks a complete build
    atomic_write_text(str(manifest_dir / "corpus.json"),
                      json.dumps(record, indent=2, sort_keys=True) + "\n")
    print(format_summary(record))
    if removed:
        print(f"removed {removed} stale wav files of an earlier build")
    print(f"built {len(all_specs)} clips in {record['build_seconds']:.1f} s")
    return record


if __name__ == "__main__":
    main(get_parser().parse_args())
