"""Tiny exported model folders (``mae-ast-export --format safetensors`` layout) built directly from
the plain-PyTorch networks: what ``load_encoder`` reads, made in milliseconds and without fairseq.
The weights are random (seeded), the BatchNorm statistics those of log-mel filterbanks."""

import dataclasses
from pathlib import Path

import numpy as np
import torch

from mae_ast_plugin.features import FbankConfig
from mae_ast_plugin.model_io.folder import save_folder
from mae_ast_plugin.modules.classifier import ClipClassifier
from mae_ast_plugin.modules.mae_ast import MaeAst, MaeAstConfig

TOKENS = {"patch": dict(token_frames=16, token_mel_bins=16),
          "frame": dict(token_frames=2, token_mel_bins=128)}


def tiny_folder(path: Path, token: str = "patch", classes: int = 0, seed: int = 0,
                width: int = 32, layers: int = 2, heads: int = 2, ffn: int = 64,
                superb_head: bool = False) -> Path:
    """Write a tiny model folder at ``path``: an MAE-AST encoder (``token``: patch or frame),
    with a ``classes``-way ClipClassifier head when ``classes`` > 0 (``width``, ``layers``,
    ``heads``, ``ffn``: 768, 12, 12, 3072 give the paper's Table 1 encoder size).
    ``superb_head``: the head reads a learned (random here) weighting of every layer, projects
    tokens to 16 dimensions and applies a LayerNorm before the Linear layer."""
    torch.manual_seed(seed)
    cfg = MaeAstConfig(**TOKENS[token], encoder_layers=layers, encoder_embed_dim=width,
                       encoder_ffn_embed_dim=ffn,
                       encoder_attention_heads=heads,
                       decoder_layers=1, decoder_embed_dim=width)
    network = MaeAst(cfg)
    network.remove_pretraining_modules()
    network.batch_norm.running_mean.fill_(-6.0)  # log-mel values of speech-level audio
    network.batch_norm.running_var.fill_(16.0)
    head = None
    if classes:
        options = {"layer_weighting": superb_head, "projector_dim": 16 if superb_head else 0,
                   "head_layer_norm": superb_head}
        network = ClipClassifier(network, num_classes=classes, **options)
        if superb_head:
            torch.nn.init.normal_(network.layer_weights)
        names = [f"class {i}" for i in range(classes)]
        head = {**options,
                "classes": {"mid": [f"/m/{i:03d}" for i in range(classes)],
                            "display_name": names},
                "multi_label": False, "eval_crop_s": 24 * 3600.0}  # SID-like: no crop
    save_folder(str(path), network.eval(), "mae_ast", dataclasses.asdict(cfg), FbankConfig(),
                classifier=head, provenance={"made_by": "tests/tiny_folders.py"})
    return path


def tone_clip(seconds: float, seed: int = 0, rate: int = 16000) -> np.ndarray:
    """A chirp plus noise (float32, mono) that changes over time, so windows differ."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * rate)) / rate
    f = 200 + 150 * np.sin(2 * np.pi * t / 7.0)
    wave = 0.3 * np.sin(2 * np.pi * np.cumsum(f) / rate) + 0.05 * rng.standard_normal(len(t))
    return wave.astype(np.float32)
