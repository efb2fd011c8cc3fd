"""Use a checkpoint's encoder as a feature extractor, with no fairseq command line.

    import mae_ast_plugin
    encoder = mae_ast_plugin.load_encoder("checkpoint.pt", device="cuda")
    out = encoder.extract_features([wave_a, wave_b], sample_rate=16000)  # mono or multi-channel
    out.last_hidden_state  # (B, L, C); out.hidden_states: one (B, L, C) per layer
    out.padding_mask       # (B, L), True at tokens that only cover padding

Clips longer than the pretraining crop (10 s) are encoded in overlapping windows of that length
(:class:`Windowing`), so every token is computed with the positions and context length the
model was trained on, and memory grows linearly (not quadratically) with the clip's length.
"""

from collections.abc import Sequence
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
import torch

from .features import (
    AudioError,
    FbankConfig,
    as_mono_waveform,
    num_frames,
    pad_features,
    resample,
    shift_samples,
    window_samples,
)
from .model_io import load_encoder  # noqa: F401  (re-exported; loading lives there)


@dataclass
class EncoderOutput:
    last_hidden_state: torch.Tensor  # (B, L, C)
    hidden_states: tuple[torch.Tensor, ...]  # per layer run, first layer first
    padding_mask: torch.Tensor  # (B, L) bool, True at padding tokens


Waveforms = torch.Tensor | np.ndarray | Sequence[torch.Tensor | np.ndarray]


@dataclass(frozen=True)
class Windowing:
    """How a clip longer than one window is encoded: in windows of ``window_s`` seconds,
    ``hop_s`` apart, each encoded as a clip of its own (its filterbank frames are exactly the
    long clip's frames there, its token positions start at 0), the outputs stitched so that
    each token comes from the window in which it is most central (ties: the earlier window).

    ``window_s`` = 10 s is the pretraining crop (``task.max_sample_len_s``; the paper pretrains
    on 10-s AudioSet clips and LibriSpeech crops), so no token sees a position or a context
    length that training did not.  ``hop_s`` = 7.5 s keeps every token at least 1.25 s from
    the edges of the window it comes from (except near the clip's own ends) for a third more
    computation than one pass; a smaller hop buys more context at more cost (5 s: twice).  A clip
    of at most one window (``window_s`` of whole tokens) is encoded in one pass, exactly as
    without windowing.  ``batch_windows`` windows go through the network at once: memory for a
    long clip is that batch's activations plus the stitched output (linear in the length).
    Windows start on token boundaries (multiples of ``token_frames`` frames), so the stitched
    tokens are the same grid as a whole-clip pass."""

    window_s: float = 10.0
    hop_s: float = 7.5
    batch_windows: int = 16

    def __post_init__(self):
        if not (self.window_s > 0 and 0 < self.hop_s <= self.window_s):
            raise ValueError(
                f"windowing needs 0 < hop_s <= window_s, got window_s={self.window_s}, "
                f"hop_s={self.hop_s}"
            )
        if self.batch_windows < 1:
            raise ValueError(f"batch_windows must be at least 1, got {self.batch_windows}")


class _Plan(NamedTuple):
    """Where a windowed clip's windows start and which token rows each contributes, in token
    time steps (blocks of ``token_frames`` frames)."""

    starts: list[int]
    keep: list[tuple[int, int]]  # per window: [first, last) time step of the clip it gives


