"""Loading and saving models: the one door for every model file the plugin reads or writes.

What a path holds is recognised by :func:`identify` (by its content, never its name):

=====================  ======================================================================
kind                   what it is
=====================  ======================================================================
``pretraining``        our fairseq checkpoint of ``mae_ast`` or ``ssast`` pretraining (patch
                       or frame tokens), with the decoder
``authors``            a checkpoint in the authors' format (AlanBaade/MAE-AST-Public, their
                       released ``chunk_patch_75_12LayerEncoder.pt``...), or one we wrote with
                       ``mae-ast-export --format authors``: the same file layout
``classifier``         our fine-tuned ``mae_ast_classifier`` checkpoint (from our pretraining
                       checkpoint, the authors', or from scratch): encoder and head, no decoder
``encoder_folder``     a folder from ``mae-ast-export --format safetensors`` of a pretraining
                       checkpoint: the encoder only
``classifier_folder``  the same of a fine-tuned checkpoint: encoder and classifier head
=====================  ======================================================================

Each entry point takes what it can use and refuses the rest with an :class:`ArtefactError`
naming the path, what it is and what to give instead (README "Which model goes where"):

- :func:`load_encoder` (``mae_ast_plugin.load_encoder``, ``mae-ast-extract-features``,
  ``mae-ast-probe``): every kind; a classifier gives its encoder.
- :func:`encoder_source` (fine-tuning's ``model.pretrained_checkpoint``, ``mae-ast-cv
  --pretrained``): every kind; a classifier's head is dropped.
- :func:`load_classifier` (``mae-ast-predict``; ``mae-ast-evaluate`` with ``data``): the two
  classifier kinds; scoring a split needs the ``.pt`` (its fine-tuning task).
- :func:`load_pretraining_model` (``mae-ast-plot-reconstruction``): the kinds with a decoder,
  ``pretraining`` and ``authors``.
- :func:`export` (``mae-ast-export``): ``safetensors`` from every kind; ``authors`` from MAE-AST
  pretraining checkpoints (ours or theirs), the only models their plugin has.

``.pt`` files are read with ``torch.load(weights_only=True)`` (:mod:`.fairseq_files`; a file
that would run code is refused) and need fairseq to be rebuilt; exported folders are read with
safetensors (:mod:`.folder`) and need only torch: this package, :mod:`.folder` and
:mod:`.errors` import no fairseq, omegaconf or hydra.  :mod:`.authors` holds the authors'
format both ways.
"""

import os
from dataclasses import dataclass, field

from .errors import (  # noqa: F401  (the errors of every loader, importable from here)
    ArtefactError,
    FolderFormatError,
    IncompatibleCheckpointError,
    MissingArtefactError,
    NotAClassifierError,
    NotExportableError,
    UnsafeCheckpointError,
)
from .fairseq_files import (  # noqa: F401
    build_pretrained_model,
    features_config,
    load_torch_file,
    read_checkpoint,
)
from .folder import is_model_folder, load_exported_classifier, load_folder, read_config, source_of

PRETRAINING = "pretraining"
AUTHORS = "authors"
CLASSIFIER = "classifier"
ENCODER_FOLDER = "encoder_folder"
CLASSIFIER_FOLDER = "classifier_folder"
FOLDERS = (ENCODER_FOLDER, CLASSIFIER_FOLDER)
FORMATS = ("authors", "safetensors")
_NAMES = {"mae_ast": "MAE-AST", "ssast": "SSAST"}
FINETUNED = "a fine-tuned checkpoint (checkpoint_best.pt of a config/finetune run) or a folder " \
    "exported from one"


