"""The HEAR 2021 API (Turian et al., "HEAR: Holistic Evaluation of Audio Representations", PMLR
176, 2022; hearbenchmark.com, the "hear-api") over any model ``load_encoder`` reads: our
checkpoints and the authors', pretraining or fine-tuned, and folders from ``mae-ast-export``.

    from mae_ast_plugin import hear
    model = hear.load_model("checkpoint.pt")            # or an exported folder
    scene = hear.get_scene_embeddings(audio, model)     # audio: (n_sounds, n_samples) at 16 kHz
    frames, times_ms = hear.get_timestamp_embeddings(audio, model)

Checked with the benchmark's own validator: ``hear-validator mae_ast_plugin.hear -m PATH``.

**Timestamp embeddings.**  One vector per token time step of the last encoder layer: a frame
token's output (2 filterbank frames, a 20-ms hop), or a patch token time step's 8 mel-block
outputs concatenated in mel order (16 frames, a 160-ms hop; the layout s3prl's MAE-AST upstream
gives).  HEAR asks for a hop of at most 50 ms (its onset tolerance for music transcription), so a
patch time step's vector is repeated at 4 timestamps 40 ms apart (nearest-neighbour upsampling:
each timestamp carries the patch whose 160-ms hop it falls in; no new information, the
resolution the model has).  Timestamps (ms) are the centres of those hops, shifted by half the
analysis window's excess over the hop ((25 - 10) / 2 = 7.5 ms) so they are the centres of the
audio the frames read: 17.5, 37.5, ... ms for frame tokens, 27.5, 67.5, ... ms for patch tokens.

**Scene embeddings.**  The mean over time of the timestamp embeddings, as the HEAR baseline
(``hearbaseline``) and most HEAR 2021 submissions compute them; the repeated patch vectors are
counted once per time step (the same mean).

Audio longer than 10 s is encoded in overlapping windows (:class:`~mae_ast_plugin.encoder
.Windowing`), so 20-minute sounds fit in memory.  Embeddings are float32 on the audio's device.
"""

import torch

from . import load_encoder
from .encoder import DEFAULT_WINDOWING, MaeAstEncoder
from .features import FbankConfig

# At most this hop (ms) between timestamps: HEAR 2021's suggested limit.
HEAR_MAX_HOP_MS = 50.0


class HearModel(torch.nn.Module):
    """A HEAR model: the encoder's network as a submodule (so ``.to(device)`` moves it) and the
    attributes the API names.  ``sample_rate`` (Hz): the rate the audio must have (the
    checkpoint's filterbank rate, 16 kHz); ``timestamp_embedding_size`` and
    ``scene_embedding_size``: mel blocks per time step x encoder width (8 x 768 = 6144 for the
    paper's patch model, 768 for its frame model)."""

    def __init__(self, encoder: MaeAstEncoder):
        super().__init__()
        self.network = encoder.model
        self.features: FbankConfig = encoder.features
        self.encoder = encoder
        cfg = encoder.model.cfg
        self.mel_blocks = max(1, self.features.num_mel_bins // cfg.token_mel_bins)
        self.sample_rate = int(self.features.sample_rate)
        self.timestamp_embedding_size = int(self.mel_blocks * encoder.embed_dim)
        self.scene_embedding_size = self.timestamp_embedding_size
        step_ms = cfg.token_frames * self.features.frame_shift_ms
        self.repeats = max(1, int(-(-step_ms // HEAR_MAX_HOP_MS)))  # ceil: hop <= 50 ms
        self.hop_ms = step_ms / self.repeats
        self.offset_ms = self.hop_ms / 2 + (
            self.features.frame_length_ms - self.features.frame_shift_ms
        ) / 2

    def token_steps(self, audio: torch.Tensor) -> torch.Tensor:
        """(n_sounds, n_steps, timestamp_embedding_size) float32 of (n_sounds, n_samples)
        audio at ``sample_rate``: the last layer's outputs, one vector per token time step."""
        if audio.dim() != 2:
            raise ValueError(
                f"HEAR audio is (n_sounds, n_samples), got shape {tuple(audio.shape)}"
            )
        self.encoder.device = next(self.network.parameters()).device
        out = self.encoder.extract_features(
            audio.float(), self.sample_rate, windowing=DEFAULT_WINDOWING
        )
        hidden = out.last_hidden_state.float()
        batch, length, width = hidden.shape
        return hidden.reshape(batch, length // self.mel_blocks, self.mel_blocks * width)


def load_model(model_file_path: str = "") -> HearModel:
    """The HEAR model of a checkpoint (``.pt``, ours or the authors', pretraining or
    fine-tuned: its encoder) or of a folder from ``mae-ast-export --format safetensors``
    (whatever :func:`~mae_ast_plugin.load_encoder` reads), in eval mode on the CPU."""
    if not model_file_path:
        raise ValueError(
            "mae_ast_plugin.hear.load_model needs a checkpoint or exported folder: "
            "hear-validator mae_ast_plugin.hear -m CHECKPOINT"
        )
    return HearModel(load_encoder(str(model_file_path), device="cpu"))


@torch.no_grad()
def get_timestamp_embeddings(audio: torch.Tensor, model: HearModel):
    """``(embeddings, timestamps)`` of ``audio`` (n_sounds, n_samples) float in [-1, 1] at
    ``model.sample_rate``: embeddings (n_sounds, n_timestamps, timestamp_embedding_size)
    float32 and timestamps (n_sounds, n_timestamps) in milliseconds, ``model.hop_ms`` apart
    (20 ms for frame tokens, 40 ms for patch tokens; see the module docstring)."""
    steps = model.token_steps(audio)
    embeddings = steps.repeat_interleave(model.repeats, dim=1).to(audio.device)
    count = embeddings.shape[1]
    times = model.offset_ms + model.hop_ms * torch.arange(count, dtype=torch.float64)
    timestamps = times.float().to(audio.device).unsqueeze(0).expand(embeddings.shape[0], -1)
    return embeddings, timestamps


@torch.no_grad()
def get_scene_embeddings(audio: torch.Tensor, model: HearModel) -> torch.Tensor:
    """(n_sounds, scene_embedding_size) float32: the mean over time of each sound's timestamp
    embeddings (:func:`get_timestamp_embeddings`)."""
    return model.token_steps(audio).mean(dim=1).to(audio.device)
