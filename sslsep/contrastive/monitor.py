"""A live representation monitor for contrastive pretraining: a weighted cosine k-NN on a fixed
labelled split, scored every `pretrain.monitor_every` steps for every variant in the loop.

The protocol (what a run report states; also written to each variant's `monitor.json`):

* **Split.** The first `pretrain.monitor_clips` (256) usable, labelled clips of the pretraining
  source in hash order of their ids (`sslsep.data.sources.hash_sample`): chosen from metadata,
  only those clips decoded, the same clips however the files or shards are ordered, and a cost
  that follows the split, not the corpus. Whole clips (`audio.clip_seconds`, the source's fixed
  crop): no random crop, so no RNG is drawn. They are halved by recording group
  (`sslsep.evaluation.splits.grouped_holdout`, fraction 0.5, seed 0, class-stratified for
  single-label data): one half is the k-NN memory (references), the other the queries, and no
  recording (UrbanSound8K fsID, AudioSet YTID) is on both sides. Synthetic scenes are
  independent, so their group is the clip id, as in the evaluation. Built once, on rank 0, at
  the first monitored step, and kept in memory for the run.
* **Embedding.** The encoder's clip embedding as the shallow evaluation takes it
  (`PooledEncoder` with `evaluation.pool`), in batches of `evaluation.embed_batch`, in
  `model.eval()` under inference mode, at the training's autocast precision (bf16 where training
  runs bf16: the same ratio of monitor to training cost on every machine).
* **Classifier.** Weighted k-NN as in InstDisc (Wu et al. 2018) and DINO (Caron et al. 2021):
  the `monitor_k` (20) references of highest cosine similarity to a query vote for their
  classes with weight exp(sim / `monitor_temperature`) (0.07); a class's score is its share of
  the vote. Single-label data: top-1 accuracy (`monitor_knn_acc`); multi-label data (synthetic
  scenes, AudioSet): mAP over the classes with a positive query (`monitor_knn_map`,
  `sslsep.evaluation.metrics`).
* **When.** At the report steps (`pretrain.log_every`) that are multiples of `monitor_every`,
  and at the final step; 0 turns it off. A source without labels turns it off with one note.

Why k-NN: nothing is trained (no epochs, learning rate, early stopping or random init), so a
figure costs one forward pass over the split and moves only with the representation; and it
tracks linear-probe quality (InstDisc, DINO). Why it cannot change training: rank 0 only, no
gradient, eval mode restored to train mode after, no RNG drawn, so the losses of a run equal
those of the same run without it (tests/test_monitor.py). Cost: docs/benchmarks.md
(`monitor_cost.py`); under 10 % of pretraining time at the quick preset.
"""

from __future__ import annotations

import dataclasses
import time
from typing import Mapping

import numpy as np
import torch

from sslsep.config import ExperimentConfig
from sslsep.evaluation.metrics import accuracy, mean_average_precision

SPLIT_SEED = 0  # the halves do not move with the pretraining seed: figures of every seed compare


def knn_scores(ref: np.ndarray, ref_targets: np.ndarray, query: np.ndarray, k: int,
               temperature: float) -> np.ndarray:
    """ref (R, D), ref_targets (R, C) 0/1, query (Q, D) -> (Q, C) class scores: each query's
    k nearest references by cosine similarity vote for their classes with weight
    exp(sim / temperature); a score is the class's share of the query's total weight."""
    ref = np.asarray(ref, np.float64)
    query = np.asarray(query, np.float64)
    ref = ref / np.maximum(np.linalg.norm(ref, axis=1, keepdims=True), 1e-12)
    query = query / np.maximum(np.linalg.norm(query, axis=1, keepdims=True), 1e-12)
    sim = query @ ref.T  # (Q, R)
    k = min(k, ref.shape[0])
    idx = np.argsort(-sim, axis=1, kind="stable")[:, :k]  # (Q, k): ties go to the earlier reference
    top = np.take_along_axis(sim, idx, axis=1)  # (Q, k)
    w = np.exp((top - 1.0) / temperature)  # (Q, k); exp(sim / T) up to a factor per query, no overflow
    votes = np.einsum("qk,qkc->qc", w, np.asarray(ref_targets, np.float64)[idx])  # (Q, C)
    return votes / w.sum(axis=1, keepdims=True)


