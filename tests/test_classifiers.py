"""Shallow classifiers (pure torch) and grouped splits (pure numpy)."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from sslsep.evaluation.classifiers import FitSettings, fit_classifier
from sslsep.evaluation.metrics import accuracy, mean_average_precision
from sslsep.evaluation.splits import grouped_holdout, grouped_kfold, leave_one_fold_out


def blobs(n=300, classes=4, dim=16, seed=0, scale=1.0):
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(classes, dim)) * 3
    y = rng.integers(0, classes, n)
    x = (centres[y] + rng.normal(size=(n, dim))) * scale + 50.0  # far from 0: standardisation matters
    return x.astype(np.float32), y


def xor(n=600, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.uniform(-1, 1, (n, 2)).astype(np.float32)
    return x, ((x[:, 0] > 0) ^ (x[:, 1] > 0)).astype(np.int64)


@pytest.mark.parametrize("kind", ["linear", "mlp"])
def test_single_label_learns_separable_classes(kind):
    x, y = blobs(scale=1000.0)
    s = FitSettings(kind=kind, hidden=32, max_epochs=60, patience=5, batch_size=32)
    model, rep = fit_classifier(x[:200], y[:200], x[200:250], y[200:250], 4, s)
    probs = model.predict(x[250:])
    assert probs.shape == (50, 4) and probs.dtype == np.float32
    np.testing.assert_allclose(probs.sum(1), 1.0, atol=1e-5)  # softmax
    assert accuracy(y[250:], probs) > 0.9
    assert 1 <= rep.best_epoch <= rep.epochs <= 60


def test_hidden_layer_learns_what_a_linear_model_cannot():
    x, y = xor()
    acc = {}
    for kind in ("linear", "mlp"):
        s = FitSettings(kind=kind, hidden=64, dropout=0.0, lr=1e-2, max_epochs=150, patience=30, batch_size=64)
        model, _ = fit_classifier(x[:400], y[:400], x[400:500], y[400:500], 2, s)
        acc[kind] = accuracy(y[500:], model.predict(x[500:]))
    assert acc["linear"] < 0.7 and acc["mlp"] > 0.9, acc


def test_multilabel_uses_independent_sigmoids():
    rng = np.random.default_rng(3)
    x = rng.normal(size=(400, 8)).astype(np.float32)
    targets = np.stack([x[:, 0] > 0, x[:, 1] > 0.5, x[:, 0] + x[:, 2] > 0], 1).astype(np.float32)  # (N, 3)
    s = FitSettings(kind="linear", multilabel=True, lr=1e-2, max_epochs=100)
    model, _ = fit_classifier(x[:300], targets[:300], x[300:350], targets[300:350], 3, s)
    probs = model.predict(x[350:])
    assert probs.shape == (50, 3) and (probs >= 0).all() and (probs <= 1).all()
    assert np.abs(probs.sum(1) - 1).max() > 0.1  # not a softmax
    assert mean_average_precision(targets[350:], probs) > 0.9


def test_same_seed_same_classifier_other_seed_differs():
    x, y = blobs()
    preds = []
    for seed in (5, 5, 6):
        s = FitSettings(kind="mlp", hidden=16, max_epochs=5, seed=seed)
        preds.append(fit_classifier(x[:200], y[:200], x[200:250], y[200:250], 4, s)[0].predict(x[250:]))
    np.testing.assert_array_equal(preds[0], preds[1])
    assert not np.allclose(preds[0], preds[2])


def test_early_stopping_keeps_the_best_epoch():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(200, 32)).astype(np.float32)
    y = rng.integers(0, 3, 200)  # pure noise: validation loss rises once the model overfits
    s = FitSettings(kind="mlp", hidden=256, dropout=0.0, lr=1e-2, max_epochs=200, patience=3, batch_size=32,
                    early_stop="loss")
    model, rep = fit_classifier(x[:150], y[:150], x[150:], y[150:], 3, s)
    assert rep.epochs < 200 and rep.epochs == rep.best_epoch + 3
    assert rep.best_val_loss == min(rep.val_loss)
    with torch.no_grad():
        val = F.cross_entropy(model(torch.from_numpy(x[150:])), torch.from_numpy(y[150:])).item()
    assert val == pytest.approx(rep.best_val_loss, rel=1e-5)  # the kept weights are the best epoch's


def test_no_validation_runs_every_epoch_and_bad_input_is_refused():
    x, y = blobs(n=40)
    _, rep = fit_classifier(x, y, None, None, 4, FitSettings(max_epochs=7))
    assert rep.epochs == rep.best_epoch == 7 and rep.val_loss == []
    with pytest.raises(ValueError):
        fit_classifier(x[:0], y[:0], None, None, 4, FitSettings())
    with pytest.raises(ValueError):
        fit_classifier(x, y, None, None, 4, FitSettings(kind="svm"))


def test_grouped_kfold_keeps_recordings_on_one_side():
    rng = np.random.default_rng(0)
    groups = np.array([f"rec{g}" for g in rng.integers(0, 40, 500)] + ["big"] * 60)
    splits = grouped_kfold(groups, 5, seed=1)
    assert len(splits) == 5
    tested = np.concatenate([test for _, test in splits])
    assert sorted(tested) == list(range(len(groups)))  # every clip is tested exactly once
    for train, test in splits:
        assert not set(groups[train]) & set(groups[test])
        assert len(train) + len(test) == len(groups)
    sizes = [len(t) for _, t in splits]
    assert max(sizes) - min(sizes) <= 60  # at most one recording's worth apart
    assert [t.tolist() for _, t in grouped_kfold(groups, 5, seed=1)] == [t.tolist() for _, t in splits]
    assert len(grouped_kfold(["a", "a", "b", "c"], 5)) == 3  # fewer groups than k
    with pytest.raises(ValueError):
        grouped_kfold(["a", "a"], 5)


def test_leave_one_fold_out_and_grouped_holdout():
    folds = np.array([1, 2, 3, 1, 2, 3, 3])
    out = leave_one_fold_out(folds)
    assert [f for f, _, _ in out] == [1, 2, 3]
    assert out[2][2].tolist() == [2, 5, 6] and out[2][1].tolist() == [0, 1, 3, 4]
    groups = np.repeat([f"g{i}" for i in range(20)], 5)
    fit, val = grouped_holdout(groups, 0.15, seed=0)
    assert len(fit) + len(val) == 100 and len(val) >= 15 and len(val) % 5 == 0
    assert not set(groups[fit]) & set(groups[val])
    assert len(grouped_holdout(["a", "a"], 0.3)[1]) == 0  # one group: nothing to hold out
    assert len(grouped_holdout(["a", "b"], 0.9)[0]) == 1  # never every group
    assert len(grouped_holdout(groups, 0.0)[1]) == 0


def test_early_stopping_on_the_score_keeps_the_most_accurate_epoch():
    x, y = blobs(n=200, seed=4)
    y[150:][::3] = (y[150:][::3] + 1) % 4  # noisy validation labels: loss and accuracy disagree
    s = FitSettings(kind="mlp", hidden=64, dropout=0.0, lr=1e-2, max_epochs=100, patience=5, batch_size=32)
    model, rep = fit_classifier(x[:150], y[:150], x[150:], y[150:], 4, s)
    assert rep.best_val_score == max(rep.val_score)
    tied = [loss for loss, sc in zip(rep.val_loss, rep.val_score) if sc == rep.best_val_score]
    assert rep.val_loss[rep.best_epoch - 1] == rep.best_val_loss == min(tied)  # ties: the lower loss
    assert rep.epochs == rep.best_epoch + 5
    assert accuracy(y[150:], model.predict(x[150:])) == pytest.approx(rep.best_val_score)
    with pytest.raises(ValueError):
        fit_classifier(x, y, None, None, 4, FitSettings(early_stop="auc"))


def test_stratified_grouped_splits_give_every_class_to_every_side():
    rng = np.random.default_rng(2)
    # class 3 is rare: 3 recordings; a recording holds one class (as UrbanSound8K fsIDs do)
    rec_class = np.r_[rng.integers(0, 3, 57), [3, 3, 3]]
    rec_size = rng.integers(1, 15, 60)
    groups = np.concatenate([[f"r{i}"] * n for i, n in enumerate(rec_size)])
    labels = np.concatenate([[c] * n for c, n in zip(rec_class, rec_size)])
    splits = grouped_kfold(groups, 3, seed=0, labels=labels)
    for train, test in splits:
        assert not set(groups[train]) & set(groups[test])
        assert set(labels[train]) == {0, 1, 2, 3} and set(labels[test]) == {0, 1, 2, 3}
    fit, val = grouped_holdout(groups, 0.2, seed=0, labels=labels)
    assert not set(groups[fit]) & set(groups[val])
    assert set(labels[val]) == set(labels[fit]) == {0, 1, 2, 3}
    for c in range(3):  # each class gives about its share
        share = np.mean(labels[val] == c) / np.mean(labels == c)
        assert 0.5 < share < 2.0
