#!/usr/bin/env python3
"""Build a small, deterministic synthetic speech corpus for MAE-AST demos.

Speech is synthesised with espeak-ng (PyPI package ``espeakng-loader``) using
many voices/accents, voice variants, speaking rates and pitches, and mixed
with synthetic background noise at random SNRs. Everything is 16 kHz mono
16-bit PCM wav. Three parts are written:

* pretraining: ``{manifests}/{train,valid}.tsv`` - unlabelled 1-4 s phrases.
* keyword spotting (Speech Commands style): ``{manifests}/keyword/`` with
  ``{train,valid,test}.tsv``, parallel ``{split}.lbl`` files (one class index
  per line) and ``labels.csv`` (``index,mid,display_name``). Train, valid and
  test use disjoint voice identities (voice + variant).
* speaker identification (VoxCeleb1 style): ``{manifests}/speaker/``, same
  files; a speaker is a (voice, variant, pitch, rate) identity and every
  split has all speakers, speaking sentences not used in any other split.

Manifests use fairseq's format: the first line is the absolute audio root,
then ``relative/path.wav<TAB>num_samples``. Each ``{split}.tsv`` also gets a
``{split}.meta.jsonl`` (one JSON object per row: text, voice, noise, SNR...).

The same ``--seed`` and sizes always give byte-identical files. Each clip is
planned from its own RNG seeded by (seed, part, split, index), so changing a
size does not reshuffle the other clips. A finished build is recorded in
``{manifests}/corpus.json``; rerunning with the same parameters is a no-op
unless ``--force`` is given.

Usage (from the repository root):
    python scripts/make_demo_corpus.py                      # default demo size
    python scripts/make_demo_corpus.py --num-pretrain 100 --seed 3 --force
"""

import os

# Clips are rendered in parallel processes; keep each one single-threaded so
# two workers on two cores do not oversubscribe (must precede numpy import).
for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import argparse
import concurrent.futures
import importlib.util
import json
import multiprocessing
import sys
import time
import wave
import zlib
from pathlib import Path

import numpy as np


if importlib.util.find_spec("mae_ast_plugin") is None:  # not installed: use this checkout
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from mae_ast_plugin import speech_synth as ss  # noqa: E402
from mae_ast_plugin.prep.common import (  # noqa: E402
    ClassInfo,
    Clip,
    atomic_write_text,
    write_labels_csv,
    write_split,
)

FORMAT_VERSION = 1  # bump when the generated audio changes for the same parameters
SAMPLE_RATE = 16000
SPLITS_LABELLED = ("train", "valid", "test")

ENGLISH_VOICES = (
    "en-us", "en-gb", "en-gb-scotland", "en-gb-x-rp",
    "en-gb-x-gbclan", "en-gb-x-gbcwmd", "en-029", "en-us-nyc",
)
# Human-sounding variants (robotic/whispering/novelty ones are left out).
# None = the voice's default.
VARIANTS = (
    None, "m1", "m2", "m3", "m4", "m5", "m6", "m7", "f1", "f2", "f3", "f4",
    "adam", "Alex", "Andrea", "Annie", "benjamin", "david", "linda", "max",
    "paul", "steph", "travis", "quincy",
)

COMMAND_WORDS = ("yes", "no", "up", "down", "left", "right", "on", "off", "stop", "go")
UNKNOWN_WORDS = (
    "zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine",
    "bed", "bird", "cat", "dog", "happy", "house", "marvin", "sheila", "tree",
    "wow", "learn", "follow", "forward", "backward", "visual",
)
UNKNOWN_CLASS = "_unknown_"
SILENCE_CLASS = "_silence_"

