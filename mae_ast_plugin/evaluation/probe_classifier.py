"""The classifier side of ``mae-ast-probe`` (:mod:`.probe`): one layer's linear probe fitted and
scored, its metric's standard error, the chance levels, and the gain of one probe over another.

Per layer (:func:`probe_layer`): features standardised with the train split's mean and standard
deviation; a logistic regression (multinomial for single-label tasks, one-vs-rest for
multi-label ones) from scikit-learn's lbfgs solver fitted on train for each inverse
regularisation strength C of :data:`C_GRID`; the C with the best valid metric is kept and that
classifier is scored once on test.  Metric: accuracy (single-label) or mAP (multi-label,
classes without positives left out and counted, :mod:`.metrics`).

Standard errors: binomial ``sqrt(p (1 - p) / n)`` for accuracy (:func:`binomial_se`); for mAP
the standard deviation of a bootstrap over clips (seed 0).  Every number a report holds passes
:func:`json_number` (strict JSON has no NaN).
"""

import math
import warnings

import numpy as np

from .probe_data import SPLITS

C_GRID = (1e-3, 1e-2, 1e-1, 1.0, 10.0)
MAX_ITER = 2000


def binomial_se(p: float, n: int) -> float:
    """Standard error of an accuracy ``p`` measured on ``n`` independent clips (NaN for n = 0)."""
    return math.sqrt(max(p * (1.0 - p), 0.0) / n) if n > 0 else float("nan")


def json_number(value):
    """None for NaN or infinity (strict JSON has neither), else a float."""
    value = float(value)
    return value if math.isfinite(value) else None


def _classifier(C: float, multi_label: bool):
    from sklearn.linear_model import LogisticRegression
    from sklearn.multiclass import OneVsRestClassifier

    logistic = LogisticRegression(C=C, max_iter=MAX_ITER)
    return OneVsRestClassifier(logistic) if multi_label else logistic


def _metric(classifier, x, targets, multi_label: bool) -> float:
    from .metrics import mean_average_precision

    if multi_label:
        return mean_average_precision(classifier.decision_function(x), targets).mAP
    return float(np.mean(classifier.predict(x) == targets))


def _metric_se(classifier, x, targets, multi_label: bool, bootstrap: int) -> float:
    from .metrics import mean_average_precision

    if not multi_label:
        return binomial_se(_metric(classifier, x, targets, False), len(targets))
    scores = classifier.decision_function(x)
    rng = np.random.default_rng(0)
    values = []
    for _ in range(bootstrap):
        rows = rng.integers(0, len(targets), len(targets))
        value = mean_average_precision(scores[rows], targets[rows]).mAP
        if np.isfinite(value):
            values.append(value)
    return float(np.std(values, ddof=1)) if len(values) > 1 else float("nan")


def probe_layer(features: dict, targets: dict, multi_label: bool, c_grid=C_GRID, bootstrap=100):
    """Fit and score one layer.  ``features[split]`` (N, C) float, ``targets[split]`` (N,) int or
    (N, K) 0/1.  Returns the layer's entry of the report (C chosen on valid, test scored once):
    ``C``, ``valid``, ``valid_se``, ``test``, ``test_se`` (None where undefined), ``valid_by_C``
    and ``fits_not_converged`` (lbfgs fits that hit MAX_ITER)."""
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.preprocessing import StandardScaler

    scaler = StandardScaler().fit(features["train"])
    x = {split: scaler.transform(features[split]) for split in SPLITS}
    best = None
    valid_by_c = {}
    not_converged = 0
    for C in c_grid:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            classifier = _classifier(C, multi_label).fit(x["train"], targets["train"])
        not_converged += sum(issubclass(w.category, ConvergenceWarning) for w in caught)
        valid = _metric(classifier, x["valid"], targets["valid"], multi_label)
        valid_by_c[repr(C)] = json_number(valid)
        if best is None or (np.isfinite(valid) and not valid <= best[1]):
            best = (C, valid, classifier)
    C, valid, classifier = best
    return {
        "C": C,
        "valid": json_number(valid),
        "valid_se": json_number(_metric_se(classifier, x["valid"], targets["valid"], multi_label,
                                           bootstrap)),
        "test": json_number(_metric(classifier, x["test"], targets["test"], multi_label)),
        "test_se": json_number(_metric_se(classifier, x["test"], targets["test"], multi_label,
                                          bootstrap)),
        "valid_by_C": valid_by_c,
        "fits_not_converged": not_converged,
    }


def chance_levels(targets: dict, multi_label: bool) -> dict:
    """What needs no encoder: the test share of train's most frequent class (single-label), or the
    test mAP of constant scores, i.e. the mean class prevalence (multi-label)."""
    if multi_label:
        test = targets["test"]
        present = test.sum(0) > 0
        return {"test_mean_prevalence": json_number(test.mean(0)[present].mean())}
    majority = np.bincount(targets["train"]).argmax()
    return {
        "test_majority_class": json_number(np.mean(targets["test"] == majority)),
        "uniform": 1.0 / max(1, int(max(targets[s].max() for s in SPLITS)) + 1),
    }


def gain_over_control(pretrained: dict, control: dict, which: str = "best") -> dict:
    """Test-metric gain of ``pretrained`` over ``control`` (two probe reports, or two dicts with
    ``test`` and ``test_se``) and whether it exceeds twice the standard error of the difference,
    ``sqrt(se_a^2 + se_b^2)`` (the two scores treated as independent: conservative when both
    are measured on the same clips)."""
    a = pretrained[which] if which in pretrained else pretrained
    b = control[which] if which in control else control
    gain = a["test"] - b["test"]
    se = math.sqrt(a["test_se"] ** 2 + b["test_se"] ** 2)
    return {
        "pretrained": a["test"], "pretrained_se": a["test_se"],
        "control": b["test"], "control_se": b["test_se"],
        "gain": gain, "se_of_difference": se, "exceeds_2se": bool(gain > 2 * se),
    }
