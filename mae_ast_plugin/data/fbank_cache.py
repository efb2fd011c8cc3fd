"""A precomputed filterbank cache: the whole-clip fbank of every manifest entry, memory-mapped.

Built by ``mae-ast-precompute-fbank`` (:func:`build_split`), read by
:class:`~mae_ast_plugin.data.fbank_dataset.FbankAudioDataset` when ``task.fbank_cache`` is set.
The dataset crops rows of the whole clip's fbank; crops start at a whole number of frame shifts,
so the rows are exactly the fbank of the cropped audio that the on-the-fly path computes.

Layout of the cache directory, per manifest split (``train``, ``valid``, ...)::

    {split}.{i:05d}.fbank       feature rows (float32 or float16), one clip after another
    {split}.{i:05d}.index.npy   a record per clip: manifest line, first row, rows, samples, crc32
    {split}.{i:05d}.json        the shard's metadata and checksums; written last (shard complete)
    {split}.json                the split's metadata; written once every shard is complete

Shard ``i`` holds the manifest's entries ``i*K .. i*K+K-1`` (``K = clips_per_shard``).  Every file
is written under a temporary name and renamed, so an interrupted build leaves complete shards
and temporary files; building again keeps the complete shards and redoes the others.

Checks: opening a split checks each shard's metadata against the manifest (the sha256 of the
manifest lines the shard was built from, so an edited manifest is reported as stale), the
sha256 of its index and the size of its data; every clip read is checked against its crc32, so
corruption is found where it matters without reading the whole cache at every start, and its
audio file against the size and modification time it had when the clip was cached, so a file
replaced under the same name (even by different audio of the same length) is reported as stale,
never served from the cache; building again rebuilds the shards whose audio changed.
``mae-ast-precompute-fbank --verify`` checks every data file's sha256 and rebuilds bad shards.
"""

import collections
import hashlib
import json
import logging
import os
import zlib
from collections.abc import Callable
from dataclasses import fields

import numpy as np

from ..atomic_io import atomic_open, atomic_save_npy, atomic_write_json
from ..errors import InputError
from ..features import AudioError, FbankConfig, compute_fbank, load_audio, num_frames
from ..hashing import file_sha256, file_stamps
from .manifest import Manifest, read_manifest

logger = logging.getLogger(__name__)

FORMAT = "mae_ast_fbank_cache/2"  # 2: audio file size and mtime per clip
DTYPES = ("float32", "float16")
INDEX_DTYPE = np.dtype(
    [
        ("line", np.int64),  # 1-based manifest line
        ("start", np.int64),  # first row in the shard's data file
        ("frames", np.int64),  # rows of the whole clip
        ("samples", np.int64),  # samples at features.sample_rate; -1: unreadable clip
        ("crc32", np.uint32),  # of the clip's rows as stored
        ("size", np.int64),  # bytes of the audio file when cached (-1: could not stat it)
        ("mtime_ns", np.int64),  # its modification time when cached
    ]
)


class FbankCacheError(InputError):
    pass


def features_dict(features: FbankConfig) -> dict:
    """The front end's settings as a plain dict (from the dataclass or the task's DictConfig)."""
    names = [f.name for f in fields(FbankConfig) if not f.name.startswith("_")]
    return {name: getattr(features, name) for name in names}





class ManifestLines:
    """The raw bytes of a manifest and where its lines start: shards are fingerprinted by the
    exact bytes of the lines they were built from."""

    def __init__(self, path: str):
        with open(path, "rb") as handle:
            self.data = handle.read()
        newlines = np.flatnonzero(np.frombuffer(self.data, dtype=np.uint8) == ord("\n"))
        # starts[k] is the offset of line k + 1; one extra entry marks the end of the file
        self.starts = np.concatenate(([0], newlines + 1, [len(self.data) + 1]))

    def fingerprint(self, first_line: int, last_line: int) -> str:
        """sha256 of line 1 (the audio root) and of lines first_line..last_line (1-based)."""
        digest = hashlib.sha256(self.data[: self.starts[1]])
        digest.update(self.data[self.starts[first_line - 1] : self.starts[last_line]])
        return digest.hexdigest()


def shard_name(split: str, shard: int) -> str:
    return f"{split}.{shard:05d}"


# ------------------------------------------------------------------------------------------------
# Building


