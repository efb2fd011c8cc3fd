"""Fine-tuning on labelled clips: single-label (accuracy) or multi-label (mAP) classification.

Data layout in ``task.data``: the pretraining manifests ``{split}.tsv``, a parallel
``{split}.lbl`` per split and ``labels.csv`` (see :mod:`mae_ast_plugin.data.labelled_dataset`).
The class list is kept in the task state, which fairseq saves in every checkpoint, so a
fine-tuned checkpoint evaluates and predicts without the training data.
"""

import logging
import os
from dataclasses import dataclass, field
from typing import Optional

from fairseq.tasks import register_task
from omegaconf import OmegaConf, open_dict

from ..data.labelled_dataset import (
    ClassList,
    LabelError,
    LabelledFbankDataset,
    read_class_list,
    read_clip_labels,
)
from ..data.manifest import read_manifest
from .audio_task import AudioTask, AudioTaskConfig

logger = logging.getLogger(__name__)

CLASS_LIST_FILE = "labels.csv"
NO_CROP_S = 24 * 3600.0  # a crop no clip reaches


@dataclass
class MaeAstAudioClassificationConfig(AudioTaskConfig):
    max_sample_len_s: float = field(
        default=10.0,
        metadata={
            "help": "training clips are cropped to this many seconds at a random offset; 0: never"
        },
    )
    eval_max_sample_len_s: Optional[float] = field(
        default=None,
        metadata={
            "help": "crop (from the start) for the other splits; None: max_sample_len_s, 0: never "
            "(SUPERB SID trains on 8 s crops and scores whole utterances)"
        },
    )
    multi_label: bool = field(
        default=False,
        metadata={"help": "clips may have several classes (AudioSet): BCE loss and mAP"},
    )


@register_task("mae_ast_audio_classification", dataclass=MaeAstAudioClassificationConfig)
class MaeAstAudioClassificationTask(AudioTask):
    cfg: MaeAstAudioClassificationConfig

    def __init__(self, cfg: MaeAstAudioClassificationConfig):
        super().__init__(cfg)
        # Read lazily: a restored checkpoint fills the state first, so labels.csv is only
        # needed when training starts.
        self.state.add_factory("classes", self._read_class_list)
        self._optimizer_checked = False

    def _read_class_list(self) -> dict:
        return read_class_list(os.path.join(self.cfg.data, CLASS_LIST_FILE)).to_state()

    @property
    def classes(self) -> ClassList:
        return ClassList.from_state(self.state.classes)

    def _check_class_list(self):
        """The data's labels.csv, where present, must be the class list the model was trained on
        (it is, trivially, when training starts)."""
        path = os.path.join(self.cfg.data, CLASS_LIST_FILE)
        if os.path.isfile(path) and read_class_list(path).names != self.classes.names:
            raise LabelError(
                f"{path} lists other classes than the checkpoint's {len(self.classes)} "
                "(evaluate on data prepared with the same class list)"
            )

    def crop_seconds(self, training: bool) -> float:
        """Longest audio a clip keeps, in training or evaluation."""
        crop_s = self.cfg.max_sample_len_s
        if not training and self.cfg.eval_max_sample_len_s is not None:
            crop_s = self.cfg.eval_max_sample_len_s
        return crop_s if crop_s > 0 else NO_CROP_S

    def load_dataset(self, split: str, **kwargs):
        self._check_class_list()
        manifest = read_manifest(
            os.path.join(self.cfg.data, f"{split}.tsv"), skip_invalid=self.cfg.skip_invalid
        )
        labels = read_clip_labels(
            os.path.join(self.cfg.data, f"{split}.lbl"),
            manifest,
            num_classes=len(self.classes),
            multi_label=self.cfg.multi_label,
        )
        training = split.startswith("train")
        self.datasets[split] = LabelledFbankDataset(
            manifest,
            labels,
            num_classes=len(self.classes),
            multi_label=self.cfg.multi_label,
            features=self.cfg.features,
            max_sample_len_s=self.crop_seconds(training),
            random_crop=training,
            min_frames=self.min_frames,
            skip_invalid=self.cfg.skip_invalid,
            seed=self.cfg.seed,
            fbank_cache=self.fbank_cache(split, manifest),
        )

    def build_model(self, cfg, from_checkpoint=False):
        model = super().build_model(cfg, from_checkpoint)
        # fairseq builds the model from a merged copy of cfg and saves the caller's: record the
        # encoder config the model resolved there, so that a fine-tuned checkpoint rebuilds
        # without the pretrained one.
        if OmegaConf.is_config(cfg) and getattr(model, "cfg", None) is not None:
            with open_dict(cfg):
                cfg.pretrained_cfg = model.cfg.pretrained_cfg
        # Clips must hold one token: the datasets get the token size at construction
        # (fairseq_cli/train.py builds the model before it loads any dataset).
        self.min_frames = model.min_frames
        return model

    def train_step(self, sample, model, criterion, optimizer, update_num, ignore_grad=False):
        if not self._optimizer_checked:
            model.check_optimizer(optimizer)  # fairseq's DDP wrappers forward attribute access
            self._optimizer_checked = True
        return super().train_step(sample, model, criterion, optimizer, update_num, ignore_grad)
