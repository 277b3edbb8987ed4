"""Contrastive pretraining on separated views: one per-worker loop, on Ray Train or in process.

Each worker reads its shard of the view Dataset (fed live by the augmentation service, or
computed once beforehand: `pretrain.views_source`), embeds the B x V views of its clips and
minimises  w_sim * NT-Xent(views of a clip are positives)  +  w_coinc * BCE(coincidence
head: were these two views cut from the same clip?).  Negatives for NT-Xent come from every
worker's batch (`pretrain.global_negatives`, an all_gather) or from the worker's own batch.

One stream, several models: variants whose configs differ only in their loss
(`PER_MODEL_KEYS`: the configured model, sim-only, coinc-only) train together in one loop on
the same batches (`pretrain_together`): one module holding a model per variant, one forward,
the sum of their losses (their parameters are disjoint, so each gets exactly its own
gradient), one optimizer (AdamW is per parameter). Each variant keeps its own run directory
(metrics.jsonl, `encoders/step-XXXXXX.pt`, `encoder.pt`); the shared training state lives
with the first one. Rank 0 writes them, and scores every variant's embeddings with the k-NN
monitor (`sslsep.contrastive.monitor`, `pretrain.monitor_every`) when the data carry labels.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
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
from sslsep.contrastive.monitor import Monitor
from sslsep.run import RunDir
from sslsep.session import open_session
from sslsep.training import LoopSettings, launch, run_loop
from sslsep.training.loop import guard_note

# The keys in which variants trained on one stream may differ: they change the loss only.
PER_MODEL_KEYS = ("pretrain.w_sim", "pretrain.w_coinc", "pretrain.temperature", "pretrain.similarity")


def stream_key(cfg: ExperimentConfig) -> str:
    """Equal for two configs exactly when they can train on one view stream."""
    import json

    d = to_dict(cfg)
    for key in PER_MODEL_KEYS:
        section, name = key.split(".")
        d[section].pop(name, None)
    return json.dumps(d, sort_keys=True)


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


class PretrainModels(nn.Module):
    """The models that train on one view stream, by variant name: one module, so that one DDP
    wrapper and one forward see every parameter."""

    def __init__(self, models: dict[str, PretrainModel]):
        super().__init__()
        self.models = nn.ModuleDict(models)

    def forward(self, views: torch.Tensor, pairs: dict[str, tuple[torch.Tensor, torch.Tensor]]):
        """views (B, V, T), pair indices per variant -> {variant: (z (B, V, P_dim), logits (P,))}."""
        return {name: m(views, *pairs[name]) for name, m in self.models.items()}


def variant_loss(core: PretrainModel, z: torch.Tensor, logits: torch.Tensor, target: torch.Tensor,
                 cfg: ExperimentConfig, gather=None) -> tuple[torch.Tensor, dict]:
    """One variant's joint loss and its parts from its outputs z (B, V, P_dim), logits (P,).
    A part with weight 0 still enters the graph times 0, so that every parameter gets a
    gradient and multi-worker DDP needs no `find_unused_parameters`."""
    pre = cfg.pretrain
    z, logits = z.float(), logits.float()  # losses in fp32 under bf16/fp16 autocast
    W = core.bilinear.W if core.bilinear is not None else None
    l_sim = multiview_nt_xent(z, pre.temperature, pre.similarity, W=W, gather=gather) if pre.w_sim > 0 else None
    l_coinc = coincidence_loss(logits, target) if pre.w_coinc > 0 else None  # (P,)
    loss, parts = joint_loss(l_sim, l_coinc, pre.w_sim, pre.w_coinc)
    if pre.w_sim == 0:
        loss = loss + 0.0 * (z.sum() + (W.sum() if W is not None else 0.0))
    if pre.w_coinc == 0:
        loss = loss + 0.0 * logits.sum()
    parts["coinc_acc"] = coincidence_accuracy(logits.detach(), target)
    return loss, parts


def build_model(cfg: ExperimentConfig) -> PretrainModel:
    """The variant's encoder and heads, seeded by `cfg.seed`: identical on every rank, and the
    same whether the variant trains alone or with others."""
    pre, a = cfg.pretrain, cfg.audio
    torch.manual_seed(cfg.seed)
    encoder = build_encoder(pre.arch, embed_dim=pre.embed_dim, proj_dim=pre.proj_dim, pool=pre.pool,
                            sample_rate=a.sample_rate, n_mels=a.n_mels, win_ms=a.win_ms, hop_ms=a.hop_ms,
                            f_min=a.f_min, f_max=min(a.f_max, a.sample_rate / 2))
    return PretrainModel(encoder, pre.similarity)


def _save_encoder_file(encoder: AudioEncoder, uri: str, step: int, metrics: dict, cfg: ExperimentConfig) -> None:
    save_encoder(encoder, uri, step=step, metrics=metrics, config=to_dict(cfg))


def _local_view_batches(cfg: ExperimentConfig, epoch: int) -> Iterator[dict]:
    """World size 1 without Ray: the augmenter's code in this process, one epoch of the source."""
    from sslsep.data.sources import KEEP_STATUSES, iter_clips
    from sslsep.views.service import SeparationAugmenter

    threads = torch.get_num_threads()
    aug = SeparationAugmenter(cfg.separation.registry, to_dict(cfg))
    torch.set_num_threads(threads)  # the augmenter sets its actor's threads; here it shares the trainer's process
    rows = []
    for r in iter_clips(cfg.data, cfg.audio):
        if r["status"] in KEEP_STATUSES:
            rows.append(r)
        if len(rows) == cfg.pretrain.batch_clips:
            out = aug({"clip_id": np.array([x["clip_id"] for x in rows]), "epoch": np.full(len(rows), epoch),
                       "audio": np.stack([x["audio"] for x in rows])})
            yield {k: torch.from_numpy(out[k]) for k in ("views", "fallbacks") if k in out}  # (B, V, crop), (B, K)
            rows = []


