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
"""

import logging
import os
import shutil
import sys
from collections.abc import Mapping

logger = logging.getLogger(__name__)


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


def install_fairseq_fixes() -> None:
    from fairseq.optim.amp_optimizer import AMPOptimizer

    AMPOptimizer.step = _amp_step
    install_atomic_checkpoint_copy()
    install_lazy_step_stats()
    install_python_batching()
