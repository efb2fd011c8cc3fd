"""Audio loading and the log-mel filterbank front end.

This module is the one place where audio becomes model input.  Loaders and tools read files
with :func:`load_audio` (mixdown, resampling); the models compute the Kaldi fbank inside their
``forward`` with :class:`KaldiFbank` (:func:`batched_fbank`), as wav2vec2, BEATs and
Hugging Face's audio models own their front ends; the fbank cache and the plotting tool use
:func:`compute_fbank`, the same computation for one clip.  One :class:`FbankConfig` configures
it and is stored in every checkpoint (``cfg.task.features``), so a model is always fed the
features it was trained on.

Model inputs (``net_input`` of every batch, the keyword arguments of the models' ``forward``),
one shape per input kind:

* waveforms: ``source`` (B, S) float32 mono samples at ``features.sample_rate`` (16 kHz),
  ``padding_mask`` (B, S) bool, True at padded samples (at the end of each row);
* precomputed filterbanks (``task.fbank_cache``): ``fbank`` (B, T, num_mel_bins) float32,
  ``padding_mask`` (B, T) bool, True at padded frames.

``padding_mask`` always runs along the time axis of the input given.
"""

from dataclasses import dataclass, field, fields

import numpy as np
import torch

from .errors import InputError


class AudioError(InputError):
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


# Integer sample formats and the divisor that maps their full scale to [-1, 1), as libsndfile's
# float conversion does (soundfile.read(..., dtype="float32") of a PCM file: 16-bit / 2**15;
# 24- and 32-bit PCM come back left-aligned in int32, / 2**31; 8-bit unsigned WAV is offset by
# 128).  torchaudio.load(normalize=False) returns the same integer layouts.
_INT_SCALES = {
    torch.int8: (0.0, 2.0**7),
    torch.uint8: (128.0, 2.0**7),
    torch.int16: (0.0, 2.0**15),
    torch.int32: (0.0, 2.0**31),
}


def as_mono_waveform(audio, channel_axis: int | None = None, what: str = "audio") -> torch.Tensor:
    """Turn a waveform handed over in memory into what :func:`load_audio` makes of a file: a
    1-D float32 tensor (samples,), channels mixed down by their mean, integer PCM scaled to
    [-1, 1).  The sample rate is not changed (callers resample after, as load_audio does).

    ``audio``: a numpy array, a torch tensor (kept on its device) or a list of numbers, of

    * 1 dimension: mono samples;
    * 2 dimensions: samples and channels.  ``channel_axis`` says which axis holds the channels
      (``1``: (samples, channels) as ``soundfile.read`` returns; ``0``: (channels, samples) as
      ``torchaudio.load`` returns).  It may be left out only for a single channel ((N, 1) or
      (1, N)); a clip of several channels without it is refused rather than guessed.

    dtypes: float16/bfloat16/float32/float64 are taken as they are (full scale 1.0, like
    soundfile's float output); int8, uint8, int16 and int32 are integer PCM, scaled as
    libsndfile does (``x / 2**15`` for int16, ``x / 2**31`` for int32, which is how 24-bit files
    come back, ``(x - 128) / 2**7`` for 8-bit unsigned WAV).

    Raises :class:`AudioError`, naming ``what`` (e.g. ``"waveforms[2]"``), for an empty clip,
    NaN or infinite samples, an unsupported dtype or number of dimensions, or a 2-D clip of several
    channels without ``channel_axis`` (it names the shape and the ``channel_axis`` to pass).
    """
    if isinstance(audio, torch.Tensor):
        tensor = audio.detach()
    else:
        array = np.asarray(audio)
        if array.dtype.kind not in "fiu" or array.dtype.itemsize > 8:
            raise AudioError(f"{what}: samples of dtype {array.dtype} are not audio")
        tensor = torch.from_numpy(np.ascontiguousarray(array))
    dtype = tensor.dtype
    if dtype.is_floating_point:
        tensor = tensor.to(torch.float32)
    elif dtype in _INT_SCALES:
        offset, scale = _INT_SCALES[dtype]
        tensor = (tensor.to(torch.float64) - offset).div_(scale).to(torch.float32)
    else:
        raise AudioError(
            f"{what}: dtype {dtype} is not a sample format soundfile or torchaudio returns; "
            "pass float32 in [-1, 1] or int16/int32 PCM"
        )
    if tensor.dim() == 2:
        axis = _channel_axis(tuple(tensor.shape), channel_axis, what)
        tensor = tensor.mean(dim=axis)  # the mixdown load_audio applies to every file
    elif tensor.dim() != 1:
        raise AudioError(
            f"{what}: expected (samples,) or a 2-D (samples, channels) clip, got shape "
            f"{tuple(tensor.shape)}"
        )
    elif channel_axis is not None:
        raise AudioError(f"{what}: channel_axis={channel_axis} given for a 1-D (mono) clip")
    if tensor.numel() == 0:
        raise AudioError(f"{what} is empty (0 samples)")
    if not torch.isfinite(tensor).all():
        raise AudioError(f"{what} contains NaN or infinite samples")
    return tensor


