"""Self-supervised MAE-AST pretraining on unlabelled audio manifests."""

import logging
import os
from dataclasses import dataclass, field

from omegaconf import II, MISSING

from fairseq.dataclass import FairseqDataclass
from fairseq.tasks import FairseqTask, register_task

from ..data.fbank_dataset import FbankAudioDataset
from ..data.manifest import read_manifest
from ..features import FbankConfig

logger = logging.getLogger(__name__)


@dataclass
class MaeAstPretrainingConfig(FairseqDataclass):
    data: str = field(default=MISSING, metadata={"help": "directory holding {split}.tsv manifests"})
    features: FbankConfig = field(
        default_factory=FbankConfig,
        metadata={"help": "filterbank front end; saved in checkpoints and reused downstream"},
    )
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
    skip_invalid: bool = field(
        default=False,
        metadata={
            "help": "log and count bad manifest lines and unreadable/empty/non-finite/too-short "
            "clips instead of stopping with an error"
        },
    )
    seed: int = II("common.seed")


@register_task("mae_ast_pretraining", dataclass=MaeAstPretrainingConfig)
class MaeAstPretrainingTask(FairseqTask):
    cfg: MaeAstPretrainingConfig

    def __init__(self, cfg: MaeAstPretrainingConfig):
        super().__init__(cfg)
        # Clips must hold at least one token; the model's token size is known once it is built.
        self.min_frames = 1

    @classmethod
    def setup_task(cls, cfg: MaeAstPretrainingConfig, **kwargs):
        return cls(cfg)

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
        )

    def max_positions(self):
        return None

    @property
    def source_dictionary(self):
        return None

    @property
    def target_dictionary(self):
        return None
