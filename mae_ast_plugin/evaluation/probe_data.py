"""What ``mae-ast-probe`` (:mod:`.probe`) feeds its classifiers: the labelled splits of a
manifest directory and every clip's per-layer embeddings from a frozen encoder, cached on disk.

* :func:`read_task`: ``labels.csv`` and ``train/valid/test`` (``.tsv`` and ``.lbl``, the
  fine-tuning layout) read by the fine-tuning readers, so errors name the file and line.
* :func:`clip_embeddings`: per encoder layer, the mean of the layer's output over each clip's
  real tokens (padding excluded), (layers, clips, C) float32; the field's frozen evaluation
  (SUPERB's per-layer sweep, Yang et al. 2021; HEAR's frozen embeddings, Turian et al. 2022).
* :func:`cached_embeddings`: the same, stored under a key made of the checkpoint's digest
  (:func:`file_digest`), the manifest's bytes, each listed audio file's size and modification
  time, the random-init seed and
  :data:`EMBEDDING_FORMAT`, so a second probe of the same pair costs no encoder pass.
* :func:`random_init_encoder`: the control, the same architecture at fresh weights.
"""

import hashlib
import json
import os
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..atomic_io import atomic_open
from ..errors import InputError
from ..hashing import file_sha256, manifest_fingerprint

SPLITS = ("train", "valid", "test")
# Bumped when the embeddings change for the same checkpoint and manifest (cache key).
# 2: clips longer than 10 s are encoded in windows (encoder.Windowing).
EMBEDDING_FORMAT = 2


class ProbeError(InputError):
    """Unusable probe input (bad manifest directory, clip too short for one token)."""


# ----------------------------------------------------------------------------------------------
# The labelled task


@dataclass
class Split:
    name: str
    manifest: object  # data.manifest.Manifest
    targets: np.ndarray  # (N,) int64 class indices, or (N, C) 0/1 float32 for multi-label


def read_split(manifest_dir: str, split: str, num_classes: int, multi_label: bool) -> Split:
    """``{split}.tsv`` and ``{split}.lbl`` of the fine-tuning layout, read by the fine-tuning
    readers (errors name the file and line)."""
    from ..data.labelled_dataset import LabelError, read_clip_labels
    from ..data.manifest import read_manifest

    manifest = read_manifest(os.path.join(manifest_dir, f"{split}.tsv"))
    try:
        labels = read_clip_labels(
            os.path.join(manifest_dir, f"{split}.lbl"), manifest, num_classes, multi_label
        )
    except LabelError as err:
        if multi_label or "exactly one" not in str(err):
            raise
        raise LabelError(f"{err}; mae-ast-probe: pass --multi-label for such data") from None
    if multi_label:
        targets = np.zeros((len(labels), num_classes), dtype=np.float32)
        for row in range(len(labels)):
            targets[row, labels.of(row)] = 1.0
    else:
        targets = labels.values[labels.offsets[:-1]].astype(np.int64)
    return Split(split, manifest, targets)


def read_task(manifest_dir: str, multi_label: bool):
    """The class list and the three splits (``{name: Split}``) of a labelled manifest directory.
    Raises ProbeError when ``manifest_dir`` is not a directory, and the readers' LabelError,
    ManifestError or FileNotFoundError for bad or missing files."""
    from ..data.labelled_dataset import read_class_list

    if not os.path.isdir(manifest_dir):
        raise ProbeError(
            f"{manifest_dir} is not a directory: pass the directory holding train/valid/test.tsv, "
            "their .lbl files and labels.csv (the fine-tuning layout)"
        )
    classes = read_class_list(os.path.join(manifest_dir, "labels.csv"))
    splits = {s: read_split(manifest_dir, s, len(classes), multi_label) for s in SPLITS}
    check_class_coverage(manifest_dir, classes, splits, multi_label)
    return classes, splits


def _clips_per_class(split: Split, num_classes: int, multi_label: bool) -> np.ndarray:
    if multi_label:
        return (split.targets > 0.5).sum(axis=0).astype(np.int64)
    return np.bincount(split.targets, minlength=num_classes)


def check_class_coverage(manifest_dir: str, classes, splits: dict, multi_label: bool):
    """Raise ProbeError when the splits are too sparse for a linear probe: train must hold clips
    of at least two classes (a logistic regression needs two), and of every class that valid or
    test holds (a class the classifier never saw can never be predicted, so its clips would
    silently count as errors; for multi-label data its AP would be that of a constant score)."""
    path = os.path.join(manifest_dir, "train.lbl")
    train = _clips_per_class(splits["train"], len(classes), multi_label)
    if (train > 0).sum() < 2:
        raise ProbeError(
            f"{path}: train holds clips of {(train > 0).sum()} class(es); a linear probe needs "
            "at least two: give train clips of every class"
        )
    for split in ("valid", "test"):
        held = _clips_per_class(splits[split], len(classes), multi_label)
        unseen = np.flatnonzero((held > 0) & (train == 0))
        if len(unseen):
            names = ", ".join(f"{classes.names[i]!r} (index {i}, {held[i]} clips)"
                              for i in unseen[:5])
            more = f" and {len(unseen) - 5} more" if len(unseen) > 5 else ""
            raise ProbeError(
                f"{os.path.join(manifest_dir, split + '.lbl')}: {len(unseen)} class(es) with "
                f"clips in {split} have none in train: {names}{more}; the probe could never "
                "predict them: move clips of each class into train (or drop the class from "
                "labels.csv and every split)"
            )


