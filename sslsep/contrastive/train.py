"""Contrastive pretraining on separated views: one per-worker loop, on Ray Train or in process.

Each worker reads its shard of the view Dataset (fed live by the augmentation service, or
computed once beforehand: `pretrain.views_source`), embeds the B x V views of its clips and
minimises  w_sim * NT-Xent(views of a clip are positives)  +  w_coinc * BCE(coincidence
head: were these two views cut from the same clip?).  Negatives for NT-Xent come from every
worker's batch (`pretrain.global_negatives`, an all_gather) or from the worker's own batch.
Rank 0 writes metrics.jsonl and the encoder files (`encoders/step-XXXXXX.pt`, `encoder.pt`).
"""

from __future__ import annotations

import math
import time
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
from sslsep.session import LocalSession, RaySession, ray_run_config
from sslsep.session import device as session_device


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


def _mean(values: list[float]) -> float:
    """Mean of the finite values; NaN when a part was switched off (weight 0)."""
    finite = [v for v in values if math.isfinite(v)]
    return float(np.mean(finite)) if finite else math.nan


def _save_encoder_file(encoder: AudioEncoder, uri: str, step: int, metrics: dict, cfg: ExperimentConfig) -> None:
    save_encoder(encoder, uri, step=step, metrics=metrics, config=to_dict(cfg))


def _local_view_batches(cfg: ExperimentConfig, registry: str) -> Iterator[dict]:
    """World size 1 without Ray: the augmenter's code in this process."""
    from sslsep.data.sources import KEEP_STATUSES, iter_clips
    from sslsep.views.service import SeparationAugmenter

    aug = SeparationAugmenter(registry, to_dict(cfg))
    rows = []
    for r in iter_clips(cfg.data, cfg.audio):
        if r["status"] in KEEP_STATUSES:
            rows.append(r)
        if len(rows) == cfg.pretrain.batch_clips:
            out = aug({"clip_id": np.array([x["clip_id"] for x in rows]),
                       "audio": np.stack([x["audio"] for x in rows])})
            yield {"views": torch.from_numpy(out["views"])}  # (B, V, crop)
            rows = []


def train_loop(config: dict) -> None:
    """Per-worker pretraining. config = {"cfg": dict, "run_dir": str, "registry": str, "local": bool}."""
    cfg = from_dict(config["cfg"], "train_loop_config")
    pre = cfg.pretrain
    run = RunDir(config["run_dir"])
    if config.get("local"):
        session = LocalSession(lambda: _local_view_batches(cfg, config["registry"]), run.uri("pretrain_state.pt"))
    else:
        session = RaySession(pre.batch_clips, ["views"], shuffle_buffer=max(64, 4 * pre.batch_clips),
                             stage="pretrain", run=run.name)
    torch.set_num_threads(pre.torch_threads or max(1, int(pre.cpus_per_worker)))
    torch.manual_seed(cfg.seed)  # identical initial weights on every rank
    device = session_device()
    a = cfg.audio
    encoder = build_encoder(pre.arch, embed_dim=pre.embed_dim, proj_dim=pre.proj_dim, pool=pre.pool,
                            sample_rate=a.sample_rate, n_mels=a.n_mels, win_ms=a.win_ms, hop_ms=a.hop_ms,
                            f_min=a.f_min, f_max=min(a.f_max, a.sample_rate / 2))
    core = PretrainModel(encoder, pre.similarity)
    optimizer = torch.optim.AdamW(core.parameters(), lr=pre.lr, weight_decay=pre.weight_decay)
    step, elapsed_before = 0, 0.0
    state = session.restore()
    if state is not None:
        core.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        step, elapsed_before = state["step"], state.get("elapsed_s", 0.0)
    model = session.prepare(core.to(device))
    gather = all_gather_with_grad if pre.global_negatives and session.world_size > 1 else None
    gen = torch.Generator(device="cpu").manual_seed(cfg.seed * 1000 + session.rank)
    keep_steps = set(pre.checkpoint_steps)
    t_start, window, views_seen = time.monotonic(), [], 0
    wait_s = compute_s = 0.0
    done = step >= pre.steps
    while not done:
        t_wait, batches = time.monotonic(), 0
        for batch in session.batches():
            batches += 1
            t0 = time.monotonic()
            wait_s += t0 - t_wait
            views = batch["views"].to(device)  # (B, V, crop)
            loss, parts = step_losses(model, views, cfg, gen, gather)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            step += 1
            views_seen += views.shape[0] * views.shape[1]
            window.append(parts)
            compute_s += time.monotonic() - t0
            done = session.any_rank(step >= pre.steps)
            if step % pre.log_every == 0 or step in keep_steps or done:
                busy = max(wait_s + compute_s, 1e-9)
                metrics = {"stage": "pretrain", "step": step,
                           "elapsed_s": round(elapsed_before + time.monotonic() - t_start, 1),
                           **{k: _mean([p[k] for p in window]) for k in window[0]},
                           "views_per_s": round(views_seen * session.world_size / busy, 1),
                           "steps_per_s": round(len(window) / busy, 3),
                           "data_wait_share": round(wait_s / busy, 3), "final": done}
                window, views_seen, wait_s, compute_s = [], 0, 0.0, 0.0
                if session.rank == 0:
                    if step in keep_steps or done:
                        _save_encoder_file(core.encoder, run.uri("encoders", f"step-{step:06d}.pt"), step, metrics, cfg)
                    if done:
                        _save_encoder_file(core.encoder, run.uri("encoder.pt"), step, metrics, cfg)
                    run.log_metrics(metrics)
                session.report(metrics, {"model": core.state_dict(), "optimizer": optimizer.state_dict(),
                                         "step": step, "elapsed_s": metrics["elapsed_s"]})
            if done:
                break
            t_wait = time.monotonic()
        if batches == 0:
            raise ValueError("no training batch: fewer usable clips than pretrain.batch_clips")


def finished(run: RunDir, steps: int) -> bool:
    """RUN_DIR/encoder.pt exists and has trained at least `steps` steps (written last, so its
    presence means the run completed)."""
    out = run.uri("encoder.pt")
    return storage.exists(out) and read_checkpoint(out)["step"] >= steps


def pretrain(cfg: ExperimentConfig, run: RunDir, registry: str) -> str:
    """Train (or resume, or reuse) the encoder; returns the URI of RUN_DIR/encoder.pt."""
    out = run.uri("encoder.pt")
    if finished(run, cfg.pretrain.steps):
        return out
    config = {"cfg": to_dict(cfg), "run_dir": run.path, "registry": registry}
    if not cfg.pretrain.use_ray:
        train_loop({**config, "local": True})
        return out
    import ray.train
    from ray.train.torch import TorchTrainer

    from sslsep.views.service import view_dataset

    pre = cfg.pretrain
    ds = view_dataset(cfg, registry).select_columns(["views"], num_cpus=cfg.data.cpus_per_task)
    if pre.views_source == "precomputed":
        ds = ds.materialize()
    TorchTrainer(
        train_loop, train_loop_config=config, datasets={"train": ds},
        scaling_config=ray.train.ScalingConfig(num_workers=pre.num_workers, use_gpu=pre.use_gpu,
                                               resources_per_worker={"CPU": pre.cpus_per_worker}),
        run_config=ray_run_config(run.uri("ray_train"), "pretrain"),
    ).fit()
    return out
