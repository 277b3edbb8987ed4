"""Contrastive pretraining on separated views: one per-worker loop, on Ray Train or in process.

Each worker reads its shard of the view Dataset (fed live by the augmentation service, or
computed once beforehand: `pretrain.views_source`), embeds the B x V views of its clips and
minimises  w_sim * NT-Xent(views of a clip are positives)  +  w_coinc * BCE(coincidence
head: were these two views cut from the same clip?).  Negatives for NT-Xent come from every
worker's batch (`pretrain.global_negatives`, an all_gather) or from the worker's own batch.
Rank 0 writes metrics.jsonl and the encoder files (`encoders/step-XXXXXX.pt`, `encoder.pt`).
"""

from __future__ import annotations

from typing import Iterator

import numpy as np
import torch
from torch import nn

from sslsep import storage
from sslsep.config import ExperimentConfig, from_dict, to_dict
from sslsep.checkpoint import read_checkpoint
from sslsep.contrastive.encoder import AudioEncoder, build_encoder, save_encoder
from sslsep.contrastive.losses import (BilinearSimilarity, CoincidenceHead, all_gather_with_grad,
                                       coincidence_accuracy, coincidence_loss, coincidence_pairs,
                                       joint_loss, multiview_nt_xent)
from sslsep.run import RunDir
from sslsep.session import open_session
from sslsep.training import LoopSettings, launch, run_loop
from sslsep.training.loop import guard_note


class PretrainModel(nn.Module):
    """Encoder + coincidence head (+ COLA's bilinear W): one module, so DDP sees every
    parameter in one forward."""

    def __init__(self, encoder: AudioEncoder, similarity: str):
        super().__init__()
        self.encoder = encoder
        self.coincidence = CoincidenceHead(encoder.embed_dim)
        self.bilinear = BilinearSimilarity(encoder.proj_dim) if similarity == "bilinear" else None

    def forward(self, views: torch.Tensor, idx1: torch.Tensor, idx2: torch.Tensor):
        """views (B, V, T), pair indices (P,) into the B*V views -> z (B, V, P_dim), logits (P,)."""
        B, V, T = views.shape
        e = self.encoder.embed(views.reshape(B * V, T))  # (B*V, D)
        z = self.encoder.head(e).view(B, V, -1)  # (B, V, P_dim)
        return z, self.coincidence(e[idx1], e[idx2])  # (B, V, P_dim), (P,)


def step_losses(model: nn.Module, views: torch.Tensor, cfg: ExperimentConfig, gen: torch.Generator,
                gather=None) -> tuple[torch.Tensor, dict]:
    """One step's joint loss and its parts for views (B, V, T)."""
    pre = cfg.pretrain
    B, V, _ = views.shape
    idx1, idx2, target = coincidence_pairs(B, V, generator=gen, device=views.device)
    z, logits = model(views, idx1, idx2)
    z, logits = z.float(), logits.float()  # losses in fp32 under bf16/fp16 autocast
    core = model.module if hasattr(model, "module") else model
    l_sim = l_coinc = None
    if pre.w_sim > 0:
        W = core.bilinear.W if core.bilinear is not None else None
        l_sim = multiview_nt_xent(z, pre.temperature, pre.similarity, W=W, gather=gather)  # (B*V,)
    if pre.w_coinc > 0:
        l_coinc = coincidence_loss(logits, target)  # (P,)
    loss, parts = joint_loss(l_sim, l_coinc, pre.w_sim, pre.w_coinc)
    parts["coinc_acc"] = coincidence_accuracy(logits.detach(), target)
    return loss, parts


def _save_encoder_file(encoder: AudioEncoder, uri: str, step: int, metrics: dict, cfg: ExperimentConfig) -> None:
    save_encoder(encoder, uri, step=step, metrics=metrics, config=to_dict(cfg))


def _local_view_batches(cfg: ExperimentConfig) -> Iterator[dict]:
    """World size 1 without Ray: the augmenter's code in this process."""
    from sslsep.data.sources import KEEP_STATUSES, iter_clips
    from sslsep.views.service import SeparationAugmenter

    aug = SeparationAugmenter(cfg.separation.registry, to_dict(cfg))
    rows = []
    for r in iter_clips(cfg.data, cfg.audio):
        if r["status"] in KEEP_STATUSES:
            rows.append(r)
        if len(rows) == cfg.pretrain.batch_clips:
            out = aug({"clip_id": np.array([x["clip_id"] for x in rows]),
                       "audio": np.stack([x["audio"] for x in rows])})
            yield {"views": torch.from_numpy(out["views"])}  # (B, V, crop)
            rows = []