def contrastive_step(cfgs: dict[str, ExperimentConfig], gens: dict[str, torch.Generator], gather=None,
                     separators: list[str] = ()):
    """The stage's step function: views (B, V, T) -> the sum of every variant's loss and the
    parts (floats, keyed `variant/part`; `total` is the sum, what the loss gauge shows), with the
    share of views per separator that fell back to the mixture (`fallback_share/<name>`)."""

    def step(model: nn.Module, batch: dict) -> tuple[torch.Tensor, dict]:
        views = batch["views"]
        B, V, _ = views.shape
        pairs = {n: coincidence_pairs(B, V, generator=gens[n], device=views.device) for n in cfgs}
        outs = model(views, {n: p[:2] for n, p in pairs.items()})
        core = model.module if hasattr(model, "module") else model
        total, parts = None, {}
        for n, cfg in cfgs.items():
            z, logits = outs[n]
            loss, p = variant_loss(core.models[n], z, logits, pairs[n][2], cfg, gather)
            total = loss if total is None else total + loss
            parts.update({f"{n}/{k}": float(v) for k, v in p.items()})
        parts["total"] = float(total.detach())
        if "fallbacks" in batch:
            shares = batch["fallbacks"].float().sum(0) / (B * V)  # (K,)
            parts.update({f"fallback_share/{name}": float(x) for name, x in zip(separators, shares)})
        return total, parts

    return step


def loop_settings(cfg: ExperimentConfig) -> LoopSettings:
    s = LoopSettings.of("pretrain", cfg.pretrain, report_every=cfg.pretrain.log_every, fake_gpus=cfg.ray.fake_gpus)
    pre, aug = cfg.pretrain, cfg.augment
    if not pre.torch_threads and not pre.use_gpu and aug.kinds == ["mixture"]:
        # no separator runs in this stream: the CPU its actor holds only cuts crops, so the
        # trainer's threads take it too (2 on a 2-core laptop; idle_loop.py, docs/benchmarks.md)
        s = dataclasses.replace(s, torch_threads=math.ceil(pre.cpus_per_worker + aug.cpus_per_actor))
    return s


