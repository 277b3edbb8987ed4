"""Shallow classifiers on frozen embeddings: linear, or one hidden layer. Pure torch, no Ray.

``fit_classifier(x_train (N, D), y_train, x_val, y_val, settings)`` standardises the
embeddings with the training clips' mean and std (stored in the model as buffers, so the
model takes raw embeddings), trains with Adam on minibatches and keeps the weights of the
epoch with the best validation figure, stopping after ``patience`` epochs without a better
one. The figure (``early_stop``) is the score the table reports (accuracy for single-label,
mAP for multi-label; ties go to the lower loss) or the loss alone. The score is the default:
on validation sets of a few recordings, loss rises from overconfidence on a handful of clips
long before accuracy stops improving, and stopping on it kept 1-3 epoch models.
Targets are ``(N,)`` class indices for single-label sets (softmax + cross-entropy) and
``(N, C)`` 0/1 for multi-label sets (sigmoid + binary cross-entropy). Everything random
(initialisation, minibatch order, dropout) comes from ``settings.seed``: the same inputs
and seed give the same classifier.
"""

from __future__ import annotations

import contextlib
import copy
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from sslsep.config import CLASSIFIERS as KINDS  # the choices of evaluation.classifiers
from sslsep.evaluation.metrics import accuracy, mean_average_precision_fast


@dataclass
class FitSettings:
    kind: str = "linear"
    multilabel: bool = False
    hidden: int = 512
    dropout: float = 0.2
    lr: float = 1e-3
    weight_decay: float = 1e-4
    batch_size: int = 256
    max_epochs: int = 200
    patience: int = 10
    early_stop: str = "score"
    seed: int = 0

    @classmethod
    def from_config(cls, ev, kind: str, multilabel: bool, seed: int) -> FitSettings:
        """From an EvaluationConfig (sslsep.config)."""
        return cls(kind=kind, multilabel=multilabel, hidden=ev.hidden, dropout=ev.dropout, lr=ev.lr,
                   weight_decay=ev.weight_decay, batch_size=ev.batch_size, max_epochs=ev.max_epochs,
                   patience=ev.patience, early_stop=ev.early_stop, seed=seed)


@dataclass
class FitReport:
    epochs: int = 0                  # epochs run
    best_epoch: int = 0              # 1-based epoch whose weights were kept (0: none ran)
    best_val_loss: float = float("nan")
    best_val_score: float = float("nan")
    train_loss: list[float] = field(default_factory=list)
    val_loss: list[float] = field(default_factory=list)
    val_score: list[float] = field(default_factory=list)


