"""``mae-ast-benchmark-data``: clips/s of the audio -> filterbank input pipeline, for several
DataLoader worker counts.

Runs the real pipeline of pretraining: ``read_manifest`` -> ``FbankAudioDataset`` (soundfile
read, mono mixdown, resampling to 16 kHz when needed, crop to 10 s, Kaldi fbank) -> a torch
``DataLoader`` with the dataset's ``collater`` (padding + padding mask).  Compare the result with
``mae-ast-benchmark-pretrain``'s clips/s to see how many ``dataset.num_workers`` keep a GPU fed.

Steady-state clips/s is timed after the first ``max(1, 2 x workers)`` batches (worker start-up
and the prefetch queue), so give it enough clips (a few batches per worker beyond that); the
rate over the whole run, start-up included, is reported too.  Each worker count reads the same
clips (``--passes`` times, to have enough of them); the page cache is warm after the first
pass, so this measures decoding and feature computation, not the disk.

Examples::

    mae-ast-benchmark-data manifests/demo/train.tsv --workers 0 1 2
    mae-ast-benchmark-data --generate 200 --workers 0 1 2 4 8 --out data.json
    mae-ast-benchmark-data --generate 200 --compare gpu.json   # workers needed
    mae-ast-benchmark-data --tiny --out tiny.json              # seconds; for tests

``--fbank-batched`` instead compares the two ways of computing the filterbanks of a batch of
``--batch-size`` clips of ``--clip-seconds`` (odd lengths, padded): torchaudio's Kaldi fbank
clip by clip (the loader's path) and ``features.batched_fbank`` on the whole padded batch
(``task.fbank_on_device``), on ``--device``::

    mae-ast-benchmark-data --fbank-batched --device cuda --batch-size 32
"""

import json
import math
import sys
import tempfile
import time
from pathlib import Path

from mae_ast_plugin.bench.report import (
    command_line,
    log,
    machine_info,
    markdown_table,
    write_report,
)
from mae_ast_plugin.cli import command_parser


def generate_corpus(
    root: Path, count: int, seconds: float, sample_rate, seed: int = 0
) -> Path:
    """``count`` clips of ``seconds`` s (16-bit PCM wav: harmonic chirps in noise) and a
    fairseq manifest ``root/train.tsv`` (lengths in samples at each clip's own rate); returns the
    manifest path.  ``sample_rate`` (Hz) is one rate, or a sequence of rates that clip ``i``
    takes in turn (``i % len``), for a corpus the loader partly resamples."""
    import numpy as np
    import soundfile

    rates = tuple(sample_rate) if isinstance(sample_rate, (tuple, list)) else (sample_rate,)
    rng = np.random.default_rng(seed)
    audio = root / "audio"
    audio.mkdir(parents=True, exist_ok=True)
    lines = [str(audio)]
    for index in range(count):
        rate = rates[index % len(rates)]
        length = int(round(seconds * rate))
        t = np.arange(length) / rate
        f0 = rng.uniform(100, 800)
        sweep = f0 * (1 + rng.uniform(-0.5, 0.5) * t / max(seconds, 1e-3))
        phase = 2 * np.pi * np.cumsum(sweep) / rate
        wave = sum(np.sin(k * phase) / k for k in (1, 2, 3)) * 0.2 + 0.02 * rng.standard_normal(
            length
        )
        name = f"clip_{index:05d}.wav"
        soundfile.write(audio / name, wave.astype(np.float32), rate, subtype="PCM_16")
        lines.append(f"{name}\t{length}")
    manifest = root / "train.tsv"
    manifest.write_text("\n".join(lines) + "\n")
    return manifest


