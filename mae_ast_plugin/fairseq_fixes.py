"""Fixes for fairseq bugs that change training results, applied when the plugin is imported.

* ``AMPOptimizer`` (``common.amp=true``) unscales the gradients twice: ``clip_grad_norm`` calls
  ``GradScaler.unscale_`` on the torch optimizer, then ``step`` hands the fairseq wrapper to
  ``GradScaler.step``, which does not know the wrapper's gradients were already unscaled (it
  keys its bookkeeping on the object) and divides them by the loss scale again.  Every update
  then uses gradients ``loss_scale`` times too small; with Adam's ``eps`` that shrinks updates
  whenever gradients are small.  The fix steps through the object that was unscaled.
* ``checkpoint_last.pt`` is written by copying in place, so a job killed during the copy
  cannot resume (see :func:`install_atomic_checkpoint_copy`).

And one for speed: ``Trainer._reduce_and_log_stats`` reads every logged value on the host after
every update, which makes the host wait for the GPU each time (see
:func:`install_lazy_step_stats`).

And, in ``fairseq-hydra-train``, user mistakes are named where they are made:

* a user input error (:class:`~mae_ast_plugin.errors.InputError`: a manifest line, a label
  file that is not UTF-8...) ends the run with ``fairseq-hydra-train: error: MESSAGE`` and no
  traceback (:func:`install_input_error_report`);
* a misspelt ``+task.*``/``+model.*``/``+criterion.*`` key is an error naming the key and the
  closest valid ones, where fairseq shows a traceback ending in omegaconf's ``ConfigKeyError``;
  ``common.fp16``/``common.bf16`` on a machine without a CUDA GPU is an error naming the option
  (:func:`check_training_config`).
"""

import difflib
import logging
import os
import shutil
import sys
from collections.abc import Mapping
from dataclasses import fields, is_dataclass

from .errors import InputError

logger = logging.getLogger(__name__)


class ConfigError(InputError):
    """A training option that cannot work: a key no dataclass has, a flag the machine lacks."""


def _amp_step(self):
    self.scaler.step(self.optimizer)  # the torch optimizer that clip_grad_norm unscaled
    self.scaler.update()


def install_atomic_checkpoint_copy():
    """fairseq saves ``checkpoint_<epoch>_<updates>.pt`` atomically (temporary file + rename),
    then copies it over ``checkpoint_last.pt`` in place: a job killed during that copy leaves
    a truncated ``checkpoint_last.pt`` that the relaunched job cannot resume from.  Make the
    copy atomic too.  (Local paths only; others keep fairseq's copy.)"""
    from fairseq.file_io import PathManager

    fairseq_copy = PathManager.copy
    if getattr(fairseq_copy, "atomic", False):
        return

    def copy(src_path: str, dst_path: str, overwrite: bool = False) -> bool:
        if PathManager.path_requires_pathmanager(dst_path):
            return fairseq_copy(src_path, dst_path, overwrite)
        shutil.copyfile(src_path, dst_path + ".tmp")
        os.replace(dst_path + ".tmp", dst_path)
        return True

    copy.atomic = True
    PathManager.copy = staticmethod(copy)


class LazySmoothedValues(Mapping):
    """The smoothed values of one update's metrics, read from the device only when someone reads
    them (fairseq's training loop only tests the mapping against None), plus ``sample_size``."""

    def __init__(self, meters, sample_size):
        self._meters, self._sample_size, self._values = meters, sample_size, None

    def _read(self) -> dict:
        if self._values is None:
            values = dict(self._meters.get_smoothed_values())
            values["sample_size"] = self._sample_size
            for key in ("ppl", "wps", "wpb", "bsz"):  # fairseq drops these per-update values
                values.pop(key, None)
            self._values = values
        return self._values

    def __getitem__(self, key):
        return self._read()[key]

    def __iter__(self):
        return iter(self._read())

    def __len__(self):
        return len(self._read())