@dataclass
class Artefact:
    """What :func:`identify` found at ``path``: its ``kind`` (one of the module's constants),
    the encoder's ``model_type`` (``mae_ast``/``ssast``), and ``source``: the pretraining
    checkpoint a classifier was fine-tuned from, or the ``.pt`` a folder was exported from
    (None when not recorded).  ``state`` is the checkpoint as read (``.pt``), ``config`` the
    folder's config.json."""

    path: str
    kind: str
    model_type: str
    source: str | None = None
    state: dict | None = field(default=None, repr=False)
    config: dict | None = field(default=None, repr=False)

    @property
    def is_folder(self) -> bool:
        return self.kind in FOLDERS

    def describe(self) -> str:
        """``PATH is ...``: the sentence every refusal starts with."""
        name = _NAMES.get(self.model_type, self.model_type)
        what = {
            PRETRAINING: f"an {name} pretraining checkpoint",
            AUTHORS: "a checkpoint in the authors' MAE-AST format",
            CLASSIFIER: f"a fine-tuned classifier checkpoint ({name} encoder)",
            ENCODER_FOLDER: f"an exported folder (mae-ast-export --format safetensors) holding "
            f"an {name} encoder without a classifier head",
            CLASSIFIER_FOLDER: f"an exported folder (mae-ast-export --format safetensors) "
            f"holding a fine-tuned classifier ({name} encoder)",
        }[self.kind]
        return f"{self.path} is {what}"

    def give_source(self, what: str) -> str:
        """``give WHAT[: SOURCE (where it is recorded)]``."""
        if not self.source:
            return f"give {what}"
        recorded = ("config.json provenance" if self.is_folder
                    else "model.pretrained_cfg.checkpoint")
        return f"give {what}: {self.source} (its {recorded})"


def identify(path) -> Artefact:
    """What ``path`` holds (see the module docstring); reads a ``.pt`` once (weights_only) and
    a folder's config.json, and needs no fairseq.  Raises :class:`MissingArtefactError` for a
    path that does not exist and :class:`ArtefactError` for anything else that is not a model
    of this plugin or the authors'."""
    path = os.fspath(path)
    if not os.path.exists(path):
        raise MissingArtefactError(f"{path} does not exist")
    if os.path.isdir(path):
        if not is_model_folder(path):
            found = sorted(name for name in os.listdir(path) if name.endswith(".pt"))
            usual = [name for name in ("checkpoint_best.pt", "checkpoint_last.pt") if name in found]
            found = usual + [name for name in found if name not in usual]
            hint = (f"; it holds {', '.join(found[:4])}: give one of them" if found else
                    "; give a checkpoint .pt or a folder written by mae-ast-export")
            if os.path.isfile(os.path.join(path, "model.safetensors")):
                hint = "; it has model.safetensors: copy the exported folder with its config.json"
            raise FolderFormatError(
                f"{path} is a directory without config.json, not a folder written by "
                f"mae-ast-export --format safetensors{hint}"
            )
        config = read_config(path)
        kind = CLASSIFIER_FOLDER if config.get("classifier") else ENCODER_FOLDER
        return Artefact(path, kind, config["model_type"], source_of(config), config=config)

    state = load_torch_file(path)
    cfg = state.get("cfg")
    model = cfg.get("model") if isinstance(cfg, dict) else None
    if not isinstance(model, dict):
        raise ArtefactError(
            f"{path} is a PyTorch file but not a fairseq checkpoint (no cfg.model): give a .pt "
            "written by fairseq-hydra-train or mae-ast-export, or an exported folder"
        )
    name = model.get("_name")
    if name == "mae_ast_classifier":
        pretrained = model.get("pretrained_cfg") or {}
        model_type = (pretrained.get("model") or {}).get("_name", "mae_ast")
        return Artefact(path, CLASSIFIER, model_type, pretrained.get("checkpoint") or None,
                        state=state)
    if name == "mae_ast" and "ast_kernel_size_time" in model:
        return Artefact(path, AUTHORS, "mae_ast", state=state)
    if name in _NAMES:
        return Artefact(path, PRETRAINING, name, state=state)
    raise ArtefactError(
        f"{path} is a fairseq checkpoint of model {name!r}, not one of this plugin's (mae_ast, "
        "ssast, mae_ast_classifier) or the authors' MAE-AST"
    )


def _upgraded(artefact: Artefact, arg_overrides=None) -> dict:
    """The checkpoint state of a ``.pt`` artefact as fairseq's loader returns it."""
    from .fairseq_files import upgrade_state

    return upgrade_state(artefact.state, artefact.path, arg_overrides)


