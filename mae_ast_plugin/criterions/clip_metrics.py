"""What both criteria log per batch and how fairseq reduces it: losses summed over the batch's
clips (averaged per clip when reduced) and ``skipped_clips``, the clips the dataset dropped as
unreadable when the user asked for skipping (``--skip-invalid``), counted, never hidden.
"""

from fairseq.logging import metrics


def clip_logging_output(loss, batch: int, sample: dict, **sums) -> dict:
    """The logging output of one batch of ``batch`` clips: ``loss`` (a summed scalar tensor,
    kept on its device: fairseq's meters sum tensors and read them at the log interval), the
    sample size (clips, the unit of every average), the skipped clips of ``sample`` and
    ``sums`` (more per-batch sums, numbers or scalar tensors)."""
    return {
        "loss": loss.detach(),
        **sums,
        "nsentences": batch,
        "sample_size": batch,
        "skipped_clips": int(sample.get("num_skipped", 0)),
    }


def reduce_clip_metrics(logging_outputs, keys=("loss",)):
    """Log every key of ``keys`` as its mean per clip and the sum of ``skipped_clips``; returns
    ``total(key)``, the sum of one key over ``logging_outputs``, for the caller's own metrics."""

    def total(key):
        return sum(log.get(key, 0) for log in logging_outputs)

    clips = total("sample_size")
    if clips > 0:
        for key in keys:
            metrics.log_scalar(key, total(key) / clips, clips, round=4)
    skipped = total("skipped_clips")
    if skipped:
        metrics.log_scalar_sum("skipped_clips", skipped)
    return total
