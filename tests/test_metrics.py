"""Accuracy, average precision and mAP against hand-computed values, and the criterion's
whole-set aggregation."""

import math

import numpy as np
import pytest
import torch

from fairseq.logging import metrics as fairseq_metrics
from mae_ast_plugin.criterions.mae_ast_classification import MaeAstClassificationCriterion
from mae_ast_plugin.evaluation.metrics import (
    accuracy,
    average_precision,
    confusion_matrix,
    mean_average_precision,
    per_class_accuracy,
)


def test_average_precision_by_hand():
    # ranked: + - + -  -> precision 1/1 at recall 1/2, 2/3 at recall 2/2
    assert average_precision([0.9, 0.8, 0.7, 0.6], [1, 0, 1, 0]) == pytest.approx(0.5 * 1 + 0.5 * 2 / 3)
    # a perfect ranking
    assert average_precision([0.1, 0.9, 0.8], [0, 1, 1]) == pytest.approx(1.0)
    # the positive ranked last of four
    assert average_precision([0.4, 0.3, 0.2, 0.1], [0, 0, 0, 1]) == pytest.approx(0.25)


def test_average_precision_tied_scores_form_one_threshold():
    # at 0.5 two clips (one positive) are predicted: P = 1/2, R = 1/2; at 0.2: P = 2/3, R = 1
    assert average_precision([0.5, 0.5, 0.2], [1, 0, 1]) == pytest.approx(0.5 * 0.5 + 0.5 * 2 / 3)
    # order within a tie must not matter
    assert average_precision([0.5, 0.5, 0.2], [0, 1, 1]) == pytest.approx(0.5 * 0.5 + 0.5 * 2 / 3)


def test_average_precision_without_positives_is_nan():
    assert math.isnan(average_precision([0.3, 0.2], [0, 0]))


def test_mean_average_precision_skips_classes_without_positives():
    scores = np.array([[0.9, 0.1, 0.3], [0.8, 0.7, 0.2], [0.2, 0.6, 0.9], [0.1, 0.2, 0.4]])
    targets = np.array([[1, 0, 0], [0, 1, 0], [1, 1, 0], [0, 0, 0]])
    result = mean_average_precision(scores, targets)
    class0 = 0.5 * 1 + 0.5 * 2 / 3  # ranked + - + -
    class1 = 0.5 * 1 + 0.5 * 1  # ranked + + - -
    assert result.per_class[0] == pytest.approx(class0)
    assert result.per_class[1] == pytest.approx(class1)
    assert math.isnan(result.per_class[2])
    assert result.classes_without_positives == 1
    assert result.mAP == pytest.approx((class0 + class1) / 2)
    # torch tensors are accepted too
    assert mean_average_precision(torch.tensor(scores), torch.tensor(targets)).mAP == pytest.approx(result.mAP)


def test_mean_average_precision_without_any_positive_is_none_not_nan():
    result = mean_average_precision(np.array([[0.9, 0.1], [0.2, 0.8]]), np.zeros((2, 2)))
    assert result.mAP is None and result.classes_without_positives == 2


def test_mean_average_precision_rejects_mismatched_shapes():
    with pytest.raises(ValueError, match="must both be"):
        mean_average_precision(np.zeros((3, 2)), np.zeros((3, 3)))


def test_accuracy_and_confusion_matrix():
    scores = np.array([[0.7, 0.2, 0.1], [0.1, 0.8, 0.1], [0.6, 0.3, 0.1], [0.2, 0.3, 0.5]])
    labels = np.array([0, 1, 1, 0])
    assert accuracy(scores, labels) == pytest.approx(0.5)
    confusion = confusion_matrix(scores.argmax(axis=1), labels, 3)
    assert confusion.tolist() == [[1, 0, 1], [1, 1, 0], [0, 0, 0]]
    per_class = per_class_accuracy(confusion)
    assert per_class[:2].tolist() == [0.5, 0.5]
    assert math.isnan(per_class[2])  # no clip of class 2


class _Task:
    class cfg:
        multi_label = True


def test_criterion_map_covers_the_whole_evaluation_set():
    """mAP is computed once over every batch's clips, not averaged over batches."""
    scores = torch.tensor([[0.9, 0.2], [0.1, 0.8], [0.7, 0.6], [0.3, 0.4]])
    targets = torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.0, 1.0], [1.0, 0.0]])
    batches = [
        {"loss": 1.0, "sample_size": 2, "_predictions": scores[:2], "_targets": targets[:2]},
        {"loss": 2.0, "sample_size": 2, "_predictions": scores[2:], "_targets": targets[2:]},
    ]
    with fairseq_metrics.aggregate(new_root=True) as aggregated:
        for batch in batches:  # one reduce per validation step, as fairseq does
            MaeAstClassificationCriterion.reduce_metrics([batch])
        values = aggregated.get_smoothed_values()
    expected = mean_average_precision(scores, targets).mAP
    assert values["mAP"] == pytest.approx(round(expected, 4))
    assert values["mAP_skipped_classes"] == 0
    assert values["loss"] == pytest.approx(0.75)
    assert MaeAstClassificationCriterion(_Task, 0.0).logging_outputs_can_be_summed() is False


def test_criterion_accuracy_sums_counts():
    with fairseq_metrics.aggregate(new_root=True) as aggregated:
        MaeAstClassificationCriterion.reduce_metrics([{"sample_size": 3, "loss": 0.0, "_correct": 3, "_count": 3}])
        MaeAstClassificationCriterion.reduce_metrics([{"sample_size": 1, "loss": 0.0, "_correct": 0, "_count": 1}])
        assert aggregated.get_smoothed_values()["accuracy"] == pytest.approx(0.75)