def _shard_is_current(
    cache_dir: str, name: str, expected: dict, verify: bool, audio_paths=()
) -> bool:
    """Whether the complete shard ``name`` was built from the same manifest lines with the same
    settings and the same audio files (``audio_paths``: size and modification time), and, with
    ``verify``, whether its data still has the recorded sha256."""
    meta_path = os.path.join(cache_dir, name + ".json")
    if not os.path.isfile(meta_path):
        return False
    try:
        with open(meta_path, encoding="utf-8") as handle:
            meta = json.load(handle)
        current = all(meta.get(key) == value for key, value in expected.items())
        if current:
            index = _check_shard_files(cache_dir, name, meta)
            now = np.asarray(file_stamps(audio_paths), dtype=np.int64).reshape(-1, 2)
            changed = (index["size"] != now[:, 0]) | (index["mtime_ns"] != now[:, 1])
            if changed.any():
                logger.info("fbank cache shard %s: %d audio files changed since it was built: "
                            "rebuilding it", name, int(changed.sum()))
                return False
            data_path = os.path.join(cache_dir, name + ".fbank")
            if verify and file_sha256(data_path) != meta["data_sha256"]:
                raise FbankCacheError(f"{data_path} does not match its sha256")
    except (OSError, ValueError, KeyError) as err:
        logger.warning("fbank cache shard %s is damaged (%s): rebuilding it", name, err)
        return False
    return current


def _build_shard(job) -> dict:
    """Compute and write one shard; returns its metadata.  Runs in a pool worker."""
    cache_dir, name, expected, entries, features, dtype = job
    index = np.zeros(len(entries), dtype=INDEX_DTYPE)
    errors = {}
    digest = hashlib.sha256()
    rows = 0

    def write_data(handle):
        nonlocal rows
        for k, (line, audio_path) in enumerate(entries):
            index[k]["line"], index[k]["start"] = line, rows
            # stamped before reading: a file replaced during the build is seen as changed
            index[k]["size"], index[k]["mtime_ns"] = file_stamps([audio_path])[0]
            try:
                waveform = load_audio(audio_path, features.sample_rate)
            except AudioError as err:
                index[k]["samples"] = -1
                errors[str(line)] = str(err)
                continue
            index[k]["samples"] = waveform.numel()
            if num_frames(waveform.numel(), features) == 0:
                continue  # shorter than one window: the dataset reports it, as on the fly
            fbank = compute_fbank(waveform, features).numpy().astype(dtype)
            buffer = fbank.tobytes()
            handle.write(buffer)
            digest.update(buffer)
            index[k]["frames"], index[k]["crc32"] = fbank.shape[0], zlib.crc32(buffer)
            rows += fbank.shape[0]

    with atomic_open(os.path.join(cache_dir, name + ".fbank")) as handle:
        write_data(handle)
    index_path = os.path.join(cache_dir, name + ".index.npy")
    atomic_save_npy(index_path, index)
    meta = dict(
        expected,
        num_clips=len(entries),
        num_rows=rows,
        data_sha256=digest.hexdigest(),
        index_sha256=file_sha256(index_path),
        errors=errors,
    )
    atomic_write_json(os.path.join(cache_dir, name + ".json"), meta)
    return meta


def build_split(
    manifest_path: str,
    cache_dir: str,
    split: str,
    features: FbankConfig,
    clips_per_shard: int = 2000,
    dtype: str = "float32",
    workers: int = 1,
    verify: bool = False,
    log: Callable[[str], None] = logger.info,
) -> dict:
    """Build (or finish, or refresh) the cache of one manifest split; returns the split's
    metadata.  Complete shards built from the same manifest lines and settings are kept."""
    if dtype not in DTYPES:
        raise ValueError(f"dtype must be one of {DTYPES}, got {dtype!r}")
    if clips_per_shard < 1:
        raise ValueError("clips_per_shard must be >= 1")
    os.makedirs(cache_dir, exist_ok=True)
    manifest = read_manifest(manifest_path, skip_invalid=True)
    lines = ManifestLines(manifest_path)
    num_shards = (len(manifest) + clips_per_shard - 1) // clips_per_shard
    split_meta = {
        "format": FORMAT,
        "split": split,
        "manifest": os.path.abspath(manifest_path),
        "features": features_dict(features),
        "dtype": dtype,
        "clips_per_shard": clips_per_shard,
        "num_shards": num_shards,
    }
    jobs, kept = [], 0
    for shard in range(num_shards):
        entries = range(shard * clips_per_shard, min(len(manifest), (shard + 1) * clips_per_shard))
        first_line = int(manifest.line_numbers[entries[0]])
        last_line = int(manifest.line_numbers[entries[-1]])
        expected = {
            "format": FORMAT,
            "features": split_meta["features"],
            "dtype": dtype,
            "first_line": first_line,
            "last_line": last_line,
            "manifest_sha256": lines.fingerprint(first_line, last_line),
        }
        name = shard_name(split, shard)
        audio_paths = [manifest.audio_path(i) for i in entries]
        if _shard_is_current(cache_dir, name, expected, verify, audio_paths):
            kept += 1
            continue
        paths = [(int(manifest.line_numbers[i]), manifest.audio_path(i)) for i in entries]
        jobs.append((cache_dir, name, expected, paths, features, dtype))
    split_path = os.path.join(cache_dir, split + ".json")
    if jobs and os.path.exists(split_path):
        os.remove(split_path)  # incomplete until every shard is rebuilt
    status = f"{kept} complete, {len(jobs)} to build"
    log(f"{split}: {len(manifest)} clips in {num_shards} shards; {status}")
    if workers > 1 and len(jobs) > 1:
        import multiprocessing

        import torch

        # one shard per process, one thread each: the processes fill the cores
        pool = multiprocessing.get_context("fork").Pool(
            min(workers, len(jobs)), initializer=torch.set_num_threads, initargs=(1,)
        )
        with pool:
            for done, meta in enumerate(pool.imap_unordered(_build_shard, jobs), start=1):
                log(f"{split}: lines {meta['first_line']}-{meta['last_line']} ({done}/{len(jobs)})")
    else:
        for done, job in enumerate(jobs, start=1):
            meta = _build_shard(job)
            log(f"{split}: lines {meta['first_line']}-{meta['last_line']} ({done}/{len(jobs)})")
    # Shards of an earlier, longer build of this split are not part of it any more.
    shard = num_shards
    while os.path.exists(os.path.join(cache_dir, shard_name(split, shard) + ".json")):
        for suffix in (".json", ".fbank", ".index.npy"):
            path = os.path.join(cache_dir, shard_name(split, shard) + suffix)
            if os.path.exists(path):
                os.remove(path)
        shard += 1
    atomic_write_json(split_path, split_meta)
    return split_meta


