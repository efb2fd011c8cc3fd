"""The exported model folder: ``model.safetensors`` + ``config.json``, loadable without fairseq.

Written by ``mae-ast-export CHECKPOINT OUT_DIR --format safetensors``; the layout a model hub
serves (one folder, a weights file that cannot run code, a JSON config)::

    OUT_DIR/
      config.json         format, model type, encoder architecture, filterbank settings,
                          classifier head and class list (fine-tuned models), provenance
      model.safetensors   the network's state dict: encoder weights, the BatchNorm running
                          statistics of the input normalisation, and the head if any

Loading needs only torch, safetensors and this package's ``modules``, ``features``:
:func:`load_folder` rebuilds the network; ``mae_ast_plugin.load_encoder(OUT_DIR)`` and
``mae-ast-predict OUT_DIR ...`` use it.
"""

import dataclasses
import json
import os

import torch

from .atomic_io import atomic_target, atomic_write_text
from .features import FbankConfig

CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"
FORMAT = "mae-ast-plugin/encoder"
FORMAT_VERSION = 1
MODEL_TYPES = ("mae_ast", "ssast")


class FolderFormatError(ValueError):
    """A folder that is not an exported model, or whose config cannot be honoured."""


def is_model_folder(path) -> bool:
    return os.path.isdir(path) and os.path.isfile(os.path.join(path, CONFIG_NAME))


def network_config(model_type: str, encoder: dict):
    """The plain config dataclass of ``model_type`` from the exported ``encoder`` dict; a field
    the installed version does not know is an error (it could change the network)."""
    from .modules import mae_ast, ssast

    if model_type not in MODEL_TYPES:
        raise FolderFormatError(f"model_type {model_type!r} is not one of {', '.join(MODEL_TYPES)}")
    config_class = mae_ast.MaeAstConfig if model_type == "mae_ast" else ssast.SsastConfig
    known = {f.name for f in dataclasses.fields(config_class)}
    unknown = sorted(set(encoder) - known)
    if unknown:
        raise FolderFormatError(
            f"encoder config fields {unknown} are unknown to this version of mae_ast_plugin: "
            "upgrade the package (pip install -U mae_ast_plugin)"
        )
    return config_class(**encoder)


def build_network(config: dict) -> torch.nn.Module:
    """The (untrained) network a folder config describes: the encoder (pretraining modules
    removed; its front end computes the folder's ``features``), wrapped in a ClipClassifier
    when ``config["classifier"]`` is set."""
    from .modules import mae_ast, ssast
    from .modules.classifier import ClipClassifier

    cfg = network_config(config["model_type"], config["encoder"])
    network_class = mae_ast.MaeAst if config["model_type"] == "mae_ast" else ssast.Ssast
    network = network_class(cfg, features=FbankConfig(**config["features"]))
    network.remove_pretraining_modules()
    head = config.get("classifier")
    if head:
        network = ClipClassifier(
            network,
            num_classes=len(head["classes"]["display_name"]),
            layer_weighting=head["layer_weighting"],
            projector_dim=head["projector_dim"],
            head_layer_norm=head["head_layer_norm"],
        )
    return network


def read_config(folder: str) -> dict:
    path = os.path.join(folder, CONFIG_NAME)
    if not os.path.isfile(path):
        raise FileNotFoundError(
            f"{folder} has no {CONFIG_NAME}: not a folder written by mae-ast-export --format "
            "safetensors"
        )
    with open(path, encoding="utf-8") as handle:
        try:
            config = json.load(handle)
        except json.JSONDecodeError as err:
            raise FolderFormatError(f"{path}:{err.lineno}: invalid JSON: {err.msg}") from None
    if config.get("format") != FORMAT:
        raise FolderFormatError(
            f"{path}: 'format' is {config.get('format')!r}, expected {FORMAT!r}"
        )
    if config.get("format_version", 0) > FORMAT_VERSION:
        raise FolderFormatError(
            f"{path}: format_version {config['format_version']} is newer than this package "
            f"reads ({FORMAT_VERSION}): upgrade mae_ast_plugin"
        )
    return config


def load_folder(folder: str, device="cpu"):
    """(network in eval mode, FbankConfig, config dict) of an exported folder.  Reads the weights
    with safetensors and loads them strictly (every tensor present, no extra one)."""
    from safetensors.torch import load_file

    config = read_config(folder)
    network = build_network(config)
    weights = os.path.join(folder, WEIGHTS_NAME)
    if not os.path.isfile(weights):
        raise FileNotFoundError(f"{folder} has {CONFIG_NAME} but no {WEIGHTS_NAME}")
    state = load_file(weights, device="cpu")
    try:
        network.load_state_dict(state, strict=True)
    except RuntimeError as err:
        raise FolderFormatError(f"{weights} does not match {CONFIG_NAME}: {err}") from None
    features = FbankConfig(**config["features"])
    return network.to(device).eval(), features, config


def save_folder(
    folder: str,
    network: torch.nn.Module,
    model_type: str,
    encoder: dict,
    features: FbankConfig,
    classifier: dict | None = None,
    provenance: dict | None = None,
) -> None:
    """Write ``network``'s state dict and the config describing it into ``folder`` (created; each
    file written under a temporary name and renamed).  ``encoder``: the fields of the network's
    config dataclass; ``classifier``: None, or the head options and ``classes`` (``mid`` and
    ``display_name`` lists) and ``multi_label``, ``eval_crop_s``."""
    from safetensors.torch import save_file

    from . import __version__

    network_config(model_type, encoder)  # refuses fields the loader would not know
    config = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "model_type": model_type,
        "encoder": encoder,
        "features": dataclasses.asdict(features),
        "classifier": classifier,
        "provenance": {"plugin_version": __version__, **(provenance or {})},
    }
    text = json.dumps(config, indent=1, allow_nan=False) + "\n"
    # safetensors stores each tensor once and refuses views of shared storage: copy them
    state = {k: v.detach().to("cpu").contiguous().clone() for k, v in network.state_dict().items()}
    os.makedirs(folder, exist_ok=True)
    with atomic_target(os.path.join(folder, WEIGHTS_NAME)) as temporary:
        save_file(state, temporary, metadata={"format": "pt"})
    atomic_write_text(os.path.join(folder, CONFIG_NAME), text)
