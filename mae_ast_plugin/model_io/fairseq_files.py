"""fairseq ``.pt`` checkpoints (ours or the authors'): read without running code, rebuilt.

A ``.pt`` file is a pickle, and unpickling can call any function the file names.  Every loader
of the project reads checkpoints through :func:`load_torch_file`, i.e. ``torch.load(...,
weights_only=True)``, which rebuilds only tensors and plain containers (plus the allow-listed
``argparse.Namespace`` of pre-hydra fairseq checkpoints) and refuses anything else, or reads an
exported folder with safetensors (:mod:`.folder`).  fairseq's own
``load_checkpoint_to_cpu`` relies on torch's default, which a user can switch off
(``TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD``); ours does not depend on it.
"""

import argparse
import os
import pickle

import torch

from ..features import FbankConfig
from .errors import ArtefactError, MissingArtefactError, UnsafeCheckpointError

# Classes a fairseq checkpoint may legitimately contain besides tensors and containers:
# legacy (argparse) checkpoints store their options as a Namespace in state["args"].
SAFE_GLOBALS = [argparse.Namespace]


def _check_torch_file(path: str) -> None:
    """Refuse, by its first bytes, a file that torch.save did not write: torch would report a
    text or safetensors file as an unsafe pickle."""
    with open(path, "rb") as handle:
        head = handle.read(9)
    if head.startswith(b"PK\x03\x04") or head.startswith(b"\x80"):  # zip archive, or pickle
        return
    if len(head) == 9 and head[8:9] == b"{":  # safetensors: 8-byte header size, JSON header
        raise ArtefactError(
            f"{path} is a safetensors weights file: give the folder that holds it and its "
            "config.json (written by mae-ast-export --format safetensors)"
        )
    raise ArtefactError(
        f"{path} is not a PyTorch checkpoint (neither torch.save's zip archive nor a pickle): "
        "give a .pt written by fairseq-hydra-train or mae-ast-export, or an exported folder"
    )


def load_torch_file(path: str) -> dict:
    """``torch.load(path, weights_only=True)`` on the CPU.

    Raises :class:`MissingArtefactError` (a FileNotFoundError) for a missing path,
    :class:`ArtefactError` for a directory, and :class:`UnsafeCheckpointError` (naming the
    file and the refused global) for a pickle that would run code or build arbitrary objects.
    """
    path = os.fspath(path)
    if not os.path.exists(path):
        raise MissingArtefactError(f"checkpoint {path} does not exist")
    if not os.path.isfile(path):
        raise ArtefactError(f"{path} is a directory, not a checkpoint file")
    _check_torch_file(path)
    try:
        with torch.serialization.safe_globals(SAFE_GLOBALS):
            state = torch.load(path, map_location="cpu", weights_only=True)
    except (RuntimeError, EOFError) as err:  # a damaged zip archive or a truncated pickle
        raise ArtefactError(f"{path} cannot be read as a PyTorch checkpoint: {err}") from None
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
        raise ArtefactError(f"{path} holds a {type(state).__name__}, not a checkpoint dict")
    return state


def read_checkpoint(path: str, arg_overrides=None) -> dict:
    """A fairseq checkpoint state as ``checkpoint_utils.load_checkpoint_to_cpu`` returns it
    (``state["cfg"]`` a DictConfig, fairseq's and, with this plugin imported, the authors'
    upgrades applied), but read with :func:`load_torch_file`.  Needs fairseq."""
    return upgrade_state(load_torch_file(path), path, arg_overrides)


def upgrade_state(state: dict, path: str, arg_overrides=None) -> dict:
    """The rest of :func:`read_checkpoint` on a state :func:`load_torch_file` returned (changed
    in place).  Needs fairseq."""
    from fairseq import checkpoint_utils
    from fairseq.dataclass.utils import overwrite_args_by_name
    from omegaconf import OmegaConf

    if state.get("cfg") is None:
        raise ArtefactError(f"{path} has no 'cfg': not a fairseq (hydra) checkpoint")
    # the same steps as load_checkpoint_to_cpu after its torch.load (omegaconf >= 2.2 branch)
    state["cfg"] = OmegaConf.create(state["cfg"], flags={"allow_objects": True})
    if arg_overrides is not None:
        overwrite_args_by_name(state["cfg"], arg_overrides)
    return checkpoint_utils._upgrade_state_dict(state)


def features_config(cfg) -> FbankConfig:
    """The filterbank settings a checkpoint was trained with (``cfg.task.features``)."""
    saved = cfg.task.get("features") or {}
    return FbankConfig(**{k: v for k, v in saved.items() if k != "_name"})


def build_pretrained_model(state: dict, strict: bool = True, encoder_only: bool = False):
    """Rebuild the pretraining model (``mae_ast`` or ``ssast``) of a checkpoint state and load its
    weights (with fairseq's config merging and our state-dict upgrade); its front end computes
    the filterbank the checkpoint was trained with (``cfg.task.features``).  ``encoder_only``:
    the weights are those of the encoder alone, so the pretraining modules are removed first."""
    from ..models.mae_ast import build_pretraining_network

    model_cfg = state["cfg"].model
    model = build_pretraining_network(model_cfg, features_config(state["cfg"]))
    if encoder_only:
        model.remove_pretraining_modules()
    model.load_state_dict(state["model"], strict=strict, model_cfg=model_cfg)
    return model


def build_from_state(path: str, state: dict):
    """(model in eval mode, cfg, task) of an upgraded checkpoint state, as fairseq's
    ``load_model_ensemble_and_task`` builds them (the task too: a classifier's class list)."""
    from fairseq import checkpoint_utils

    models, cfg, task = checkpoint_utils.load_model_ensemble_and_task([path], state=state)
    return models[0].eval(), cfg, task


def model_config(model, name: str):
    """The config the pretraining ``model`` (registered as ``name``) was built with: the
    checkpoint's ``cfg.model`` merged with the dataclass defaults of fields it lacks (an
    authors' checkpoint has no chunk sides)."""
    from omegaconf import OmegaConf, open_dict

    merged = OmegaConf.create(OmegaConf.to_container(model.cfg, resolve=True, enum_to_str=True))
    with open_dict(merged):
        merged["_name"] = name
    return merged


def num_updates(state) -> int:
    """Updates the checkpoint was trained for (fairseq's optimizer history)."""
    history = state.get("optimizer_history") or [{}]
    return int(history[-1].get("num_updates", 0))