# --------------------------------------------------------------------------------------------
# Encoders
@dataclass
class EncoderSource:
    """An encoder's config (``model_cfg``, with ``_name``), filterbank settings and weights, from
    any kind of artefact; ``with_decoder``: the weights include the pretraining modules."""

    artefact: Artefact
    model_cfg: dict
    features: object  # FbankConfig
    weights: dict = field(repr=False)
    with_decoder: bool

    def build(self, model_cfg: dict | None = None):
        """The fairseq encoder model (pretraining modules removed, in train mode as fairseq
        builds models) with these weights, loaded strictly; ``model_cfg`` (default
        ``self.model_cfg``) may change training-only fields such as dropout.  Needs fairseq."""
        import dataclasses

        from omegaconf import OmegaConf

        features = dataclasses.asdict(self.features)
        cfg = {"model": model_cfg or self.model_cfg, "task": {"features": features}}
        state = {"cfg": OmegaConf.create(cfg), "model": dict(self.weights)}
        model = build_pretrained_model(state, encoder_only=not self.with_decoder)
        if self.with_decoder:
            model.remove_pretraining_modules()
        return model


def _encoder_weights(state: dict) -> dict:
    """A classifier's encoder weights (``encoder_model.*``), named as the encoder's own."""
    prefix = "encoder_model."
    return {key[len(prefix):]: value for key, value in state.items() if key.startswith(prefix)}


def encoder_source(path) -> EncoderSource:
    """The encoder of any artefact (a path, or the :class:`Artefact` :func:`identify` returned
    for it) as an :class:`EncoderSource`: what fine-tuning's ``model.pretrained_checkpoint``
    starts from (a classifier's head is dropped).  Needs fairseq."""
    from omegaconf import OmegaConf

    from ..features import FbankConfig

    artefact = path if isinstance(path, Artefact) else identify(path)
    if artefact.is_folder:
        from safetensors.torch import load_file

        from .folder import WEIGHTS_NAME

        config = artefact.config
        weights = load_file(os.path.join(artefact.path, WEIGHTS_NAME), device="cpu")
        if artefact.kind == CLASSIFIER_FOLDER:
            weights = _encoder_weights(weights)
        model_cfg = {**config["encoder"], "_name": config["model_type"]}
        return EncoderSource(artefact, model_cfg, FbankConfig(**config["features"]), weights,
                             with_decoder=False)

    state = _upgraded(artefact)
    cfg = state["cfg"]

    def plain(node) -> dict:
        return OmegaConf.to_container(OmegaConf.create(node), resolve=True, enum_to_str=True)

    if artefact.kind == CLASSIFIER:
        return EncoderSource(artefact, plain(cfg.model.pretrained_cfg["model"]),
                             features_config(cfg), _encoder_weights(state["model"]),
                             with_decoder=False)
    return EncoderSource(artefact, plain(cfg.model), features_config(cfg), state["model"],
                         with_decoder=True)


def load_encoder(path, device="cpu"):
    """An :class:`~mae_ast_plugin.encoder.MaeAstEncoder` (eval mode, on ``device``) of any
    artefact: a pretraining checkpoint (``mae_ast``/``ssast``, ours or the authors'), a
    fine-tuned classifier (its encoder), or an exported folder.

    ``.pt`` files need fairseq and are read with ``torch.load(..., weights_only=True)`` (a file
    that would run code is refused with :class:`UnsafeCheckpointError`); a folder written by
    ``mae-ast-export ... --format safetensors`` needs only torch and safetensors.  Raises
    :class:`ArtefactError` for a path that holds no model."""
    from ..encoder import MaeAstEncoder

    artefact = identify(path)
    if artefact.is_folder:
        network, features, _config = load_folder(artefact.path)
        return MaeAstEncoder(getattr(network, "encoder_model", network), features, device=device)
    source = encoder_source(artefact)
    return MaeAstEncoder(source.build(), source.features, device=device)