class ShallowClassifier(nn.Module):
    """Raw embedding (B, D) -> logits (B, C): standardisation buffers, then the head."""

    def __init__(self, dim: int, num_classes: int, kind: str = "linear", hidden: int = 512,
                 dropout: float = 0.2, multilabel: bool = False):
        super().__init__()
        if kind not in KINDS:
            raise ValueError(f"classifier kind must be one of {KINDS}, got {kind!r}")
        self.kind, self.multilabel = kind, multilabel
        self.register_buffer("mean", torch.zeros(dim))
        self.register_buffer("std", torch.ones(dim))
        if kind == "linear":
            self.head = nn.Linear(dim, num_classes)
        else:
            self.head = nn.Sequential(nn.Linear(dim, hidden), nn.ReLU(), nn.Dropout(dropout),
                                      nn.Linear(hidden, num_classes))

    def set_standardisation(self, x: torch.Tensor) -> None:
        """Mean and std per dimension of (N, D); constant dimensions keep std 1 (they carry
        nothing, and dividing by ~0 would blow up any clip that differs)."""
        std = x.std(dim=0, unbiased=False)
        self.mean.copy_(x.mean(dim=0))
        self.std.copy_(torch.where(std > 1e-6, std, torch.ones_like(std)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head((x - self.mean) / self.std)  # (B, C)

    @torch.no_grad()
    def predict(self, x: np.ndarray, batch: int = 4096) -> np.ndarray:
        """(N, D) -> (N, C) float32 probabilities (sigmoid or softmax)."""
        self.eval()
        out = []
        for i in range(0, len(x), batch):
            logits = self(torch.as_tensor(np.asarray(x[i:i + batch]), dtype=torch.float32))
            out.append(torch.sigmoid(logits) if self.multilabel else torch.softmax(logits, dim=1))
        if not out:
            return np.zeros((0, self.head_out), np.float32)
        return torch.cat(out).numpy().astype(np.float32)

    @property
    def head_out(self) -> int:
        last = self.head if isinstance(self.head, nn.Linear) else self.head[-1]
        return last.out_features


def _loss(logits: torch.Tensor, y: torch.Tensor, multilabel: bool) -> torch.Tensor:
    if multilabel:
        return F.binary_cross_entropy_with_logits(logits, y)
    return F.cross_entropy(logits, y)


def _score(logits: torch.Tensor, y: torch.Tensor, multilabel: bool) -> float:
    """The table's headline figure on validation clips: mAP or accuracy."""
    if multilabel:
        return mean_average_precision_fast(y.numpy(), logits.numpy())
    return accuracy(y.numpy(), logits.numpy())


def _targets(y: np.ndarray, multilabel: bool) -> torch.Tensor:
    return torch.as_tensor(np.asarray(y), dtype=torch.float32 if multilabel else torch.long)


def _better(score: float, loss: float, best: FitReport, mode: str) -> bool:
    lower_loss = loss < best.best_val_loss - 1e-7
    if mode == "loss" or np.isnan(score):
        return lower_loss
    if np.isnan(best.best_val_score) or score > best.best_val_score + 1e-9:
        return True
    return abs(score - best.best_val_score) <= 1e-9 and lower_loss


@contextlib.contextmanager
def _one_thread():
    """Shallow models are too small for intra-op threads: on a busy 2-core machine two
    spinning threads made a 0.6 s fit take 48 s (measured), so fits run on one."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def fit_classifier(x_train: np.ndarray, y_train: np.ndarray, x_val: np.ndarray | None,
                   y_val: np.ndarray | None, num_classes: int, s: FitSettings
                   ) -> tuple[ShallowClassifier, FitReport]:
    """Train a classifier (see module doc). Without validation clips, all `max_epochs` run
    and the last weights are kept."""
    with _one_thread():
        return _fit(x_train, y_train, x_val, y_val, num_classes, s)


def _fit(x_train, y_train, x_val, y_val, num_classes: int, s: FitSettings) -> tuple[ShallowClassifier, FitReport]:
    x = torch.as_tensor(np.asarray(x_train), dtype=torch.float32)  # (N, D)
    y = _targets(y_train, s.multilabel)
    if x.ndim != 2 or len(x) != len(y) or len(x) == 0:
        raise ValueError(f"need (N, D) embeddings with N >= 1 matching targets; got {tuple(x.shape)}, {len(y)}")
    if s.early_stop not in ("score", "loss"):
        raise ValueError(f"early_stop must be score or loss, got {s.early_stop!r}")
    has_val = x_val is not None and len(x_val) > 0
    if has_val:
        xv = torch.as_tensor(np.asarray(x_val), dtype=torch.float32)
        yv = _targets(y_val, s.multilabel)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(s.seed)
        model = ShallowClassifier(x.shape[1], num_classes, s.kind, s.hidden, s.dropout, s.multilabel)
        model.set_standardisation(x)
        gen = torch.Generator().manual_seed(s.seed)
        # foreach: the same updates bit for bit as the per-parameter loop, 1.5x the steps/s of a
        # fit (CPU tensors default to the loop; fused=True is faster still but rounds differently)
        opt = torch.optim.Adam(model.parameters(), lr=s.lr, weight_decay=s.weight_decay, foreach=True)
        report, best_state, stale = FitReport(), None, 0
        for epoch in range(1, s.max_epochs + 1):
            model.train()
            total = 0.0
            for idx in torch.randperm(len(x), generator=gen).split(s.batch_size):
                loss = _loss(model(x[idx]), y[idx], s.multilabel)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                total += loss.item() * len(idx)
            report.epochs = epoch
            report.train_loss.append(total / len(x))
            if not has_val:
                continue
            model.eval()
            with torch.no_grad():
                logits = model(xv)  # (N_val, C)
                val = _loss(logits, yv, s.multilabel).item()
                score = _score(logits, yv, s.multilabel) if s.early_stop == "score" else float("nan")
            report.val_loss.append(val)
            report.val_score.append(score)
            if best_state is None or _better(score, val, report, s.early_stop):
                report.best_val_loss, report.best_val_score, report.best_epoch, stale = val, score, epoch, 0
                best_state = copy.deepcopy(model.state_dict())
            else:
                stale += 1
                if stale >= s.patience:
                    break
    if best_state is not None:
        model.load_state_dict(best_state)
    else:
        report.best_epoch = report.epochs
    return model.eval(), report
