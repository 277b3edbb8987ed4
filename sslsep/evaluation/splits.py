"""Train/evaluation splits that never put one recording on both sides. Pure numpy.

``groups`` is one string per clip: the recording it was cut from (UrbanSound8K ``fsID``,
ESC-50 ``src_file``, AudioSet ``YTID``), or the clip id where clips are independent
(synthetic scenes). Every function returns index arrays into the clip list.
"""

from __future__ import annotations

import numpy as np


def _group_index(groups) -> tuple[np.ndarray, np.ndarray]:
    """-> (unique groups sorted, (N,) group number per clip)."""
    names, inverse = np.unique(np.asarray(groups, dtype=str), return_inverse=True)
    return names, inverse


def grouped_kfold(groups, k: int, seed: int = 0) -> list[tuple[np.ndarray, np.ndarray]]:
    """k (train, test) splits; each group is in exactly one test fold. Groups go, largest
    first (ties in a seeded random order), to the fold with the fewest clips so far, so fold
    sizes stay even even when one recording has many clips. Fewer groups than k gives one
    fold per group."""
    names, inv = _group_index(groups)
    if len(names) < 2:
        raise ValueError(f"grouped k-fold needs at least 2 recording groups, got {len(names)}")
    k = min(k, len(names))
    sizes = np.bincount(inv, minlength=len(names))
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(names))
    order = order[np.argsort(-sizes[order], kind="stable")]
    fold_of_group = np.empty(len(names), np.int64)
    load = np.zeros(k, np.int64)
    for g in order:
        f = int(np.argmin(load))
        fold_of_group[g] = f
        load[f] += sizes[g]
    fold = fold_of_group[inv]
    return [(np.flatnonzero(fold != f), np.flatnonzero(fold == f)) for f in range(k)]


def leave_one_fold_out(folds) -> list[tuple[int, np.ndarray, np.ndarray]]:
    """(fold id, train, test) for every fold id present, in increasing order."""
    folds = np.asarray(folds)
    return [(int(f), np.flatnonzero(folds != f), np.flatnonzero(folds == f)) for f in np.unique(folds)]


def grouped_holdout(groups, fraction: float, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(fit, val): whole groups, in a seeded random order, move to val until it holds at least
    `fraction` of the clips; at least one group when fraction > 0, never every group."""
    names, inv = _group_index(groups)
    n = len(inv)
    if fraction <= 0 or len(names) < 2:
        return np.arange(n), np.zeros(0, np.int64)
    sizes = np.bincount(inv, minlength=len(names))
    held = np.zeros(len(names), bool)
    count = 0
    for g in np.random.default_rng(seed).permutation(len(names)):
        if count >= fraction * n or held.sum() == len(names) - 1:
            break
        held[g] = True
        count += sizes[g]
    val = held[inv]
    return np.flatnonzero(~val), np.flatnonzero(val)
