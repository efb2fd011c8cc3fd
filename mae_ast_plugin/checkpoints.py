"""Reading checkpoints (ours or the authors') outside the training loop, without running code.

A ``.pt`` file is a pickle, and unpickling can call any function the file names.  Every loader
of the project reads checkpoints through :func:`load_torch_file`, i.e. ``torch.load(...,
weights_only=True)``, which rebuilds only tensors and plain containers (plus the allow-listed
``argparse.Namespace`` of pre-hydra fairseq checkpoints) and refuses anything else, or reads an
exported folder with safetensors (``mae_ast_plugin.pretrained``).  fairseq's own
``load_checkpoint_to_cpu`` relies on torch's default, which a user can switch off
(``TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD``); ours does not depend on it.
"""

import argparse
import os
import pickle

import torch

from .features import FbankConfig

# Classes a fairseq checkpoint may legitimately contain besides tensors and containers:
# legacy (argparse) checkpoints store their options as a Namespace in state["args"].
SAFE_GLOBALS = [argparse.Namespace]


class UnsafeCheckpointError(ValueError):
    """A checkpoint whose unpickling would construct or call something other than plain data."""


def load_torch_file(path: str) -> dict:
    """``torch.load(path, weights_only=True)`` on the CPU.

    Raises FileNotFoundError for a missing file and :class:`UnsafeCheckpointError` (naming the
    file and the refused global) for a pickle that would run code or build arbitrary objects.
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"checkpoint {path} does not exist")
    try:
        with torch.serialization.safe_globals(SAFE_GLOBALS):
            state = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        # torch's message leads with advice to retry unsafely; keep only what was refused
        lines = [line.strip() for line in str(err).splitlines() if line.strip()]
        refused = [line for line in lines if "GLOBAL" in line or "global" in line]
        reason = (refused or lines or [type(err).__name__])[0]
        raise UnsafeCheckpointError(
            f"refusing to load {path}: it holds more than tensors and plain containers, and "
            f"unpickling it could run code ({reason}).  Checkpoints are read with torch.load("
            "weights_only=True); use one written by fairseq-hydra-train or mae-ast-export, or "
            "a folder from mae-ast-export --format safetensors"
        ) from None
    if not isinstance(state, dict):
        raise ValueError(f"{path} holds a {type(state).__name__}, not a checkpoint dict")
    return state


def read_checkpoint(path: str, arg_overrides=None) -> dict:
    """A fairseq checkpoint state as ``checkpoint_utils.load_checkpoint_to_cpu`` returns it
    (``state["cfg"]`` a DictConfig, fairseq's and, with this plugin imported, the authors'
    upgrades applied), but read with :func:`load_torch_file`.  Needs fairseq."""
    from fairseq import checkpoint_utils
    from fairseq.dataclass.utils import overwrite_args_by_name
    from omegaconf import OmegaConf

    state = load_torch_file(path)
    if state.get("cfg") is None:
        raise ValueError(f"{path} has no 'cfg': not a fairseq (hydra) checkpoint")
    # the same steps as load_checkpoint_to_cpu after its torch.load (omegaconf >= 2.2 branch)
    state["cfg"] = OmegaConf.create(state["cfg"], flags={"allow_objects": True})
    if arg_overrides is not None:
        overwrite_args_by_name(state["cfg"], arg_overrides)
    return checkpoint_utils._upgrade_state_dict(state)


def features_config(cfg) -> FbankConfig:
    """The filterbank settings a checkpoint was trained with (``cfg.task.features``)."""
    saved = cfg.task.get("features") or {}
    return FbankConfig(**{k: v for k, v in saved.items() if k != "_name"})


def build_pretrained_model(state: dict, strict: bool = True):
    """Rebuild the pretraining model (``mae_ast`` or ``ssast``) of a checkpoint state and load its
    weights (with fairseq's config merging and our state-dict upgrade); its front end computes
    the filterbank the checkpoint was trained with (``cfg.task.features``)."""
    from .models.mae_ast import build_pretraining_network

    model_cfg = state["cfg"].model
    model = build_pretraining_network(model_cfg, features_config(state["cfg"]))
    model.load_state_dict(state["model"], strict=strict, model_cfg=model_cfg)
    return model
