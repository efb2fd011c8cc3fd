"""A fairseq dataset that reads manifest clips and yields cropped waveforms (or cached fbank)."""

import logging

import numpy as np
import torch
from fairseq.data import FairseqDataset

from ..features import (
    AudioError,
    FbankConfig,
    load_audio,
    num_frames,
    pad_features,
    shift_samples,
)
from .fbank_cache import FbankCache
from .manifest import SKIP_ADVICE, Manifest, native_sample_rates

logger = logging.getLogger(__name__)


class FbankAudioDataset(FairseqDataset):
    """Clips of a manifest as cropped mono waveforms (the models compute their filterbanks), or
    with ``fbank_cache`` as precomputed filterbank rows; batches are the model inputs documented
    in :mod:`mae_ast_plugin.features`.

    The loader only reads, mixes down, resamples and crops.  Clips longer than
    ``max_sample_len_s`` are cropped (at a random offset when ``random_crop``, else from the
    start); shorter ones are padded in the batch with a padding mask, never cropped to the
    batch's shortest clip.  A bad clip raises an error naming the manifest line, or with
    ``skip_invalid`` is logged and counted in the batch's ``num_skipped``.  Sizes
    (``num_tokens``, what ``dataset.max_tokens`` budgets) are samples at
    ``features.sample_rate`` (16 kHz), each clip counted up to the crop, whatever the file's
    native rate.  With ``fbank_cache`` the features come from a precomputed cache
    (:mod:`.fbank_cache`): the same values, rows of the whole clip's fbank cut at the same crop.

    Static shapes (``task.static_shapes``): ``pad_to_crop`` pads every batch to the crop,
    ``pad_to_clips`` (> 0) adds rows of pure padding up to that many clips.

    The random crop of a clip is a function of ``(seed, epoch, clip)``.  The epoch lives in
    shared memory, so :meth:`set_epoch` in the training process reaches loader workers that
    outlive an epoch (``task.persistent_workers``) as well as new ones: crops do not depend on
    ``dataset.num_workers``, and a resumed run crops as the uninterrupted one did.
    """

    def __init__(
        self,
        manifest: Manifest,
        features: FbankConfig,
        max_sample_len_s: float,
        random_crop: bool,
        min_frames: int = 1,
        skip_invalid: bool = False,
        seed: int = 1,
        shuffle: bool = True,
        fbank_cache: FbankCache | None = None,
        sample_rates: np.ndarray | None = None,
        pad_to_crop: bool = False,
        pad_to_clips: int = 0,
    ):
        super().__init__()
        self.manifest = manifest
        self.features = features
        self.max_samples = int(round(max_sample_len_s * features.sample_rate))
        self.random_crop = random_crop
        self.min_frames = max(1, min_frames)
        self.skip_invalid = skip_invalid
        self.seed = seed
        self.shuffle = shuffle
        self.fbank_cache = fbank_cache
        self.pad_to_crop = bool(pad_to_crop)
        self.pad_to_clips = int(pad_to_clips or 0)
        # Written by set_epoch in the training process, read by the loader workers: a tensor in
        # shared memory, which forked and spawned workers alike map rather than copy.
        self._epoch = torch.ones(1, dtype=torch.int64).share_memory_()
        self.sizes = np.minimum(self._resampled_sizes(sample_rates), self.max_samples)

    def _resampled_sizes(self, sample_rates: np.ndarray | None) -> np.ndarray:
        """Clip lengths in samples at ``features.sample_rate`` (what the model sees), so that
        ``dataset.max_tokens`` is the same amount of audio whatever a file's native rate.  The
        manifest counts native-rate samples (``wav2vec_manifest.py``); the rate comes from the
        fbank cache's records, ``sample_rates`` (Hz per entry), or the file headers
        (:func:`native_sample_rates`, scanned once per manifest and cached)."""
        if self.fbank_cache is not None:
            samples = self.fbank_cache.samples()
            # unreadable clips (-1) keep their manifest size; reading them reports the error
            return np.where(samples >= 0, samples, self.manifest.sizes)
        if sample_rates is None:
            sample_rates = native_sample_rates(self.manifest)
        rate = self.features.sample_rate
        known = sample_rates > 0
        # ceil(frames * rate / native): resample_poly's output length
        scaled = -(-self.manifest.sizes * rate // np.where(known, sample_rates, rate))
        return np.where(known, scaled, self.manifest.sizes)

    def __len__(self):
        return len(self.manifest)

    @property
    def epoch(self) -> int:
        """The current epoch (1-based), as the training process last set it."""
        return int(self._epoch[0])

    def set_epoch(self, epoch):
        self._epoch[0] = int(epoch)

    def _crop_start(self, index: int, length: int) -> int:
        """Where the crop starts, in samples: a whole number of frame shifts, so that the
        crop's fbank is rows of the whole clip's fbank (what the fbank cache stores)."""
        if length <= self.max_samples or not self.random_crop:
            return 0
        shift = shift_samples(self.features)
        rng = np.random.default_rng([self.seed, self.epoch, index])
        return shift * int(rng.integers(0, (length - self.max_samples) // shift + 1))

    def load_clip(self, index: int) -> torch.Tensor:
        """Clip ``index`` cropped: the waveform (samples,) at ``features.sample_rate``, or with
        ``fbank_cache`` its filterbank rows (frames, num_mel_bins)."""
        if self.fbank_cache is not None:
            whole_fbank, length = self.fbank_cache.read(index)
        else:
            waveform = load_audio(self.manifest.audio_path(index), self.features.sample_rate)
            length = waveform.numel()
        start = self._crop_start(index, length)
        cropped = min(length - start, self.max_samples)
        frames = num_frames(cropped, self.features)
        if frames < self.min_frames:
            raise AudioError(
                f"clip gives {frames} filterbank frames ({cropped} samples), fewer than "
                f"the {self.min_frames} frames the model needs (at least one token, one to mask)"
            )
        if self.fbank_cache is not None:
            first = start // shift_samples(self.features)
            return torch.from_numpy(np.array(whole_fbank[first : first + frames], dtype=np.float32))
        return waveform[start : start + self.max_samples].contiguous()

    def __getitem__(self, index):
        """``{"id", "source"}``: the clip as :meth:`load_clip` returns it (a waveform, or cached
        filterbank rows); ``source`` None for a skipped clip."""
        try:
            return {"id": index, "source": self.load_clip(index)}
        except AudioError as err:
            message = f"{self.manifest.where(index)}: {err}"
            if not self.skip_invalid:
                raise AudioError(
                    f"{message} (fix or remove the line, or {SKIP_ADVICE})"
                ) from err
            logger.warning("skipping %s", message)
            return {"id": index, "source": None}

    def collater(self, samples):
        """``{"id", "net_input", "num_skipped"}``; ``net_input`` is ``{"source": (B, S),
        "padding_mask": (B, S)}`` of waveforms, or with ``fbank_cache`` ``{"fbank": (B, T, F),
        "padding_mask": (B, T)}`` (:mod:`mae_ast_plugin.features`).  Empty when every clip of
        the batch was skipped."""
        valid = [s for s in samples if s["source"] is not None]
        num_skipped = len(samples) - len(valid)
        if not valid:
            return {}
        clips = [s["source"] for s in valid]
        if len(clips) > self.pad_to_clips > 0:
            raise ValueError(
                f"a batch of {len(clips)} clips exceeds the static batch of {self.pad_to_clips} "
                "(task.static_shapes batches by dataset.batch_size)"
            )
        if self.fbank_cache is None:
            padded, padding_mask = pad_features(
                clips, 0, self.max_samples if self.pad_to_crop else 0, self.pad_to_clips
            )
            net_input = {"source": padded, "padding_mask": padding_mask}
        else:
            frames = num_frames(self.max_samples, self.features) if self.pad_to_crop else 0
            padded, padding_mask = pad_features(
                clips, self.features.num_mel_bins, frames, self.pad_to_clips
            )
            net_input = {"fbank": padded, "padding_mask": padding_mask}
        return {
            "id": torch.tensor([s["id"] for s in valid], dtype=torch.long),
            "net_input": net_input,
            "num_skipped": num_skipped,
        }

    def num_tokens(self, index):
        return int(self.sizes[index])

    def size(self, index):
        return int(self.sizes[index])

    def ordered_indices(self):
        if not self.shuffle:
            return np.arange(len(self))
        # Sort by length (longest first) so batches hold similar lengths and little padding,
        # ties broken by a random permutation.  Drawn once per run, from the seed alone (with
        # the first epoch's key, which runs have always used): fairseq orders a dataset once
        # and its epoch iterator reshuffles the batches each epoch (seed + epoch), so a run
        # resumed at a later epoch must order it as the uninterrupted run did.
        rng = np.random.default_rng([self.seed, 1])
        return np.lexsort([rng.permutation(len(self)), self.sizes])[::-1]