# ------------------------------------------------------------------------------------------------
# Reading


def _check_shard_files(cache_dir: str, name: str, meta: dict) -> np.ndarray:
    """Checks the index sha256 and the data size of a shard; returns its index."""
    index_path = os.path.join(cache_dir, name + ".index.npy")
    if file_sha256(index_path) != meta["index_sha256"]:
        raise FbankCacheError(f"fbank cache shard {index_path} does not match its sha256: corrupt")
    index = np.load(index_path)
    data_path = os.path.join(cache_dir, name + ".fbank")
    itemsize = np.dtype(meta["dtype"]).itemsize
    expected = meta["num_rows"] * meta["features"]["num_mel_bins"] * itemsize
    if os.path.getsize(data_path) != expected:
        raise FbankCacheError(
            f"fbank cache shard {data_path} has {os.path.getsize(data_path)} bytes, expected "
            f"{expected}: truncated or corrupt"
        )
    return index


def _open_shard(cache_dir: str, name: str, lines: ManifestLines, manifest_path: str, rebuild: str):
    """A shard's metadata and index, checked against the manifest lines it was built from."""
    meta_path = os.path.join(cache_dir, name + ".json")
    try:
        with open(meta_path, encoding="utf-8") as handle:
            meta = json.load(handle)
        first, last = meta["first_line"], meta["last_line"]
        in_file = last <= len(lines.starts) - 1
        if not in_file or meta["manifest_sha256"] != lines.fingerprint(first, last):
            raise FbankCacheError(
                f"fbank cache shard {meta_path} is stale: lines {first}-{last} of {manifest_path} "
                f"changed since it was built; {rebuild} (only stale shards are rebuilt)"
            )
        return meta, _check_shard_files(cache_dir, name, meta)
    except FbankCacheError:
        raise
    except (OSError, ValueError, KeyError) as err:
        message = f"fbank cache shard {meta_path} is unreadable ({err}); {rebuild}"
        raise FbankCacheError(message) from err


