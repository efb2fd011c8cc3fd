"""What the two synthetic corpus builders (demo.py, table1.py) share: a random generator per clip,
parallel rendering into 16-bit wavs, the manifests with a metadata row per clip, and the
``corpus.json`` record that makes a rebuild with the same parameters a no-op.

A clip is a *spec*: a JSON-friendly dict with at least ``path`` (relative to the audio root) and
its own seeds, so the audio does not depend on the order or the process that renders it.
"""

import concurrent.futures
import json
import multiprocessing
import os
import time
import wave
import zlib
from pathlib import Path

import numpy as np

from mae_ast_plugin.atomic_io import atomic_open, atomic_write_text
from mae_ast_plugin.corpora import dsp
from mae_ast_plugin.corpora import speech_synth as ss
from mae_ast_plugin.prep.common import Clip
from mae_ast_plugin.prep.manifests import write_labels_csv, write_split

SAMPLE_RATE = 16000  # Hz, mono, 16-bit PCM: the rate the paper's front end expects
SPLITS_LABELLED = ("train", "valid", "test")


def add_build_options(parser, min_snr: float, max_snr: float):
    """The options every corpus builder shares: the SNR range in dB of the noise mixed into each
    clip (``draw_snr``), the rendering processes and ``--force``."""
    parser.add_argument("--min-snr", type=float, default=min_snr, help="lowest SNR in dB")
    parser.add_argument("--max-snr", type=float, default=max_snr, help="highest SNR in dB")
    parser.add_argument(
        "--workers",
        type=int,
        default=min(2, os.cpu_count() or 1),
        help="parallel rendering processes (does not change the output)",
    )
    parser.add_argument(
        "--force", action="store_true", help="rebuild even if an identical corpus exists"
    )


def _key(part):
    # Stable across runs and Python versions (unlike hash()).
    return part if isinstance(part, int) else zlib.crc32(str(part).encode("utf-8"))


def clip_rng(seed, *parts):
    """Independent generator for one clip (or one planning decision), seeded by ``seed`` and
    ``parts`` (ints, or strings hashed with CRC-32)."""
    return np.random.default_rng([seed, *(_key(p) for p in parts)])


def draw_snr(rng, args):
    """A signal-to-noise ratio in dB, uniform in [``args.min_snr``, ``args.max_snr``]."""
    return round(float(rng.uniform(args.min_snr, args.max_snr)), 2)


def write_wav_atomic(path, pcm, sample_rate):
    """16-bit mono wav, written atomically (the stdlib writer has no timestamps or other
    varying header fields, so the bytes are reproducible)."""
    with atomic_open(str(path)) as handle, wave.open(handle, "wb") as f:
        f.setnchannels(1)
        f.setsampwidth(2)
        f.setframerate(sample_rate)
        f.writeframes(np.asarray(pcm, dtype="<i2").tobytes())


def write_pcm(audio, out_root, spec):
    """Write float audio in [-1, 1] as ``out_root/spec['path']``; returns (path, num_samples)."""
    pcm = dsp.to_pcm16(audio)
    write_wav_atomic(Path(out_root) / spec["path"], pcm, SAMPLE_RATE)
    return spec["path"], len(pcm)


def _render_batch(batch):
    render, specs, out_root = batch
    return [render(spec, out_root) for spec in specs]


def render_all(render, specs, out_root, workers):
    """``render(spec, out_root) -> (path, num_samples)`` for every spec (``render`` is a
    module-level function, so that it pickles into the worker processes); returns
    {path: num_samples}.  The
    output is independent of the worker count because each clip carries its own seeds."""
    if workers <= 1:
        return dict(render(spec, out_root) for spec in specs)
    batches = [(render, specs[i : i + 32], out_root) for i in range(0, len(specs), 32)]
    # fork is cheap and re-uses the already loaded modules; elsewhere spawn works too
    method = "fork" if "fork" in multiprocessing.get_all_start_methods() else None
    context = multiprocessing.get_context(method)
    results = {}
    with concurrent.futures.ProcessPoolExecutor(workers, mp_context=context) as pool:
        for rendered in pool.map(_render_batch, batches):
            results.update(rendered)
    return results


