"""Use a checkpoint's encoder as a feature extractor, with no fairseq command line.

    import mae_ast_plugin
    encoder = mae_ast_plugin.load_encoder("checkpoint.pt", device="cuda")
    out = encoder.extract_features([wave_a, wave_b], sample_rate=16000)  # mono or multi-channel
    out.last_hidden_state  # (B, L, C); out.hidden_states: one (B, L, C) per layer
    out.padding_mask       # (B, L), True at tokens that only cover padding
"""

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from .checkpoints import load_encoder  # noqa: F401  (re-exported; loading lives there)
from .features import (
    AudioError,
    FbankConfig,
    as_mono_waveform,
    compute_fbank,
    pad_features,
    resample,
)


@dataclass
class EncoderOutput:
    last_hidden_state: torch.Tensor  # (B, L, C)
    hidden_states: tuple[torch.Tensor, ...]  # per layer run, first layer first
    padding_mask: torch.Tensor  # (B, L) bool, True at padding tokens


Waveforms = torch.Tensor | np.ndarray | Sequence[torch.Tensor | np.ndarray]


class MaeAstEncoder:
    """A pretrained (or fine-tuned) encoder plus the filterbank it was trained with."""

    def __init__(self, model, features: FbankConfig, device="cpu"):
        self.model = model.to(device).eval()
        self.features = features
        self.device = torch.device(device)

    @property
    def num_layers(self) -> int:
        return len(self.model.encoder.layers)

    @property
    def embed_dim(self) -> int:
        return self.model.cfg.encoder_embed_dim

    @property
    def min_frames(self) -> int:
        """Filterbank frames of one token: a shorter clip has nothing to encode."""
        return int(getattr(self.model.cfg, "token_frames", 1))

    def _clips(self, waveforms: Waveforms, padding_mask, channel_axis) -> list[torch.Tensor]:
        """The clips as 1-D float32 tensors, each through :func:`as_mono_waveform` (the
        conversion :func:`load_audio` applies to files)."""
        if isinstance(waveforms, (torch.Tensor, np.ndarray)):
            if waveforms.ndim == 1:
                return [as_mono_waveform(waveforms, channel_axis, "waveforms")]
            if waveforms.ndim != 2:
                raise AudioError(
                    f"waveforms: expected a list of clips, (samples,) or (batch, samples), got "
                    f"shape {tuple(waveforms.shape)}; put a multi-channel clip in a list"
                )
            if channel_axis is not None:
                raise AudioError(
                    "waveforms: channel_axis goes with clips in a list ([clip]); a 2-D array "
                    "is a (batch, samples) batch of mono clips"
                )
            rows = list(waveforms)
            if padding_mask is not None:
                lengths = (~torch.as_tensor(padding_mask, dtype=torch.bool)).sum(1).tolist()
                if len(lengths) != len(rows):
                    raise AudioError(
                        f"padding_mask has {len(lengths)} rows for a batch of {len(rows)} clips"
                    )
                rows = [row[: int(n)] for row, n in zip(rows, lengths, strict=True)]
            return [as_mono_waveform(row, None, f"waveforms[{i}]") for i, row in enumerate(rows)]
        if padding_mask is not None:
            raise ValueError("padding_mask goes with a padded (batch, samples) tensor, not a list")
        if len(waveforms) == 0:
            raise AudioError("waveforms: an empty list of clips")
        return [
            as_mono_waveform(clip, channel_axis, f"waveforms[{i}]")
            for i, clip in enumerate(waveforms)
        ]

    @torch.no_grad()
    def extract_features(
        self,
        waveforms: Waveforms,
        sample_rate: int,
        padding_mask: torch.Tensor | None = None,
        layer: int | None = None,
        channel_axis: int | None = None,
    ) -> EncoderOutput:
        """Encode clips the way training encodes audio files.

        ``waveforms``: a list of clips of any lengths, each a numpy array or torch tensor (or a
        list of numbers) that is 1-D mono or 2-D with channels, which are mixed down to mono
        (``channel_axis``: ``1`` for (samples, channels) as ``soundfile.read`` returns, ``0``
        for (channels, samples) as ``torchaudio.load`` returns; needed only when the shape does
        not tell, see :func:`~mae_ast_plugin.features.as_mono_waveform`); or one 1-D clip; or a
        padded (B, N) batch of mono clips whose ``padding_mask`` (B, N) is True at padded
        samples.  dtypes: float (full scale 1.0) or integer PCM (int16, int32, int8, uint8,
        scaled to [-1, 1) as soundfile does).  ``sample_rate`` (Hz) is the clips' rate; they are
        resampled to the checkpoint's (16 kHz).  ``layer`` (1-based) stops after that many
        layers, so ``last_hidden_state`` is that layer's output.  A clip's features do not
        depend on the other clips of the batch.

        Raises :class:`~mae_ast_plugin.features.AudioError` naming the clip
        (``waveforms[i]``) for an empty, non-finite, too short or ambiguous clip.
        """
        clips = self._clips(waveforms, padding_mask, channel_axis)
        clips = [resample(c, sample_rate, self.features.sample_rate) for c in clips]
        fbanks = []
        for index, clip in enumerate(clips):
            try:
                fbank = compute_fbank(clip, self.features)
            except AudioError as err:
                raise AudioError(f"waveforms[{index}]: {err}") from None
            if fbank.shape[0] < self.min_frames:  # batched, it would be all padding
                raise AudioError(
                    f"waveforms[{index}]: {fbank.shape[0]} filterbank frames, fewer than one "
                    f"token ({self.min_frames} frames)"
                )
            fbanks.append(fbank)
        source, frame_padding = pad_features(fbanks, self.features.num_mel_bins)
        if layer is not None and not 1 <= layer <= self.num_layers:
            raise ValueError(f"layer must be in 1..{self.num_layers}, got {layer}")
        out = self.model(
            source.to(self.device), frame_padding.to(self.device), mask=False, output_layer=layer
        )
        x = out["x"]
        token_padding = out["padding_mask"]
        if token_padding is None:
            token_padding = torch.zeros(x.shape[:2], dtype=torch.bool, device=x.device)
        return EncoderOutput(x, tuple(out["hidden_states"]), token_padding)
