"""MAE-AST configuration for Hugging Face ``transformers`` (custom code; written by
``mae-ast-export CHECKPOINT OUT_DIR --format hf`` of the mae-ast-plugin package, which this folder
does not need).  MAE-AST: Baade, Peng, Harwath, "MAE-AST: Masked Autoencoding Audio Spectrogram
Transformer", Interspeech 2022 (arXiv 2203.16691)."""

from transformers import PretrainedConfig


class MaeAstConfig(PretrainedConfig):
    """The encoder (tokens, widths), its log-mel filterbank, the long-audio windows and, for a
    fine-tuned model, the classifier head.

    Tokens: ``token_frames`` x ``token_mel_bins`` blocks of a ``num_mel_bins``-bin Kaldi
    filterbank (25-ms windows every 10 ms): 16 x 16 patches or 2 x 128 frames.  Inputs longer
    than ``window_frames`` frames of whole tokens are encoded in windows of that many frames,
    ``hop_frames`` apart, each token taken from the window where it is most central
    (998 frames = 10 s, the pretraining crop; 750 frames = 7.5 s)."""

    model_type = "mae_ast"

    def __init__(
        self,
        token_frames: int = 16,
        token_mel_bins: int = 16,
        num_mel_bins: int = 128,
        sample_rate: int = 16000,
        frame_length_ms: float = 25.0,
        frame_shift_ms: float = 10.0,
        hidden_size: int = 768,
        num_hidden_layers: int = 12,
        num_attention_heads: int = 12,
        intermediate_size: int = 3072,
        layer_norm_eps: float = 1e-5,
        batch_norm_eps: float = 1e-5,
        window_frames: int = 998,
        hop_frames: int = 750,
        batch_windows: int = 16,
        layer_weighting: bool = False,
        projector_dim: int = 0,
        head_layer_norm: bool = False,
        multi_label: bool = False,
        eval_crop_frames: int | None = None,
        source_model_type: str = "mae_ast",
        **kwargs,
    ):
        kwargs.setdefault("output_hidden_states", True)
        super().__init__(**kwargs)
        self.token_frames = token_frames
        self.token_mel_bins = token_mel_bins
        self.num_mel_bins = num_mel_bins
        self.sample_rate = sample_rate
        self.frame_length_ms = frame_length_ms
        self.frame_shift_ms = frame_shift_ms
        self.hidden_size = hidden_size
        self.num_hidden_layers = num_hidden_layers
        self.num_attention_heads = num_attention_heads
        self.intermediate_size = intermediate_size
        self.layer_norm_eps = layer_norm_eps
        self.batch_norm_eps = batch_norm_eps
        self.window_frames = window_frames
        self.hop_frames = hop_frames
        self.batch_windows = batch_windows
        self.layer_weighting = layer_weighting
        self.projector_dim = projector_dim
        self.head_layer_norm = head_layer_norm
        self.multi_label = multi_label
        self.eval_crop_frames = eval_crop_frames
        self.source_model_type = source_model_type
