"""A fairseq dataset that reads manifest clips and returns log-mel filterbanks."""

import logging

import numpy as np
import torch
from fairseq.data import FairseqDataset

from ..features import (
    AudioError,
    FbankConfig,
    compute_fbank,
    load_audio,
    num_frames,
    pad_features,
    shift_samples,
)
from .fbank_cache import FbankCache
from .manifest import SKIP_ADVICE, Manifest, native_sample_rates

logger = logging.getLogger(__name__)


class FbankAudioDataset(FairseqDataset):
    """Clips of a manifest as (frames, mel) filterbanks, cropped to ``max_sample_len_s``.

    Clips longer than the maximum are cropped (at a random offset when ``random_crop``, else
    from the start); shorter ones are padded in the batch with a padding mask, never cropped to
    the batch's shortest clip.  A bad clip raises an error naming the manifest line, or with
    ``skip_invalid`` is logged and counted in the batch's ``num_skipped``.  Sizes (``num_tokens``,
    what ``dataset.max_tokens`` budgets) are samples at ``features.sample_rate`` (16 kHz), each
    clip counted up to the crop, whatever the file's native rate.  With ``fbank_cache``
    the features come from a precomputed cache (:mod:`.fbank_cache`) instead of the audio: the
    same values, rows of the whole clip's fbank cut at the same crop.
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
        waveforms: bool = False,
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
        # Filterbanks on the model's device: the loader only reads, mixes down, resamples and
        # crops; the task computes the batch's fbank (features.batched_fbank).  A cache is
        # read as features, as before.
        self.waveforms = waveforms and fbank_cache is None
        # Static shapes (task.static_shapes): pad every batch to the crop and to this many clips.
        self.pad_to_crop = False
        self.pad_to_clips = 0
        self.epoch = 1
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

    def set_epoch(self, epoch):
        self.epoch = epoch

    def _crop_start(self, index: int, length: int) -> int:
        """Where the crop starts, in samples: a whole number of frame shifts, so that the
        crop's fbank is rows of the whole clip's fbank (what the fbank cache stores)."""
        if length <= self.max_samples or not self.random_crop:
            return 0
        shift = shift_samples(self.features)
        rng = np.random.default_rng([self.seed, self.epoch, index])
        return shift * int(rng.integers(0, (length - self.max_samples) // shift + 1))

    def load_features(self, index: int) -> torch.Tensor:
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
        if self.waveforms:
            return waveform[start : start + self.max_samples].contiguous()
        return compute_fbank(waveform[start : start + self.max_samples], self.features)

    def __getitem__(self, index):
        """``{"id", "source"}``: the (frames, mel) fbank, or with ``waveforms`` the cropped
        waveform (samples,) at ``features.sample_rate``; ``source`` None for a skipped clip."""
        try:
            return {"id": index, "source": self.load_features(index)}
        except AudioError as err:
            message = f"{self.manifest.where(index)}: {err}"
            if not self.skip_invalid:
                raise AudioError(
                    f"{message} (fix or remove the line, or {SKIP_ADVICE})"
                ) from err
            logger.warning("skipping %s", message)
            return {"id": index, "source": None}

    def collater(self, samples):
        valid = [s for s in samples if s["source"] is not None]
        num_skipped = len(samples) - len(valid)
        if not valid:
            return {}
        sources = [s["source"] for s in valid]
        if len(sources) > self.pad_to_clips > 0:
            raise ValueError(
                f"a batch of {len(sources)} clips exceeds the static batch of {self.pad_to_clips} "
                "(task.static_shapes batches by dataset.batch_size)"
            )
        if self.waveforms:
            waveform, padding = pad_features(
                sources, 0, self.max_samples if self.pad_to_crop else 0, self.pad_to_clips
            )
            net_input = {"waveform": waveform, "waveform_lengths": (~padding).sum(1)}
        else:
            frames = num_frames(self.max_samples, self.features) if self.pad_to_crop else 0
            source, padding_mask = pad_features(
                sources, self.features.num_mel_bins, frames, self.pad_to_clips
            )
            net_input = {"source": source, "padding_mask": padding_mask}
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
        # Sort by length (longest first) so batches hold similar lengths and little padding;
        # the random permutation breaks ties differently each epoch.
        rng = np.random.default_rng([self.seed, self.epoch])
        return np.lexsort([rng.permutation(len(self)), self.sizes])[::-1]