# A tiny grammar gives many distinct English sentences.
DETERMINERS = ("the", "a", "my", "your", "this", "that", "every", "one")
ADJECTIVES = (
    "quiet", "bright", "old", "small", "heavy", "green", "little", "famous",
    "careful", "lazy", "tall", "warm", "empty", "golden", "strange", "happy",
    "silver", "busy", "gentle", "rusty",
)
NOUNS = (
    "farmer", "teacher", "river", "garden", "window", "engine", "doctor",
    "basket", "village", "letter", "mountain", "kitten", "captain", "bicycle",
    "painter", "market", "lantern", "orchard", "sailor", "kitchen", "bridge",
    "forest", "pencil", "station", "neighbour", "student", "ladder", "blanket",
    "harbour", "wagon",
)
VERBS = (
    "carried", "painted", "found", "watched", "opened", "followed", "cleaned",
    "borrowed", "noticed", "repaired", "visited", "counted", "dropped",
    "lifted", "remembered", "described", "pushed", "pulled", "washed", "sold",
)
PREPOSITIONS = (
    "near", "behind", "under", "across", "beside", "inside", "above", "past",
    "around", "beyond",
)
ADVERBS = (
    "slowly", "quickly", "quietly", "carefully", "yesterday", "again",
    "early", "suddenly", "happily", "later",
)
# Other languages for pretraining only: random word strings in that language.
FOREIGN_WORDS = {
    "de": (
        "haus wasser morgen abend garten fenster sonne regen schule freund "
        "strasse brot zeitung bahnhof kirche himmel wald stadt tisch musik "
        "heute langsam schnell immer wieder gross klein gut sprechen lesen"
    ).split(),
    "fr-fr": (
        "maison jardin soleil fenêtre pain ville école voiture chemin matin "
        "soir rivière montagne musique enfant ami livre table toujours demain "
        "petit grand beau lentement parler chanter manger regarder bonjour merci"
    ).split(),
    "es": (
        "casa agua ciudad calle ventana jardín mañana noche escuela amigo "
        "libro mesa cielo montaña camino música pueblo hermano siempre despacio "
        "grande pequeño bonito hablar cantar comer mirar trabajo tiempo gracias"
    ).split(),
    "it": (
        "casa acqua città strada finestra giardino mattina sera scuola amico "
        "libro tavolo cielo montagna cammino musica paese fratello sempre piano "
        "grande piccolo bello parlare cantare mangiare guardare lavoro tempo grazie"
    ).split(),
    "nl": (
        "huis water stad straat raam tuin morgen avond school vriend boek "
        "tafel hemel berg weg muziek dorp broer altijd langzaam groot klein "
        "mooi praten zingen eten kijken werk tijd bedankt"
    ).split(),
}


# --------------------------------------------------------------------------
# Command line
# --------------------------------------------------------------------------


def get_parser():
    parser = argparse.ArgumentParser(
        description="Build a deterministic synthetic (espeak-ng) speech corpus with "
        "fairseq manifests for MAE-AST pretraining, keyword spotting and speaker id.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--out", default="data/demo", metavar="DIR", help="audio output directory")
    parser.add_argument(
        "--manifests", default="manifests/demo", metavar="DIR", help="manifest output directory"
    )
    parser.add_argument("--seed", type=int, default=1, help="random seed (>= 0)")
    parser.add_argument("--num-pretrain", type=int, default=600, help="pretraining train clips")
    parser.add_argument(
        "--num-pretrain-valid", type=int, default=60, help="pretraining valid clips"
    )
    parser.add_argument(
        "--keyword-per-class", type=int, default=30, help="keyword train clips per class"
    )
    parser.add_argument(
        "--keyword-eval-per-class",
        type=int,
        default=8,
        help="keyword valid clips and test clips per class (each)",
    )
    parser.add_argument("--num-speakers", type=int, default=12, help="speaker-id speakers")
    parser.add_argument(
        "--speaker-clips", type=int, default=12, help="speaker-id train clips per speaker"
    )
    parser.add_argument(
        "--speaker-eval-clips",
        type=int,
        default=4,
        help="speaker-id valid clips and test clips per speaker (each)",
    )
    parser.add_argument("--min-snr", type=float, default=5.0, help="lowest SNR in dB")
    parser.add_argument("--max-snr", type=float, default=25.0, help="highest SNR in dB")
    parser.add_argument(
        "--workers",
        type=int,
        default=min(2, os.cpu_count() or 1),
        help="parallel rendering processes (does not change the output)",
    )
    parser.add_argument(
        "--force", action="store_true", help="rebuild even if an identical corpus exists"
    )
    return parser


