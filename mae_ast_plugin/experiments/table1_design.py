"""What the miniature Table 1 (``mae-ast-table1``, :mod:`.table1`) consists of: its rows
(pretraining configs and token types), its tasks (the paper column each stands in for, crop
lengths), the token shapes, the paper's numbers for the cells it stands in for, and the
presets (data size, architecture, updates, seeds).  Data only; the driver
(:mod:`.table1`), the probe step (:mod:`.table1_probe`) and the report
(:mod:`.table1_report`) read it.
"""

from dataclasses import dataclass


@dataclass(frozen=True)
class Row:
    label: str
    pretrain_config: str | None  # config/pretrain/<name>.yaml; None: no pretraining
    tokens: str  # "patch" or "frame"


ROWS = {
    "ssast_patch": Row("SSAST Patch", "ssast_patch", "patch"),
    "ssast_frame": Row("SSAST Frame", "ssast_frame", "frame"),
    "mae_ast_patch": Row("MAE-AST Patch", "mae_ast_patch", "patch"),
    "mae_ast_frame": Row("MAE-AST Frame", "mae_ast_frame", "frame"),
    "scratch_patch": Row("No pretraining, Patch", None, "patch"),
    "scratch_frame": Row("No pretraining, Frame", None, "frame"),
}
TOKENS = {  # the token shapes of config/pretrain's patch and frame configs
    "patch": {"token_frames": 16, "token_mel_bins": 16},
    "frame": {"token_frames": 2, "token_mel_bins": 128},
}


@dataclass(frozen=True)
class Task:
    label: str
    paper_column: str  # the Table 1 column it stands in for
    train_crop_s: float  # task.max_sample_len_s: random crops in training
    eval_crop_s: float | None  # task.eval_max_sample_len_s (0: whole clips)


TASKS = {
    "keyword": Task("Keywords", "KS1", 1.0, None),
    # SUPERB's SID recipe: train on crops, score whole utterances (here 1-6 s)
    "speaker": Task("Speakers", "SID", 3.0, 0.0),
    "events": Task("Sound events", "ESC", 2.0, None),
}

# The paper's numbers for the cells the miniature stands in for (paper.md §1.1 and §7.4):
# MAE-AST with its 6-layer encoder (Table 1), SSAST Base (12 layers, Table 1) and SSAST's
# from-scratch rows (SSAST paper, patch-vs-frame table).
PAPER = {
    "ssast_patch": {"keyword": 96.0, "speaker": 64.3, "events": 88.8},
    "ssast_frame": {"keyword": 96.7, "speaker": 80.8, "events": 85.9},
    "mae_ast_patch": {"keyword": 95.0, "speaker": 37.6, "events": 88.6},
    "mae_ast_frame": {"keyword": 96.6, "speaker": 58.6, "events": 88.0},
    "scratch_patch": {"keyword": 87.2, "speaker": 30.1, "events": 41.9},
    "scratch_frame": {"keyword": 91.7, "speaker": 54.9, "events": 53.7},
}


def _arch(layers, dim, heads, decoder_layers=1):
    return {
        "encoder_layers": layers,
        "encoder_embed_dim": dim,
        "encoder_ffn_embed_dim": 4 * dim,
        "encoder_attention_heads": heads,
        "decoder_layers": decoder_layers,
        "decoder_embed_dim": dim,
    }


PRESETS = {
    # the test suite's: every step runs, in seconds, and measures nothing meaningful
    "tiny": dict(
        data=["--num-pretrain", "8", "--num-pretrain-valid", "2", "--keyword-per-class", "1",
              "--keyword-eval-per-class", "1", "--num-speakers", "3", "--speaker-clips", "2",
              "--speaker-eval-clips", "1", "--events-per-class", "1",
              "--events-eval-per-class", "1"],
        arch=_arch(layers=2, dim=32, heads=2),
        pretrain_updates=3, pretrain_validate=2, pretrain_extra=["dataset.max_tokens=200000"],
        finetune_updates=2, finetune_validate=1,
        finetune_extra=["dataset.batch_size=4", "dataset.batch_size_valid=8"],
        seeds=(1,),
    ),
    # 2 CPU cores, under an hour in all (docs/replication.md)
    "small": dict(
        data=[],
        arch=_arch(layers=3, dim=128, heads=4),
        pretrain_updates=2000, pretrain_validate=250, pretrain_extra=[],
        finetune_updates=500, finetune_validate=100, finetune_extra=[],
        seeds=(1, 2),
    ),
    # one GPU: five times the data, the paper's 3:1 ratio of encoder to decoder layers
    "large": dict(
        data=["--large"],
        arch=_arch(layers=6, dim=384, heads=6, decoder_layers=2),
        pretrain_updates=10000, pretrain_validate=500,
        pretrain_extra=["common.amp=true", "dataset.num_workers=4",
                        "lr_scheduler.warmup_updates=1000"],
        finetune_updates=2000, finetune_validate=100,
        finetune_extra=["common.amp=true", "dataset.num_workers=4", "dataset.batch_size=32"],
        seeds=(1, 2, 3),
    ),
}