def measure(dataset, workers: int, batch_size: int, passes: int = 1) -> dict:
    import torch

    loader = torch.utils.data.DataLoader(
        dataset,
        batch_size=batch_size,
        sampler=list(range(len(dataset))) * passes,
        num_workers=workers,
        collate_fn=dataset.collater,
    )
    # The workers fill a queue of prefetch_factor (2) batches each before the first batch is
    # used; the steady rate is timed from the batch after those, when the queue has drained.
    skip = max(1, 2 * workers)
    start = time.perf_counter()
    first_time = None
    first_clips = clips = batches = frames = 0
    for batch in loader:
        net_input = batch["net_input"]
        clips += len(batch["id"])
        if "padding_mask" in net_input:  # waveform batches (fbank on device) count no frames
            frames += int((~net_input["padding_mask"]).sum())
        batches += 1
        if batches == 1:
            first_batch = time.perf_counter() - start
        if batches == skip:
            first_time, first_clips = time.perf_counter(), clips
    end = time.perf_counter()
    steady = (clips - first_clips) / (end - first_time) if clips > first_clips else math.nan
    return {
        "workers": workers,
        "batch_size": batch_size,
        "clips": clips,
        "batches": batches,
        "frames": frames,
        "seconds": end - start,
        "first_batch_s": first_batch,
        "steady_after_batches": skip,
        "clips_per_s": steady,
        "clips_per_s_incl_startup": clips / (end - start),
    }


def markdown(report) -> str:
    """The table: one row per worker count; with ``--compare``, how many workers keep up."""
    header = [
        "loader workers", "clips", "clips/s (steady)", "clips/s (whole pass)", "first batch (s)",
    ]
    rows = [
        [
            r["workers"], r["clips"], f"{r['clips_per_s']:.1f}",
            f"{r['clips_per_s_incl_startup']:.1f}", f"{r['first_batch_s']:.2f}",
        ]
        for r in report["results"]
    ]
    lines = markdown_table(header, rows)
    need = report.get("needed")
    if need:
        enough = need.get("workers")
        lines.append(
            f"\nFastest training configuration in {need['from']}: {need['name']} at "
            f"{need['clips_per_s']:.1f} clips/s; "
            + (
                f"{enough} loader worker(s) keep up."
                if enough is not None
                else "none of the measured worker counts keeps up."
            )
        )
    return "\n".join(lines)


