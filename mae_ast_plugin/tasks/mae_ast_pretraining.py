"""Self-supervised MAE-AST pretraining on unlabelled audio manifests.

The loader yields cropped waveforms (or cached filterbanks, ``task.fbank_cache``); the model
computes the Kaldi fbank on its own device inside ``forward``.  Speed options (measured in
docs/benchmarks.md): ``static_shapes`` pads every batch to the crop and to ``dataset.batch_size``
clips, ``compile`` runs the model under ``torch.compile`` inside fairseq's trainer.  Checkpoints
are the same with and without them (no ``_orig_mod.`` keys).
"""

import logging
import os
from dataclasses import dataclass, field
from typing import Optional

import torch
from fairseq.logging import metrics
from fairseq.tasks import register_task
from omegaconf import II
from omegaconf.errors import InterpolationResolutionError

from ..data.fbank_dataset import FbankAudioDataset
from ..data.manifest import read_manifest
from ..modules.masking import min_clip_frames
from ..modules.tokens import mel_blocks
from ..modules.transformer import PostLNLayer
from .audio_task import AudioTask, AudioTaskConfig

logger = logging.getLogger(__name__)


@dataclass
class MaeAstPretrainingConfig(AudioTaskConfig):
    max_sample_len_s: float = field(
        default=10.0,
        metadata={
            "help": "longer clips are cropped to this many seconds (random offset in train* "
            "splits, from the start otherwise); shorter ones are padded"
        },
    )
    min_sample_size: int = field(
        default=0, metadata={"help": "drop manifest entries with fewer samples (native rate)"}
    )
    static_shapes: bool = field(
        default=False,
        metadata={
            "help": "pad every batch to the crop (max_sample_len_s) and to dataset.batch_size "
            "clips, so masked and visible counts are fixed per run (for task.compile)"
        },
    )
    batch_size: Optional[int] = field(
        default=II("dataset.batch_size"),
        metadata={"help": "set from dataset.batch_size: static_shapes pads train batches to it"},
    )
    batch_size_valid: Optional[int] = field(
        default=II("dataset.batch_size_valid"),
        metadata={"help": "set from dataset.batch_size_valid: the same for the other splits"},
    )
    compile: bool = field(
        default=False,
        metadata={"help": "torch.compile every Transformer layer inside fairseq's trainer"},
    )
    compile_mode: str = field(
        default="default",
        metadata={"help": "torch.compile mode: default, reduce-overhead, max-autotune, ..."},
    )
    compile_backend: str = field(
        default="inductor", metadata={"help": "torch.compile backend (inductor, aot_eager, ...)"}
    )


def compiled_graphs() -> int:
    """Graphs torch.compile (dynamo) has compiled in this process, recompilations included."""
    from torch._dynamo.utils import counters

    return int(counters["stats"]["unique_graphs"])


@register_task("mae_ast_pretraining", dataclass=MaeAstPretrainingConfig)
class MaeAstPretrainingTask(AudioTask):
    cfg: MaeAstPretrainingConfig

    def __init__(self, cfg: MaeAstPretrainingConfig):
        super().__init__(cfg)
        self._compiled = False

    def build_model(self, cfg, from_checkpoint=False):
        # the model takes task.features and task.static_shapes at construction (build_model)
        model = super().build_model(cfg, from_checkpoint)
        # fairseq_cli/train.py builds the model before it loads any dataset.  Shorter clips would
        # mask nothing: the dataset refuses them (naming the manifest line).
        self.min_frames = min_clip_frames(
            model.cfg.token_frames,
            mel_blocks(self.cfg.features.num_mel_bins, model.cfg.token_mel_bins),
            model.cfg.mask_ratio,
        )
        return model

    def static_batch_clips(self, training: bool) -> int:
        """Clips every batch of a split is padded to under ``static_shapes`` (0: no padding)."""
        if not self.cfg.static_shapes:
            return 0
        name = "batch_size" if training else "batch_size_valid"
        try:
            clips = getattr(self.cfg, name)
        except InterpolationResolutionError:  # a task config outside a full fairseq config
            clips = None
        if not clips:
            raise ValueError(
                "task.static_shapes pads every batch to dataset.batch_size clips: set "
                "dataset.batch_size (and dataset.batch_size_valid), e.g. dataset.batch_size=32"
            )
        return int(clips)

    def load_dataset(self, split: str, **kwargs):
        manifest = read_manifest(
            os.path.join(self.cfg.data, f"{split}.tsv"),
            skip_invalid=self.cfg.skip_invalid,
            min_samples=self.cfg.min_sample_size,
        )
        training = split.startswith("train")
        self.datasets[split] = FbankAudioDataset(
            manifest,
            features=self.cfg.features,
            max_sample_len_s=self.cfg.max_sample_len_s,
            random_crop=training,
            min_frames=self.min_frames,
            skip_invalid=self.cfg.skip_invalid,
            seed=self.cfg.seed,
            fbank_cache=self.fbank_cache(split, manifest),
            pad_to_crop=bool(self.cfg.static_shapes),
            pad_to_clips=self.static_batch_clips(training),
        )

    def get_batch_iterator(self, dataset, max_tokens=None, max_sentences=None, **kwargs):
        static_clips = getattr(dataset, "pad_to_clips", 0)
        if static_clips and not 0 < (max_sentences or 0) <= static_clips:
            raise ValueError(
                f"task.static_shapes pads every batch of this split to {static_clips} clips "
                f"(dataset.batch_size / batch_size_valid) but batches of {max_sentences} were "
                "asked for: iterate it with max_sentences at most that"
            )
        return super().get_batch_iterator(
            dataset, max_tokens=max_tokens, max_sentences=max_sentences, **kwargs
        )

    def _compile(self, model):
        if self.cfg.compile and not self._compiled:
            # Every Transformer layer, in place (nn.Module.compile): parameter names and
            # checkpoints stay unchanged.  Layer by layer, not the whole model: masking and
            # LayerDrop decide on the host between layers, which would break a whole-model graph
            # and recompile it for every pattern of dropped layers.
            if self.cfg.static_shapes:
                # one graph per shape (encoder and decoder lengths differ), never a slower
                # dynamic-shape one
                torch._dynamo.config.automatic_dynamic_shapes = False
            for module in model.modules():
                if isinstance(module, PostLNLayer):
                    module.compile(mode=self.cfg.compile_mode, backend=self.cfg.compile_backend)
            self._compiled = True
            logger.info(
                "torch.compile(mode=%s, backend=%s)",
                self.cfg.compile_mode,
                self.cfg.compile_backend,
            )

    def train_step(self, sample, model, criterion, optimizer, update_num, ignore_grad=False):
        self._compile(model)
        before = compiled_graphs() if self.cfg.compile else 0
        result = super().train_step(sample, model, criterion, optimizer, update_num, ignore_grad)
        if self.cfg.compile:
            result[2]["compiled_graphs"] = compiled_graphs() - before
        return result

    def valid_step(self, sample, model, criterion):
        self._compile(model)
        return super().valid_step(sample, model, criterion)

    def reduce_metrics(self, logging_outputs, criterion):
        super().reduce_metrics(logging_outputs, criterion)
        if self.cfg.compile:
            # graphs compiled during the logged steps: 0 once warm (no recompilation)
            new = sum(log.get("compiled_graphs", 0) for log in logging_outputs)
            metrics.log_scalar_sum("compiled_graphs", new, round=0)
