"""Content hashes of files: the one sha256 reader behind the manifest rate cache, the fbank
cache's integrity checks, export provenance
and the probe's embedding cache keys.  Needs nothing beyond the standard library."""

import hashlib


def file_sha256(path: str) -> str:
    """Hex sha256 of the bytes of the file at ``path``, read in 16 MiB blocks (constant memory
    for multi-GB caches).  Raises OSError if the file cannot be read."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 24), b""):
            digest.update(block)
    return digest.hexdigest()
