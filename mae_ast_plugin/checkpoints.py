"""Reading pretraining checkpoints (ours or the authors') outside the training loop."""

import os

from omegaconf import DictConfig

from .features import FbankConfig


def read_checkpoint(path: str) -> dict:
    """fairseq's ``load_checkpoint_to_cpu``, which (with this plugin imported) also upgrades the
    authors' checkpoints; ``state["cfg"]`` is a DictConfig."""
    from fairseq import checkpoint_utils

    if not os.path.isfile(path):
        raise FileNotFoundError(f"checkpoint {path} does not exist")
    state = checkpoint_utils.load_checkpoint_to_cpu(path)
    if state.get("cfg") is None:
        raise ValueError(f"{path} has no 'cfg': not a fairseq (hydra) checkpoint")
    return state


def features_config(cfg: DictConfig) -> FbankConfig:
    """The filterbank settings a checkpoint was trained with (``cfg.task.features``)."""
    saved = cfg.task.get("features") or {}
    return FbankConfig(**{k: v for k, v in saved.items() if k != "_name"})


def build_pretrained_model(state: dict, strict: bool = True):
    """Rebuild the pretraining model (``mae_ast`` or ``ssast``) of a checkpoint state and load its
    weights (with fairseq's config merging and our state-dict upgrade)."""
    from fairseq import models

    model_cfg = state["cfg"].model
    model = models.build_model(model_cfg, task=None, from_checkpoint=True)
    model.load_state_dict(state["model"], strict=strict, model_cfg=model_cfg)
    return model
