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


def file_stamps(paths, threads: int = 16) -> list[tuple[int, int]]:
    """``(size in bytes, modification time in ns)`` of each path, ``(-1, -1)`` where it cannot
    be stat'ed: what tells a file replaced by different content of the same length (same manifest
    line, new bytes) without reading it.  ``threads`` stat calls run at once (network storage
    answers each after a round trip)."""
    import os
    from concurrent.futures import ThreadPoolExecutor

    def stamp(path):
        try:
            info = os.stat(path)
        except OSError:
            return (-1, -1)
        return (info.st_size, info.st_mtime_ns)

    paths = list(paths)
    if len(paths) < 64:
        return [stamp(path) for path in paths]
    with ThreadPoolExecutor(max_workers=threads) as pool:
        return list(pool.map(stamp, paths, chunksize=256))


def manifest_fingerprint(manifest) -> str:
    """Hex sha256 of everything a manifest's clips depend on: the manifest file's bytes and the
    size and modification time of every audio file it lists (``manifest.audio_path``), so an
    edited line and a re-recorded or replaced audio file both change it."""
    digest = hashlib.sha256(file_sha256(manifest.path).encode())
    paths = (manifest.audio_path(i) for i in range(len(manifest)))
    for size, mtime_ns in file_stamps(paths):
        digest.update(f"{size} {mtime_ns}\n".encode())
    return digest.hexdigest()


def inputs_fingerprint(paths) -> dict:
    """``{path: digest}`` of the inputs a run reads, for skipping a run only when none changed:
    a file's sha256; for a directory (a data directory), the sha256 of its manifests, label
    files, class lists and configs (``*.tsv``, ``*.lbl``, ``*.csv``, ``*.yaml``, ``*.json``,
    recursively) and the size and modification time of the audio every ``*.tsv`` lists; None
    for a path that does not exist."""
    import os

    result = {}
    for path in paths:
        path = os.path.abspath(str(path))
        if os.path.isfile(path):
            result[path] = file_sha256(path)
        elif os.path.isdir(path):
            digest = hashlib.sha256()
            for folder, dirs, names in sorted(os.walk(path)):
                dirs.sort()
                for name in sorted(names):
                    if not name.endswith((".tsv", ".lbl", ".csv", ".yaml", ".json")):
                        continue
                    item = os.path.join(folder, name)
                    digest.update(f"{os.path.relpath(item, path)}\0{file_sha256(item)}\n".encode())
                    if name.endswith(".tsv"):
                        digest.update(_manifest_audio_stamps(item).encode())
            result[path] = digest.hexdigest()
        else:
            result[path] = None
    return result


def _manifest_audio_stamps(tsv_path: str) -> str:
    """The stamps of the audio files a fairseq manifest lists (line 1: root; then path<TAB>...);
    '' for a file that is not such a manifest."""
    import os

    with open(tsv_path, "rb") as handle:
        lines = handle.read().decode("utf-8", errors="replace").splitlines()
    if not lines:
        return ""
    root = lines[0].lstrip("\ufeff").strip()
    paths = [os.path.join(root, line.split("\t")[0]) for line in lines[1:] if "\t" in line]
    return "".join(f"{size} {mtime}\n" for size, mtime in file_stamps(paths))
