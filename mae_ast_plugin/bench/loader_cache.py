"""``mae-ast-benchmark-loader-cache``: loader clips/s with and without the precomputed fbank
cache (task.fbank_cache); the audio loader yields cropped waveforms (the model computes the
filterbanks), the cache loader filterbanks.

Generates a corpus of 10 s clips (16-bit wav, the generator of bench/data.py), builds the cache
in float32 and float16 with the code of ``mae-ast-precompute-fbank`` (timing the build), then
reads the corpus through the pretraining dataset and a DataLoader (bench/data.py's
measurement) from the audio, from the float32 cache and from the float16 cache, for each
loader worker count (0: in this process, one thread: the cost per clip of one core, without
the transfer of batches from worker processes).  The files are in the page cache after the
first pass, so this measures CPU cost, not the disk: the cache reads 511 KB per 10 s clip in
float32, 256 KB in float16 (16-bit wav: 320 KB).

Example::

    mae-ast-benchmark-loader-cache --clips 200 --workers 0 1 2 --out cache.json
"""

import os
import sys
import tempfile
import time
from pathlib import Path

from mae_ast_plugin.bench.data import generate_corpus, measure
from mae_ast_plugin.bench.report import (
    command_line,
    log,
    machine_info,
    markdown_table,
    write_report,
)
from mae_ast_plugin.cli import command_parser


def parse_args(argv=None):
    parser = command_parser("mae-ast-benchmark-loader-cache", __doc__)
    parser.add_argument("--clips", type=int, default=200, help="10 s clips to generate")
    parser.add_argument("--sample-rate", type=int, default=16000, help="of the generated clips")
    parser.add_argument("--workers", type=int, nargs="+", default=[0, 1, 2], help="loader workers")
    parser.add_argument("--build-workers", type=int, default=os.cpu_count(), help="build processes")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--passes", type=int, default=2, help="read the clips this many times")
    parser.add_argument("--out", help="write the JSON report here")
    return parser.parse_args(argv)


def build_caches(manifest_path: str, root: str, features, clips: int, workers: int):
    """float32 and float16 caches of the manifest; returns {dtype: directory} and build stats."""
    from mae_ast_plugin.data.fbank_cache import build_split

    directories, builds = {}, {}
    for dtype in ("float32", "float16"):
        directory = os.path.join(root, f"cache_{dtype}")
        start = time.perf_counter()
        build_split(manifest_path, directory, "train", features, 50, dtype, workers)
        seconds = time.perf_counter() - start
        size = sum(os.path.getsize(os.path.join(directory, f)) for f in os.listdir(directory))
        directories[dtype] = directory
        builds[dtype] = {
            "seconds": seconds,
            "clips_per_s": clips / seconds,
            "bytes_per_clip": size / clips,
        }
    return directories, builds


def markdown(report) -> str:
    """The table (one row per feature source and worker count), the cache builds' rates and
    sizes, and the float16 cache's largest error."""
    header = ["features from", "loader workers", "clips/s (steady)", "clips/s (whole pass)"]
    rows = [
        [
            r["source"], r["workers"], f"{r['clips_per_s']:.1f}",
            f"{r['clips_per_s_incl_startup']:.1f}",
        ]
        for r in report["results"]
    ]
    lines = markdown_table(header, rows)
    for dtype, build in report["builds"].items():
        lines.append(
            f"\ncache build ({dtype}, {report['build_workers']} processes): "
            f"{build['clips_per_s']:.1f} clips/s, {build['bytes_per_clip'] / 1024:.0f} KiB per clip"
        )
    low, high = report["fbank_value_range"]
    lines.append(
        f"\nfloat16 cache: max abs error {report['float16_max_abs_error']:.5f} over fbank values "
        f"in [{low:.2f}, {high:.2f}]"
    )
    return "\n".join(lines)


def main(argv=None):
    args = parse_args(argv)
    import torch

    from mae_ast_plugin.data.fbank_cache import FbankCache
    from mae_ast_plugin.data.fbank_dataset import FbankAudioDataset
    from mae_ast_plugin.data.manifest import read_manifest
    from mae_ast_plugin.features import FbankConfig, compute_fbank

    torch.set_num_threads(1)  # per-process cost, as in loader workers (0 workers: this process)
    features = FbankConfig()
    results = []
    with tempfile.TemporaryDirectory(prefix="benchmark_cache_") as tmp:
        manifest_path = str(generate_corpus(Path(tmp), args.clips, 10.0, args.sample_rate))
        manifest = read_manifest(manifest_path)
        directories, builds = build_caches(
            manifest_path, tmp, features, args.clips, args.build_workers
        )
        caches = {"audio": None}
        for dtype, directory in directories.items():
            caches[f"cache {dtype}"] = FbankCache.open(directory, "train", manifest, features)
        datasets = {
            name: FbankAudioDataset(
                manifest, features, 10.0, random_crop=True, shuffle=False, fbank_cache=cache
            )
            for name, cache in caches.items()
        }
        # the audio dataset yields waveforms: their fbank is what the model computes
        exact = [
            compute_fbank(datasets["audio"][i]["source"], features) for i in range(len(manifest))
        ]
        half = [datasets["cache float16"][i]["source"] for i in range(len(manifest))]
        float16_error = max(float((h - e).abs().max()) for h, e in zip(half, exact, strict=True))
        value_range = (min(float(e.min()) for e in exact), max(float(e.max()) for e in exact))
        for name, dataset in datasets.items():
            for workers in args.workers:
                result = measure(dataset, workers, args.batch_size, args.passes)
                result["source"] = name
                rate = result["clips_per_s"]
                log(f"{name}, {workers} workers: {rate:.1f} clips/s")
                results.append(result)

    report = {
        "machine": machine_info(),
        "command": command_line(),
        "clips": args.clips,
        "sample_rate": args.sample_rate,
        "build_workers": args.build_workers,
        "builds": builds,
        "float16_max_abs_error": float16_error,
        "fbank_value_range": value_range,
        "results": results,
    }
    write_report(report, markdown(report), args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
