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

from .features import (
    AudioError,
    FbankConfig,
    as_mono_waveform,
    num_frames,
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
        if model.front_end.cfg != features:
            raise ValueError(
                f"the model's front end computes {model.front_end.cfg}, not the checkpoint's "
                f"filterbank {features}: build the network with features="
            )
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
        for index, clip in enumerate(clips):
            frames = num_frames(clip.numel(), self.features)
            if frames == 0:
                raise AudioError(
                    f"waveforms[{index}]: clip of {clip.numel()} samples is shorter than one "
                    f"{self.features.frame_length_ms} ms analysis window"
                )
            if frames < self.min_frames:  # batched, it would be all padding
                raise AudioError(
                    f"waveforms[{index}]: {frames} filterbank frames, fewer than one "
                    f"token ({self.min_frames} frames)"
                )
        if layer is not None and not 1 <= layer <= self.num_layers:
            raise ValueError(f"layer must be in 1..{self.num_layers}, got {layer}")
        # the model's front end computes the filterbanks, on its device (the one place audio
        # becomes model input, as in training)
        source, padding_mask = pad_features(clips, 0)
        out = self.model(
            source.to(self.device), padding_mask.to(self.device), mask=False, output_layer=layer
        )
        x = out["x"]
        token_padding = out["padding_mask"]
        if token_padding is None:
            token_padding = torch.zeros(x.shape[:2], dtype=torch.bool, device=x.device)
        return EncoderOutput(x, tuple(out["hidden_states"]), token_padding)


def load_encoder(path: str, device="cpu") -> MaeAstEncoder:
    """Load the encoder of a pretraining checkpoint (``mae_ast``/``ssast``, ours or the authors')
    or of a fine-tuned classifier (its ``encoder_model``).

    ``path`` is a fairseq ``.pt`` checkpoint (needs fairseq; read with ``torch.load(...,
    weights_only=True)``, so a file that would run code is refused with
    ``checkpoints.UnsafeCheckpointError``) or a folder written by ``mae-ast-export ... --format
    safetensors`` (needs only torch and safetensors)."""
    from .pretrained import is_model_folder, load_folder

    if is_model_folder(path):
        network, features, _config = load_folder(path)
        model = getattr(network, "encoder_model", network)
        return MaeAstEncoder(model, features, device=device)

    from fairseq import checkpoint_utils

    from .checkpoints import features_config, read_checkpoint

    state = read_checkpoint(path)
    models, cfg, _task = checkpoint_utils.load_model_ensemble_and_task([path], state=state)
    model = getattr(models[0], "encoder_model", models[0])
    return MaeAstEncoder(model, features_config(cfg), device=device)
