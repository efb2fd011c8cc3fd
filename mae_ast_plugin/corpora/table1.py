"""``mae-ast-make-table1-corpus``: build the local miniature of Table 1's benchmarks:
deterministic, synthetic, pip-only.

Four datasets, written as the plugin's manifests (``{split}.tsv``, ``{split}.lbl``,
``labels.csv`` through prep.manifests, plus a ``{split}.meta.jsonl`` per split describing every
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

Examples::

    mae-ast-make-table1-corpus            # small, for 2 CPU cores
    mae-ast-make-table1-corpus --large    # about 5x more, for a GPU
"""

import argparse
import datetime
import sys
import time

from mae_ast_plugin.cli import command_parser
from mae_ast_plugin.corpora.build import (
    SPLITS_LABELLED,
    add_build_options,
    build_corpus,
    clip_rng,
    render_parts,
)
from mae_ast_plugin.corpora.sound_events import (
    EVENT_CLASSES,
    event_params,
    plan_events,
    render_sound,
    sound_clip,
)
from mae_ast_plugin.corpora.speech_clips import (
    ENGLISH_VOICES,
    VARIANTS,
    keyword_classes,
    plan_keyword,
    plan_speakers,
    render_speech,
    speaker_classes,
)
from mae_ast_plugin.corpora.speech_clips import plan_pretrain as plan_speech_pretrain
from mae_ast_plugin.prep.common import ClassInfo

FORMAT_VERSION = 1  # bump when the audio changes for the same parameters
TASKS = ("keyword", "speaker", "events")

# Fractions of the voice variants held out for keyword valid and test.
KEYWORD_VALID_VARIANTS = 0.15
KEYWORD_TEST_VARIANTS = 0.2

# size option: (preset "small", for 2 CPU cores: builds in a few minutes;
#               preset "large", for a GPU: about five times the data)
PRESET_SIZES = {
    "num_pretrain": (2400, 8000),
    "num_pretrain_valid": (100, 400),
    "keyword_per_class": (40, 200),
    "keyword_eval_per_class": (20, 60),
    "num_speakers": (16, 40),
    "speaker_clips": (16, 40),
    "speaker_eval_clips": (8, 15),
    "events_per_class": (40, 200),
    "events_eval_per_class": (20, 60),
}
PRESETS = {
    preset: {name: sizes[column] for name, sizes in PRESET_SIZES.items()}
    for column, preset in enumerate(("small", "large"))
}
SIZE_OPTIONS = tuple(PRESET_SIZES)


# --------------------------------------------------------------------------
# Command line
# --------------------------------------------------------------------------


def get_parser():
    parser = command_parser("mae-ast-make-table1-corpus", __doc__)
    parser.add_argument("--out", default="data/local", metavar="DIR", help="audio directory")
    parser.add_argument(
        "--manifests",
        default="manifests/local",
        metavar="DIR",
        help="manifest directory (pretrain/, keyword/, speaker/, events/)",
    )
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
        parser.add_argument(
            f"--{name.replace('_', '-')}",
            type=int,
            default=None,
            help=f"{help_of[name]} (default: from the preset)",
        )
    add_build_options(parser, min_snr=0.0, max_snr=20.0)
    return parser


def main(argv=None):
    """Run ``mae-ast-make-table1-corpus``; returns the exit status."""
    build(get_parser().parse_args(argv))
    return 0


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


def split_variants(seed, variants):
    """Disjoint voice-variant sets for keyword train / valid / test (None = the default voice
    of each accent, a timbre of its own)."""
    order = clip_rng(seed, "local", "variants").permutation(len(variants))
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


def variant_picker(variants_of_split):
    """``pick_identity`` for :func:`plan_keyword`: any accent, with a voice variant of the
    clip's split, so test voices are timbres never heard in training."""

    def pick(rng, split):
        voice = str(rng.choice(ENGLISH_VOICES))
        variants = variants_of_split[split]
        return voice, variants[int(rng.integers(len(variants)))]

    return pick


