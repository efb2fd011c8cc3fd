"""Classification metrics: accuracy, average precision, mAP, confusion matrix (numpy only).

Used by the fine-tuning criterion (on the whole validation set), ``mae-ast-evaluate`` and the
tests.  Values are fractions in [0, 1]; tables multiply by 100.
"""

from typing import NamedTuple

import numpy as np


def _numpy(values) -> np.ndarray:
    """numpy view of a numpy array, list or (CPU or GPU) torch tensor."""
    if hasattr(values, "detach"):
        values = values.detach().float().cpu().numpy()
    return np.asarray(values)


def accuracy(scores, labels) -> float:
    """Fraction of rows of ``scores`` (N, C) whose highest score is at ``labels`` (N,)."""
    scores, labels = _numpy(scores), _numpy(labels)
    if len(labels) == 0:
        raise ValueError("accuracy of an empty set")
    return float((scores.argmax(axis=1) == labels).mean())


def average_precision(scores, positives) -> float:
    """Average precision of one class: ``sum_k (R_k - R_{k-1}) P_k`` over the distinct score
    thresholds, highest first (tied scores form one threshold), i.e. the area under the
    step-wise precision-recall curve, as scikit-learn's ``average_precision_score`` computes it.
    NaN when there are no positives (AP is undefined then)."""
    scores = _numpy(scores).astype(np.float64)
    positives = _numpy(positives).astype(bool)
    num_positives = int(positives.sum())
    if num_positives == 0:
        return float("nan")
    order = np.argsort(-scores, kind="mergesort")
    scores, positives = scores[order], positives[order]
    # the last position of each run of equal scores is where that threshold's counts are read
    threshold_ends = np.r_[np.flatnonzero(np.diff(scores)), len(scores) - 1]
    true_positives = np.cumsum(positives)[threshold_ends]
    precision = true_positives / (threshold_ends + 1)
    recall = true_positives / num_positives
    return float(np.sum(np.diff(recall, prepend=0.0) * precision))


class MeanAveragePrecision(NamedTuple):
    mAP: float | None  # mean over the classes that have positives; None if none has
    per_class: np.ndarray  # (C,) AP of each class, NaN for classes without positives
    classes_without_positives: int


def mean_average_precision(scores, targets) -> MeanAveragePrecision:
    """mAP of (N, C) scores against (N, C) multi-hot targets (values > 0.5 are positives).

    Classes without a positive in ``targets`` are left out of the mean (their AP is undefined)
    and counted, so a small evaluation set cannot silently lower or raise the score.  When no
    class has a positive the mAP is undefined: ``mAP`` is None, never NaN.
    """
    scores, targets = _numpy(scores), _numpy(targets) > 0.5
    if scores.shape != targets.shape or scores.ndim != 2:
        raise ValueError(f"scores {scores.shape} and targets {targets.shape} must both be (N, C)")
    per_class = np.array(
        [average_precision(scores[:, c], targets[:, c]) for c in range(scores.shape[1])]
    )
    defined = ~np.isnan(per_class)
    value = float(per_class[defined].mean()) if defined.any() else None
    return MeanAveragePrecision(value, per_class, int((~defined).sum()))


def confusion_matrix(predictions, labels, num_classes: int) -> np.ndarray:
    """(C, C) counts, rows = true class, columns = predicted class."""
    predictions, labels = _numpy(predictions).astype(np.int64), _numpy(labels).astype(np.int64)
    flat = np.bincount(labels * num_classes + predictions, minlength=num_classes * num_classes)
    return flat.reshape(num_classes, num_classes)


def per_class_accuracy(confusion: np.ndarray) -> np.ndarray:
    """Recall of each class from a confusion matrix; NaN for classes absent from the labels."""
    support = confusion.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(support > 0, np.diag(confusion) / support, np.nan)
