"""``mae-ast-make-demo-corpus``: build a small, deterministic synthetic speech corpus for MAE-AST
demos.

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

Examples (from the repository root)::

    mae-ast-make-demo-corpus                      # default demo size
    mae-ast-make-demo-corpus --num-pretrain 100 --seed 3 --force
"""

import sys

from mae_ast_plugin.cli import command_parser
from mae_ast_plugin.corpora.build import (
    SAMPLE_RATE,
    SPLITS_LABELLED,
    add_build_options,
    build_corpus,
    clip_rng,
    render_parts,
)
from mae_ast_plugin.corpora.speech_clips import (
    ENGLISH_VOICES,
    VARIANTS,
    keyword_classes,
    plan_keyword,
    plan_pretrain,
    plan_speakers,
    render_speech,
    speaker_classes,
)
from mae_ast_plugin.prep.common import ClassInfo

FORMAT_VERSION = 1  # bump when the generated audio changes for the same parameters
SIZE_OPTIONS = (
    "num_pretrain",
    "num_pretrain_valid",
    "keyword_per_class",
    "keyword_eval_per_class",
    "num_speakers",
    "speaker_clips",
    "speaker_eval_clips",
)


def get_parser():
    parser = command_parser("mae-ast-make-demo-corpus", __doc__)
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
    add_build_options(parser, min_snr=5.0, max_snr=25.0)
    return parser


def main(argv=None):
    """Run ``mae-ast-make-demo-corpus``; returns the exit status."""
    build(get_parser().parse_args(argv))
    return 0


def _check_args(args):
    if args.seed < 0:
        raise SystemExit("--seed must be >= 0")
    for name in (*SIZE_OPTIONS, "workers"):
        if getattr(args, name) < 1:
            raise SystemExit(f"--{name.replace('_', '-')} must be >= 1")
    if args.min_snr > args.max_snr:
        raise SystemExit("--min-snr must not exceed --max-snr")


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


def identity_picker(seed, variants):
    """``pick_identity`` for :func:`plan_keyword`: each split draws from its own disjoint
    (voice, variant) identities, so test voices were never heard in training."""
    identities = split_identities(seed, variants)

    def pick(rng, split):
        pool = identities[split]
        return pool[int(rng.integers(len(pool)))]

    return pick


def _manifest_files(manifest_dir):
    files = [manifest_dir / "train.tsv", manifest_dir / "valid.tsv"]
    for task in ("keyword", "speaker"):
        files.append(manifest_dir / task / "labels.csv")
        for split in SPLITS_LABELLED:
            files += [manifest_dir / task / f"{split}.tsv", manifest_dir / task / f"{split}.lbl"]
    return files


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


def build(args):
    """Build (or find up to date) the corpus of ``args`` (``get_parser()``'s options); returns
    the ``corpus.json`` record."""
    _check_args(args)
    return build_corpus(args, "corpus", VARIANTS, FORMAT_VERSION, SIZE_OPTIONS, _manifest_files,
                        _format_summary, lambda *where: _make(args, *where))


def _make(args, variants, out_root, manifest_dir):
    """Plan, render and write the demo corpus; returns its record and the stale wavs removed."""
    pretrain = plan_pretrain(args, variants)
    keyword = plan_keyword(args, "keyword", identity_picker(args.seed, variants))
    speakers, speaker = plan_speakers(args, variants)
    classes = keyword_classes()
    frames, removed, record = render_parts(
        render_speech,
        {"pretrain": pretrain, "keyword": keyword, "speaker": speaker},
        {"keyword": [ClassInfo(c, c) for c in classes], "speaker": speaker_classes(speakers)},
        out_root,
        manifest_dir,
        args.workers,
        flat_pretrain=True,
    )
    record.update({
        "generator": "mae-ast-make-demo-corpus",
        "counts": {
            "pretrain": {s: len(c) for s, c in pretrain.items()},
            "keyword": dict(
                {s: len(c) for s, c in keyword.items()},
                classes=classes,
                per_class={
                    s: {name: sum(c["label"] == i for c in clips) for i, name in enumerate(classes)}
                    for s, clips in keyword.items()
                },
            ),
            "speaker": dict({s: len(c) for s, c in speaker.items()}, num_speakers=len(speakers)),
        },
        "total_duration_s": round(sum(frames.values()) / SAMPLE_RATE, 2),
    })
    return record, removed


if __name__ == "__main__":
    sys.exit(main())