def _check_args(args):
    if args.seed < 0:
        raise SystemExit("--seed must be >= 0")
    for name in ("num_pretrain", "num_pretrain_valid", "keyword_per_class",
                 "keyword_eval_per_class", "num_speakers", "speaker_clips",
                 "speaker_eval_clips", "workers"):
        if getattr(args, name) < 1:
            raise SystemExit(f"--{name.replace('_', '-')} must be >= 1")
    if args.min_snr > args.max_snr:
        raise SystemExit("--min-snr must not exceed --max-snr")


# --------------------------------------------------------------------------
# Planning: decide every clip's content (cheap, in the main process)
# --------------------------------------------------------------------------


def _key(part):
    # Stable across runs and Python versions (unlike hash()).
    return part if isinstance(part, int) else zlib.crc32(str(part).encode("utf-8"))


def clip_rng(seed, *parts):
    """Independent generator for one clip (or one planning decision)."""
    return np.random.default_rng([seed, *(_key(p) for p in parts)])


def english_sentence(rng, min_words=0):
    """A grammatical nonsense sentence; extended with 'and ...' to min_words."""
    words = []
    while True:
        words += [str(rng.choice(DETERMINERS))]
        if rng.random() < 0.6:
            words.append(str(rng.choice(ADJECTIVES)))
        words += [str(rng.choice(NOUNS)), str(rng.choice(VERBS)), str(rng.choice(DETERMINERS))]
        if rng.random() < 0.5:
            words.append(str(rng.choice(ADJECTIVES)))
        words.append(str(rng.choice(NOUNS)))
        if rng.random() < 0.5:
            words += [str(rng.choice(PREPOSITIONS)), "the", str(rng.choice(NOUNS))]
        if rng.random() < 0.3:
            words.append(str(rng.choice(ADVERBS)))
        if len(words) >= min_words:
            return " ".join(words)
        words.append("and")


def _identity_name(voice, variant):
    return voice if variant is None else f"{voice}+{variant}"


def _snr(rng, args):
    return round(float(rng.uniform(args.min_snr, args.max_snr)), 2)


def _clip(rel, text, voice, variant, rate, pitch, pitch_range, rng, args, layout, **extra):
    """A clip spec: everything rendering needs, as JSON-friendly values."""
    spec = {
        "path": rel,
        "text": text,
        "voice": voice,
        "variant": variant,
        "rate_wpm": int(rate),
        "pitch": int(pitch),
        "pitch_range": int(pitch_range),
        "noise": str(rng.choice(ss.NOISE_KINDS)),
        "snr_db": _snr(rng, args) if text is not None else None,
        "layout": layout,
        "render_seed": int(rng.integers(0, 2**31)),
    }
    spec.update(extra)
    return spec


def plan_pretrain(args, variants):
    plans = {}
    foreign = sorted(FOREIGN_WORDS)
    for split, count in (("train", args.num_pretrain), ("valid", args.num_pretrain_valid)):
        clips = []
        for i in range(count):
            rng = clip_rng(args.seed, "pretrain", split, i)
            rate = int(rng.integers(120, 241))
            target_s = float(rng.uniform(1.0, 4.0))
            # roughly as many words as fit in target_s at this rate
            n_words = max(1, int(round(target_s * rate / 60.0)))
            if rng.random() < 0.7:
                voice = str(rng.choice(ENGLISH_VOICES))
                text = " ".join(english_sentence(rng, n_words).split()[:n_words])
            else:
                voice = foreign[int(rng.integers(len(foreign)))]
                text = " ".join(rng.choice(FOREIGN_WORDS[voice], size=n_words))
            variant = variants[int(rng.integers(len(variants)))]
            clips.append(
                _clip(
                    f"pretrain/{split}/{i:05d}.wav", text, voice, variant, rate,
                    rng.integers(20, 81), rng.integers(20, 81), rng, args,
                    layout={"min_s": 1.0, "max_s": 4.0},
                )
            )
        plans[split] = clips
    return plans


