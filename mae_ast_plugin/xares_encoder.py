"""An X-ARES encoder (Zhang et al., "X-ARES: A Comprehensive Framework for Assessing Audio
Encoder Performance", Interspeech 2025; ``xares`` on PyPI) over anything ``load_encoder`` reads.

X-ARES builds an encoder as ``EncoderClass()`` from a Python file holding exactly one name that
ends in ``Encoder``; this module is such a file, and takes the model from the environment::

    MAE_AST_CHECKPOINT=checkpoint.pt python -m xares.run \\
        --encoder_py mae_ast_plugin/xares_encoder.py ...     # run from the repository root

or, in Python, ``MaeAstXaresEncoder("checkpoint.pt")``.  ``forward(audio)`` takes (B, T) float
waveforms at ``sampling_rate`` (16 kHz), of any length up to X-ARES's 10 minutes (longer than
10 s: windowed, see :class:`mae_ast_plugin.encoder.Windowing`), and returns (B, T', D): one
vector per token time step, the last encoder layer's output (a patch step's 8 mel-block tokens
concatenated in mel order, as s3prl's MAE-AST upstream gives), ``hop_size_in_ms`` apart (160 ms
for 16-frame patches, 20 ms for 2-frame frame tokens).  Every row is one clip: its embedding
does not depend on the other rows.
"""

import os

import torch

# Only one name in this module may end in "Encoder" (X-ARES picks the class by that suffix), so
# the loader is imported under another name.
from . import load_encoder as _load

CHECKPOINT_VARIABLE = "MAE_AST_CHECKPOINT"


class MaeAstXaresEncoder(torch.nn.Module):
    """``checkpoint``: a ``.pt`` checkpoint or exported folder (default: the path in the
    ``MAE_AST_CHECKPOINT`` environment variable).  Attributes X-ARES reads: ``sampling_rate``
    (Hz), ``output_dim`` (mel blocks x encoder width: 6144 for the paper's 768-wide patch model,
    768 for its frame model) and ``hop_size_in_ms``."""

    def __init__(self, checkpoint: str | None = None):
        super().__init__()
        checkpoint = checkpoint or os.environ.get(CHECKPOINT_VARIABLE)
        if not checkpoint:
            raise ValueError(
                f"MaeAstXaresEncoder needs a model: pass the checkpoint or exported folder, or set "
                f"{CHECKPOINT_VARIABLE}=PATH for xares.run"
            )
        self.encoder = _load(str(checkpoint))
        self.network = self.encoder.model  # a submodule, so .to(device) moves it
        features, cfg = self.encoder.features, self.network.cfg
        self.mel_blocks = max(1, features.num_mel_bins // cfg.token_mel_bins)
        self.sampling_rate = int(features.sample_rate)
        self.output_dim = int(self.mel_blocks * self.encoder.embed_dim)
        self.hop_size_in_ms = float(cfg.token_frames * features.frame_shift_ms)

    @torch.no_grad()
    def forward(self, audio: torch.Tensor) -> torch.Tensor:
        """(B, T) float waveforms at ``sampling_rate`` -> (B, T', output_dim) float32 on the
        audio's device, T' = whole tokens of T samples (T' x hop_size_in_ms covers the clip up
        to the last whole token).  A 1-D (T,) clip is taken as a batch of one."""
        if audio.dim() == 1:
            audio = audio.unsqueeze(0)
        self.encoder.device = next(self.network.parameters()).device
        out = self.encoder.extract_features(audio.float(), self.sampling_rate)
        hidden = out.last_hidden_state.float()
        batch, length, width = hidden.shape
        steps = hidden.reshape(batch, length // self.mel_blocks, self.mel_blocks * width)
        return steps.to(audio.device)