def install_lazy_step_stats():
    """fairseq's ``Trainer._reduce_and_log_stats``, after every update: (1) tests
    ``torch.isfinite(grad_norm)`` on the host and (2) returns the update's smoothed values, which
    reads every logged tensor (``safe_round`` calls ``.item()``), i.e. one GPU-to-host copy and
    wait per logged value per update.  Both are unneeded: it runs only after updates whose
    gradient norm ``train_step`` has already found finite (otherwise it raised
    ``FloatingPointError`` or skipped the update as an AMP overflow), and the training loop only
    tests the returned mapping against None, the values reaching the log from the aggregators
    at the log interval.  The replacement logs the same meters and returns a
    :class:`LazySmoothedValues`.  TPU runs keep fairseq's method."""
    import torch
    from fairseq.logging import metrics
    from fairseq.trainer import Trainer

    fairseq_method = Trainer._reduce_and_log_stats
    if getattr(fairseq_method, "lazy", False):
        return

    def reduce_and_log_stats(self, logging_outputs, sample_size, grad_norm=None):
        if self.tpu:
            return fairseq_method(self, logging_outputs, sample_size, grad_norm)
        if grad_norm is not None:
            metrics.log_speed("ups", 1.0, priority=100, round=2)
            metrics.log_scalar("gnorm", grad_norm, priority=400, round=3)
            clip_norm = self.cfg.optimization.clip_norm
            if clip_norm > 0:
                # 100 when the update was clipped: the mean is the percentage of clipped updates
                clipped = torch.where(grad_norm > clip_norm, 100.0, 0.0)
                metrics.log_scalar("clip", clipped, priority=500, round=1)
        with metrics.aggregate() as agg:
            if logging_outputs is not None:
                self.task.reduce_metrics(logging_outputs, self.get_criterion())
            if "loss" not in agg:
                # fairseq warns (once) and logs a placeholder; so do we
                fairseq_method(self, None, sample_size, None)
            return LazySmoothedValues(agg, sample_size)

    reduce_and_log_stats.lazy = True
    Trainer._reduce_and_log_stats = reduce_and_log_stats


def install_python_batching():
    """fairseq run from its unbuilt source tree (the GPU check) lacks its compiled batching
    helpers, and ``batch_by_size`` raises ImportError; give it :mod:`.python_batching` (the
    same batches, in Python) instead."""
    try:
        import fairseq.data.data_utils_fast  # noqa: F401
    except (ImportError, ValueError):
        from . import python_batching

        sys.modules["fairseq.data.data_utils_fast"] = python_batching
        logger.info("fairseq's compiled data_utils_fast is missing: batching in Python")
def _field_names(dc, prefix: str = "") -> list[str]:
    """Every option of a config dataclass, nested ones dotted (``features.num_mel_bins``)."""
    names = []
    for item in fields(dc):
        if item.name.startswith("_"):
            continue
        names.append(prefix + item.name)
        default = item.default_factory() if callable(item.default_factory) else item.default
        if is_dataclass(default):
            names.extend(_field_names(default, f"{prefix}{item.name}."))
    return names


def _unknown_keys(node, dc, prefix: str = ""):
    """Dotted keys set in ``node`` (a DictConfig section) that the dataclass ``dc`` lacks."""
    from omegaconf import OmegaConf

    known = {item.name: item for item in fields(dc)}
    for key in node.keys():
        key = str(key)
        if key == "_name":
            continue
        if key not in known:
            yield prefix + key
            continue
        item = known[key]
        default = item.default_factory() if callable(item.default_factory) else item.default
        value = node.get(key)
        if is_dataclass(default) and OmegaConf.is_dict(value):
            yield from _unknown_keys(value, type(default), f"{prefix}{key}.")


def check_config_keys(cfg) -> None:
    """Raise :class:`ConfigError` naming every key of a registered section (``task``, ``model``,
    ``criterion``, ``optimizer``, ``lr_scheduler``...) that its dataclass does not have, with
    the closest valid keys (``difflib``); fairseq's own merge would stop at the first with a
    traceback."""
    from fairseq.dataclass.configs import FairseqConfig
    from fairseq.models import ARCH_MODEL_NAME_REGISTRY, MODEL_DATACLASS_REGISTRY
    from fairseq.registry import REGISTRIES
    from fairseq.tasks import TASK_DATACLASS_REGISTRY
    from omegaconf import OmegaConf

    problems = []
    for section in FairseqConfig.__dataclass_fields__:
        node = cfg.get(section)
        if not OmegaConf.is_dict(node):
            continue
        name = node.get("_name")
        if section == "task":
            dc = TASK_DATACLASS_REGISTRY.get(name)
        elif section == "model":
            dc = MODEL_DATACLASS_REGISTRY.get(ARCH_MODEL_NAME_REGISTRY.get(name, name))
        elif section in REGISTRIES:
            dc = REGISTRIES[section]["dataclass_registry"].get(name)
        else:
            continue
        if dc is None:
            continue
        valid = _field_names(dc)
        for key in _unknown_keys(node, dc):
            close = difflib.get_close_matches(key, valid, n=3, cutoff=0.6)
            hint = (
                "closest valid keys: " + ", ".join(f"{section}.{k}" for k in close)
                if close
                else f"see the {section} options with: fairseq-hydra-train --cfg job"
            )
            problems.append(f"{section}.{key} is not an option of {section} '{name}' ({hint})")
    if problems:
        raise ConfigError(
            "; ".join(problems) + ": fix the override (a key given with '+' is not checked by "
            "hydra, only here)"
        )


