"""A fairseq dataset that reads manifest clips and returns log-mel filterbanks."""

import logging
from typing import Optional

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
from .manifest import SKIP_ADVICE, Manifest

logger = logging.getLogger(__name__)


class FbankAudioDataset(FairseqDataset):
    """Clips of a manifest as (frames, mel) filterbanks, cropped to ``max_sample_len_s``.

    Clips longer than the maximum are cropped (at a random offset when ``random_crop``, else
    from the start); shorter ones are padded in the batch with a padding mask, never cropped to
    the batch's shortest clip.  A bad clip raises an error naming the manifest line, or with
    ``skip_invalid`` is logged and counted in the batch's ``num_skipped``.  With ``fbank_cache``
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
        fbank_cache: Optional[FbankCache] = None,
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
        self.epoch = 1
        # Batching counts manifest samples, capped at the crop length.  The manifest counts at
        # the file's native rate, so batches of non-16 kHz audio are sized in that unit.
        self.sizes = np.minimum(manifest.sizes, self.max_samples)

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
                f"the {self.min_frames} frames of one token"
            )
        if self.fbank_cache is not None:
            first = start // shift_samples(self.features)
            return torch.from_numpy(np.array(whole_fbank[first : first + frames], dtype=np.float32))
        return compute_fbank(waveform[start : start + self.max_samples], self.features)

    def __getitem__(self, index):
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
        source, padding_mask = pad_features([s["source"] for s in valid], self.features.num_mel_bins)
        return {
            "id": torch.tensor([s["id"] for s in valid], dtype=torch.long),
            "net_input": {"source": source, "padding_mask": padding_mask},
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
