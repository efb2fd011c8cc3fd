"""The exported model folder: ``model.safetensors`` + ``config.json``, loadable without fairseq.

Written by ``mae-ast-export CHECKPOINT OUT_DIR --format safetensors``; the layout a model hub
serves (one folder, a weights file that cannot run code, a JSON config)::

    OUT_DIR/
      config.json         format, model type, encoder architecture, filterbank settings,
                          classifier head and class list (fine-tuned models), provenance
      model.safetensors   the network's state dict: encoder weights, the BatchNorm running
                          statistics of the input normalisation, and the head if any

Loading needs only torch, safetensors and this package's ``modules``, ``features``:
:func:`load_folder` rebuilds the network, :func:`load_exported_classifier` the classifier and
what prediction reads of its task; ``mae_ast_plugin.load_encoder(OUT_DIR)`` and
``mae-ast-predict OUT_DIR ...`` use them.  Writing (:func:`save_from_checkpoint`) takes a model
loaded from a fairseq checkpoint; :func:`resave_folder` copies a folder.
"""

import dataclasses
import datetime
import json
import os
from dataclasses import dataclass

import torch

from ..atomic_io import atomic_target, atomic_write_text
from ..features import FbankConfig
from ..hashing import file_sha256
from .errors import FolderFormatError, NotAClassifierError

CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"
FORMAT = "mae-ast-plugin/encoder"
FORMAT_VERSION = 1
MODEL_TYPES = ("mae_ast", "ssast")


def is_model_folder(path) -> bool:
    return os.path.isdir(path) and os.path.isfile(os.path.join(path, CONFIG_NAME))


def network_config(model_type: str, encoder: dict):
    """The plain config dataclass of ``model_type`` from the exported ``encoder`` dict; a field
    the installed version does not know is an error (it could change the network)."""
    from ..modules import mae_ast, ssast

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
    from ..modules import mae_ast, ssast
    from ..modules.classifier import ClipClassifier

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
        raise FolderFormatError(
            f"{folder} is a directory without {CONFIG_NAME}: not a folder written by "
            "mae-ast-export --format safetensors"
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
        raise FolderFormatError(
            f"{folder} has {CONFIG_NAME} but no {WEIGHTS_NAME}: copy the whole exported folder"
        )
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

    from .. import __version__

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


def plain_encoder_config(model_cfg) -> dict:
    """Our network's config fields (the plain dataclass's) as JSON values."""
    from ..modules.mae_ast import MaeAstConfig

    return {
        f.name: (str(model_cfg[f.name]) if f.name == "mask_type" else model_cfg[f.name])
        for f in dataclasses.fields(MaeAstConfig)
    }


def save_from_checkpoint(checkpoint: str, model, cfg, task, state: dict, out_dir: str) -> dict:
    """Write ``out_dir/model.safetensors`` and ``config.json`` for the model (pretraining or
    fine-tuned, in eval mode) fairseq loaded from ``checkpoint`` with its ``cfg``, ``task`` and
    checkpoint ``state``; returns the config written.  Needs fairseq."""
    from ..models.mae_ast_classifier import MaeAstClassifier
    from .fairseq_files import features_config, model_config, num_updates

    classifier = None
    if isinstance(model, MaeAstClassifier):
        # the encoder as built (every field, with the dataclass defaults an authors' config
        # lacks), not the pretrained config as saved
        model_type = model.cfg.pretrained_cfg["model"]["_name"]
        encoder_cfg = model_config(model.encoder_model, model_type)
        network = model
        classifier = {
            "classes": task.classes.to_state(),
            "multi_label": bool(task.cfg.multi_label),
            "eval_crop_s": float(task.crop_seconds(training=False)),
            "layer_weighting": bool(model.cfg.layer_weighting),
            "projector_dim": int(model.cfg.projector_dim),
            "head_layer_norm": bool(model.cfg.head_layer_norm),
        }
    else:
        model.remove_pretraining_modules()
        model_type = cfg.model["_name"]
        network, encoder_cfg = model, model_config(model, model_type)
    provenance = {
        "source_checkpoint": os.path.abspath(checkpoint),
        "source_sha256": file_sha256(checkpoint),
        "source_model": cfg.model["_name"],
        "num_updates": num_updates(state),
        "exported_utc": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
    }
    save_folder(
        out_dir,
        network,
        model_type=model_type,
        encoder=plain_encoder_config(encoder_cfg),
        features=features_config(cfg),
        classifier=classifier,
        provenance=provenance,
    )
    return read_config(out_dir)


def resave_folder(folder: str, out_dir: str) -> dict:
    """Write the model of an exported ``folder`` again into ``out_dir`` (the same weights and
    config; the provenance names ``folder`` and keeps the one it had); returns the config
    written.  torch and safetensors only."""
    network, features, config = load_folder(folder)
    provenance = {
        "source_folder": os.path.abspath(folder),
        "source_provenance": config.get("provenance"),
        "exported_utc": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
    }
    save_folder(
        out_dir, network, config["model_type"], config["encoder"], features,
        classifier=config.get("classifier"), provenance=provenance,
    )
    return read_config(out_dir)


def source_of(config: dict) -> str | None:
    """The ``.pt`` a folder was exported from (its provenance), through re-exports."""
    provenance = config.get("provenance") or {}
    while provenance.get("source_provenance") and not provenance.get("source_checkpoint"):
        provenance = provenance["source_provenance"]
    return provenance.get("source_checkpoint")


@dataclass
class ExportedClassList:
    """The class list of an exported classifier folder (``ClassList``'s fields)."""

    mids: list[str]
    names: list[str]

    def __len__(self):
        return len(self.names)


@dataclass
class ExportedTaskConfig:
    multi_label: bool
    features: object  # FbankConfig


class ExportedTask:
    """What prediction reads of a fine-tuning task, from an exported folder's config.json."""

    def __init__(self, config: dict, features):
        head = config["classifier"]
        self.classes = ExportedClassList(
            mids=list(head["classes"]["mid"]), names=list(head["classes"]["display_name"])
        )
        self.cfg = ExportedTaskConfig(multi_label=bool(head["multi_label"]), features=features)
        self._eval_crop_s = float(head["eval_crop_s"])

    def crop_seconds(self, training: bool) -> float:
        return self._eval_crop_s


def load_exported_classifier(folder: str, device: str = "cpu"):
    """(ClipClassifier in eval mode, ExportedTask) of a folder written by ``mae-ast-export
    --format safetensors`` from a fine-tuned checkpoint; torch and safetensors only."""
    network, features, config = load_folder(folder, device=device)
    if not config.get("classifier"):
        raise NotAClassifierError(
            f"{folder} is an exported folder holding a {config['model_type']} encoder without "
            "a classifier head (it has no classes to predict): give a fine-tuned checkpoint or "
            "a folder exported from one"
        )
    return network, ExportedTask(config, features)