def contrastive_step(cfg: ExperimentConfig, gen: torch.Generator, gather=None):
    """The stage's step function: views (B, V, T) -> joint loss and its parts (floats)."""

    def step(model: nn.Module, batch: dict) -> tuple[torch.Tensor, dict]:
        loss, parts = step_losses(model, batch["views"], cfg, gen, gather)
        return loss, {k: float(v) for k, v in parts.items()}

    return step


def loop_settings(cfg: ExperimentConfig) -> LoopSettings:
    return LoopSettings.of("pretrain", cfg.pretrain, report_every=cfg.pretrain.log_every)


def train_loop(config: dict) -> None:
    """Per-worker pretraining. config = {"cfg": dict, "run_dir": str, "local": bool}; the separators
    are `separation.registry` of the config."""
    cfg = from_dict(config["cfg"], "train_loop_config")
    pre, a, run = cfg.pretrain, cfg.audio, RunDir(config["run_dir"])
    session = open_session(config, lambda: _local_view_batches(cfg), column="views",
                           batch_size=pre.batch_clips, stage="pretrain", run=run, seed=cfg.seed,
                           state_file="pretrain_state.pt")
    torch.manual_seed(cfg.seed)  # identical initial weights on every rank
    encoder = build_encoder(pre.arch, embed_dim=pre.embed_dim, proj_dim=pre.proj_dim, pool=pre.pool,
                            sample_rate=a.sample_rate, n_mels=a.n_mels, win_ms=a.win_ms, hop_ms=a.hop_ms,
                            f_min=a.f_min, f_max=min(a.f_max, a.sample_rate / 2))
    model = PretrainModel(encoder, pre.similarity)
    optimizer = torch.optim.AdamW(model.parameters(), lr=pre.lr, weight_decay=pre.weight_decay)
    gather = all_gather_with_grad if pre.global_negatives and session.world_size > 1 else None
    gen = torch.Generator(device="cpu").manual_seed(cfg.seed * 1000 + session.rank)

    def save(core: nn.Module, step: int, metrics: dict, done: bool) -> None:
        _save_encoder_file(core.encoder, run.uri("encoders", f"step-{step:06d}.pt"), step, metrics, cfg)
        if done:  # written last: its presence marks the run finished
            _save_encoder_file(core.encoder, run.uri("encoder.pt"), step, metrics, cfg)

    run_loop(session, loop_settings(cfg), model, optimizer, contrastive_step(cfg, gen, gather), run=run,
             save=save, channels_last=True,
             no_batch="no training batch: fewer usable clips than pretrain.batch_clips")


def finished(run: RunDir, steps: int) -> bool:
    """RUN_DIR/encoder.pt exists and has trained `steps` steps or was stopped by the wall-clock
    guard (written last, so its presence means the run completed)."""
    out = run.uri("encoder.pt")
    if not storage.exists(out):
        return False
    ckpt = read_checkpoint(out)
    return ckpt["step"] >= steps or ckpt.get("metrics", {}).get("stopped_by") == "max_minutes"


def pretrain(cfg: ExperimentConfig, run: RunDir) -> str:
    """Train (or resume, or reuse) the encoder on views from the separators of
    `separation.registry`; returns the URI of RUN_DIR/encoder.pt."""
    out = run.uri("encoder.pt")
    if finished(run, cfg.pretrain.steps):
        return out
    config = {"cfg": to_dict(cfg), "run_dir": run.path}
    launch(train_loop, config, loop_settings(cfg), lambda: {"train": train_dataset(cfg)}, run, "pretrain")
    note = guard_note("pretrain", f"pretrain.max_minutes={cfg.pretrain.max_minutes:g}", read_checkpoint(out)["metrics"])
    if note:
        print(note, flush=True)
    return out


def train_dataset(cfg: ExperimentConfig):
    """The Ray Dataset of views (the views column only): fed live by the augmentation
    service, or computed once and held in the object store (`pretrain.views_source`)."""
    from sslsep.views.service import view_dataset

    ds = view_dataset(cfg).select_columns(["views"], num_cpus=cfg.data.cpus_per_task)
    return ds.materialize() if cfg.pretrain.views_source == "precomputed" else ds