def _channel_axis(shape, channel_axis: int | None, what: str) -> int:
    """The channel axis (0 or 1) of a 2-D clip of ``shape``: the one stated, or the axis of size
    1 of a single-channel clip.  A clip of several channels must state it: guessing (samples,
    channels) against (channels, samples) from the sizes would silently mix the wrong axis of a
    short clip, and two readers (soundfile, torchaudio) use the two layouts."""
    if channel_axis is not None:
        if channel_axis not in (0, 1, -1, -2):
            raise AudioError(
                f"{what}: channel_axis must be 0 or 1 for a 2-D clip, got {channel_axis}"
            )
        return channel_axis % 2
    if 1 in shape:
        return shape.index(1)  # (1, N) or (N, 1): a single channel
    raise AudioError(
        f"{what}: a 2-D clip of shape {shape} has several channels; state which axis holds them "
        "so that it is mixed down to mono as training mixes files: channel_axis=1 for "
        "(samples, channels) as soundfile.read returns, channel_axis=0 for (channels, samples) "
        "as torchaudio.load returns; or pass a 1-D mono array"
    )


def load_audio(path: str, sample_rate: int) -> torch.Tensor:
    """Read any soundfile-readable file as a mono float32 waveform at ``sample_rate``.

    Channels are mixed down by :func:`as_mono_waveform` (their mean), the same code that takes
    arrays handed to the Python API, then resampled with ``torchaudio.functional.resample``.
    Raises :class:`AudioError` for unreadable, empty or non-finite audio, so that callers can
    report the manifest line it came from.
    """
    import soundfile

    try:
        wav, native_rate = soundfile.read(path, dtype="float32", always_2d=True)
    except Exception as err:  # soundfile raises several types (LibsndfileError, RuntimeError, ...)
        raise AudioError(f"cannot read audio file {path}: {err}") from err
    waveform = as_mono_waveform(wav, channel_axis=1, what=f"audio file {path}")
    return resample(waveform, native_rate, sample_rate)


def resample(waveform: torch.Tensor, rate: int, sample_rate: int) -> torch.Tensor:
    """``waveform`` (samples,) from ``rate`` to ``sample_rate`` Hz (unchanged when equal)."""
    numeric = isinstance(rate, (int, float, np.integer, np.floating)) and not isinstance(rate, bool)
    if not (numeric and rate > 0 and float(rate).is_integer()):
        raise AudioError(f"sample rate must be a positive whole number of Hz, got {rate!r}")
    if rate == sample_rate:
        return waveform
    import torchaudio.functional

    return torchaudio.functional.resample(waveform, int(rate), sample_rate)


def compute_fbank(waveform: torch.Tensor, cfg: FbankConfig) -> torch.Tensor:
    """Log-mel filterbank of one mono waveform at ``cfg.sample_rate``: (frames, num_mel_bins).

    :func:`batched_fbank` of a batch of one clip, so a clip's fbank is the same values whether
    the model computes it for a padded batch (:class:`KaldiFbank`) or a tool or the fbank cache
    computes it alone.  Equal (``torch.equal``, tested) to the authors' call,
    ``torchaudio.compliance.kaldi.fbank(waveform[None], use_energy=False, ...)`` with every other
    option at its Kaldi default (povey window, dither 0, pre-emphasis 0.97, DC removal,
    snip_edges).  No waveform mean removal and no dataset normalisation: the model normalises
    with its own BatchNorm.  Raises :class:`AudioError` for a clip shorter than one window.
    """
    if waveform.dim() != 1:
        raise ValueError(f"expected a mono waveform (1-D), got shape {tuple(waveform.shape)}")
    if num_frames(waveform.numel(), cfg) == 0:
        raise AudioError(
            f"clip of {waveform.numel()} samples is shorter than one "
            f"{cfg.frame_length_ms} ms analysis window"
        )
    lengths = torch.tensor([waveform.numel()], device=waveform.device)
    return batched_fbank(waveform.unsqueeze(0), lengths, cfg)[0][0]