def knn_figure(scores: np.ndarray, targets: np.ndarray, multilabel: bool) -> float:
    """(Q, C) scores and 0/1 targets -> mAP (multi-label) or top-1 accuracy (single-label)."""
    if multilabel:
        return mean_average_precision(targets, scores)
    return accuracy(np.asarray(targets).argmax(axis=1), scores)


@dataclasses.dataclass
class MonitorSplit:
    """The fixed labelled split: whole clips and 0/1 targets of the references and queries."""
    ref_audio: np.ndarray      # (R, T) float32
    ref_targets: np.ndarray    # (R, C)
    query_audio: np.ndarray    # (Q, T) float32
    query_targets: np.ndarray  # (Q, C)
    classes: list[str]
    multilabel: bool
    groups: tuple[int, int, int]  # distinct recording groups: all, references, queries
    ref_ids: list[str] = dataclasses.field(default_factory=list)
    query_ids: list[str] = dataclasses.field(default_factory=list)
    note: str = ""             # a line about the selection when fewer clips than asked were labelled

    @property
    def metric(self) -> str:
        return "knn_map" if self.multilabel else "knn_acc"


def build_split(cfg: ExperimentConfig) -> MonitorSplit | str:
    """The monitor's split from `cfg.data` (see the module doc), or the reason there is none."""
    from sslsep.data.sources import hash_sample, resolve_source
    from sslsep.evaluation.splits import grouped_holdout

    want = cfg.pretrain.monitor_clips
    synthetic = resolve_source(cfg.data) == "synthetic"
    rows = hash_sample(cfg.data, cfg.audio, want, only_ok=True)
    labelled = [r for r in rows if r["labels"]]
    if not labelled:
        return f"none of the first {len(rows)} usable clips (hash order) carries a label"
    note = (f"{len(labelled)} of the first {len(rows)} usable clips (hash order) carry labels; the split "
            f"uses those" if len(labelled) < len(rows) else "")
    labels = [list(r["labels"]) for r in labelled]
    task = cfg.evaluation.task
    multilabel = task == "multi" or (task == "auto" and (synthetic or any(len(x) != 1 for x in labels)))
    if not multilabel and any(len(x) != 1 for x in labels):
        return "evaluation.task is single but some clips have several labels"
    classes = sorted({c for x in labels for c in x})
    index = {c: i for i, c in enumerate(classes)}
    targets = np.zeros((len(labelled), len(classes)), np.float32)  # (N, C)
    for i, x in enumerate(labels):
        targets[i, [index[c] for c in x]] = 1.0
    # synthetic scenes are independent: their `group` is the scene context, not a recording
    groups = np.array([r["clip_id"] if synthetic or not r["group"] else r["group"] for r in labelled])
    ref, query = grouped_holdout(groups, 0.5, seed=SPLIT_SEED,
                                 labels=None if multilabel else targets.argmax(axis=1))
    if len(ref) == 0 or len(query) == 0:
        return f"the {len(labelled)} labelled clips come from {len(set(groups))} recording group(s): no grouped halves"
    audio = np.stack([r["audio"] for r in labelled]).astype(np.float32)  # (N, T)
    ids = [r["clip_id"] for r in labelled]
    return MonitorSplit(audio[ref], targets[ref], audio[query], targets[query], classes, multilabel,
                        (len(set(groups)), len(set(groups[ref])), len(set(groups[query]))),
                        [ids[i] for i in ref], [ids[i] for i in query], note)


