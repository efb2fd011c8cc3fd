"""Audio of the dataset modules: finding the files under a directory and probing their
headers (``soundfile.info``) into manifest rows, with the missing and unreadable ones reported
as :class:`~.common.PrepError` or, with ``--skip-invalid``, logged, counted and left out.
"""

import logging
import os
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor

import soundfile

from .common import Clip, Entry, PrepError
from .summary import PrepSummary

logger = logging.getLogger("mae_ast_plugin.prep")

# Extensions libsndfile reads without extra parameters (``.raw`` would need a sample format).
AUDIO_EXTENSIONS = frozenset(
    {".wav", ".flac", ".ogg", ".oga", ".opus", ".mp3"}
    | {".aiff", ".aif", ".au", ".w64", ".rf64", ".caf"}
)


def find_audio_files(directory: str, extensions: Iterable[str] = AUDIO_EXTENSIONS) -> list[str]:
    """Absolute paths of the audio files under ``directory`` (recursive), sorted so that every
    run lists them in the same order whatever the file system returns."""
    wanted = {ext.lower() for ext in extensions}
    found = []
    for dirpath, dirnames, filenames in os.walk(directory, followlinks=True):
        dirnames[:] = [name for name in dirnames if not name.startswith(".")]
        for name in filenames:
            if not name.startswith(".") and os.path.splitext(name)[1].lower() in wanted:
                found.append(os.path.join(dirpath, name))
    return sorted(os.path.abspath(path) for path in found)


def _probe(path: str):
    try:
        return soundfile.info(path).frames
    except Exception as error:  # libsndfile raises several types; all mean "cannot read"
        return error


def measure_clips(
    entries: Sequence[Entry], *, skip_invalid: bool, summary: PrepSummary, workers: int = 1
) -> list[Clip]:
    """Probe every entry's audio header and return the readable ones as :class:`Clip`.

    A missing or unreadable file is a :class:`PrepError` naming the file (and the metadata line
    that listed it); with ``skip_invalid`` it is logged, counted in ``summary`` and left out.
    Problems are reported in input order, so the first error does not depend on ``workers``.
    """
    paths = [entry.path for entry in entries]
    if workers > 1 and len(paths) > 1:
        with ThreadPoolExecutor(max_workers=workers) as pool:  # header reads wait on I/O
            results = list(pool.map(_probe, paths, chunksize=64))
    else:
        results = [_probe(path) for path in paths]
    clips = []
    for entry, result in zip(entries, results, strict=True):
        if isinstance(result, int):
            clips.append(Clip(entry.path, result, entry.labels))
            continue
        missing = not os.path.isfile(entry.path)
        problem = "missing audio" if missing else "unreadable audio"
        detail = "not found" if missing else f"cannot be read ({result})"
        message = f"audio file {entry.path} {detail}"
        if entry.where:
            message = f"{entry.where}: {message}"
        if not skip_invalid:
            raise PrepError(message + "; use --skip-invalid to leave such files out")
        logger.warning("skipping: %s", message)
        summary.count(problem, entry.path)
    return clips