def window_plan(time_steps: int, window: int, hop: int) -> _Plan:
    """Windows of ``window`` token time steps, ``hop`` apart (the last one ending at the clip's
    last whole token), over a clip of ``time_steps``; each time step t is taken from the window
    whose centre is nearest (ties to the earlier window)."""
    if time_steps <= window:
        return _Plan([0], [(0, time_steps)])
    starts = list(range(0, time_steps - window, hop)) + [time_steps - window]
    bounds = [0]
    for before, after in zip(starts, starts[1:], strict=False):
        # t goes to the earlier window while t - centre_before <= centre_after - t
        bounds.append((before + after + window - 1) // 2 + 1)
    bounds.append(time_steps)
    return _Plan(starts, list(zip(bounds, bounds[1:], strict=False)))


DEFAULT_WINDOWING = Windowing()


def add_window_option(parser) -> None:
    """``--window-seconds``: the commands' switch for :class:`Windowing`."""
    parser.add_argument(
        "--window-seconds", type=float, default=DEFAULT_WINDOWING.window_s, metavar="S",
        help="clips longer than S seconds are encoded in windows of S seconds, 3/4 of a window "
        "apart, each token taken from the window where it is most central (the pretraining "
        "crop is 10 s); 0: every clip in one pass, whatever its length",
    )


def windowing_of(args) -> "Windowing | None":
    """The :class:`Windowing` of parsed ``--window-seconds`` (None for 0)."""
    seconds = args.window_seconds
    if seconds < 0:
        raise SystemExit(f"--window-seconds must be 0 (no windows) or positive, got {seconds}")
    if seconds == 0:
        return None
    return Windowing(window_s=seconds, hop_s=0.75 * seconds)


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
        windowing: Windowing | None = DEFAULT_WINDOWING,
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

        ``windowing``: clips longer than one window are encoded window by window and stitched
        (:class:`Windowing`; the default: 10-s windows, 7.5 s apart); ``None`` encodes every clip
        in one pass whatever its length (attention over all its tokens, positions past the
        training length).  Clips of at most one window give the same output either way.

        Returns :class:`EncoderOutput`: float32 (B, L, C) token embeddings, L the longest clip's
        tokens (time-major, ``mel_blocks`` tokens per time step of ``token_frames`` frames of
        10 ms), and the (B, L) padding mask.

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
        window = self._window_steps(windowing)
        plans = [self._plan(clip, windowing, window) for clip in clips]
        if all(len(plan.starts) == 1 for plan in plans):
            return self._encode(clips, layer)
        return self._encode_windowed(clips, plans, window, windowing.batch_windows, layer)

    def _window_steps(self, windowing: Windowing | None) -> int:
        """Token time steps in one window (0 without windowing)."""
        if windowing is None:
            return 0
        samples = int(round(windowing.window_s * self.features.sample_rate))
        steps = num_frames(samples, self.features) // self.min_frames
        if steps < 1:
            raise ValueError(f"a {windowing.window_s} s window holds no whole token")
        return steps

    def _plan(self, clip: torch.Tensor, windowing: Windowing | None, window: int) -> _Plan:
        steps = num_frames(clip.numel(), self.features) // self.min_frames
        if windowing is None:
            return _Plan([0], [(0, steps)])
        hop_frames = windowing.hop_s * 1000.0 / self.features.frame_shift_ms
        hop = max(1, int(round(hop_frames / self.min_frames)))
        return window_plan(steps, window, min(hop, window))

    def _encode(self, clips: list[torch.Tensor], layer: int | None) -> EncoderOutput:
        """One pass of the network over ``clips`` (1-D waveforms at the model's rate, padded
        into one batch): the model's front end computes the filterbanks, on its device (the one
        place audio becomes model input, as in training)."""
        source, padding_mask = pad_features(clips, 0)
        out = self.model(
            source.to(self.device), padding_mask.to(self.device), mask=False, output_layer=layer
        )
        x = out["x"]
        token_padding = out["padding_mask"]
        if token_padding is None:
            token_padding = torch.zeros(x.shape[:2], dtype=torch.bool, device=x.device)
        return EncoderOutput(x, tuple(out["hidden_states"]), token_padding)

    def _encode_windowed(self, clips, plans, window: int, batch_windows: int, layer):
        """Encode every window of every clip (a clip of one window is its own window) in
        batches of ``batch_windows``, and stitch each clip's tokens from its windows.

        A window goes in as the samples its filterbank frames span: Kaldi frames depend only on
        their own 25-ms analysis window, so the model's front end computes exactly the clip's
        frames there (``window x token_frames`` of them)."""
        cfg = self.model.cfg
        per_step = max(1, self.features.num_mel_bins // cfg.token_mel_bins)
        shift, analysis = shift_samples(self.features), window_samples(self.features)
        window_frames = window * self.min_frames
        window_span = (window_frames - 1) * shift + analysis
        jobs = []  # (clip index, first frame or None for the whole clip, rows kept)
        for index, plan in enumerate(plans):
            if len(plan.starts) == 1:
                jobs.append((index, None, 0, plan.keep[0][1]))
                continue
            for start, (first, last) in zip(plan.starts, plan.keep, strict=True):
                jobs.append((index, start * self.min_frames, first - start, last - start))
        pieces = [[] for _ in clips]  # per clip: per window, a tuple of per-layer token rows
        for begin in range(0, len(jobs), batch_windows):
            chunk = jobs[begin : begin + batch_windows]
            waves = [
                clips[index] if frame is None
                else clips[index][frame * shift : frame * shift + window_span]
                for index, frame, _, _ in chunk
            ]
            out = self._encode(waves, layer)
            for row, (index, _, first, last) in enumerate(chunk):
                rows = slice(first * per_step, last * per_step)
                pieces[index].append(tuple(h[row, rows] for h in out.hidden_states))
        lengths = [sum(p[0].shape[0] for p in clip_pieces) for clip_pieces in pieces]
        longest = max(lengths)
        hidden = []
        for depth in range(len(pieces[0][0])):
            sample = pieces[0][0][depth]
            stacked = sample.new_zeros((len(clips), longest, sample.shape[-1]))
            for index, clip_pieces in enumerate(pieces):
                stacked[index, : lengths[index]] = torch.cat([p[depth] for p in clip_pieces])
            hidden.append(stacked)
        positions = torch.arange(longest, device=hidden[0].device)
        padding = positions.unsqueeze(0) >= torch.tensor(lengths, device=positions.device)[:, None]
        return EncoderOutput(hidden[-1], tuple(hidden), padding)

