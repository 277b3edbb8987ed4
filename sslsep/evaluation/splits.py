"""Train/evaluation splits that never put one recording on both sides. Pure numpy.

``groups`` is one string per clip: the recording it was cut from (UrbanSound8K ``fsID``,
ESC-50 ``src_file``, AudioSet ``YTID``), or the clip id where clips are independent
(synthetic scenes). Every function returns index arrays into the clip list.

``labels`` (optional, single-label sets): one class index per clip. Splits are then also
stratified: a group counts as its majority class, and each class's groups are spread over
the folds on their own. Without this, a class whose few recordings all land in one test
fold is never seen in training (UrbanSound8K fold 1 has 36 car-horn clips from a handful
of recordings).
"""

from __future__ import annotations

import numpy as np


def _group_index(groups) -> tuple[np.ndarray, np.ndarray]:
    """-> (unique groups sorted, (N,) group number per clip)."""
    names, inverse = np.unique(np.asarray(groups, dtype=str), return_inverse=True)
    return names, inverse


def _group_class(inv: np.ndarray, n_groups: int, labels) -> np.ndarray:
    """(n_groups,) majority class of each group (all 0 without labels)."""
    if labels is None:
        return np.zeros(n_groups, np.int64)
    labels = np.asarray(labels, dtype=np.int64)
    counts = np.zeros((n_groups, labels.max() + 1), np.int64)
    np.add.at(counts, (inv, labels), 1)
    return counts.argmax(1)


def grouped_kfold(groups, k: int, seed: int = 0, labels=None) -> list[tuple[np.ndarray, np.ndarray]]:
    """k (train, test) splits; each group is in exactly one test fold. Class by class
    (one class without `labels`), groups go largest first (ties in a seeded random order) to
    the fold with the fewest clips of that class, then the fewest clips overall, so folds stay
    even when one recording has many clips. Fewer groups than k gives one fold per group."""
    names, inv = _group_index(groups)
    if len(names) < 2:
        raise ValueError(f"grouped k-fold needs at least 2 recording groups, got {len(names)}")
    k = min(k, len(names))
    sizes = np.bincount(inv, minlength=len(names))
    cls = _group_class(inv, len(names), labels)
    order = np.random.default_rng(seed).permutation(len(names))
    order = order[np.lexsort((-sizes[order], cls[order]))]  # by class, then largest first
    fold_of_group = np.empty(len(names), np.int64)
    load = np.zeros((cls.max() + 1, k), np.int64)  # clips per (class, fold)
    for g in order:
        total = load.sum(0)
        f = int(np.lexsort((total, load[cls[g]]))[0])
        fold_of_group[g] = f
        load[cls[g], f] += sizes[g]
    fold = fold_of_group[inv]
    return [(np.flatnonzero(fold != f), np.flatnonzero(fold == f)) for f in range(k)]


def leave_one_fold_out(folds) -> list[tuple[int, np.ndarray, np.ndarray]]:
    """(fold id, train, test) for every fold id present, in increasing order."""
    folds = np.asarray(folds)
    return [(int(f), np.flatnonzero(folds != f), np.flatnonzero(folds == f)) for f in np.unique(folds)]


def grouped_holdout(groups, fraction: float, seed: int = 0, labels=None) -> tuple[np.ndarray, np.ndarray]:
    """(fit, val): whole groups, in a seeded random order, move to val until it holds at
    least `fraction` of the clips (of each class, with `labels`); never every group (of a
    class), and nothing when fraction is 0."""
    names, inv = _group_index(groups)
    n_groups = len(names)
    if fraction <= 0 or n_groups < 2:
        return np.arange(len(inv)), np.zeros(0, np.int64)
    sizes = np.bincount(inv, minlength=n_groups)
    cls = _group_class(inv, n_groups, labels)
    held = np.zeros(n_groups, bool)
    rng = np.random.default_rng(seed)
    for c in np.unique(cls):
        members = np.flatnonzero(cls == c)
        need = fraction * sizes[members].sum()
        count = 0
        order = rng.permutation(members)
        # recordings that alone exceed twice the need go last: one 79-clip fsID would
        # otherwise make a 15 % validation share 30 %
        order = order[np.argsort(sizes[order] > 2 * need, kind="stable")]
        for g in order:
            if count >= need or held[members].sum() == len(members) - 1:
                break
            held[g] = True
            count += sizes[g]
    val = held[inv]
    return np.flatnonzero(~val), np.flatnonzero(val)
