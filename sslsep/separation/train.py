"""MixIT separator training: one per-worker loop, run by Ray Train or in this process.

`train_loop(config)` is the per-worker function. Under Ray Train's TorchTrainer it reads
its shard of the clip Dataset, wraps the model in DDP, and reports metrics and resumable
checkpoints to Ray; with `separation.use_ray: false` the same loop runs at world size 1
on `iter_clips`, for debugging. Either way rank 0 writes `metrics.jsonl`, the convergence
states under `RUN_DIR/separators/` and `RUN_DIR/registry.json`.

A step: 2P clips -> P mixtures of mixtures -> separator -> M outputs -> MixIT loss against
the P pairs of clips (sslsep.separation.mixit). Validation (rank 0) reports the MixIT loss
and SI-SNRi on held-out mixtures of mixtures, and, where stems exist (synthetic scenes),
multi-source SI-SNRi and single-source SI-SNR on held-out single scenes.
"""

from __future__ import annotations

import copy
import dataclasses
import io
import math
import os
from typing import Iterator

import numpy as np
import torch

from sslsep import storage
from sslsep.config import VAL_SEED_OFFSET, ExperimentConfig, from_dict, source_entries, to_dict
from sslsep.data.sources import KEEP_STATUSES, held_out_rows, iter_clips, open_source, resolve_source
from sslsep.run import RunDir
from sslsep.session import open_session
from sslsep.separation.metrics import (mean_valid, multi_source_si_snri, pairwise_si_snr, si_snr,
                                       single_source_si_snr)
from sslsep.separation.mixit import mixit_loss, mixture_of_mixtures
from sslsep.separation.model import Separator, build_separator, save_separator
from sslsep.separation.registry import read_registry, register, state_name
from sslsep.training import LoopSettings, launch, run_loop
from sslsep.training.loop import guard_note



# --------------------------------------------------------------------------- validation

def validation_set(cfg: ExperimentConfig, cache_uri: str | None = None) -> dict[str, torch.Tensor]:
    """Held-out clips as tensors: audio (N, T), and for synthetic scenes stems (N, K, T)
    and num_events (N,). Real data: `separation.val_clips` clips of the held-out recording
    groups (`is_held_out`), chosen from metadata and only those decoded (`held_out_rows`);
    with `cache_uri` (an .npz in the run directory) read from there when it exists and
    written there otherwise, so a resume reads no audio for validation."""
    sep = cfg.separation
    if resolve_source(cfg.data) == "synthetic":
        data = copy.deepcopy(cfg.data)
        data.synth.seed += VAL_SEED_OFFSET
        data.synth.num_clips = sep.val_clips
        rows = list(iter_clips(data, cfg.audio, with_stems=True))
    else:
        where = [(name, d.path, d.max_clips) for name, _, d in source_entries(cfg.data)]
        made_by = f"{where} val_fraction={sep.val_fraction} val_clips={sep.val_clips} {cfg.audio}"
        if cache_uri and storage.exists(cache_uri):
            with np.load(io.BytesIO(storage.read_bytes(cache_uri))) as z:
                if str(z["made_by"]) == made_by:  # else: another data set or split; chosen anew
                    return {"audio": torch.from_numpy(z["audio"])}
        # silent clips make undefined references; a hash order pairs clips of different recordings
        rows = held_out_rows(cfg.data, cfg.audio, sep.val_fraction, sep.val_clips)
        if len(rows) < 2:
            raise ValueError(f"{open_source(cfg.data).name}: fewer than 2 held-out clips with "
                             f"separation.val_fraction={sep.val_fraction}; raise it")
    audio = np.stack([r["audio"] for r in rows])  # (N, T)
    if "stems" not in rows[0]:
        # real clips: equal levels (-20 dBFS RMS), so each mixture of two is at 0 dB and
        # the score is not dominated by whichever clip happens to be louder
        audio = audio * (0.1 / np.sqrt(np.mean(audio ** 2, axis=1, keepdims=True) + 1e-12))
    out = {"audio": torch.from_numpy(audio.astype(np.float32))}  # (N, T)
    if cache_uri and "stems" not in rows[0]:
        buf = io.BytesIO()
        np.savez(buf, audio=out["audio"].numpy(), made_by=np.array(made_by))
        storage.write_bytes(cache_uri, buf.getvalue())
    if "stems" in rows[0]:
        out["stems"] = torch.from_numpy(np.stack([r["stems"] for r in rows]))  # (N, K, T)
        out["num_events"] = torch.tensor([r["num_events"] for r in rows])  # (N,)
    return out