def parse_args(argv=None):
    parser = command_parser("mae-ast-benchmark-data", __doc__)
    parser.add_argument("manifest", nargs="?", help="fairseq tsv manifest to read")
    parser.add_argument("--generate", type=int, metavar="N", help="generate N clips instead")
    parser.add_argument("--generate-dir", help="where to write them (default: a temporary folder)")
    parser.add_argument("--clip-seconds", type=float, default=10.0, help="generated clip length")
    parser.add_argument("--sample-rate", type=int, default=16000, help="generated clips' rate")
    parser.add_argument("--workers", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--max-clips", type=int, help="use at most this many clips of the manifest")
    parser.add_argument("--passes", type=int, default=1, help="read the clips this many times")
    parser.add_argument("--max-sample-len-s", type=float, default=10.0, help="crop length (task's)")
    parser.add_argument(
        "--compare", help="mae-ast-benchmark-pretrain JSON: report the workers it needs"
    )
    parser.add_argument("--tiny", action="store_true", help="6 generated 1 s clips, workers 0 1")
    parser.add_argument("--threads", type=int, help="torch threads of the main process (0 workers)")
    parser.add_argument(
        "--fbank-batched",
        action="store_true",
        help="compare per-clip torchaudio fbank with features.batched_fbank (see above)",
    )
    parser.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    parser.add_argument("--out", help="write the JSON report here")
    args = parser.parse_args(argv)
    if args.tiny:
        if args.manifest is None and args.generate is None:
            args.generate = 6
        args.clip_seconds = 1.0 if args.clip_seconds == 10.0 else args.clip_seconds
        args.batch_size = 2 if args.batch_size == 8 else args.batch_size
        args.workers = [0, 1] if args.workers == [0, 1, 2] else args.workers
    if not args.fbank_batched and (args.manifest is None) == (args.generate is None):
        parser.error("give a manifest or --generate N (not both)")
    return args


def fbank_batched_main(args) -> int:
    """Median clips/s of per-clip and batched filterbanks (see the module docstring)."""
    import statistics

    import torch

    from mae_ast_plugin.features import FbankConfig, batched_fbank, compute_fbank

    device = args.device
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    cfg = FbankConfig()
    generator = torch.Generator().manual_seed(0)
    full = int(args.clip_seconds * cfg.sample_rate)
    lengths = [full - 37 * i for i in range(args.batch_size)]  # odd lengths: padding in play
    clips = [0.1 * torch.randn(n, generator=generator) for n in lengths]
    waves = torch.zeros(len(clips), full)
    for i, clip in enumerate(clips):
        waves[i, : len(clip)] = clip
    waves, sizes = waves.to(device), torch.tensor(lengths, device=device)

    def sync():
        if device == "cuda":
            torch.cuda.synchronize()

    def timed(fn, repeats):
        fn()  # warm-up (mel filter tables, kernels)
        times = []
        for _ in range(repeats):
            sync()
            start = time.perf_counter()
            fn()
            sync()
            times.append(time.perf_counter() - start)
        return statistics.median(times)

    repeats = 3 if args.tiny else 10
    per_clip = timed(lambda: [compute_fbank(c.to(device), cfg) for c in clips], repeats)
    batched = timed(lambda: batched_fbank(waves, sizes, cfg), repeats)
    gpu = {"gpu": torch.cuda.get_device_name(0)} if device == "cuda" else {}
    report = {
        "machine": machine_info(torch_threads=torch.get_num_threads(), **gpu),
        "command": command_line(),
        "device": device,
        "batch": args.batch_size,
        "clip_seconds": args.clip_seconds,
        "per_clip_clips_per_s": len(clips) / per_clip,
        "batched_clips_per_s": len(clips) / batched,
    }
    header = [
        "device", "batch", "clip s", "torchaudio per clip, clips/s", "batched, clips/s", "ratio",
    ]
    row = [
        device, args.batch_size, args.clip_seconds, f"{report['per_clip_clips_per_s']:.1f}",
        f"{report['batched_clips_per_s']:.1f}", f"{per_clip / batched:.2f}x",
    ]
    write_report(report, "\n".join(markdown_table(header, [row])), args.out)
    return 0


def main(argv=None):
    args = parse_args(argv)
    if args.fbank_batched:
        return fbank_batched_main(args)
    import torch

    from mae_ast_plugin.data.fbank_dataset import FbankAudioDataset
    from mae_ast_plugin.data.manifest import read_manifest
    from mae_ast_plugin.features import FbankConfig

    if args.threads:
        torch.set_num_threads(args.threads)

    with tempfile.TemporaryDirectory(prefix="benchmark_data_") as tmp:
        manifest_path = args.manifest
        if args.generate is not None:
            root = Path(args.generate_dir) if args.generate_dir else Path(tmp)
            log(f"generating {args.generate} clips of {args.clip_seconds} s in {root}")
            manifest_path = str(
                generate_corpus(root, args.generate, args.clip_seconds, args.sample_rate)
            )
        manifest = read_manifest(manifest_path)
        dataset = FbankAudioDataset(
            manifest,
            FbankConfig(),
            max_sample_len_s=args.max_sample_len_s,
            random_crop=True,
            shuffle=False,
        )
        if args.max_clips is not None and args.max_clips < len(dataset):
            dataset = torch.utils.data.Subset(dataset, range(args.max_clips))
            dataset.collater = dataset.dataset.collater
        results = []
        for workers in args.workers:
            result = measure(dataset, workers, args.batch_size, args.passes)
            log(f"{workers} workers: {result['clips_per_s']:.1f} clips/s")
            results.append(result)

    report = {
        "machine": machine_info(main_process_torch_threads=torch.get_num_threads()),
        "command": command_line(),
        "manifest": args.manifest if args.generate is None else f"generated: {args.generate} clips",
        "clip_seconds": args.clip_seconds if args.generate is not None else None,
        "results": results,
    }
    if args.compare:
        pretrain = json.loads(Path(args.compare).read_text())
        fastest = max(pretrain["results"], key=lambda r: r["clips_per_s"])
        enough = [r["workers"] for r in results if r["clips_per_s"] >= fastest["clips_per_s"]]
        report["needed"] = {
            "from": args.compare,
            "name": fastest["name"],
            "clips_per_s": fastest["clips_per_s"],
            "workers": min(enough) if enough else None,
        }
    write_report(report, markdown(report), args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