@torch.inference_mode()
def embed_clips(encoder: torch.nn.Module, audio: np.ndarray, pool: str, batch: int, precision: str) -> np.ndarray:
    """(N, T) whole clips -> (N, D) float32 clip embeddings as the evaluation takes them
    (`PooledEncoder`), with the encoder in eval mode; its train/eval mode is restored after."""
    from sslsep.evaluation.embeddings import PooledEncoder
    from sslsep.training.schedule import autocast

    was_training = encoder.training
    device = next(encoder.parameters()).device
    try:
        model = PooledEncoder(encoder, pool)  # puts the encoder in eval mode
        out = []
        for i in range(0, len(audio), batch):
            x = torch.from_numpy(audio[i:i + batch]).to(device)  # (b, T)
            with autocast(precision, device):
                out.append(model(x).float().cpu().numpy())  # (b, D)
        return np.concatenate(out)
    finally:
        encoder.train(was_training)


class Monitor:
    """Rank 0's monitor of the variants trained in one loop: `monitor(encoders, step, final)`
    at each report step -> the metrics line's monitor keys (`variant/monitor_knn_*`,
    `monitor_s`, and on the first figures the protocol's numbers), or {} when not due or off.
    Writes the protocol to each variant's `monitor.json` when the split is built."""

    def __init__(self, cfg: ExperimentConfig, runs: Mapping[str, object] | None = None):
        self.cfg, self.runs = cfg, dict(runs or {})
        self.every = cfg.pretrain.monitor_every
        self.split: MonitorSplit | None = None
        self.off: str | None = None if self.every else "pretrain.monitor_every is 0"
        self.calls = 0

    def due(self, step: int, final: bool) -> bool:
        return self.off is None and bool(self.every) and (step % self.every == 0 or final)

    def protocol(self) -> dict:
        pre, s = self.cfg.pretrain, self.split
        return {"enabled": True, "k": pre.monitor_k, "temperature": pre.monitor_temperature, "metric": s.metric,
                "task": "multi-label" if s.multilabel else "single-label",
                "reference_clips": len(s.ref_audio), "query_clips": len(s.query_audio), "groups": s.groups[0],
                "reference_groups": s.groups[1], "query_groups": s.groups[2], "classes": len(s.classes),
                "every": self.every, "clips_asked": pre.monitor_clips, "clip_seconds": self.cfg.audio.clip_seconds,
                "pool": self.cfg.evaluation.pool, "split_seed": SPLIT_SEED,
                "selection": "first labelled usable clips in crc32 hash order of clip id (hash_sample), halved "
                             "by recording group (grouped_holdout 0.5): references = k-NN memory, queries scored",
                **({"note": s.note} if s.note else {})}

    def _write(self, obj: dict) -> None:
        for run in self.runs.values():
            run.write_json("monitor.json", obj)

    def _build(self) -> bool:
        built = build_split(self.cfg)
        if isinstance(built, str):
            self.off = built
            print(f"pretrain: k-NN monitor off: {built}", flush=True)
            self._write({"enabled": False, "reason": built, "every": self.every})
            return False
        self.split = built
        if built.note:
            print(f"pretrain: k-NN monitor: {built.note}", flush=True)
        self._write(self.protocol())
        return True

    def __call__(self, encoders: Mapping[str, torch.nn.Module], step: int, final: bool) -> dict:
        if not self.due(step, final):
            return {}
        t0 = time.monotonic()
        if self.split is None and not self._build():
            return {}
        from sslsep.training.schedule import resolve_precision

        pre, s = self.cfg.pretrain, self.split
        out = {}
        for name, encoder in encoders.items():
            precision = resolve_precision(pre.precision, next(encoder.parameters()).device)
            emb = [embed_clips(encoder, a, self.cfg.evaluation.pool, self.cfg.evaluation.embed_batch, precision)
                   for a in (s.ref_audio, s.query_audio)]
            scores = knn_scores(emb[0], s.ref_targets, emb[1], pre.monitor_k, pre.monitor_temperature)
            out[f"{name}/monitor_{s.metric}"] = round(knn_figure(scores, s.query_targets, s.multilabel), 4)
        out["monitor_s"] = round(time.monotonic() - t0, 2)
        if self.calls == 0:  # the protocol once, beside the first figures
            out.update(monitor_k=pre.monitor_k, monitor_temperature=pre.monitor_temperature,
                       monitor_reference_clips=len(s.ref_audio), monitor_query_clips=len(s.query_audio),
                       monitor_groups=s.groups[0])
        self.calls += 1
        return out