def plan_pretrain(args, train_variants):
    """Half the demo corpus's pretraining speech (voices from the keyword-train variants only),
    half scenes of 1-3 events of any class, with training-band parameters only."""
    speech_args = argparse.Namespace(
        **{
            **vars(args),
            "num_pretrain": (args.num_pretrain + 1) // 2,
            "num_pretrain_valid": (args.num_pretrain_valid + 1) // 2,
        }
    )
    plans = plan_speech_pretrain(speech_args, train_variants)
    for split, count in (("train", args.num_pretrain), ("valid", args.num_pretrain_valid)):
        for clip in plans[split]:
            clip["kind"] = "speech"
        for i in range(count - len(plans[split])):
            rng = clip_rng(args.seed, "local-pretrain-sounds", split, i)
            length = round(float(rng.uniform(1.0, 4.0)), 3)
            events = []
            for _ in range(int(rng.integers(1, 4))):
                duration = round(float(rng.uniform(0.3, min(2.0, length))), 3)
                onset = round(float(rng.uniform(0, length - duration)), 3)
                name = str(rng.choice(EVENT_CLASSES))
                gain = round(float(rng.uniform(0.3, 1.0)), 3)
                events.append((event_params(rng, name, "train"), onset, duration, gain))
            plans[split].append(
                sound_clip(f"pretrain/{split}/sound_{i:05d}.wav", rng, args, events, length)
            )
    return plans


def render_clip(spec, out_root):
    """Render one planned clip, speech or sound; returns (path, num_samples)."""
    return (render_sound if spec["kind"] == "sound" else render_speech)(spec, out_root)


def class_lists(speakers):
    return {
        "keyword": [ClassInfo(c, c) for c in keyword_classes()],
        "speaker": speaker_classes(speakers),
        "events": [ClassInfo(c, c) for c in EVENT_CLASSES],
    }


def _manifest_paths(manifest_dir):
    paths = [manifest_dir / "pretrain" / f"{split}.tsv" for split in ("train", "valid")]
    for task in TASKS:
        paths.append(manifest_dir / task / "labels.csv")
        paths += [
            manifest_dir / task / f"{split}.{ext}"
            for split in SPLITS_LABELLED
            for ext in ("tsv", "lbl")
        ]
    return paths


def format_summary(record):
    lines = [f"manifests: {record['manifest_dir']}", f"audio:     {record['params']['audio_root']}"]
    for part, counts in record["counts"].items():
        sizes = ", ".join(
            f"{split} {n} ({record['durations_s'][part][split] / 60:.1f} min)"
            for split, n in counts.items()
            if split != "classes"
        )
        classes = f" {counts['classes']} classes," if "classes" in counts else ""
        lines.append(f"{part:<9}{classes} {sizes}")
    lines.append(f"keyword voice variants: {record['variants']}")
    return "\n".join(lines)


def build(args):
    """Build (or find up to date) the benchmark of ``args`` (``get_parser()``'s options); returns
    the ``corpus.json`` record."""
    resolve_sizes(args)
    return build_corpus(args, "benchmark", VARIANTS, FORMAT_VERSION, SIZE_OPTIONS,
                        _manifest_paths, format_summary, lambda *where: _make(args, *where))


def _make(args, variants, out_root, manifest_dir):
    """Plan, render and write the benchmark; returns its record and the stale wavs removed."""
    started = time.time()
    variants_of_split = split_variants(args.seed, variants)
    speakers, speaker = plan_speakers(args, variants_of_split["train"])
    for clips in speaker.values():
        for clip in clips:
            clip["kind"] = "speech"
    parts = {
        "pretrain": plan_pretrain(args, variants_of_split["train"]),
        "keyword": plan_keyword(
            args, "local-keyword", variant_picker(variants_of_split), kind="speech"
        ),
        "speaker": speaker,
        "events": plan_events(args),
    }
    _, removed, record = render_parts(
        render_clip, parts, class_lists(speakers), out_root, manifest_dir, args.workers
    )
    record.update({
        "generator": "mae-ast-make-table1-corpus",
        "variants": {s: [str(v) for v in vs] for s, vs in variants_of_split.items()},
        "counts": {
            part: dict(
                {split: len(clips) for split, clips in plans.items()},
                **({"classes": len(class_lists(speakers)[part])} if part != "pretrain" else {}),
            )
            for part, plans in parts.items()
        },
        "build_seconds": round(time.time() - started, 1),
        "built": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
    })
    return record, removed


if __name__ == "__main__":
    sys.exit(main())
