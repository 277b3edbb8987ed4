"""Scores of a shallow classifier: mAP, macro ROC AUC, d', accuracy.

Per-class AP and ROC AUC are scikit-learn's (``average_precision_score``, ``roc_auc_score``);
this module adds the conventions around them (AudioSet papers, and the paper this project
reproduces):

* ``targets (N, C)`` are 0/1, ``scores (N, C)`` any real numbers where larger means "more
  likely present".
* mAP is the macro mean over classes of average precision, over the classes with at least one
  positive in the evaluated set (AP is undefined without positives).
* ROC AUC is the macro mean over the classes with both positives and negatives.
* d' = sqrt(2) * Phi^-1(AUC), computed from the macro AUC (as AudioSet results report it).
  AUC is clipped to [1e-6, 1 - 1e-6] first, so a perfect score gives d' = 6.7, not infinity
  (an infinite d' would break means over folds and JSON).
* Ties are handled as scikit-learn does: AP steps at each distinct score (tied clips enter
  together), AUC counts a tied positive/negative pair as one half.
"""

from __future__ import annotations

import math
from statistics import NormalDist

import numpy as np
from sklearn.metrics import average_precision_score, roc_auc_score

AUC_CLIP = 1e-6


def average_precision(target: np.ndarray, score: np.ndarray) -> float:
    """(N,) 0/1 and (N,) scores -> AP (scikit-learn's ``average_precision_score``: sum over
    distinct thresholds of (R_k - R_{k-1}) P_k); nan when there is no positive."""
    target = np.asarray(target, dtype=np.float64).ravel() > 0.5
    score = np.asarray(score, dtype=np.float64).ravel()
    if not target.any():
        return float("nan")
    return float(average_precision_score(target, score))


def roc_auc(target: np.ndarray, score: np.ndarray) -> float:
    """(N,) 0/1 and (N,) scores -> ROC AUC (scikit-learn's ``roc_auc_score``, ties count one
    half); nan unless both positives and negatives are present."""
    target = np.asarray(target, dtype=np.float64).ravel() > 0.5
    score = np.asarray(score, dtype=np.float64).ravel()
    if target.all() or not target.any():
        return float("nan")
    return float(roc_auc_score(target, score))


def _check(targets: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    targets, scores = np.asarray(targets), np.asarray(scores)
    if targets.ndim != 2 or targets.shape != scores.shape:
        raise ValueError(f"targets and scores must both be (N, C); got {targets.shape} and {scores.shape}")
    return targets, scores


def mean_average_precision(targets: np.ndarray, scores: np.ndarray) -> float:
    """(N, C), (N, C) -> macro AP over classes with a positive; nan if there is none. One
    scikit-learn call for all classes (the same per-class APs as `average_precision`, at half
    the cost: early stopping scores every epoch with it)."""
    targets, scores = _check(targets, scores)
    pos = (np.asarray(targets, dtype=np.float64) > 0.5).any(axis=0)
    if not pos.any():
        return float("nan")
    aps = average_precision_score(np.asarray(targets, dtype=np.float64)[:, pos] > 0.5,
                                  np.asarray(scores, dtype=np.float64)[:, pos], average=None)
    return float(np.mean(aps))


def mean_average_precision_fast(targets: np.ndarray, scores: np.ndarray) -> float:
    """`mean_average_precision` in a few array operations over all classes at once, without
    scikit-learn's input checks, which took 40 % of a classifier fit when early stopping scored
    every epoch with it. Same definition and ties (equal to 1e-12, tested); the reported figures
    stay scikit-learn's.

    Clips sorted by descending score per class; a tie group enters at its last row, where
    precision is TP / rows so far; AP = sum over groups of (TP added by the group / P) x that
    precision."""
    targets, scores = _check(targets, scores)
    t = np.asarray(targets, dtype=np.float64) > 0.5
    pos = t.any(axis=0)
    if not pos.any():
        return float("nan")
    t, sc = t[:, pos], np.asarray(scores, dtype=np.float64)[:, pos]  # (N, C')
    order = np.argsort(-sc, axis=0, kind="stable")
    sc, t = np.take_along_axis(sc, order, axis=0), np.take_along_axis(t, order, axis=0)
    tp = np.cumsum(t, axis=0, dtype=np.float64)  # (N, C') true positives at or above each row
    last = np.ones_like(t)
    last[:-1] = sc[:-1] != sc[1:]  # last row of each tie group
    at_last = np.where(last, tp, 0.0)
    before = np.zeros_like(tp)
    before[1:] = np.maximum.accumulate(at_last, axis=0)[:-1]  # TP at the previous group's end
    precision = tp / np.arange(1, len(tp) + 1, dtype=np.float64)[:, None]
    ap = np.where(last, (tp - before) * precision, 0.0).sum(axis=0) / tp[-1]
    return float(np.mean(ap))


def macro_roc_auc(targets: np.ndarray, scores: np.ndarray) -> float:
    """(N, C), (N, C) -> macro ROC AUC over classes with positives and negatives."""
    targets, scores = _check(targets, scores)
    n = targets.shape[0]
    aucs = [roc_auc(targets[:, c], scores[:, c]) for c in range(targets.shape[1])
            if 0 < targets[:, c].sum() < n]
    return float(np.mean(aucs)) if aucs else float("nan")


def d_prime(auc: float) -> float:
    """sqrt(2) * Phi^-1(AUC), AUC clipped to [1e-6, 1 - 1e-6]; nan stays nan."""
    if auc is None or math.isnan(auc):
        return float("nan")
    return math.sqrt(2.0) * NormalDist().inv_cdf(min(max(auc, AUC_CLIP), 1.0 - AUC_CLIP))


def accuracy(labels: np.ndarray, scores: np.ndarray) -> float:
    """(N,) class indices and (N, C) scores -> share of clips whose top score is their class."""
    labels, scores = np.asarray(labels), np.asarray(scores)
    if scores.ndim != 2 or labels.shape != (scores.shape[0],):
        raise ValueError(f"labels must be (N,) and scores (N, C); got {labels.shape} and {scores.shape}")
    if len(labels) == 0:
        return float("nan")
    return float(np.mean(scores.argmax(axis=1) == labels))


def one_hot(labels: np.ndarray, num_classes: int) -> np.ndarray:
    """(N,) int -> (N, C) float32."""
    out = np.zeros((len(labels), num_classes), np.float32)
    out[np.arange(len(labels)), labels] = 1.0
    return out


def score_all(targets: np.ndarray, scores: np.ndarray, labels: np.ndarray | None = None) -> dict:
    """Every metric at once: targets (N, C) 0/1, scores (N, C); `labels` (N,) class indices
    for single-label sets (adds accuracy)."""
    auc = macro_roc_auc(targets, scores)
    out = {"mAP": mean_average_precision(targets, scores), "auc": auc, "d_prime": d_prime(auc)}
    out["accuracy"] = accuracy(labels, scores) if labels is not None else None
    return out
