"""Fixes for fairseq bugs that change training results, applied when the plugin is imported.

* ``AMPOptimizer`` (``common.amp=true``) unscales the gradients twice: ``clip_grad_norm`` calls
  ``GradScaler.unscale_`` on the torch optimizer, then ``step`` hands the fairseq wrapper to
  ``GradScaler.step``, which does not know the wrapper's gradients were already unscaled (it
  keys its bookkeeping on the object) and divides them by the loss scale again.  Every update
  then uses gradients ``loss_scale`` times too small; with Adam's ``eps`` that shrinks updates
  whenever gradients are small.  The fix steps through the object that was unscaled.
"""


def _amp_step(self):
    self.scaler.step(self.optimizer)  # the torch optimizer that clip_grad_norm unscaled
    self.scaler.update()


def install_fairseq_fixes() -> None:
    from fairseq.optim.amp_optimizer import AMPOptimizer

    AMPOptimizer.step = _amp_step
