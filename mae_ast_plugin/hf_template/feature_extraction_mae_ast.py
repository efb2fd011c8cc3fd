"""Waveform-in feature extractor of an exported MAE-AST model: audio clips of any sample rate,
mono or multi-channel, float or integer PCM -> the Kaldi log-mel filterbanks the model was trained
on.  Needs torch and torchaudio (the same resampler and filterbank as training)."""

import numpy as np
import torch
from transformers.feature_extraction_sequence_utils import SequenceFeatureExtractor
from transformers.feature_extraction_utils import BatchFeature

# Integer PCM: (offset, divisor) to full scale [-1, 1), as libsndfile converts (int16 / 2**15,
# 24- and 32-bit in int32 / 2**31, 8-bit unsigned WAV offset by 128).
INTEGER_PCM = {
    torch.int8: (0.0, 2.0**7),
    torch.uint8: (128.0, 2.0**7),
    torch.int16: (0.0, 2.0**15),
    torch.int32: (0.0, 2.0**31),
}


class MaeAstFeatureExtractor(SequenceFeatureExtractor):
    """``extractor(clips, sampling_rate=RATE)`` -> ``input_values`` (B, T, num_mel_bins) float32
    filterbanks, zero-padded to the longest clip, and ``attention_mask`` (B, T), 1 at real
    frames.

    ``clips``: one clip or a list; each a numpy array, torch tensor or list of numbers, 1-D mono
    or 2-D with channels, which are averaged to mono.  A 2-D clip of several channels needs
    ``channel_axis`` (1: (samples, channels) as soundfile.read returns; 0: (channels, samples)
    as torchaudio.load returns); a single channel ((N, 1) or (1, N)) does not.  float dtypes
    are full scale 1.0; int8/uint8/int16/int32 are integer PCM.  ``sampling_rate`` (Hz) is
    required: clips are resampled to ``self.sampling_rate`` (16 kHz) with
    ``torchaudio.functional.resample``.  Filterbank: ``torchaudio.compliance.kaldi.fbank`` with
    ``use_energy=False`` and Kaldi's defaults otherwise (povey window, no dither, pre-emphasis
    0.97, snip_edges).  An empty, non-finite or shorter-than-one-window clip is a ValueError
    naming it."""

    model_input_names = ["input_values", "attention_mask"]

    def __init__(self, feature_size=128, sampling_rate=16000, padding_value=0.0,
                 frame_length_ms=25.0, frame_shift_ms=10.0, return_attention_mask=True,
                 **kwargs):
        super().__init__(feature_size=feature_size, sampling_rate=sampling_rate,
                         padding_value=padding_value,
                         return_attention_mask=return_attention_mask, **kwargs)
        self.frame_length_ms = frame_length_ms
        self.frame_shift_ms = frame_shift_ms

    def mono(self, clip, channel_axis, name: str) -> torch.Tensor:
        """One clip as a 1-D float32 tensor (channels averaged, integer PCM scaled)."""
        if isinstance(clip, torch.Tensor):
            tensor = clip.detach().cpu()
        else:
            array = np.asarray(clip)
            if array.dtype.kind not in "fiu" or array.dtype.itemsize > 8:
                raise ValueError(f"{name}: samples of dtype {array.dtype} are not audio")
            tensor = torch.from_numpy(np.ascontiguousarray(array))
        if tensor.dtype.is_floating_point:
            tensor = tensor.to(torch.float32)
        elif tensor.dtype in INTEGER_PCM:
            offset, scale = INTEGER_PCM[tensor.dtype]
            tensor = (tensor.to(torch.float64) - offset).div_(scale).to(torch.float32)
        else:
            raise ValueError(f"{name}: dtype {tensor.dtype} is not a sample format")
        if tensor.dim() == 2:
            if channel_axis is None:
                if 1 not in tensor.shape:
                    raise ValueError(
                        f"{name}: a 2-D clip of shape {tuple(tensor.shape)} has several channels;"
                        " pass channel_axis=1 for (samples, channels) or channel_axis=0 for "
                        "(channels, samples)"
                    )
                channel_axis = tuple(tensor.shape).index(1)
            tensor = tensor.mean(dim=channel_axis % 2)
        elif tensor.dim() != 1:
            raise ValueError(f"{name}: expected a 1-D or 2-D clip, got {tuple(tensor.shape)}")
        if tensor.numel() == 0:
            raise ValueError(f"{name} is empty (0 samples)")
        if not torch.isfinite(tensor).all():
            raise ValueError(f"{name} contains NaN or infinite samples")
        return tensor

    def fbank(self, waveform: torch.Tensor, name: str) -> torch.Tensor:
        import torchaudio.compliance.kaldi

        window = int(round(self.sampling_rate * self.frame_length_ms / 1000.0))
        if waveform.numel() < window:
            raise ValueError(
                f"{name}: {waveform.numel()} samples at {self.sampling_rate} Hz are shorter than "
                f"one {self.frame_length_ms} ms analysis window"
            )
        return torchaudio.compliance.kaldi.fbank(
            waveform.unsqueeze(0), sample_frequency=self.sampling_rate,
            num_mel_bins=self.feature_size, frame_length=self.frame_length_ms,
            frame_shift=self.frame_shift_ms, use_energy=False,
        )

    def __call__(self, raw_speech, sampling_rate=None, channel_axis=None, return_tensors="pt",
                 **kwargs) -> BatchFeature:
        """``return_tensors``: "pt" (default), "np" or None (numpy arrays)."""
        if sampling_rate is None:
            raise ValueError(
                "pass sampling_rate= (Hz): clips are resampled to "
                f"{self.sampling_rate} Hz from their own rate"
            )
        single = isinstance(raw_speech, (np.ndarray, torch.Tensor)) and (
            raw_speech.ndim == 1 or channel_axis is not None or 1 in tuple(raw_speech.shape))
        if single or (isinstance(raw_speech, list) and raw_speech
                      and isinstance(raw_speech[0], (int, float))):
            raw_speech = [raw_speech]
        elif isinstance(raw_speech, (np.ndarray, torch.Tensor)):
            raw_speech = list(raw_speech)  # (batch, samples) of mono clips
        import torchaudio.functional

        fbanks = []
        for index, clip in enumerate(raw_speech):
            name = f"clip {index}"
            waveform = self.mono(clip, channel_axis, name)
            if int(sampling_rate) != self.sampling_rate:
                waveform = torchaudio.functional.resample(
                    waveform, int(sampling_rate), self.sampling_rate)
            fbanks.append(self.fbank(waveform, name))
        longest = max(f.shape[0] for f in fbanks)
        values = torch.full((len(fbanks), longest, self.feature_size), float(self.padding_value))
        mask = torch.zeros((len(fbanks), longest), dtype=torch.long)
        for index, fbank in enumerate(fbanks):
            values[index, : fbank.shape[0]] = fbank
            mask[index, : fbank.shape[0]] = 1
        data = {"input_values": values.numpy(), "attention_mask": mask.numpy()}
        return BatchFeature(data, tensor_type=return_tensors)