def remix(est: torch.Tensor, assignment: torch.Tensor) -> torch.Tensor:
    """est (B, M, T), assignment (B, M) in {0, 1} -> the two remixed mixtures (B, 2, T)."""
    a = torch.stack([1 - assignment, assignment], dim=1).to(est.dtype)  # (B, 2, M)
    return torch.einsum("bjm,bmt->bjt", a, est)  # (B, 2, T)


@torch.no_grad()
def evaluate(model: torch.nn.Module, val: dict[str, torch.Tensor], snr_max: float = 30.0,
             batch: int = 8) -> dict[str, float]:
    """Validation metrics (dB) of a separator on `validation_set` tensors."""
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    audio = val["audio"]
    pairs = audio[: audio.shape[0] // 2 * 2]
    losses, mom_gain = [], []
    for i in range(0, pairs.shape[0], 2 * batch):
        mom, mixtures = mixture_of_mixtures(pairs[i:i + 2 * batch].to(device))  # (P, T), (P, 2, T)
        est = model(mom)  # (P, M, T)
        loss, assignment = mixit_loss(est, mixtures, snr_max)
        losses.append(loss.cpu())
        rm = remix(est, assignment)  # (P, 2, T)
        gain = si_snr(rm, mixtures) - si_snr(mom.unsqueeze(1).expand_as(mixtures), mixtures)  # (P, 2)
        silent = mixtures.pow(2).sum(-1) < 1e-8  # (P, 2)
        mom_gain.append(torch.where(silent, torch.full_like(gain, float("nan")), gain).cpu())
    out = {"val_mixit_loss": float(torch.cat(losses).mean()),
           "val_mom_si_snri": float(mean_valid(torch.cat(mom_gain)))}
    if "stems" in val:
        multi, single_sum, single_best = [], [], []
        for i in range(0, audio.shape[0], batch):
            mix = audio[i:i + batch].to(device)  # (b, T)
            stems = val["stems"][i:i + batch].to(device)  # (b, K, T)
            n = val["num_events"][i:i + batch].to(device)  # (b,)
            est = model(mix)  # (b, M, T)
            mask = torch.arange(stems.shape[1], device=device)[None] < n[:, None]  # (b, K)
            many = n >= 2
            if many.any():
                multi.append(multi_source_si_snri(est[many], stems[many], mix[many], mask[many]).cpu())
            one = n == 1
            if one.any():
                single_sum.append(single_source_si_snr(est[one], stems[one, 0]).cpu())
                single_best.append(pairwise_si_snr(est[one], stems[one, :1]).amax(-1).squeeze(-1).cpu())
        if multi:
            out["val_si_snri"] = float(mean_valid(torch.cat([m.flatten() for m in multi])))
        if single_sum:
            out["val_ss_si_snr"] = float(mean_valid(torch.cat(single_sum).clamp(max=100.0)))
            out["val_ss_best_si_snr"] = float(mean_valid(torch.cat(single_best)))
    model.train(was_training)
    return out


# --------------------------------------------------------------------------- batches

def _local_batches(cfg: ExperimentConfig) -> Iterator[dict]:
    """World size 1: batches of usable training clips from `iter_clips`."""
    synthetic = resolve_source(cfg.data) == "synthetic"
    batch = []
    for r in iter_clips(cfg.data, cfg.audio, split="train",
                        val_fraction=0.0 if synthetic else cfg.separation.val_fraction):
        if r["status"] in KEEP_STATUSES:
            batch.append(r["audio"])
        if len(batch) == cfg.separation.batch_clips:
            yield {"audio": torch.from_numpy(np.stack(batch))}  # (B, T)
            batch = []


# --------------------------------------------------------------------------- the loop

def _save_state_file(model: Separator, run: RunDir, step: int, metrics: dict, cfg: ExperimentConfig) -> dict:
    """Write one convergence state (loads alone with load_separator) and register it."""
    name = state_name(step)
    rel = f"separators/{name}.pt"
    save_separator(model, run.uri(rel), step=step, metrics=metrics, config=to_dict(cfg), name=name)
    return register(run.path, {"name": name, "step": step, "path": rel, "metrics": metrics},
                    run=os.path.basename(run.path.rstrip("/")))


def mixit_step(cfg: ExperimentConfig):
    """The stage's step function: audio (B, T) -> 2P clips -> P mixtures of mixtures ->
    M outputs -> MixIT loss against the P pairs."""
    snr_max = cfg.separation.snr_max

    def step(model: torch.nn.Module, batch: dict) -> tuple[torch.Tensor, dict]:
        mom, mixtures = mixture_of_mixtures(batch["audio"])  # (P, T), (P, 2, T)
        est = model(mom)  # (P, M, T)
        loss = mixit_loss(est, mixtures, snr_max)[0].mean()  # lifted to fp32 inside
        return loss, {"train_mixit_loss": float(loss.detach())}

    return step


def loop_settings(cfg: ExperimentConfig, is_cached: bool) -> LoopSettings:
    """`is_cached`: `cached(cfg)`, decided once by the driver (it lists the training folder)."""
    s = LoopSettings.of("separation", cfg.separation, report_every=cfg.separation.val_every,
                        fake_gpus=cfg.ray.fake_gpus)
    sep = cfg.separation
    if not sep.torch_threads and not sep.use_gpu and sep.num_workers == 1 and is_cached:
        # the clips are decoded once, before training (`train_dataset`): nothing else runs beside
        # the one trainer, so it takes every CPU of its machine (2 on a laptop)
        cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1  # macOS
        s = dataclasses.replace(s, torch_threads=max(s.torch_threads, cpus))
    return s


def train_loop(config: dict) -> None:
    """Per-worker MixIT training. config = {"cfg": resolved config dict, "run_dir": str, "cached": bool
    (`cached(cfg)`, decided by the driver; computed here when absent)}."""
    cfg = from_dict(config["cfg"], "train_loop_config")
    sep, run = cfg.separation, RunDir(config["run_dir"])
    session = open_session(config, lambda: _local_batches(cfg), columns=["audio"], batch_size=sep.batch_clips,
                           stage="separation", run=run, seed=cfg.seed, state_file="separator_train_state.pt")
    torch.manual_seed(cfg.seed + session.rank)
    model = build_separator(sep.size, sample_rate=cfg.audio.sample_rate, **sep.model_overrides())
    optimizer = torch.optim.Adam(model.parameters(), lr=sep.lr)
    val: dict = {}

    def validate(core: torch.nn.Module, step: int, final: bool) -> dict:
        if not val:  # rank 0 only, on its first report
            val.update(validation_set(cfg, run.uri("validation.npz")))
        return evaluate(core, val, sep.snr_max)

    def save(core: torch.nn.Module, step: int, metrics: dict, done: bool) -> None:
        _save_state_file(core, run, step, metrics, cfg)
        if val:
            listen(core, val["audio"][:AUDIO_CLIPS], run, step, cfg.audio.sample_rate)

    run_loop(session, loop_settings(cfg, config["cached"] if "cached" in config else cached(cfg)), model, optimizer, mixit_step(cfg), run=run, save=save,
             validate=validate,
             no_batch=f"no training batch of {sep.batch_clips} usable clips in {open_source(cfg.data).name}")


AUDIO_CLIPS = 2  # validation clips whose separation each convergence state leaves in TensorBoard


@torch.inference_mode()
def listen(core: torch.nn.Module, clips: torch.Tensor, run: RunDir, step: int, sample_rate: int) -> None:
    """TensorBoard audio of a convergence state: clips (N, T) and their M separated channels,
    tags separation/clip<i>/mixture and .../channel<c>, at the state's step."""
    was = core.training
    core.eval()
    try:
        device = next(core.parameters()).device
        est = core(clips.to(device)).float().cpu().numpy()  # (N, M, T)
    finally:
        core.train(was)
    tags = {}
    for i, (mix, channels) in enumerate(zip(clips.numpy(), est)):
        tags[f"separation/clip{i}/mixture"] = mix
        tags.update({f"separation/clip{i}/channel{c}": x for c, x in enumerate(channels)})
    run.events.audio(tags, sample_rate, step)


# --------------------------------------------------------------------------- driver

def train_separators(cfg: ExperimentConfig, run: RunDir) -> dict:
    """Train (or resume, or reuse) the separators of `cfg`; returns the registry dict."""
    sep = cfg.separation
    if sep.registry:
        return read_registry(sep.registry)
    reg_uri = run.uri("registry.json")
    if storage.exists(reg_uri):
        reg = read_registry(reg_uri)
        last = reg["separators"][-1]["metrics"] if reg["separators"] else {}
        if last.get("final") and (last["step"] >= sep.steps or last.get("stopped_by") == "max_minutes"):
            return reg  # finished: reuse; a longer schedule resumes from the last checkpoint
    is_cached = cached(cfg)  # lists the training folder: once, here
    launch(train_loop, {"cfg": to_dict(cfg), "run_dir": run.path, "cached": is_cached}, loop_settings(cfg, is_cached),
           lambda _stream: {"train": train_dataset(cfg, is_cached)}, run, "separator")  # its clips restart at the first
    reg = read_registry(reg_uri)
    note = guard_note("separation", f"separation.max_minutes={sep.max_minutes:g}", reg["separators"][-1]["metrics"])
    if note:
        print(note, flush=True)
    return reg


def _decoded_gb(cfg: ExperimentConfig) -> float:
    """Upper bound of the decoded training clips' size (inf when unknown, e.g. shards)."""
    from sslsep.data.sources import leaves

    n = 0
    for source, weight in leaves(open_source(cfg.data)):
        if source.kind == "folder":
            n += math.ceil(weight * len(source.pass_items("train", cfg.separation.val_fraction)))
        elif source.kind == "synthetic":  # every scene trains (held-out scenes have their own seed)
            n += math.ceil(weight * len(source.pass_items()))
        else:
            return math.inf
    return n * cfg.audio.num_samples * 4 / 1e9


def cached(cfg: ExperimentConfig) -> bool:
    """Are the training clips decoded (or made) once into Ray's object store (a set that fits
    `separation.cache_gb`), rather than streamed every epoch?"""
    return _decoded_gb(cfg) <= cfg.separation.cache_gb


def train_dataset(cfg: ExperimentConfig, is_cached: bool):
    """The Ray Dataset of training clips (audio column only), materialised when `is_cached`
    (`cached(cfg)`: a small set that fits)."""
    from sslsep.data.sources import clip_dataset, usable

    sep = cfg.separation
    synthetic = resolve_source(cfg.data) == "synthetic"
    cpus = cfg.data.cpus_per_task
    ds = usable(clip_dataset(cfg.data, cfg.audio, split=None if synthetic else "train",
                             val_fraction=sep.val_fraction, shuffle_seed=cfg.seed), cpus)
    ds = ds.select_columns(["audio"], num_cpus=cpus)
    if is_cached:
        # a small set would otherwise be read and decoded (or made) again every epoch, and each
        # new epoch restarts the streaming executor: seconds of idle trainer per epoch
        ds = ds.materialize()
    return ds