# ----------------------------------------------------------------------------------------------
# Embeddings


def file_digest(path: str) -> str:
    """Hex sha256 of a file's bytes (:func:`mae_ast_plugin.hashing.file_sha256`), or for a
    directory (an exported checkpoint folder) the sha256 of its files' relative names and
    digests, sorted by name.  Raises OSError if a file cannot be read."""
    if not Path(path).is_dir():
        return file_sha256(path)
    digest = hashlib.sha256()
    for item in sorted(p for p in Path(path).rglob("*") if p.is_file()):
        digest.update(f"{item.relative_to(path).as_posix()}\0{file_sha256(str(item))}\n".encode())
    return digest.hexdigest()


def random_init_encoder(encoder, seed: int):
    """The encoder's architecture with the constructor's fresh weights drawn under ``seed``,
    keeping the input BatchNorm statistics (data statistics, not learnt weights)."""
    from ..encoder import MaeAstEncoder

    model = encoder.model
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        fresh = type(model)(model.cfg, features=model.front_end.cfg)
    fresh.batch_norm.load_state_dict(model.batch_norm.state_dict())
    return MaeAstEncoder(fresh, encoder.features, device=encoder.device)


def _tokens_per_clip(encoder, num_samples: int) -> int:
    from ..features import num_frames

    cfg = encoder.model.cfg
    frames = num_frames(num_samples, encoder.features)
    freq_blocks = max(1, encoder.features.num_mel_bins // cfg.token_mel_bins)
    return (frames // cfg.token_frames) * freq_blocks


def clip_embeddings(encoder, manifest, batch_size: int = 16, progress: bool = True) -> np.ndarray:
    """Mean-pooled embeddings (layers, N, C) float32 of every clip of ``manifest``: for each
    encoder layer, the mean of its output over the clip's real tokens.  Clips are batched by
    length (the encoder's output for a clip does not depend on the batch).  Raises AudioError
    (naming the manifest line) for an unreadable clip and ProbeError for one shorter than a
    token."""
    from tqdm import tqdm

    from ..features import AudioError, load_audio

    rate = encoder.features.sample_rate
    order = np.argsort(manifest.sizes, kind="stable")
    out = np.empty((encoder.num_layers, len(manifest), encoder.embed_dim), dtype=np.float32)
    bar = tqdm(total=len(manifest), desc=os.path.basename(manifest.path), unit="clip",
               disable=not progress, file=sys.stderr)
    for start in range(0, len(order), batch_size):
        ids = order[start : start + batch_size]
        waves = []
        for index in ids:
            try:
                wave = load_audio(manifest.audio_path(index), rate)
            except AudioError as err:
                raise AudioError(f"{manifest.where(index)}: {err}") from None
            if _tokens_per_clip(encoder, wave.numel()) == 0:
                raise ProbeError(
                    f"{manifest.where(index)}: {wave.numel() / rate:.3f} s is shorter than one "
                    f"token ({encoder.model.cfg.token_frames} frames): remove the line"
                )
            waves.append(wave)
        result = encoder.extract_features(waves, sample_rate=rate)
        real = (~result.padding_mask).unsqueeze(-1).float()
        count = real.sum(1)
        for layer, hidden in enumerate(result.hidden_states):
            out[layer, ids] = ((hidden.float() * real).sum(1) / count).cpu().numpy()
        bar.update(len(ids))
    bar.close()
    return out


def cached_embeddings(encoder, manifest, cache_dir, key_parts: dict, batch_size=16, progress=True):
    """:func:`clip_embeddings`, read from ``cache_dir`` (None: no cache) when the same checkpoint,
    manifest bytes, audio files (size and modification time of each) and settings
    (``key_parts``) were embedded before; returns (embeddings,
    "hit" or "miss").  A new entry is written atomically."""
    # the manifest's bytes and every clip's size and modification time: a re-recorded clip
    # of the same name is embedded again, never served from the cache
    key = dict(key_parts, manifest=manifest_fingerprint(manifest), format=EMBEDDING_FORMAT)
    name = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:40]
    path = Path(cache_dir) / f"{name}.npz" if cache_dir else None
    if path is not None and path.is_file():
        with np.load(path) as stored:
            embeddings = stored["embeddings"]
        if embeddings.shape[1] == len(manifest):
            return embeddings, "hit"
    embeddings = clip_embeddings(encoder, manifest, batch_size, progress)
    if path is not None:
        with atomic_open(str(path)) as handle:
            # a file object: np.savez would add ".npz" to a temporary name
            np.savez(handle, embeddings=embeddings, key=json.dumps(key, sort_keys=True))
    return embeddings, "miss"
