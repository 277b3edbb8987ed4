"""Evaluation metrics against scikit-learn, ties included."""

import math

import numpy as np
import pytest
from sklearn.metrics import average_precision_score, roc_auc_score

from sslsep.evaluation.metrics import (accuracy, average_precision, d_prime, macro_roc_auc,
                                       mean_average_precision, mean_average_precision_fast, roc_auc,
                                       score_all)


def _cases(n_cases=40):
    rng = np.random.default_rng(0)
    for i in range(n_cases):
        n = int(rng.integers(2, 60))
        target = (rng.random(n) < rng.uniform(0.1, 0.9)).astype(int)
        if i % 2:  # coarse scores: many ties, within and across classes
            score = rng.integers(0, 4, n).astype(float)
        else:
            score = rng.normal(size=n) + target * rng.uniform(0, 2)
        yield target, score


@pytest.mark.parametrize("target, score", list(_cases()))
def test_ap_and_auc_match_sklearn(target, score):
    if target.sum() > 0:
        assert average_precision(target, score) == pytest.approx(average_precision_score(target, score), abs=1e-12)
    else:
        assert math.isnan(average_precision(target, score))
    if 0 < target.sum() < len(target):
        assert roc_auc(target, score) == pytest.approx(roc_auc_score(target, score), abs=1e-12)
    else:
        assert math.isnan(roc_auc(target, score))


def test_all_tied_scores():
    target = np.array([1, 0, 0, 1, 0])
    score = np.zeros(5)
    assert roc_auc(target, score) == 0.5
    assert average_precision(target, score) == pytest.approx(average_precision_score(target, score))


def test_macro_metrics_skip_undefined_classes_like_sklearn():
    rng = np.random.default_rng(1)
    targets = (rng.random((50, 6)) < 0.3).astype(int)
    targets[:, 2] = 0          # no positive: left out of mAP and AUC
    targets[:, 4] = 1          # no negative: left out of AUC, kept in mAP
    scores = rng.integers(0, 5, (50, 6)).astype(float)
    with_pos = [c for c in range(6) if targets[:, c].any()]
    both = [c for c in range(6) if 0 < targets[:, c].sum() < 50]
    assert mean_average_precision(targets, scores) == pytest.approx(
        average_precision_score(targets[:, with_pos], scores[:, with_pos], average="macro"))
    assert macro_roc_auc(targets, scores) == pytest.approx(
        roc_auc_score(targets[:, both], scores[:, both], average="macro"))


def test_macro_ap_is_the_mean_of_per_class_ap_exactly():
    # one scikit-learn call for all classes gives the per-class APs bit for bit (early stopping
    # compares these figures epoch to epoch), ties, one class and absent classes included
    rng = np.random.default_rng(2)
    for i in range(60):
        n, c = int(rng.integers(2, 80)), int(rng.integers(1, 9))
        targets = (rng.random((n, c)) < rng.uniform(0.0, 0.5)).astype(np.float32)
        scores = np.round(rng.normal(size=(n, c)), i % 3).astype(np.float32)
        per = [average_precision(targets[:, k], scores[:, k]) for k in range(c) if targets[:, k].any()]
        got = mean_average_precision(targets, scores)
        assert (math.isnan(got) and not per) or got == float(np.mean(per))


def test_fast_macro_ap_matches_sklearn_with_ties():
    # early stopping's per-epoch score: the same figure as scikit-learn's, whatever the ties
    rng = np.random.default_rng(3)
    for i in range(300):
        n, c = int(rng.integers(1, 90)), int(rng.integers(1, 9))
        targets = (rng.random((n, c)) < rng.uniform(0.0, 0.6)).astype(np.float32)
        scores = np.round(rng.normal(size=(n, c)), i % 3).astype(np.float32)  # 0 decimals: many ties
        want, got = mean_average_precision(targets, scores), mean_average_precision_fast(targets, scores)
        assert (math.isnan(want) and math.isnan(got)) or got == pytest.approx(want, abs=1e-12)
    assert mean_average_precision_fast(np.eye(3), np.eye(3)) == 1.0
    with pytest.raises(ValueError, match=r"\(N, C\)"):
        mean_average_precision_fast(np.zeros((3, 2)), np.zeros((3, 3)))


def test_perfect_and_inverted_scores():
    targets = np.eye(4)[[0, 1, 2, 3, 0, 1]]
    assert mean_average_precision(targets, targets) == 1.0
    assert macro_roc_auc(targets, targets) == 1.0
    assert macro_roc_auc(targets, -targets) == 0.0
    assert d_prime(1.0) == pytest.approx(math.sqrt(2) * 4.753424, rel=1e-5)  # clipped, finite
    assert d_prime(0.5) == 0.0
    assert d_prime(0.76) == pytest.approx(math.sqrt(2) * 0.7063, abs=1e-3)
    assert d_prime(0.3) == pytest.approx(-d_prime(0.7))
    assert math.isnan(d_prime(float("nan")))


def test_accuracy_and_score_all():
    scores = np.array([[0.9, 0.1], [0.2, 0.8], [0.6, 0.4], [0.3, 0.7]])
    labels = np.array([0, 1, 1, 1])
    assert accuracy(labels, scores) == 0.75
    out = score_all(np.eye(2)[labels], scores, labels)
    assert out["accuracy"] == 0.75 and out["d_prime"] == pytest.approx(d_prime(out["auc"]))
    assert score_all(np.eye(2)[labels], scores)["accuracy"] is None
    with pytest.raises(ValueError):
        mean_average_precision(np.zeros((3, 2)), np.zeros((3, 3)))
