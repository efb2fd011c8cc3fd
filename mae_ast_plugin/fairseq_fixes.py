"""Fixes for fairseq bugs that change training results, applied when the plugin is imported.

* ``AMPOptimizer`` (``common.amp=true``) unscales the gradients twice: ``clip_grad_norm`` calls
  ``GradScaler.unscale_`` on the torch optimizer, then ``step`` hands the fairseq wrapper to
  ``GradScaler.step``, which does not know the wrapper's gradients were already unscaled (it
  keys its bookkeeping on the object) and divides them by the loss scale again.  Every update
  then uses gradients ``loss_scale`` times too small; with Adam's ``eps`` that shrinks updates
  whenever gradients are small.  The fix steps through the object that was unscaled.
* ``checkpoint_last.pt`` is written by copying in place, so a job killed during the copy
  cannot resume (see :func:`install_atomic_checkpoint_copy`).
"""

import os
import shutil


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


def install_fairseq_fixes() -> None:
    from fairseq.optim.amp_optimizer import AMPOptimizer

    AMPOptimizer.step = _amp_step
    install_atomic_checkpoint_copy()