def write_manifest(manifest_dir, split, clips, frames, audio_root, with_labels):
    """The split's manifest (and labels) through prep.manifests, plus a ``.meta.jsonl`` row per
    clip (text, voice, noise...) that the tests use to check the split rules."""
    rows = [
        Clip(
            str(Path(audio_root) / c["path"]),
            frames[c["path"]],
            (c["label"],) if with_labels else (),
        )
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


def render_parts(render, parts, classes, out_root, manifest_dir, workers, flat_pretrain=False):
    """Render and write a planned corpus; returns ``(frames, removed, record)``.

    ``parts`` maps a part ("pretrain", unlabelled, or a task) to ``{split: [spec]}``; every
    clip is rendered by ``render`` (see :func:`render_all`) under ``out_root``, and each
    split's manifest written in ``manifest_dir/part`` (the pretraining ones in ``manifest_dir``
    itself with ``flat_pretrain``, the demo's layout), with ``labels.csv`` from ``classes``
    ({task: [ClassInfo]}).  Wavs of an earlier build that no part lists are deleted (``removed``:
    how many).  ``frames`` maps each path to its samples; ``record`` holds the corpus.json
    fields every corpus has (seconds of audio per part and split, number of clips)."""
    specs = [clip for plans in parts.values() for clips in plans.values() for clip in clips]
    frames = render_all(render, specs, str(out_root), workers)
    for part, plans in parts.items():
        labelled = part != "pretrain"
        directory = manifest_dir if not labelled and flat_pretrain else manifest_dir / part
        for split, clips in plans.items():
            write_manifest(directory, split, clips, frames, str(out_root), with_labels=labelled)
    for task, infos in classes.items():
        write_labels_csv(str(manifest_dir / task), infos)
    removed = remove_stale_audio(out_root, set(frames), tuple(parts))
    record = {
        "durations_s": {
            part: {split: seconds_of(clips, frames) for split, clips in plans.items()}
            for part, plans in parts.items()
        },
        "total_clips": len(specs),
    }
    return frames, removed, record


def remove_stale_audio(out_root, keep, parts):
    """Delete the wavs under ``out_root/{part}`` for each of ``parts`` that ``keep`` (relative
    paths) no longer lists: what an earlier, larger build left.  Returns how many."""
    removed = 0
    for part in parts:
        for path in sorted((Path(out_root) / part).rglob("*.wav")):
            if path.relative_to(out_root).as_posix() not in keep:
                path.unlink()
                removed += 1
    return removed


def build_params(args, variants, format_version, sizes):
    """The parameters that determine a build's bytes (recorded in corpus.json): ``sizes`` are
    the names of the size options of ``args``."""
    return {
        "format_version": format_version,
        "seed": args.seed,
        **{name: getattr(args, name) for name in sizes},
        "min_snr": args.min_snr,
        "max_snr": args.max_snr,
        "sample_rate": SAMPLE_RATE,
        "variants": [v for v in variants if v is not None],
        "audio_root": os.path.realpath(args.out),
        "synth": ss.espeak_versions(),
    }


def existing_build(manifest_dir, params, manifest_paths):
    """The corpus.json record if the build on disk has these parameters, every file of
    ``manifest_paths`` and every wav its manifests list; else None."""
    try:
        record = json.loads((Path(manifest_dir) / "corpus.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if record.get("params") != params:
        return None
    for path in manifest_paths:
        if not path.exists():
            return None
        if path.suffix == ".tsv":
            root, *rows = path.read_text(encoding="utf-8").splitlines()
            if any(not (Path(root) / row.split("\t")[0]).exists() for row in rows):
                return None
    return record


def available_variants(wanted):
    """The espeak-ng voice variants of ``wanted`` this installation has (None: the default voice).
    Raises SystemExit with the install hint when espeak-ng is missing."""
    if not ss.espeak_available():
        raise SystemExit(f"espeak-ng is not available: {ss.INSTALL_HINT}")
    available = set(ss.list_variants())
    return [v for v in wanted if v is None or v in available]


def build_corpus(args, what, wanted_variants, format_version, sizes, manifest_paths, summary, make):
    """The frame of every corpus build; returns the ``corpus.json`` record.

    Finds the espeak-ng voice variants of ``wanted_variants`` and the parameters; when an
    identical build is on disk (``manifest_paths(manifest_dir)`` lists its files) and
    ``args.force`` is not set, prints ``summary(record)`` and stops there.  Otherwise
    ``make(variants, out_root, manifest_dir) -> (record, removed)`` plans, renders and writes
    the corpus (``removed``: stale wavs deleted), and the record, with the parameters, is written
    last.  ``what`` names the corpus in messages."""
    variants, out_root, manifest_dir, params, record = start(
        args, wanted_variants, format_version, sizes, manifest_paths
    )
    if record:
        print(f"{what} already built with the same parameters ({manifest_dir / 'corpus.json'}); "
              "use --force to rebuild")
        print(summary(record))
        return record
    started = time.time()
    made, removed = make(variants, out_root, manifest_dir)
    record = {"params": params, "manifest_dir": str(manifest_dir), **made}
    finish(manifest_dir, record, summary(record), removed, started)
    return record


def start(args, wanted_variants, format_version, sizes, manifest_paths):
    """What every build starts with: the espeak-ng voice variants of ``wanted_variants`` that
    exist, the audio and manifest directories (absolute), the parameters, and the corpus.json
    record of an identical build already on disk (None when there is none or ``args.force``).
    ``manifest_paths(manifest_dir)`` lists the files a complete build has."""
    variants = available_variants(wanted_variants)
    out_root = Path(os.path.realpath(args.out))
    manifest_dir = Path(os.path.realpath(args.manifests))
    params = build_params(args, variants, format_version, sizes)
    record = None
    if not args.force:
        record = existing_build(manifest_dir, params, manifest_paths(manifest_dir))
    return variants, out_root, manifest_dir, params, record


def seconds_of(clips, frames):
    """Total duration in seconds of ``clips`` (specs) rendered to ``frames`` samples each."""
    return round(sum(frames[c["path"]] for c in clips) / SAMPLE_RATE, 2)


def finish(manifest_dir, record, summary, removed, started):
    """Write corpus.json last (its presence marks a complete build) and print the summary."""
    atomic_write_text(
        str(Path(manifest_dir) / "corpus.json"), json.dumps(record, indent=2, sort_keys=True) + "\n"
    )
    print(summary)
    if removed:
        print(f"removed {removed} stale wav files from an earlier build")
    print(f"built {record['total_clips']} clips in {time.time() - started:.1f} s")
