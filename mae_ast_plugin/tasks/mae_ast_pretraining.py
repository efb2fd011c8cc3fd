"""Self-supervised MAE-AST pretraining on unlabelled audio manifests."""

import logging
import os
from dataclasses import dataclass, field

from fairseq.tasks import register_task

from ..data.fbank_dataset import FbankAudioDataset
from ..data.manifest import read_manifest
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


@register_task("mae_ast_pretraining", dataclass=MaeAstPretrainingConfig)
class MaeAstPretrainingTask(AudioTask):
    cfg: MaeAstPretrainingConfig

    def build_model(self, cfg, from_checkpoint=False):
        model = super().build_model(cfg, from_checkpoint)
        self.min_frames = getattr(model.cfg, "token_frames", 1)
        return model

    def load_dataset(self, split: str, **kwargs):
        manifest = read_manifest(
            os.path.join(self.cfg.data, f"{split}.tsv"),
            skip_invalid=self.cfg.skip_invalid,
            min_samples=self.cfg.min_sample_size,
        )
        self.datasets[split] = FbankAudioDataset(
            manifest,
            features=self.cfg.features,
            max_sample_len_s=self.cfg.max_sample_len_s,
            random_crop=split.startswith("train"),
            min_frames=self.min_frames,
            skip_invalid=self.cfg.skip_invalid,
            seed=self.cfg.seed,
            fbank_cache=self.fbank_cache(split, manifest),
        )