def split_metrics(metrics: dict, names: list[str]) -> dict[str, dict]:
    """A metrics line of variants trained together -> one line per variant: its own parts
    (the `variant/` prefix stripped) and the shared figures (step, lr, throughput, fallbacks);
    the sum of their losses (`total`) is the group's only."""
    shared = {k: v for k, v in metrics.items() if k != "total" and not any(k.startswith(f"{n}/") for n in names)}
    return {n: {**shared, **{k[len(n) + 1:]: v for k, v in metrics.items() if k.startswith(f"{n}/")}}
            for n in names}


class VariantLogs:
    """Writes each variant's line of `split_metrics` to its own metrics.jsonl."""

    def __init__(self, runs: dict[str, RunDir]):
        self.runs = runs

    def log_metrics(self, metrics: dict) -> None:
        for n, line in split_metrics(metrics, list(self.runs)).items():
            self.runs[n].log_metrics(line)

    def write_text(self, name: str, text: str) -> str:
        """A file of the group (a profile, the stream's delivery): in the first variant's directory."""
        return self.first.write_text(name, text)

    @property
    def first(self) -> RunDir:
        return next(iter(self.runs.values()))

    def exists(self, name: str) -> bool:
        return self.first.exists(name)

    def read_json(self, name: str):
        return self.first.read_json(name)

    def metrics(self) -> list[dict]:
        return self.first.metrics()


def train_loop(config: dict) -> None:
    """Per-worker pretraining. config = {"cfg": dict, "run_dir": str, "local": bool} for one model,
    plus {"variants": {name: {"cfg": dict, "run_dir": str}}} for several on one stream (then
    "cfg"/"run_dir" are the first variant's: its directory keeps the training state). The
    separators are `separation.registry` of the config."""
    from sslsep.views.service import separator_names

    cfg = from_dict(config["cfg"], "train_loop_config")
    members = config.get("variants") or {"model": {"cfg": config["cfg"], "run_dir": config["run_dir"]}}
    cfgs = {n: from_dict(v["cfg"], f"train_loop_config (variant {n})") for n, v in members.items()}
    runs = {n: RunDir(v["run_dir"]) for n, v in members.items()}
    pre, run = cfg.pretrain, RunDir(config["run_dir"])
    separators = separator_names(cfg)
    epochs = itertools.count()  # in process: the pass index is the epoch of its views
    session = open_session(config, lambda: _local_view_batches(cfg, next(epochs)),
                           columns=train_columns(cfg, separators, planned="stream" in config),
                           batch_size=pre.batch_clips, stage="pretrain", run=run, seed=cfg.seed,
                           state_file="pretrain_state.pt")
    model = PretrainModels({n: build_model(c) for n, c in cfgs.items()})
    optimizer = torch.optim.AdamW(model.parameters(), lr=pre.lr, weight_decay=pre.weight_decay)
    gather = all_gather_with_grad if pre.global_negatives and session.world_size > 1 else None
    gens = {n: torch.Generator(device="cpu").manual_seed(cfg.seed * 1000 + session.rank) for n in cfgs}

    monitor = Monitor(cfg, runs) if session.rank == 0 and pre.monitor_every else None

    def validate(core: nn.Module, step: int, final: bool) -> dict:
        return monitor({n: m.encoder for n, m in core.models.items()}, step, final)

    def save(core: nn.Module, step: int, metrics: dict, done: bool) -> None:
        lines = split_metrics(metrics, list(runs))
        for n, m in core.models.items():
            _save_encoder_file(m.encoder, runs[n].uri("encoders", f"step-{step:06d}.pt"), step, lines[n], cfgs[n])
            if done:  # written last: its presence marks the run finished
                _save_encoder_file(m.encoder, runs[n].uri("encoder.pt"), step, lines[n], cfgs[n])

    run_loop(session, loop_settings(cfg), model, optimizer, contrastive_step(cfgs, gens, gather, separators),
             run=VariantLogs(runs), save=save, validate=validate if monitor else None, channels_last=True,
             clip_groups=lambda core: [m.parameters() for m in core.models.values()],
             no_batch="no training batch: fewer usable clips than pretrain.batch_clips",
             pass_starts=None if config.get("local") else config.get("stream", {}).get("pass_starts"))


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
    return pretrain_together({"model": cfg}, {"model": run})["model"]