_MEL_BANKS = {}


def _mel_banks(cfg: FbankConfig, padded_window: int, device, dtype) -> torch.Tensor:
    """Kaldi's mel filters (torchaudio's ``get_mel_banks``, the fbank defaults: 20 Hz to
    Nyquist, no VTLN) as (padded_window // 2 + 1, num_mel_bins), kept per device.

    The cache holds one matrix per (filterbank settings, device, dtype), which does not grow
    with the audio: 257 x 128 float32 = 132 KB for the paper's settings, for at most 8 keys
    (then it is emptied and refilled)."""
    import torchaudio.compliance.kaldi

    key = (int(cfg.num_mel_bins), padded_window, float(cfg.sample_rate), str(device), dtype)
    if key not in _MEL_BANKS:
        if len(_MEL_BANKS) >= 8:
            _MEL_BANKS.clear()
        banks, _ = torchaudio.compliance.kaldi.get_mel_banks(
            int(cfg.num_mel_bins), padded_window, float(cfg.sample_rate), 20.0, 0.0, 100.0,
            -500.0, 1.0,
        )
        banks = torch.nn.functional.pad(banks, (0, 1))  # the Nyquist bin has no filter weight
        _MEL_BANKS[key] = banks.T.contiguous().to(device=device, dtype=dtype)
    return _MEL_BANKS[key]


def batched_fbank(waveforms: torch.Tensor, lengths: torch.Tensor, cfg: FbankConfig):
    """Kaldi log-mel filterbanks of a padded batch of mono waveforms, in one computation on
    their device.  A clip's frames depend only on its own samples: on the CPU they are
    bit-identical to the clip's fbank computed alone and to torchaudio's Kaldi fbank (tested,
    ``torch.equal``); on a GPU they agree within float32 rounding.

    ``waveforms``: (B, N) float32 at ``cfg.sample_rate``, clip b in its first ``lengths[b]``
    samples (the rest is ignored).  Returns ``fbank`` (B, T, num_mel_bins), T =
    ``num_frames(N)``, zero at padded frames, and ``padding_mask`` (B, T), True at frames past a
    clip's ``num_frames(lengths[b])`` (frames depend only on their own window, so padding
    samples reach padded frames only).  The steps are ``torchaudio.compliance.kaldi.fbank``'s
    with :func:`compute_fbank`'s options: snip_edges framing, DC removal per frame,
    pre-emphasis 0.97, povey window, zero padding to a power of two, power spectrum, mel
    filters, log floored at float32 epsilon.
    """
    if waveforms.dim() != 2:
        raise ValueError(f"expected (batch, samples) waveforms, got shape {tuple(waveforms.shape)}")
    window, shift = window_samples(cfg), shift_samples(cfg)
    frames_total = num_frames(waveforms.shape[1], cfg)
    device, dtype = waveforms.device, waveforms.dtype
    if frames_total == 0:
        raise AudioError(
            f"a batch of {waveforms.shape[1]} samples is shorter than one "
            f"{cfg.frame_length_ms} ms analysis window"
        )
    frames = waveforms.unfold(1, window, shift)  # (B, T, window), a view
    frames = frames - frames.mean(dim=-1, keepdim=True)
    previous = torch.cat((frames[..., :1], frames[..., :-1]), dim=-1)
    frames = frames - 0.97 * previous
    povey = torch.hann_window(window, periodic=False, device=device, dtype=dtype).pow(0.85)
    padded_window = 1 << (window - 1).bit_length()
    frames = torch.nn.functional.pad(frames * povey, (0, padded_window - window))
    power = torch.fft.rfft(frames).abs().pow(2.0)
    mel = torch.matmul(power, _mel_banks(cfg, padded_window, device, dtype))
    # clamp by a Python number: a torch.tensor(eps, device=...) would be a blocking host copy
    fbank = mel.clamp(min=torch.finfo(torch.float).eps).log()
    clip_frames = torch.where(
        lengths >= window, 1 + torch.div(lengths - window, shift, rounding_mode="floor"), 0
    )
    padding_mask = torch.arange(frames_total, device=device).unsqueeze(0) >= clip_frames.to(
        device
    ).unsqueeze(1)
    return fbank.masked_fill(padding_mask.unsqueeze(-1), 0.0), padding_mask


