"""``mae-ast-benchmark-manifest``: start-up cost of a large manifest: time and memory of
reading a 2M-line manifest, of the dataset's first batching, of opening an fbank cache of it,
and the memory of a loader worker.

Generates a manifest of AudioSet-like lines in a temporary directory, then, in a fresh Python
process (so that the numbers are not blurred by this one):

* ``read_manifest``: seconds, resident memory kept (RSS after - before) and the peak (VmHWM);
* the dataset's ``ordered_indices`` and fairseq's ``batch_by_size`` at the paper's batch;
* ``FbankCache.open`` on a cache of the manifest in 1000 shards (index files and metadata as
  the build writes them; the data files are sparse, so no disk is used);
* a forked loader worker that reads the paths and sizes of 100k random entries: its private
  memory (USS: Private_Clean + Private_Dirty), i.e. what a worker costs beyond shared pages.

Example::

    mae-ast-benchmark-manifest --lines 2000000 --out manifest.json
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from mae_ast_plugin.bench.report import command_line, log, machine_info, write_report
from mae_ast_plugin.cli import command_parser
from mae_ast_plugin.hashing import file_sha256


def proc_status(pid="self"):
    """VmRSS and VmHWM (peak RSS) in bytes."""
    values = {}
    with open(f"/proc/{pid}/status") as handle:
        for line in handle:
            key, _, rest = line.partition(":")
            if key in ("VmRSS", "VmHWM"):
                values[key] = int(rest.split()[0]) * 1024
    return values


def private_bytes(pid="self"):
    """USS: memory only this process holds (Private_Clean + Private_Dirty)."""
    total = 0
    with open(f"/proc/{pid}/smaps_rollup") as handle:
        for line in handle:
            if line.startswith(("Private_Clean:", "Private_Dirty:")):
                total += int(line.split()[1]) * 1024
    return total


def generate_manifest(path: Path, lines: int, seed: int = 0):
    import numpy as np

    rng = np.random.default_rng(seed)
    sizes = np.where(rng.random(lines) < 0.9, 160000, rng.integers(16000, 160000, lines))
    with open(path, "w", encoding="utf-8") as handle:
        handle.write("/data/audioset/audio\n")
        step = 100_000
        for first in range(0, lines, step):
            chunk = range(first, min(lines, first + step))
            handle.write(
                "".join(
                    f"unbalanced_train_segments/{i // 20000:03d}/Y{i:011d}_30.000_40.000.flac"
                    f"\t{sizes[i]}\n"
                    for i in chunk
                )
            )


def fake_cache(manifest_path: str, cache_dir: str, num_shards: int):
    """Shard metadata and index files as mae-ast-precompute-fbank writes them, over sparse data
    files (every clip 998 rows): enough for FbankCache.open, which reads no feature data."""
    import numpy as np

    from mae_ast_plugin.data import fbank_cache as fc
    from mae_ast_plugin.data.manifest import read_manifest
    from mae_ast_plugin.features import FbankConfig

    manifest = read_manifest(manifest_path)
    lines = fc.ManifestLines(manifest_path)
    features = fc.features_dict(FbankConfig())
    per_shard = (len(manifest) + num_shards - 1) // num_shards
    for shard in range(num_shards):
        entries = manifest.line_numbers[shard * per_shard : (shard + 1) * per_shard]
        index = np.zeros(len(entries), dtype=fc.INDEX_DTYPE)
        index["line"], index["frames"], index["samples"] = entries, 998, 160000
        index["start"] = np.arange(len(entries)) * 998
        name = os.path.join(cache_dir, fc.shard_name("train", shard))
        np.save(name + ".index.npy", index)
        with open(name + ".fbank", "wb") as handle:
            handle.truncate(len(entries) * 998 * 128 * 4)
        fc._write_json(
            name + ".json",
            {
                "format": fc.FORMAT,
                "features": features,
                "dtype": "float32",
                "first_line": int(entries[0]),
                "last_line": int(entries[-1]),
                "manifest_sha256": lines.fingerprint(int(entries[0]), int(entries[-1])),
                "num_clips": len(entries),
                "num_rows": len(entries) * 998,
                "data_sha256": "not computed (sparse benchmark file)",
                "index_sha256": file_sha256(name + ".index.npy"),
                "errors": {},
            },
        )
    fc._write_json(
        os.path.join(cache_dir, "train.json"),
        {
            "format": fc.FORMAT,
            "split": "train",
            "features": features,
            "dtype": "float32",
            "num_shards": num_shards,
        },
    )


def measure(manifest_path: str, cache_dir: str) -> dict:
    """Runs in a fresh process."""
    import numpy as np
    from fairseq.data import data_utils  # noqa: F401  (imported before the baseline)

    from mae_ast_plugin.data.fbank_cache import FbankCache
    from mae_ast_plugin.data.fbank_dataset import FbankAudioDataset
    from mae_ast_plugin.data.manifest import read_manifest
    from mae_ast_plugin.features import FbankConfig

    out = {}
    before = proc_status()
    start = time.perf_counter()
    manifest = read_manifest(manifest_path)
    out["read_manifest_s"] = time.perf_counter() - start
    after = proc_status()
    out["read_manifest_rss_kept_bytes"] = after["VmRSS"] - before["VmRSS"]
    out["read_manifest_peak_growth_bytes"] = after["VmHWM"] - before["VmRSS"]
    arrays = (manifest.sizes, manifest.line_numbers, manifest._offsets)
    out["manifest_arrays_bytes"] = len(manifest._blob) + sum(a.nbytes for a in arrays)


    # The generated manifest names no real files: give the rates instead of scanning headers.
    rates = np.full(len(manifest), 16000, dtype=np.int64)
    dataset = FbankAudioDataset(manifest, FbankConfig(), 10.0, random_crop=True, sample_rates=rates)
    start = time.perf_counter()
    indices = dataset.ordered_indices()
    out["ordered_indices_s"] = time.perf_counter() - start
    start = time.perf_counter()
    batches = dataset.batch_by_size(indices, max_tokens=5120000, required_batch_size_multiple=1)
    out["batch_by_size_s"] = time.perf_counter() - start
    out["batches"] = len(batches)

    before_cache = proc_status()["VmRSS"]
    start = time.perf_counter()
    cache = FbankCache.open(cache_dir, "train", manifest, FbankConfig())
    out["fbank_cache_open_s"] = time.perf_counter() - start
    out["fbank_cache_rss_kept_bytes"] = proc_status()["VmRSS"] - before_cache
    del cache, batches

    # A loader worker: forked after the dataset is built, reads entries as __getitem__ would.
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:
        rng = np.random.default_rng(0)
        total = 0
        for index in rng.integers(0, len(manifest), 100_000):
            total += len(manifest.audio_path(int(index))) + int(dataset.sizes[index])
        os.write(write, json.dumps({"worker_private_bytes": private_bytes()}).encode())
        os._exit(0)
    os.waitpid(pid, 0)
    out.update(json.loads(os.read(read, 1 << 16)))
    out["parent_rss_bytes"] = proc_status()["VmRSS"]
    return out


def summary(result: dict, lines: int, shards: int) -> str:
    def mb(key):
        return result[key] / 1e6

    return (
        f"{lines} lines ({mb('manifest_bytes'):.0f} MB): read_manifest "
        f"{result['read_manifest_s']:.2f} s, keeps {mb('read_manifest_rss_kept_bytes'):.0f} MB "
        f"(arrays {mb('manifest_arrays_bytes'):.0f} MB), "
        f"peak +{mb('read_manifest_peak_growth_bytes'):.0f} MB; "
        f"ordered_indices {result['ordered_indices_s']:.2f} s, "
        f"batch_by_size {result['batch_by_size_s']:.2f} s ({result['batches']} batches); "
        f"fbank cache open ({shards} shards) {result['fbank_cache_open_s']:.2f} s, "
        f"keeps {mb('fbank_cache_rss_kept_bytes'):.0f} MB; "
        f"loader worker private memory {mb('worker_private_bytes'):.1f} MB"
    )


def parse_args(argv=None):
    parser = command_parser("mae-ast-benchmark-manifest", __doc__)
    parser.add_argument("--lines", type=int, default=2_000_000, help="manifest entries")
    parser.add_argument("--shards", type=int, default=1000, help="fbank cache shards")
    parser.add_argument("--out", help="write the JSON report here")
    parser.add_argument("--measure", nargs=2, metavar=("MANIFEST", "CACHE"), help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    if args.measure:
        print(json.dumps(measure(*args.measure)))
        return 0
    with tempfile.TemporaryDirectory(prefix="benchmark_manifest_") as tmp:
        manifest_path = os.path.join(tmp, "train.tsv")
        start = time.perf_counter()
        generate_manifest(Path(manifest_path), args.lines)
        seconds = time.perf_counter() - start
        log(f"generated {args.lines} lines in {seconds:.1f} s")
        cache_dir = os.path.join(tmp, "cache")
        os.makedirs(cache_dir)
        fake_cache(manifest_path, cache_dir, args.shards)
        child = subprocess.run(
            [
                sys.executable,
                "-m",
                "mae_ast_plugin.bench.manifest",
                "--measure",
                manifest_path,
                cache_dir,
            ],
            check=True,
            capture_output=True,
            text=True,
        )
        result = json.loads(child.stdout.strip().splitlines()[-1])
        result["manifest_bytes"] = os.path.getsize(manifest_path)
    report = {
        "machine": machine_info(),
        "command": command_line(),
        "lines": args.lines,
        "shards": args.shards,
        "result": result,
    }
    write_report(report, summary(result, args.lines, args.shards), args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