# --------------------------------------------------------------------------------------------
# Classifiers and pretraining models
def load_classifier(path, data: str | None = None, device: str = "cpu", task_overrides=None):
    """(classifier in eval mode on ``device``, task) of a fine-tuned checkpoint or of a folder
    exported from one (its task: the class list, label type, evaluation crop and filterbank).

    ``data`` replaces the checkpoint's data directory and ``task_overrides`` other task settings
    (e.g. ``{"skip_invalid": True}``), to load evaluation splits: only a ``.pt`` has the whole
    task for that.  Raises :class:`NotAClassifierError` for a model without a head."""
    artefact = identify(path)
    if artefact.kind == CLASSIFIER_FOLDER:
        if data or task_overrides:
            raise ArtefactError(
                f"{artefact.describe()}, which keeps the class list but not the fine-tuning "
                f"task that loads and scores a split; {artefact.give_source('the fine-tuned .pt')}"
            )
        return load_exported_classifier(artefact.path, device=device)
    if artefact.kind != CLASSIFIER:
        without = "" if artefact.kind == ENCODER_FOLDER else " without a classifier head"
        raise NotAClassifierError(
            f"{artefact.describe()}{without}: it has no classes to predict or score; give "
            f"{FINETUNED}"
        )
    from .fairseq_files import build_from_state

    # How the training run read its data (bad clips skipped, its machine's fbank cache) is the
    # calling tool's to decide, not the training run's: off unless task_overrides says so.
    task = {"skip_invalid": False, "fbank_cache": None, **(task_overrides or {})}
    if data:
        task["data"] = data
    state = _upgraded(artefact, {"task": task})
    model, _cfg, task = build_from_state(artefact.path, state)
    return model.to(device).eval(), task


def load_pretraining_model(path):
    """(pretraining model with its decoder, FbankConfig) of a ``pretraining`` or ``authors``
    checkpoint: what reconstructs masked tokens.  Needs fairseq."""
    artefact = identify(path)
    if artefact.kind == CLASSIFIER:
        raise ArtefactError(
            f"{artefact.describe()}: fine-tuning dropped the decoder that reconstructs masked "
            f"tokens; {artefact.give_source('the pretraining checkpoint it was fine-tuned from')}"
        )
    if artefact.is_folder:
        raise ArtefactError(
            f"{artefact.describe()}: exporting keeps the encoder only, not the decoder that "
            f"reconstructs masked tokens; {artefact.give_source('the .pt it was exported from')}"
        )
    state = _upgraded(artefact)
    return build_pretrained_model(state), features_config(state["cfg"])


# --------------------------------------------------------------------------------------------
# Saving
def export(path, out: str, format: str, max_token_length: int | None = None) -> dict:
    """Write the model at ``path`` to ``out`` in ``format``: ``safetensors`` (a folder, from any
    kind) or ``authors`` (a ``.pt`` their plugin and s3prl load, from an MAE-AST pretraining
    checkpoint, ours or theirs; ``max_token_length`` rows of sinusoid tables, default theirs).
    Returns the folder's config or the checkpoint written.  Raises :class:`NotExportableError`
    for a model the format cannot hold."""
    from . import authors, folder

    if format not in FORMATS:
        raise ValueError(f"format must be one of {', '.join(FORMATS)}, got {format!r}")
    artefact = identify(path)
    if format == "safetensors" and artefact.is_folder:
        return folder.resave_folder(artefact.path, out)
    if format == "authors" and artefact.is_folder:
        raise NotExportableError(
            f"{artefact.describe()}: cannot export it to the authors' format: their format "
            "also holds the decoder, which an exported folder does not keep: "
            f"{artefact.give_source('the .pt it was exported from')}"
        )
    from .fairseq_files import build_from_state

    if format == "safetensors":
        state = _upgraded(artefact)
        model, cfg, task = build_from_state(artefact.path, state)
        return folder.save_from_checkpoint(artefact.path, model, cfg, task, state, out)
    length = authors.AUTHORS_MAX_TOKEN_LENGTH if max_token_length is None else max_token_length
    try:
        if artefact.kind == CLASSIFIER:
            authors._refuse(
                "model._name=mae_ast_classifier",
                "is a fine-tuned classifier (their plugin has no fine-tuning model); "
                + artefact.give_source("the pretraining checkpoint it was fine-tuned from")
                .replace("give", "export", 1),
            )
        state = _upgraded(artefact)
        model, cfg, _task = build_from_state(artefact.path, state)
        return authors.save_authors(model, cfg, state, out, length)
    except NotExportableError as err:
        raise NotExportableError(f"{artefact.describe()}; {err}") from None
