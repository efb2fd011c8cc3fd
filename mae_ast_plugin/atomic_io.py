"""Atomic file writing, the one place every writer of the package goes through.

A file is written under a temporary name in its own directory, flushed to disk and renamed over
the target with ``os.replace``, so a reader (or a run killed half way) sees the old file or the
new one, never a part.  Temporary files are created with mode 0o666 less the umask, as ``open``
would (``tempfile``'s private 0o600 would make outputs unreadable to the group), and are removed
when writing fails.  JSON is strict: NaN or infinity is an error, never a non-standard token.
"""

import json
import math
import os
from contextlib import contextmanager


def _file_mode() -> int:
    """The mode ``open`` gives a new file: 0o666 less the process's umask."""
    mask = os.umask(0)
    os.umask(mask)
    return 0o666 & ~mask


@contextmanager
def atomic_target(path: str):
    """Yield a temporary path in ``path``'s directory (created if missing); when the block ends
    without an error it replaces ``path``.  For writers that want a file name (``savefig``,
    ``torch.save``, ``soundfile.write``); :func:`atomic_open` gives a handle instead."""
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    temporary = os.path.join(directory, f".{os.path.basename(path)}.{os.getpid()}.tmp")
    try:
        yield temporary
        # writers that create the file themselves (safetensors' save_file) may make it private
        os.chmod(temporary, _file_mode())
        os.replace(temporary, path)
    finally:
        if os.path.exists(temporary):
            os.remove(temporary)


@contextmanager
def atomic_open(path: str):
    """Yield a binary file handle; on success its bytes are flushed, synced to disk and renamed
    to ``path`` (see :func:`atomic_target`)."""
    with atomic_target(path) as temporary:
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o666)
        with os.fdopen(fd, "wb") as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())


def atomic_write_text(path: str, text: str) -> None:
    """Write ``text`` to ``path`` as UTF-8, line ends as given (no ``\\r\\n`` translation)."""
    with atomic_open(path) as handle:
        handle.write(text.encode("utf-8"))


def nan_to_null(value):
    """``value`` with every float NaN or infinity, at any depth of dicts, lists and tuples,
    replaced by None: for results where a measurement could not be made (a diverged loss), so
    that strict JSON writes null instead of failing."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {key: nan_to_null(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [nan_to_null(item) for item in value]
    return value


def atomic_write_json(path: str, content) -> None:
    """Write ``content`` as strict JSON (``allow_nan=False``: a NaN or infinity is a
    ``ValueError`` here, never a non-standard ``NaN`` token in the file), indented by one."""
    atomic_write_text(path, json.dumps(content, indent=1, allow_nan=False) + "\n")


def atomic_save_npy(path: str, array) -> None:
    """Write ``array`` in numpy's ``.npy`` format (``numpy.save``; no pickled objects)."""
    import numpy as np  # here, so that the text writers need no numpy

    with atomic_open(path) as handle:
        np.save(handle, array, allow_pickle=False)


def atomic_write_audio(path: str, data, sample_rate: int, subtype: str = "PCM_16") -> None:
    """Write ``data`` (float samples in [-1, 1], shape (samples,) or (samples, channels)) as a
    wav file at ``sample_rate`` Hz, ``subtype`` as in ``soundfile.write``."""
    import soundfile  # here, so that the text writers need no libsndfile

    with atomic_target(path) as temporary:
        soundfile.write(temporary, data, sample_rate, subtype=subtype, format="WAV")