HALF_PRECISION_FLAGS = ("fp16", "bf16", "memory_efficient_fp16", "memory_efficient_bf16")


def check_precision_flags(cfg, cuda_available: bool) -> None:
    """``common.fp16``/``common.bf16`` (and their memory-efficient forms) keep the model in half
    precision, which needs a CUDA GPU: without one (or with ``common.cpu=true``) they are a
    :class:`ConfigError` naming the option.  ``common.amp`` and ``task.bf16_autocast`` are the
    recipes' mixed precision, documented as float32 on a CPU: they are logged, not refused."""
    common = cfg.get("common") or {}
    on_gpu = cuda_available and not common.get("cpu", False)
    if on_gpu:
        return
    why = "common.cpu=true" if cuda_available else "this machine has no CUDA GPU"
    for flag in HALF_PRECISION_FLAGS:
        if common.get(flag, False):
            raise ConfigError(
                f"common.{flag}=true needs a CUDA GPU, but {why}: set common.{flag}=false (the "
                "recipes' common.amp=true is mixed precision on a GPU and float32 on a CPU)"
            )
    task = cfg.get("task") or {}
    for option, on in (("common.amp", common.get("amp", False)),
                       ("task.bf16_autocast", task.get("bf16_autocast", False))):
        if on:
            logger.warning("%s=true has no effect: %s; training runs in float32", option, why)


def check_training_config(cfg) -> None:
    """The checks of :func:`check_config_keys` and :func:`check_precision_flags`."""
    import torch

    check_config_keys(cfg)
    check_precision_flags(cfg, torch.cuda.is_available())


def install_training_config_check():
    """Run :func:`check_training_config` in ``fairseq_cli.train.main`` before fairseq merges the
    config sections into their dataclasses.  ``main`` imports the plugin (``common.user_dir``)
    just before it calls ``add_defaults``, a name it looks up in its module at call time."""
    train = sys.modules.get("fairseq_cli.train")
    if train is None or getattr(train.add_defaults, "checked", False):
        return
    fairseq_add_defaults = train.add_defaults

    def add_defaults(cfg):
        check_training_config(cfg)
        return fairseq_add_defaults(cfg)

    add_defaults.checked = True
    train.add_defaults = add_defaults


def install_input_error_report():
    """In ``fairseq-hydra-train``, end the run on an :class:`InputError` with one line,
    ``fairseq-hydra-train: error: MESSAGE`` (status 1), as the ``mae-ast-*`` tools do.

    Hydra prints every exception of the job with a (trimmed) traceback; with ``HYDRA_FULL_ERROR``
    set it lets the exception through instead, to ``sys.excepthook``, which prints input errors
    as one line and anything else (a bug) with its full traceback.  Only inside a hydra job."""
    try:
        from hydra.core.hydra_config import HydraConfig
    except ImportError:
        return
    if not HydraConfig.initialized() or getattr(sys.excepthook, "reports_input_errors", False):
        return
    os.environ["HYDRA_FULL_ERROR"] = "1"
    previous = sys.excepthook

    def excepthook(kind, value, traceback):
        if isinstance(value, InputError):
            prog = os.path.basename(sys.argv[0]) if sys.argv and sys.argv[0] else "fairseq"
            print(f"{prog}: error: {value}", file=sys.stderr, flush=True)
            return
        previous(kind, value, traceback)

    excepthook.reports_input_errors = True
    sys.excepthook = excepthook


def install_fairseq_fixes() -> None:
    from fairseq.optim.amp_optimizer import AMPOptimizer

    AMPOptimizer.step = _amp_step
    install_atomic_checkpoint_copy()
    install_lazy_step_stats()
    install_python_batching()
    install_training_config_check()
    install_input_error_report()