class FbankCache:
    """The cached fbank of a manifest's entries, read by entry index (as in the dataset)."""

    MAX_OPEN_SHARDS = 8  # memory maps hold a file descriptor each; keep a few open

    def __init__(
        self, cache_dir: str, split: str, shard_metas: list[dict], records, shard_of,
        manifest: Manifest, rebuild: str = "",
    ):
        self.cache_dir = cache_dir
        self.manifest = manifest  # the audio file of each entry, checked at every read
        self.rebuild = rebuild
        self.split = split
        self.dtype = np.dtype(shard_metas[0]["dtype"])
        self.num_mel_bins = shard_metas[0]["features"]["num_mel_bins"]
        self._names = [shard_name(split, i) for i in range(len(shard_metas))]
        self._rows = [meta["num_rows"] for meta in shard_metas]
        self._errors: dict[int, str] = {
            int(line): message for meta in shard_metas for line, message in meta["errors"].items()
        }
        self._records = records  # INDEX_DTYPE, one per manifest entry
        self._shard_of = shard_of  # int32, one per manifest entry
        self._open = collections.OrderedDict()

    @classmethod
    def open(cls, cache_dir: str, split: str, manifest: Manifest, features) -> "FbankCache":
        """Open the cache of ``split`` for the entries of ``manifest`` (as the task read it);
        raises :class:`FbankCacheError` naming the shard if it is missing, stale or corrupt."""
        data_dir = os.path.dirname(manifest.path) or "."
        rebuild = f"build it with: mae-ast-precompute-fbank {data_dir} {cache_dir} --splits {split}"
        split_path = os.path.join(cache_dir, split + ".json")
        if not os.path.isfile(split_path):
            raise FbankCacheError(
                f"no complete fbank cache of split '{split}' in {cache_dir}: {rebuild}"
            )
        with open(split_path, encoding="utf-8") as handle:
            split_meta = json.load(handle)
        if split_meta.get("format") != FORMAT:
            raise FbankCacheError(
                f"{split_path}: unknown format {split_meta.get('format')!r}; {rebuild}"
            )
        if split_meta["features"] != features_dict(features):
            raise FbankCacheError(
                f"{split_path}: built with features {split_meta['features']}, the task uses "
                f"{features_dict(features)}; {rebuild} (and the task's features options)"
            )
        lines = ManifestLines(manifest.path)
        metas, indices = [], []
        for shard in range(split_meta["num_shards"]):
            name = shard_name(split, shard)
            meta, index = _open_shard(cache_dir, name, lines, manifest.path, rebuild)
            metas.append(meta)
            indices.append(index)
        cached = np.concatenate(indices)
        shards = np.repeat(np.arange(len(indices), dtype=np.int32), [len(i) for i in indices])
        position = np.searchsorted(cached["line"], manifest.line_numbers)
        position = np.minimum(position, len(cached) - 1)
        missing = np.flatnonzero(cached["line"][position] != manifest.line_numbers)
        if len(missing):
            raise FbankCacheError(
                f"the fbank cache of split '{split}' in {cache_dir} has no entry for "
                f"{manifest.path}:{manifest.line_numbers[missing[0]]} ({len(missing)} entries "
                f"missing): the manifest changed since the cache was built; {rebuild}"
            )
        logger.info("fbank cache %s: %s, %d clips", cache_dir, split, len(manifest))
        return cls(cache_dir, split, metas, cached[position], shards[position], manifest, rebuild)

    def _data(self, shard: int) -> np.ndarray:
        data = self._open.pop(shard, None)
        if data is None:
            path = os.path.join(self.cache_dir, self._names[shard] + ".fbank")
            if self._rows[shard] == 0:
                data = np.zeros((0, self.num_mel_bins), dtype=self.dtype)
            else:
                shape = (self._rows[shard], self.num_mel_bins)
                data = np.memmap(path, dtype=self.dtype, mode="r", shape=shape)
            while len(self._open) >= self.MAX_OPEN_SHARDS:
                self._open.popitem(last=False)
        self._open[shard] = data
        return data

    def read(self, index: int) -> tuple[np.ndarray, int]:
        """The whole clip's fbank rows (as stored: a read-only view) and its length in samples at
        ``features.sample_rate``.  Raises :class:`AudioError` for a clip the build could not read
        (with the build's message) and :class:`FbankCacheError` for corrupt data."""
        record = self._records[index]
        size, mtime_ns = file_stamps([self.manifest.audio_path(index)])[0]
        if size != record["size"] or mtime_ns != record["mtime_ns"]:
            raise FbankCacheError(
                f"the fbank cache of split '{self.split}' in {self.cache_dir} is stale for "
                f"{self.manifest.where(index)}: the audio file changed since it was cached "
                f"(size {record['size']} -> {size} bytes, modification time changed: "
                f"{record['mtime_ns'] != mtime_ns}); {self.rebuild} (only shards whose audio "
                "changed are rebuilt)"
            )
        if record["samples"] < 0:
            raise AudioError(self._errors[int(record["line"])])
        shard = int(self._shard_of[index])
        rows = self._data(shard)[record["start"] : record["start"] + record["frames"]]
        if zlib.crc32(rows) != record["crc32"]:
            raise FbankCacheError(
                f"fbank cache shard {os.path.join(self.cache_dir, self._names[shard])}.fbank is "
                f"corrupt: the clip of manifest line {record['line']} fails its crc32 check; "
                "rebuild it with mae-ast-precompute-fbank --verify"
            )
        return rows, int(record["samples"])

    def samples(self) -> np.ndarray:
        """Every entry's length in samples at ``features.sample_rate`` (int64, -1: unreadable)."""
        return self._records["samples"].astype(np.int64)

    def __getstate__(self):
        # Loader workers started by pickling (spawn) open their own memory maps.
        state = dict(self.__dict__)
        state["_open"] = collections.OrderedDict()
        return state
