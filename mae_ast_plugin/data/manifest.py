"""fairseq tsv manifests: line 1 is the audio root, then ``relative/path<TAB>num_samples``.

``num_samples`` is the clip length in samples at the file's native rate
(``soundfile.info().frames``),
as fairseq's ``wav2vec_manifest.py`` writes it.  Paths are kept in one UTF-8 blob with offsets
rather than a list of Python strings, so a 2M-line manifest costs tens of MB per loader worker
and its pages stay shared after fork.
"""

import logging
import os
from dataclasses import dataclass

import numpy as np

from ..errors import InputError
from ..hashing import file_sha256, file_stamps
from ..textfiles import iter_lines

logger = logging.getLogger(__name__)

# How to skip a bad manifest line or clip, in every tool that reads manifests through this
# package (the error text must name a remedy the printing tool offers).
SKIP_ADVICE = (
    "skip such lines: task.skip_invalid=true for fairseq-hydra-train, --skip-invalid for "
    "mae-ast-evaluate and mae-ast-extract-features"
)


class ManifestError(InputError):
    pass


@dataclass
class Manifest:
    path: str
    root: str
    sizes: np.ndarray  # int64 samples at the native rate
    line_numbers: np.ndarray  # 1-based line of each entry in ``path``
    _blob: bytes
    _offsets: np.ndarray  # len(self) + 1 offsets into _blob
    num_skipped_lines: int = 0

    def __len__(self) -> int:
        return len(self.sizes)

    def relative_path(self, index: int) -> str:
        return self._blob[self._offsets[index] : self._offsets[index + 1]].decode("utf-8")

    def audio_path(self, index: int) -> str:
        return os.path.join(self.root, self.relative_path(index))

    def where(self, index: int) -> str:
        """``manifest:line (file)`` for error messages."""
        return f"{self.path}:{self.line_numbers[index]} ({self.audio_path(index)})"


def read_manifest(path: str, skip_invalid: bool = False, min_samples: int = 0) -> Manifest:
    """Parse a manifest; malformed lines raise :class:`ManifestError` naming the file and line,
    or, with ``skip_invalid``, are logged and counted.  Entries shorter than ``min_samples``
    are dropped and counted (the ``min_sample_size`` filter)."""
    if not os.path.isfile(path):
        raise ManifestError(
            f"manifest {path} not found: create it with a prep script (mae-ast-prepare) or point "
            "task.data at the directory that holds {split}.tsv"
        )
    lines = iter_lines(path, ManifestError)  # UTF-8 (a BOM, CRLF read); else a named error
    _, root = next(lines, (1, ""))
    if not root or "\t" in root:
        raise ManifestError(
            f"{path}:1: the first line must be the audio root directory, got {root!r}"
        )
    sizes, line_numbers, offsets, chunks = [], [], [0], []
    skipped_lines = too_short = 0
    for line_no, line in lines:
        if not line:
            continue
        fields = line.split("\t")
        problem = None
        if len(fields) != 2:
            problem = f"expected 2 tab-separated fields (path, num_samples), got {len(fields)}"
        else:
            try:
                size = int(fields[1])
                if size < 0:
                    problem = f"num_samples must be >= 0, got {size}"
            except ValueError:
                problem = f"num_samples must be an integer, got {fields[1]!r}"
        if problem is not None:
            message = f"{path}:{line_no}: {problem}: {line!r}"
            if not skip_invalid:
                raise ManifestError(
                    f"{message} (fix the line, or {SKIP_ADVICE})"
                )
            logger.warning("skipping %s", message)
            skipped_lines += 1
            continue
        if size < min_samples:
            too_short += 1
            continue
        encoded = fields[0].encode("utf-8")
        chunks.append(encoded)
        offsets.append(offsets[-1] + len(encoded))
        sizes.append(size)
        line_numbers.append(line_no)
    if too_short:
        logger.info("%s: dropped %d clips shorter than %d samples", path, too_short, min_samples)
    if not sizes:
        raise ManifestError(f"{path}: no usable entries (skipped {skipped_lines + too_short})")
    logger.info("%s: %d clips, root %s", path, len(sizes), root)
    return Manifest(
        path=path,
        root=root,
        sizes=np.asarray(sizes, dtype=np.int64),
        line_numbers=np.asarray(line_numbers, dtype=np.int64),
        _blob=b"".join(chunks),
        _offsets=np.asarray(offsets, dtype=np.int64),
        num_skipped_lines=skipped_lines,
    )


