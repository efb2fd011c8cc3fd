"""Use a checkpoint's encoder as a feature extractor, with no fairseq command line.

    import mae_ast_plugin
    encoder = mae_ast_plugin.load_encoder("checkpoint.pt", device="cuda")
    out = encoder.extract_features([wave_a, wave_b], sample_rate=16000)
    out.last_hidden_state  # (B, L, C); out.hidden_states: one (B, L, C) per layer
    out.padding_mask       # (B, L), True at tokens that only cover padding
"""

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from .features import FbankConfig, compute_fbank, pad_features


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

    def _clips(self, waveforms: Waveforms, padding_mask) -> list[torch.Tensor]:
        if isinstance(waveforms, (torch.Tensor, np.ndarray)):
            batch = torch.as_tensor(waveforms, dtype=torch.float32)
            if batch.dim() == 1:
                batch = batch.unsqueeze(0)
            if batch.dim() != 2:
                raise ValueError(
                    f"expected (samples,) or (batch, samples), got {tuple(batch.shape)}"
                )
            if padding_mask is None:
                return list(batch)
            lengths = (~torch.as_tensor(padding_mask, dtype=torch.bool)).sum(1)
            return [clip[: int(n)] for clip, n in zip(batch, lengths, strict=True)]
        if padding_mask is not None:
            raise ValueError("padding_mask goes with a padded (batch, samples) tensor, not a list")
        return [torch.as_tensor(w, dtype=torch.float32).reshape(-1) for w in waveforms]

    @torch.no_grad()
    def extract_features(
        self,
        waveforms: Waveforms,
        sample_rate: int,
        padding_mask: torch.Tensor | None = None,
        layer: int | None = None,
    ) -> EncoderOutput:
        """Encode mono waveforms: a list of 1-D clips of any lengths, or a (B, N) tensor whose
        ``padding_mask`` (B, N) is True at padded samples.  ``layer`` (1-based) stops after that
        many layers, so ``last_hidden_state`` is that layer's output.  A clip's features do not
        depend on the other clips of the batch."""
        import torchaudio.functional

        clips = self._clips(waveforms, padding_mask)
        if sample_rate != self.features.sample_rate:
            clips = [
                torchaudio.functional.resample(c, sample_rate, self.features.sample_rate)
                for c in clips
            ]
        fbanks = [compute_fbank(c, self.features) for c in clips]
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