class KaldiFbank(torch.nn.Module):
    """The models' front end: padded waveforms -> Kaldi log-mel filterbanks, computed on the
    waveforms' device by :func:`batched_fbank` with ``cfg``'s settings (the checkpoint's
    ``task.features``).

    It has no parameters and no buffers, so adding it to a network leaves its state dict (and
    every checkpoint and exported folder) unchanged.  Autocast is switched off inside: the
    filterbank is always float32, as the loader computed it, whatever precision the rest of the
    forward pass runs in."""

    def __init__(self, cfg: FbankConfig | None = None):
        super().__init__()
        # a plain copy: fairseq hands over a DictConfig node, which must not be shared
        cfg = cfg if cfg is not None else FbankConfig()
        self.cfg = FbankConfig(**{f.name: getattr(cfg, f.name) for f in fields(FbankConfig)})

    def forward(self, source: torch.Tensor, padding_mask: torch.Tensor | None = None):
        """``source`` (B, S) float mono waveforms at ``cfg.sample_rate``; ``padding_mask``
        (B, S) bool, True at padded samples (each row's padding at its end), or None.  Returns
        ``fbank`` (B, T, num_mel_bins) float32, zero at padded frames, and its ``padding_mask``
        (B, T), True at frames past a clip's last whole window."""
        if source.dim() != 2:
            raise ValueError(
                f"source must be (batch, samples) waveforms at {self.cfg.sample_rate} Hz, got "
                f"shape {tuple(source.shape)}; pass precomputed filterbanks as fbank="
            )
        if padding_mask is None:
            lengths = torch.full((source.shape[0],), source.shape[1], device=source.device)
        else:
            lengths = source.shape[1] - padding_mask.sum(dim=1)
        with torch.autocast(source.device.type, enabled=False):
            return batched_fbank(source.float(), lengths, self.cfg)

    def inputs(self, source=None, padding_mask=None, fbank=None):
        """The filterbanks and frame padding mask (or None) of a model input: ``source``
        waveforms (B, S) with ``padding_mask`` (B, S), turned into fbank here, or precomputed
        ``fbank`` (B, T, F) with ``padding_mask`` (B, T), passed through.  Exactly one of
        ``source`` and ``fbank`` must be given."""
        if (source is None) == (fbank is None):
            raise ValueError(
                "give the model either source= (B, samples) waveforms or fbank= (B, frames, "
                "mel bins) filterbanks, not both or neither"
            )
        if fbank is not None:
            if fbank.dim() != 3:
                raise ValueError(
                    f"fbank must be (batch, frames, mel bins), got shape {tuple(fbank.shape)}"
                )
            return fbank, padding_mask
        return self(source, padding_mask)


def pad_features(features, num_mel_bins: int, min_length: int = 0, num_rows: int = 0):
    """Stack (T_i, F) feature tensors into (B, T_max, F) with a True-at-padding mask (B, T_max).

    Static shapes: ``min_length`` pads to at least that many frames, ``num_rows`` adds rows of
    pure padding (batch fillers) up to that many clips."""
    lengths = torch.tensor([f.shape[0] for f in features], dtype=torch.long)
    lengths = torch.cat((lengths, lengths.new_zeros(max(0, num_rows - len(features)))))
    longest = max(int(lengths.max()) if len(lengths) else 0, min_length)
    batch = features[0].new_zeros((len(lengths), longest, *features[0].shape[1:]))
    for i, feat in enumerate(features):
        batch[i, : feat.shape[0]] = feat
    padding_mask = torch.arange(longest).unsqueeze(0) >= lengths.unsqueeze(1)
    return batch, padding_mask
