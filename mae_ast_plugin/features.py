"""Audio loading and the log-mel filterbank front end.

This module is the one place where audio becomes model input.  Pretraining, fine-tuning,
feature extraction and the plotting tools all go through :func:`load_audio` and
:func:`compute_fbank`, configured by one :class:`FbankConfig` that is stored in every
checkpoint (``cfg.task.features``), so a model is always fed the features it was trained on.
"""

from dataclasses import dataclass, field

import numpy as np
import torch


class AudioError(ValueError):
    """A clip that cannot be turned into features (unreadable, empty, non-finite, too short)."""


@dataclass
class FbankConfig:
    """Kaldi log-mel filterbank settings; the defaults are the paper's (and the authors' code).

    A plain dataclass, so features compute without fairseq; ``tasks.audio_task`` extends it
    into the fairseq config node ``task.features``."""

    sample_rate: int = field(
        default=16000, metadata={"help": "audio is resampled to this rate before the filterbank"}
    )
    num_mel_bins: int = field(default=128, metadata={"help": "number of mel filters"})
    frame_length_ms: float = field(default=25.0, metadata={"help": "analysis window length"})
    frame_shift_ms: float = field(default=10.0, metadata={"help": "hop between frames"})


def window_samples(cfg: FbankConfig) -> int:
    return int(round(cfg.sample_rate * cfg.frame_length_ms / 1000.0))


def shift_samples(cfg: FbankConfig) -> int:
    return int(round(cfg.sample_rate * cfg.frame_shift_ms / 1000.0))


def num_frames(num_samples: int, cfg: FbankConfig) -> int:
    """Frames Kaldi produces for ``num_samples`` samples (``snip_edges=True``)."""
    window = window_samples(cfg)
    if num_samples < window:
        return 0
    return 1 + (num_samples - window) // shift_samples(cfg)


def load_audio(path: str, sample_rate: int) -> torch.Tensor:
    """Read any soundfile-readable file as a mono float32 waveform at ``sample_rate``.

    Raises :class:`AudioError` for unreadable, empty or non-finite audio, so that callers can
    report the manifest line it came from.
    """
    import soundfile

    try:
        wav, native_rate = soundfile.read(path, dtype="float32", always_2d=True)
    except Exception as err:  # soundfile raises several types (LibsndfileError, RuntimeError, ...)
        raise AudioError(f"cannot read audio file {path}: {err}") from err
    if wav.shape[0] == 0:
        raise AudioError(f"audio file {path} is empty (0 samples)")
    if not np.isfinite(wav).all():
        raise AudioError(f"audio file {path} contains NaN or infinite samples")
    waveform = torch.from_numpy(wav.mean(axis=1))  # mono mixdown
    if native_rate != sample_rate:
        import torchaudio.functional

        waveform = torchaudio.functional.resample(waveform, native_rate, sample_rate)
    return waveform


def compute_fbank(waveform: torch.Tensor, cfg: FbankConfig) -> torch.Tensor:
    """Log-mel filterbank of a mono waveform at ``cfg.sample_rate``: (frames, num_mel_bins).

    Exactly the authors' call: ``torchaudio.compliance.kaldi.fbank`` with ``use_energy=False``
    and every other option at its Kaldi default (povey window, dither 0, pre-emphasis 0.97,
    DC removal, snip_edges).  No waveform mean removal and no dataset normalisation: the
    model normalises with its own BatchNorm.
    """
    import torchaudio.compliance.kaldi

    if waveform.dim() != 1:
        raise ValueError(f"expected a mono waveform (1-D), got shape {tuple(waveform.shape)}")
    if num_frames(waveform.numel(), cfg) == 0:
        raise AudioError(
            f"clip of {waveform.numel()} samples is shorter than one "
            f"{cfg.frame_length_ms} ms analysis window"
        )
    return torchaudio.compliance.kaldi.fbank(
        waveform.unsqueeze(0),
        sample_frequency=cfg.sample_rate,
        num_mel_bins=cfg.num_mel_bins,
        frame_length=cfg.frame_length_ms,
        frame_shift=cfg.frame_shift_ms,
        use_energy=False,
    )


def pad_features(features, num_mel_bins: int):
    """Stack (T_i, F) feature tensors into (B, T_max, F) with a True-at-padding mask (B, T_max)."""
    lengths = torch.tensor([f.shape[0] for f in features], dtype=torch.long)
    longest = int(lengths.max()) if len(features) else 0
    batch = features[0].new_zeros((len(features), longest, num_mel_bins))
    for i, feat in enumerate(features):
        batch[i, : feat.shape[0]] = feat
    padding_mask = torch.arange(longest).unsqueeze(0) >= lengths.unsqueeze(1)
    return batch, padding_mask