def pretrain_together(cfgs: dict[str, ExperimentConfig], runs: dict[str, RunDir]) -> dict[str, str]:
    """Train the variants `cfgs` (equal `stream_key`) on one view stream, each into its own run
    directory (resuming together, skipped when all are finished); returns their encoder URIs."""
    names = list(cfgs)
    keys = {stream_key(c) for c in cfgs.values()}
    if len(keys) != 1:
        raise ValueError(f"variants {names} differ in more than {PER_MODEL_KEYS}: they need a stream each")
    first = cfgs[names[0]]
    out = {n: runs[n].uri("encoder.pt") for n in names}
    if all(finished(runs[n], first.pretrain.steps) for n in names):
        return out
    config = {"cfg": to_dict(first), "run_dir": runs[names[0]].path}
    if len(names) > 1:
        config["variants"] = {n: {"cfg": to_dict(cfgs[n]), "run_dir": runs[n].path} for n in names}
    plan = None
    if first.pretrain.use_ray and first.pretrain.views_source == "live":
        from sslsep.data.sources import stream_plan

        plan = stream_plan(first.data, shuffle_seed=first.seed, clips_needed=clips_needed(first))
        config["stream"] = {"pass_starts": plan.pass_starts}  # the delivery ledger's passes
    launch(train_loop, config, loop_settings(first), lambda stream: {"train": train_dataset(first, plan, stream)},
           runs[names[0]], "pretrain")
    note = guard_note("pretrain", f"pretrain.max_minutes={first.pretrain.max_minutes:g}",
                      read_checkpoint(out[names[0]])["metrics"])
    if note:
        print(note, flush=True)
    return out


def clips_needed(cfg: ExperimentConfig) -> int:
    pre = cfg.pretrain
    return pre.steps * pre.batch_clips * pre.num_workers


def train_columns(cfg: ExperimentConfig, separators: list[str], planned: bool) -> list[str]:
    """What a trainer reads of the view rows: views, per-separator fallbacks, and for a planned
    stream where each clip stands in it (key: sslsep.data.delivery)."""
    return ["views"] + (["fallbacks"] if separators else []) + (["key"] if planned else [])


def train_dataset(cfg: ExperimentConfig, plan=None, stream: dict | None = None):
    """The Ray Dataset of views (views and per-separator fallbacks): fed live by the augmentation
    service as one stream of as many epochs as every step of every worker needs (plus a spare
    one), each with new views; or computed once (one epoch) and held in the object store
    (`pretrain.views_source`). A live stream follows `plan` (`stream_plan`) and leaves out the
    clips that the ledger state `stream` (of the checkpoint being restored) holds."""
    from sslsep.data.delivery import Ranges
    from sslsep.views.service import separator_names, view_dataset

    live = cfg.pretrain.views_source == "live"
    columns = train_columns(cfg, separator_names(cfg), planned=live and plan is not None)
    resume = Ranges.from_list(stream["delivered"]) if stream else None
    ds = view_dataset(cfg, clips_needed=clips_needed(cfg) if live else 0, columns=columns, plan=plan,
                      resume=resume if live else None)
    return ds if live else ds.materialize()