# 2: keyed by each audio file's size and modification time too (1: by the manifest's bytes only,
# so a file replaced by one at another rate kept its old rate)
RATES_FORMAT = "mae_ast_sample_rates/2"


def _rates_cache_paths(manifest_path: str, sha: str):
    """Where the header scan is cached: beside the manifest (shared by every node of a
    cluster), else in the user's cache directory (a read-only manifest directory)."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return [
        manifest_path + ".rates.npz",
        os.path.join(base, "mae_ast_plugin", "sample_rates", sha + ".npz"),
    ]


def _read_rate(path: str) -> int:
    import soundfile

    try:
        return int(soundfile.info(path).samplerate)
    except Exception:  # unreadable here: loading the clip reports it with its manifest line
        return 0


def native_sample_rates(manifest: Manifest, threads: int = 16) -> np.ndarray:
    """Native sample rate (Hz, int64) of every entry, read from the file headers; 0 where a
    header cannot be read (the clip's load then reports the error with its manifest line).

    The scan is cached beside the manifest (``{manifest}.rates.npz``, or under
    ``~/.cache/mae_ast_plugin/sample_rates/`` when that directory is read-only), keyed by the
    manifest's sha256 and by each audio file's size and modification time: a later call stats
    every file (``threads`` at a time, since on network storage each waits on I/O) and reads
    again only the headers of files replaced since (a clip re-recorded at another rate under the
    same name and length is never given its old rate).  A header read is one ``soundfile.info``
    call."""
    from concurrent.futures import ThreadPoolExecutor

    sha = file_sha256(manifest.path)
    paths = _rates_cache_paths(manifest.path, sha)
    # Every line of the file (not only the entries kept by min_samples), so the cache serves
    # any filter.
    every = read_manifest(manifest.path, skip_invalid=True)
    audio = [every.audio_path(i) for i in range(len(every))]
    stamps = np.asarray(file_stamps(audio, threads), dtype=np.int64).reshape(-1, 2)
    rates = np.zeros(len(every), dtype=np.int64)
    stale = np.ones(len(every), dtype=bool)
    for cache_path in paths:
        try:
            with np.load(cache_path, allow_pickle=False) as cached:
                if (
                    str(cached["format"]) == RATES_FORMAT
                    and str(cached["sha256"]) == sha
                    and np.array_equal(cached["line_numbers"], every.line_numbers)
                ):
                    rates = cached["rates"].copy()
                    stale = (cached["stamps"] != stamps).any(axis=1)
                    break
        except (OSError, KeyError, ValueError):
            continue
    todo = np.flatnonzero(stale)
    if len(todo):
        logger.info(
            "%s: reading the sample rate of %d audio file headers (%d new or changed)",
            manifest.path, len(every), len(todo),
        )
        with ThreadPoolExecutor(max_workers=threads) as pool:
            rates[todo] = np.fromiter(
                pool.map(_read_rate, (audio[i] for i in todo), chunksize=256),
                dtype=np.int64,
                count=len(todo),
            )
        unreadable = int((rates[todo] == 0).sum())
        if unreadable:
            logger.warning("%s: %d audio file headers could not be read", manifest.path, unreadable)
        for cache_path in paths:
            try:
                os.makedirs(os.path.dirname(cache_path) or ".", exist_ok=True)
                tmp = f"{cache_path}.{os.getpid()}.tmp.npz"
                np.savez(
                    tmp,
                    format=RATES_FORMAT,
                    sha256=sha,
                    line_numbers=every.line_numbers,
                    stamps=stamps,
                    rates=rates,
                )
                os.replace(tmp, cache_path)
                break
            except OSError as err:
                logger.info("cannot cache sample rates at %s (%s)", cache_path, err)
    position = np.searchsorted(every.line_numbers, manifest.line_numbers)
    return rates[position]