def split_identities(seed, variants):
    """Disjoint (voice, variant) identities for keyword train/valid/test."""
    identities = [(v, var) for v in ENGLISH_VOICES for var in variants]
    order = clip_rng(seed, "keyword", "identities").permutation(len(identities))
    shuffled = [identities[i] for i in order]
    n_test = max(1, len(shuffled) // 5)
    n_valid = max(1, len(shuffled) * 3 // 20)
    return {
        "test": shuffled[:n_test],
        "valid": shuffled[n_test : n_test + n_valid],
        "train": shuffled[n_test + n_valid :],
    }


def keyword_classes():
    return list(COMMAND_WORDS) + [UNKNOWN_CLASS, SILENCE_CLASS]


def plan_keyword(args, variants):
    identities = split_identities(args.seed, variants)
    plans = {}
    for split in SPLITS_LABELLED:
        count = args.keyword_per_class if split == "train" else args.keyword_eval_per_class
        pool = identities[split]
        clips = []
        for label, name in enumerate(keyword_classes()):
            for i in range(count):
                rng = clip_rng(args.seed, "keyword", split, name, i)
                voice, variant = pool[int(rng.integers(len(pool)))]
                if name == SILENCE_CLASS:
                    text = None
                elif name == UNKNOWN_CLASS:
                    text = str(rng.choice(UNKNOWN_WORDS))
                else:
                    text = name
                clips.append(
                    _clip(
                        f"keyword/{split}/{name}/{i:04d}.wav", text, voice, variant,
                        rng.integers(110, 221), rng.integers(20, 81), rng.integers(20, 81),
                        rng, args, layout={"fixed_s": 1.0}, label=label,
                        identity=_identity_name(voice, variant),
                        silence_dbfs=round(float(rng.uniform(-50.0, -25.0)), 2),
                    )
                )
        plans[split] = clips
    return plans


def plan_speakers(args, variants):
    """Speaker roster and clips; sentences never repeat across splits."""
    identities = [(v, var) for v in ENGLISH_VOICES for var in variants]
    if args.num_speakers > len(identities):
        raise SystemExit(f"--num-speakers can be at most {len(identities)}")
    roster_rng = clip_rng(args.seed, "speaker", "roster")
    order = roster_rng.permutation(len(identities))[: args.num_speakers]
    speakers = []
    for index, k in enumerate(order):
        voice, variant = identities[int(k)]
        speakers.append(
            {
                "index": index,
                "mid": f"spk{index:02d}",
                "voice": voice,
                "variant": variant,
                "pitch": int(roster_rng.integers(25, 76)),
                "rate_wpm": int(roster_rng.integers(130, 211)),
                "pitch_range": int(roster_rng.integers(30, 71)),
            }
        )
    used = set()  # sentences of earlier splits
    plans = {}
    for split in SPLITS_LABELLED:
        count = args.speaker_clips if split == "train" else args.speaker_eval_clips
        clips, this_split = [], set()
        for spk in speakers:
            for i in range(count):
                rng = clip_rng(args.seed, "speaker", split, spk["index"], i)
                text = english_sentence(rng)
                while text in used:  # keep evaluation sentences unseen
                    text = english_sentence(rng)
                this_split.add(text)
                clips.append(
                    _clip(
                        f"speaker/{split}/{spk['mid']}/{i:04d}.wav", text, spk["voice"],
                        spk["variant"], spk["rate_wpm"], spk["pitch"], spk["pitch_range"],
                        rng, args, layout={"min_s": 1.0, "max_s": 6.0}, label=spk["index"],
                        speaker=spk["mid"],
                    )
                )
        used |= this_split
        plans[split] = clips
    return speakers, plans


# --------------------------------------------------------------------------
# Rendering: synthesise, place, add noise, write (parallel, per clip)
# --------------------------------------------------------------------------


def _fade(audio, n):
    n = min(n, len(audio) // 2)
    if n > 0:
        ramp = np.linspace(0.0, 1.0, n, dtype=np.float32)
        audio[:n] *= ramp
        audio[-n:] *= ramp[::-1]
    return audio


def _place(speech, layout, rng):
    """Put speech on a silent canvas; returns (canvas, visible speech)."""
    sr = SAMPLE_RATE
    if "fixed_s" in layout:  # keyword: centred with a little jitter
        length = int(round(layout["fixed_s"] * sr))
        if len(speech) > length:
            start = (len(speech) - length) // 2
            speech = _fade(speech[start : start + length].copy(), int(0.01 * sr))
        slack = length - len(speech)
        jitter = int(min(slack // 2, 0.1 * sr))
        offset = slack // 2 + (int(rng.integers(-jitter, jitter + 1)) if jitter else 0)
    else:  # free length: random margins, total within [min_s, max_s]
        lead = int(rng.uniform(0.05, 0.35) * sr)
        tail = int(rng.uniform(0.05, 0.35) * sr)
        min_len, max_len = int(layout["min_s"] * sr), int(layout["max_s"] * sr)
        length = int(np.clip(lead + len(speech) + tail, min_len, max_len))
        if lead + len(speech) > length:  # too long: keep the start, fade the cut
            speech = _fade(speech[: max(0, length - lead)].copy(), int(0.01 * sr))
        # centre the speech in any padding added to reach min_s
        offset = lead + max(0, (length - (lead + len(speech) + tail)) // 2)
    canvas = np.zeros(length, dtype=np.float32)
    canvas[offset : offset + len(speech)] = speech
    return canvas, speech


def render_clip(spec, out_root):
    """Render one clip to out_root/spec['path']; returns (path, num_samples)."""
    rng = np.random.default_rng(spec["render_seed"])
    if spec["text"] is None:  # _silence_: noise only
        length = int(round(spec["layout"]["fixed_s"] * SAMPLE_RATE))
        noise = ss.ambient_noise(length, rng, spec["noise"], SAMPLE_RATE)
        audio = noise * np.float32(10 ** (spec["silence_dbfs"] / 20))
    else:
        speech = ss.synthesize(
            spec["text"], voice=spec["voice"], variant=spec["variant"],
            rate_wpm=spec["rate_wpm"], pitch=spec["pitch"],
            pitch_range=spec["pitch_range"], sample_rate=SAMPLE_RATE,
            seed=spec["render_seed"],
        )
        canvas, visible = _place(speech, spec["layout"], rng)
        noise = ss.ambient_noise(len(canvas), rng, spec["noise"], SAMPLE_RATE)
        audio = ss.mix_at_snr(canvas, noise, spec["snr_db"], reference=visible)
        # vary loudness between clips and stay clear of clipping
        peak = float(np.max(np.abs(audio)))
        if peak > 0:
            audio = audio * np.float32(rng.uniform(0.3, 0.9) / peak)
    pcm = ss.to_pcm16(audio)
    path = Path(out_root) / spec["path"]
    write_wav_atomic(path, pcm, SAMPLE_RATE)
    return spec["path"], len(pcm)


def write_wav_atomic(path, pcm, sample_rate):
    """16-bit mono wav via a temporary file + os.replace (the stdlib writer
    has no timestamps or other varying header fields, so bytes are reproducible)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with wave.open(str(tmp), "wb") as f:
            f.setnchannels(1)
            f.setsampwidth(2)
            f.setframerate(sample_rate)
            f.writeframes(np.asarray(pcm, dtype="<i2").tobytes())
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def _render_batch(batch):
    specs, out_root = batch
    return [render_clip(spec, out_root) for spec in specs]


def render_all(specs, out_root, workers):
    """Render every spec; returns {path: num_samples}. Output is independent
    of the worker count because each clip carries its own seeds."""
    if workers <= 1:
        return dict(render_clip(spec, out_root) for spec in specs)
    batches = [(specs[i : i + 32], out_root) for i in range(0, len(specs), 32)]
    # fork is cheap and re-uses the already loaded modules; elsewhere spawn works too
    method = "fork" if "fork" in multiprocessing.get_all_start_methods() else None
    context = multiprocessing.get_context(method)
    results = {}
    with concurrent.futures.ProcessPoolExecutor(workers, mp_context=context) as pool:
        for rendered in pool.map(_render_batch, batches):
            results.update(rendered)
    return results


# --------------------------------------------------------------------------
# Manifests, metadata, summary
# --------------------------------------------------------------------------


def write_manifest(manifest_dir, split, clips, frames, audio_root, with_labels):
    """The split's manifest (and labels) through prep.common, plus a ``.meta.jsonl`` row per clip
    (text, voice, noise...) that the tests use to check the split rules."""
    rows = [
        Clip(str(Path(audio_root) / c["path"]), frames[c["path"]], (c["label"],) if with_labels else ())
        for c in clips
    ]
    num_classes = max(c["label"] for c in clips) + 1 if with_labels else None
    write_split(str(manifest_dir), split, audio_root, rows, num_classes)
    meta = "".join(
        json.dumps(dict(c, num_samples=frames[c["path"]]), sort_keys=True, ensure_ascii=False)
        + "\n"
        for c in clips
    )
    atomic_write_text(str(Path(manifest_dir) / f"{split}.meta.jsonl"), meta)


def remove_stale_audio(out_root, keep):
    """Delete wavs from an earlier, larger build that the new manifests no longer list."""
    removed = 0
    for part in ("pretrain", "keyword", "speaker"):
        base = Path(out_root) / part
        if not base.is_dir():
            continue
        for path in sorted(base.rglob("*.wav")):
            if path.relative_to(out_root).as_posix() not in keep:
                path.unlink()
                removed += 1
    return removed


def _params(args, variants):
    return {
        "format_version": FORMAT_VERSION,
        "seed": args.seed,
        "num_pretrain": args.num_pretrain,
        "num_pretrain_valid": args.num_pretrain_valid,
        "keyword_per_class": args.keyword_per_class,
        "keyword_eval_per_class": args.keyword_eval_per_class,
        "num_speakers": args.num_speakers,
        "speaker_clips": args.speaker_clips,
        "speaker_eval_clips": args.speaker_eval_clips,
        "min_snr": args.min_snr,
        "max_snr": args.max_snr,
        "sample_rate": SAMPLE_RATE,
        "variants": [v for v in variants if v is not None],
        "audio_root": os.path.realpath(args.out),
        "synth": ss.espeak_versions(),
    }


def _manifest_files(manifest_dir):
    files = [manifest_dir / "train.tsv", manifest_dir / "valid.tsv"]
    for task in ("keyword", "speaker"):
        files.append(manifest_dir / task / "labels.csv")
        for split in SPLITS_LABELLED:
            files += [manifest_dir / task / f"{split}.tsv", manifest_dir / task / f"{split}.lbl"]
    return files


def _existing_build_is_current(manifest_dir, params):
    """True if corpus.json matches params and every listed wav is present."""
    record_path = manifest_dir / "corpus.json"
    if not record_path.exists():
        return False
    try:
        record = json.loads(record_path.read_text(encoding="utf-8"))
    except ValueError:
        return False
    if record.get("params") != params:
        return False
    for path in _manifest_files(manifest_dir):
        if not path.exists():
            return False
        if path.suffix == ".tsv":
            lines = path.read_text(encoding="utf-8").splitlines()
            root = Path(lines[0])
            if any(not (root / line.split("\t")[0]).exists() for line in lines[1:]):
                return False
    return record


def _format_summary(record):
    counts = record["counts"]
    durations = record["durations_s"]
    lines = [
        f"audio:     {record['params']['audio_root']}",
        f"manifests: {record['manifest_dir']}",
        "pretraining: "
        + ", ".join(
            f"{s} {counts['pretrain'][s]} clips ({durations['pretrain'][s]:.0f} s)"
            for s in ("train", "valid")
        ),
        "keyword ({} classes): ".format(len(counts["keyword"]["classes"]))
        + ", ".join(
            f"{s} {counts['keyword'][s]} clips ({durations['keyword'][s]:.0f} s)"
            for s in SPLITS_LABELLED
        ),
    ]
    for name in counts["keyword"]["classes"]:
        per_class = counts["keyword"]["per_class"]
        per_split = " / ".join(str(per_class[s][name]) for s in SPLITS_LABELLED)
        lines.append(f"    {name:<10} train/valid/test {per_split}")
    lines.append(
        f"speaker ({counts['speaker']['num_speakers']} speakers): "
        + ", ".join(
            f"{s} {counts['speaker'][s]} clips ({durations['speaker'][s]:.0f} s)"
            for s in SPLITS_LABELLED
        )
    )
    lines.append(
        f"total: {record['total_clips']} clips, {record['total_duration_s'] / 60:.1f} min of audio"
    )
    return "\n".join(lines)


def main(args):
    _check_args(args)
    if not ss.espeak_available():
        raise SystemExit(f"espeak-ng is not available: {ss.INSTALL_HINT}")
    out_root = Path(os.path.realpath(args.out))
    manifest_dir = Path(os.path.realpath(args.manifests))

    available = set(ss.list_variants())
    variants = [v for v in VARIANTS if v is None or v in available]
    params = _params(args, variants)

    if not args.force:
        record = _existing_build_is_current(manifest_dir, params)
        if record:
            print(
                "corpus already built with the same parameters "
                f"({manifest_dir / 'corpus.json'}); use --force to rebuild"
            )
            print(_format_summary(record))
            return record

    started = time.time()
    pretrain = plan_pretrain(args, variants)
    keyword = plan_keyword(args, variants)
    speakers, speaker = plan_speakers(args, variants)
    all_specs = [
        c for plans in (pretrain, keyword, speaker) for clips in plans.values() for c in clips
    ]
    frames = render_all(all_specs, str(out_root), args.workers)

    audio_root = str(out_root)
    for split, clips in pretrain.items():
        write_manifest(manifest_dir, split, clips, frames, audio_root, with_labels=False)
    for task, plans in (("keyword", keyword), ("speaker", speaker)):
        for split, clips in plans.items():
            write_manifest(manifest_dir / task, split, clips, frames, audio_root, with_labels=True)
    classes = keyword_classes()
    write_labels_csv(str(manifest_dir / "keyword"), [ClassInfo(c, c) for c in classes])
    write_labels_csv(
        str(manifest_dir / "speaker"),
        [
            ClassInfo(
                s["mid"],
                f"{_identity_name(s['voice'], s['variant'])} pitch={s['pitch']} "
                f"rate={s['rate_wpm']}wpm",
            )
            for s in sorted(speakers, key=lambda s: s["index"])
        ],
    )
    removed = remove_stale_audio(out_root, set(frames))

    def seconds(clips):
        return round(sum(frames[c["path"]] for c in clips) / SAMPLE_RATE, 2)

    record = {
        "generator": "scripts/make_demo_corpus.py",
        "params": params,
        "manifest_dir": str(manifest_dir),
        "counts": {
            "pretrain": {s: len(c) for s, c in pretrain.items()},
            "keyword": dict(
                {s: len(c) for s, c in keyword.items()},
                classes=classes,
                per_class={
                    s: {name: sum(c["label"] == i for c in clips)
                        for i, name in enumerate(classes)}
                    for s, clips in keyword.items()
                },
            ),
            "speaker": dict({s: len(c) for s, c in speaker.items()}, num_speakers=len(speakers)),
        },
        "durations_s": {
            "pretrain": {s: seconds(c) for s, c in pretrain.items()},
            "keyword": {s: seconds(c) for s, c in keyword.items()},
            "speaker": {s: seconds(c) for s, c in speaker.items()},
        },
        "total_clips": len(all_specs),
        "total_duration_s": round(sum(frames.values()) / SAMPLE_RATE, 2),
    }
    # written last: its presence marks a complete build
    atomic_write_text(
        str(manifest_dir / "corpus.json"), json.dumps(record, indent=2, sort_keys=True) + "\n"
    )
    print(_format_summary(record))
    if removed:
        print(f"removed {removed} stale wav files from an earlier build")
    print(f"built in {time.time() - started:.1f} s")
    return record


if __name__ == "__main__":
    main(get_parser().parse_args())
