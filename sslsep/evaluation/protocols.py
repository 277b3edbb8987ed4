"""Evaluation protocols: which clips train the classifiers, which ones judge them.

* ``synthetic``: multi-label scenes (14 classes). Training scenes come from seed
  ``evaluation.synth_seed``, evaluation scenes from ``synth_seed + 1``; neither may be a
  stream pretraining saw (``data.synth.seed``, or its separation validation seed). With
  ``evaluation.synth_folds`` >= 2 (the default, 5) both sets together are split k-fold
  (scenes are independent), so every figure has a spread over k splits; 1: one split.
* ``folds``: a labelled folder (or Parquet shards) with a ``fold`` column, UrbanSound8K /
  ESC-50 style. Several folds: leave-one-fold-out. One fold (or none): grouped k-fold over
  the recording ``group`` (UrbanSound8K ``fsID``), so no recording is on both sides.
* ``audioset``: two segment CSVs (balanced train, eval) with their audio folders;
  multi-label. One split.

Within every training side a validation part for early stopping is carved by recording group
(``evaluation.val_fraction``); single-label splits are also stratified by class. Kept clips
with no label are counted as ``unlabelled`` skips.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from sslsep.config import DataConfig, ExperimentConfig
from sslsep.evaluation.embeddings import EmbeddedSet
from sslsep.evaluation.splits import grouped_kfold, leave_one_fold_out


@dataclass
class Split:
    name: str
    train: np.ndarray   # indices into Task rows
    test: np.ndarray


@dataclass
class Task:
    """Everything a classifier run needs, independent of the extractor."""
    protocol: str
    description: str
    multilabel: bool
    classes: list[str]
    targets: np.ndarray                 # (N, C) 0/1 float32
    label_index: np.ndarray | None      # (N,) int64 for single-label tasks, else None
    groups: np.ndarray                  # (N,) recording group (clip id where clips are independent)
    splits: list[Split]
    rows: np.ndarray                    # (N,) index of each task row into the embedded set
    unlabelled: list[str] = field(default_factory=list)


def resolve_protocol(cfg: ExperimentConfig) -> str:
    ev = cfg.evaluation
    if ev.protocol != "auto":
        return ev.protocol
    if ev.train_csv and ev.eval_csv:
        return "audioset"
    from sslsep.data.sources import resolve_source

    return "synthetic" if resolve_source(cfg.data) == "synthetic" else "folds"


def synthetic_seeds(cfg: ExperimentConfig) -> tuple[int, int]:
    """(train seed, eval seed) of the synthetic protocol; that neither is a seed pretraining
    streams is a rule of the config (checked when it is loaded)."""
    ev = cfg.evaluation
    return ev.synth_seed, ev.synth_seed + 1


def sources(cfg: ExperimentConfig, protocol: str) -> dict[str, DataConfig]:
    """The DataConfig of each side: {'train', 'eval'} or {'all'} (folds)."""
    ev = cfg.evaluation
    if protocol == "synthetic":
        out = {}
        for side, seed, n in zip(("train", "eval"), synthetic_seeds(cfg),
                                 (ev.synth_train_clips, ev.synth_eval_clips)):
            d = copy.deepcopy(cfg.data)
            d.source, d.path, d.synth.seed, d.synth.num_clips = "synthetic", "", seed, n
            out[side] = d
        return out
    if protocol == "folds":
        return {"all": cfg.data}
    # audioset: both CSVs and a folder per side are rules of the config (checked at load);
    # its paths are absolute already (config.PATH_KEYS)
    out = {}
    for side, path, csv in (("train", ev.train_path, ev.train_csv), ("eval", ev.eval_path, ev.eval_csv)):
        d = copy.deepcopy(cfg.data)
        d.path, d.labels_csv, d.source = path or cfg.data.path, csv, "auto"
        out[side] = d
    return out


def _task_kind(labels: list[list[str]], setting: str) -> bool:
    """-> multilabel?"""
    if setting != "auto":
        return setting == "multi"
    return any(len(x) != 1 for x in labels)


def build_task(cfg: ExperimentConfig, protocol: str, sets: dict[str, EmbeddedSet]) -> Task:
    """Targets and splits over the concatenation of `sets` (in the order of `sources`)."""
    ev = cfg.evaluation
    sides = list(sets)
    ids = [c for s in sides for c in sets[s].clip_ids]
    labels = [x for s in sides for x in sets[s].labels]
    side_of = np.concatenate([np.full(len(sets[s].clip_ids), i) for i, s in enumerate(sides)]).astype(int)
    labelled = np.array([len(x) > 0 for x in labels], bool)
    unlabelled = sorted(c for c, ok in zip(ids, labelled) if not ok)
    rows = np.flatnonzero(labelled)
    labels = [labels[i] for i in rows]
    if protocol == "synthetic":
        from sslsep.data.synthetic import CLASSES
        classes = list(CLASSES)
        multilabel = ev.task != "single"
    else:
        classes = sorted({c for x in labels for c in x})
        multilabel = _task_kind(labels, ev.task)
    if not classes:
        raise ValueError("no labelled clips to evaluate on")
    index = {c: i for i, c in enumerate(classes)}
    targets = np.zeros((len(rows), len(classes)), np.float32)
    for i, x in enumerate(labels):
        targets[i, [index[c] for c in x]] = 1.0
    label_index = None
    if not multilabel:
        many = [ids[rows[i]] for i, x in enumerate(labels) if len(x) != 1]
        if many:
            raise ValueError(f"evaluation.task=single but {len(many)} clips have several labels, "
                             f"e.g. {many[0]}")
        label_index = targets.argmax(1).astype(np.int64)
    folds = np.array([f for s in sides for f in sets[s].folds])[rows]
    raw_groups = [g for s in sides for g in sets[s].groups]
    # synthetic scenes are independent (their `group` is the scene context, not a recording)
    groups = np.array([ids[i] if protocol == "synthetic" or not raw_groups[i] else raw_groups[i]
                       for i in rows])
    side = side_of[rows]
    if protocol == "synthetic" and ev.synth_folds >= 2:
        seeds = synthetic_seeds(cfg)
        splits = [Split(f"scene-fold {i + 1}", tr, te)
                  for i, (tr, te) in enumerate(grouped_kfold(groups, ev.synth_folds, ev.seed))]
        desc = (f"synthetic scenes, multi-label ({len(classes)} classes): {len(splits)}-fold cross-validation "
                f"over {len(rows)} labelled scenes of seeds {seeds[0]} and {seeds[1]} (pretraining used seed "
                f"{cfg.data.synth.seed})")
    elif protocol in ("synthetic", "audioset"):
        splits = [Split("eval", np.flatnonzero(side == 0), np.flatnonzero(side == 1))]
        if protocol == "synthetic":
            seeds = synthetic_seeds(cfg)
            desc = (f"synthetic scenes, multi-label ({len(classes)} classes): classifiers trained on "
                    f"{len(splits[0].train)} scenes of seed {seeds[0]}, evaluated on {len(splits[0].test)} "
                    f"scenes of seed {seeds[1]} (pretraining used seed {cfg.data.synth.seed})")
        else:
            desc = (f"AudioSet-style segments, multi-label ({len(classes)} classes): train "
                    f"{Path(ev.train_csv).name}, evaluation {Path(ev.eval_csv).name}")
    elif len(set(folds.tolist())) >= 2 and (folds >= 0).all():
        splits = [Split(f"fold {f}", tr, te) for f, tr, te in leave_one_fold_out(folds)]
        desc = f"leave-one-fold-out over {len(splits)} folds"
    else:
        splits = [Split(f"group-fold {i + 1}", tr, te)
                  for i, (tr, te) in enumerate(grouped_kfold(groups, ev.folds, ev.seed, label_index))]
        strat = "" if multilabel else ", stratified by class"
        desc = (f"grouped {len(splits)}-fold cross-validation over {len(set(groups.tolist()))} recording "
                f"groups{strat} (no recording on both sides; the data has a single fold)")
    if protocol == "folds":
        kind = "multi-label" if multilabel else "single-label"
        desc = f"{Path(cfg.data.path).name or cfg.data.path}, {kind} ({len(classes)} classes): {desc}"
    return Task(protocol, desc, multilabel, classes, targets, label_index, groups, splits,
                rows.astype(np.int64), unlabelled)


def task_features(task: Task, sets: dict[str, EmbeddedSet], name: str) -> np.ndarray:
    """(N, D) embeddings of extractor `name` for the task's rows."""
    return np.concatenate([sets[s].features[name] for s in sets])[task.rows]
