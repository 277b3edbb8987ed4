"""The step loop of every training stage (separation and pretraining), on any session.

    restore -> prepare (DDP) -> for each batch: lr, autocast forward, (scaled) backward, clip,
    step -> window of metrics -> every `report_every` steps: validate, save, log, report with
    a resumable checkpoint -> all ranks stop together (steps reached or the wall-clock guard).

A stage hands over its model and optimizer, `step_fn(model, batch) -> (loss, parts)`, and
`save(core, step, metrics, done)` for the kept steps; the loop owns what both share. Ray is
not imported here: the session (sslsep.session) is where Ray Train and "in this process" differ.
"""

from __future__ import annotations

import dataclasses
import json
import math
import time
from typing import Callable

import numpy as np
import torch

from sslsep.config import TrainingConfig
from sslsep.data.delivery import Ledger
from sslsep.data.delivery import report as delivery_report
from sslsep.session import device as session_device
from sslsep.training import preempt
from sslsep.training.faults import stamp_step
from sslsep.training.profile import StepProfiler
from sslsep.training.schedule import autocast, grad_scaler, lr_factor, resolve_precision, set_lr

StepFn = Callable[[torch.nn.Module, dict], tuple[torch.Tensor, dict]]
SaveFn = Callable[[torch.nn.Module, int, dict, bool], None]
ValidateFn = Callable[[torch.nn.Module, int, bool], dict]  # (core, step, final) -> keys for the metrics line


@dataclasses.dataclass(frozen=True)
class LoopSettings:
    """What the loop and the launcher read from a stage's config section (both stages'
    sections are a `TrainingConfig`, so they are read the same way)."""
    stage: str                         # "separation" | "pretrain": the metrics' and gauges' `stage`
    steps: int
    report_every: int                  # steps between metrics lines and resumable checkpoints
    keep_steps: tuple[int, ...] = ()   # steps the stage saves for good (plus the last one)
    lr: float = 1e-3
    lr_schedule: str = "constant"
    warmup_steps: int = 0
    precision: str = "fp32"
    grad_clip: float = 0.0
    max_minutes: float = 0.0
    torch_threads: int = 1
    num_workers: int = 1
    min_workers: int = 0               # fewer workers allowed after node_wait_s without room (0: no)
    node_wait_s: float = 600.0
    use_gpu: bool = False
    cpus_per_worker: float = 1.0
    use_ray: bool = True
    resources: tuple[tuple[str, float], ...] = ()  # custom Ray resources per worker (pins them to nodes)
    fake_gpus: bool = False            # GPUs are logical only: gloo, CPU (ray.fake_gpus)
    profile_steps: int = 0             # torch.profiler over this many steps on rank 0 (sslsep.training.profile)

    @classmethod
    def of(cls, stage: str, sc: TrainingConfig, report_every: int, fake_gpus: bool = False) -> LoopSettings:
        """From a stage config section (`cfg.separation` or `cfg.pretrain`)."""
        return cls(stage=stage, steps=sc.steps, report_every=report_every, keep_steps=tuple(sc.checkpoint_steps),
                   lr=sc.lr, lr_schedule=sc.lr_schedule, warmup_steps=sc.warmup_steps, precision=sc.precision,
                   grad_clip=sc.grad_clip, max_minutes=sc.max_minutes,
                   torch_threads=sc.torch_threads or max(1, int(sc.cpus_per_worker)),
                   num_workers=sc.num_workers, min_workers=sc.min_workers, node_wait_s=sc.node_wait_s,
                   use_gpu=sc.use_gpu, cpus_per_worker=sc.cpus_per_worker,
                   use_ray=sc.use_ray, resources=tuple(sorted(sc.resources.items())), fake_gpus=fake_gpus,
                   profile_steps=sc.profile_steps)


def _mean(values: list[float]) -> float:
    """Mean of the finite values; NaN when a part was switched off (weight 0)."""
    finite = [v for v in values if math.isfinite(v)]
    return float(np.mean(finite)) if finite else math.nan


class Window:
    """The metrics of the steps since the last report, and the throughput figures both
    stages export: steps/s, samples/s (clips, over all ranks) and the share of step time
    spent waiting on the next batch."""

    def __init__(self):
        self.parts: list[dict] = []
        self.samples, self.wait_s, self.compute_s = 0, 0.0, 0.0

    def add(self, parts: dict, samples: int, wait_s: float, compute_s: float) -> None:
        self.parts.append(parts)
        self.samples += samples
        self.wait_s += wait_s
        self.compute_s += compute_s

    def summary(self, world_size: int) -> dict:
        busy = max(self.wait_s + self.compute_s, 1e-9)
        out = {k: _mean([float(p[k]) for p in self.parts]) for k in self.parts[0]} if self.parts else {}
        out.update(steps_per_s=round(len(self.parts) / busy, 3),
                   samples_per_s=round(self.samples * world_size / busy, 1),
                   data_wait_share=round(self.wait_s / busy, 3))
        return out


def _batch_size(batch: dict) -> int:
    return int(next(iter(batch.values())).shape[0])


def run_loop(session, s: LoopSettings, model: torch.nn.Module, optimizer: torch.optim.Optimizer,
             step_fn: StepFn, *, run, save: SaveFn, validate: ValidateFn | None = None,
             channels_last: bool = False, no_batch: str = "no training batch",
             clip_groups: Callable[[torch.nn.Module], list] | None = None,
             pass_starts: list[int] | None = None) -> None:
    """Train `model` (unwrapped, on the CPU) to `s.steps` on `session`'s batches, resuming from
    the session's latest state. Rank 0 validates (`validate(core, step, final)` at every report
    step: its keys join the metrics line), saves kept steps and writes metrics.jsonl
    (`run.log_metrics`). `clip_groups(core)`: the parameter groups whose gradient norm is
    clipped apart (several models in one module); default: all of them together.

    Batches with a `key` column (a planned stream, `pass_starts` its passes) are
    accounted for: at each report every rank's clip keys go to rank 0's ledger
    (sslsep.data.delivery), saved in the checkpoint (what a restored stream leaves out) and
    written to RUN_DIR/delivery.json. A SIGTERM (sslsep.training.preempt) makes every rank
    report a checkpoint at the next step boundary, then raise `Preempted`."""
    torch.set_num_threads(s.torch_threads)
    device = session_device()
    precision = resolve_precision(s.precision, device)
    if s.precision == "auto" and session.rank == 0:
        print(f"{s.stage}: precision auto -> {precision} on {device.type}", flush=True)
    scaler = grad_scaler(precision, device)
    step, elapsed_before = 0, 0.0
    ledger = Ledger(pass_starts) if pass_starts is not None and session.rank == 0 else None
    state = session.restore()
    if state is not None:
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        if state.get("scaler"):
            scaler.load_state_dict(state["scaler"])
        step, elapsed_before = state["step"], state.get("elapsed_s", 0.0)
        if ledger is not None and state.get("stream"):
            ledger = Ledger.from_state(state["stream"], pass_starts)
            logged = [m["step"] for m in run.metrics() if m.get("stage") == s.stage and "step" in m]
            earlier = run.read_json("delivery.json")["restarts"] if run.exists("delivery.json") else None
            ledger.restored(step, max(logged, default=step), earlier)
    pending: list[tuple[int, np.ndarray]] = []  # (step, clip keys) trained on since the last report
    core = model.to(device)
    if channels_last:  # conv encoders: NHWC kernels (tensor cores; oneDNN on CPU: +34 % fp32, +39 % bf16 steps/s,
        core = core.to(memory_format=torch.channels_last)  # compute_efficiency.py, docs/benchmarks.md)
    wrapped = session.prepare(core)
    budget_s = s.max_minutes * 60 or math.inf
    keep_steps = set(s.keep_steps)
    t_start, window = time.monotonic(), Window()
    done = step >= s.steps
    restored_step = running = step
    first_report = min((step // s.report_every + 1) * s.report_every, max(step, s.steps - s.profile_steps))
    prof = StepProfiler(s.stage, first_report, s.profile_steps, run.write_text, session.rank == 0)
    try:
        while not done:
            t_wait, batches = time.monotonic(), 0
            prof.wait_begins()
            for batch in session.batches():
                prof.wait_ends()
                batches += 1
                running = step + 1  # the step this batch makes
                t0 = time.monotonic()
                if "key" in batch:  # where the clips stand in the stream: accounting, not training
                    pending.append((step + 1, batch.pop("key").cpu().numpy()))
                batch = {k: v.to(device, non_blocking=True) for k, v in batch.items()}
                lr = set_lr(optimizer, s.lr, lr_factor(step, s.steps, s.warmup_steps, s.lr_schedule))
                with prof.part("forward"), autocast(precision, device):
                    loss, parts = step_fn(wrapped, batch)
                with prof.part("backward"):
                    optimizer.zero_grad(set_to_none=True)
                    scaler.scale(loss).backward()
                with prof.part("optimizer"):
                    if s.grad_clip:
                        scaler.unscale_(optimizer)
                        for params in (clip_groups(core) if clip_groups else [core.parameters()]):
                            torch.nn.utils.clip_grad_norm_(params, s.grad_clip)
                    scaler.step(optimizer)
                    scaler.update()
                step += 1
                window.add(parts, _batch_size(batch), t0 - t_wait, time.monotonic() - t0)
                elapsed = elapsed_before + time.monotonic() - t_start
                done, preempted = session.any_ranks(step >= s.steps or elapsed >= budget_s, preempt.requested())
                keep = step in keep_steps or done
                if step % s.report_every == 0 or keep or preempted:
                    with prof.part("report"):
                        metrics = {"stage": s.stage, "step": step, "elapsed_s": round(elapsed, 1), "lr": lr,
                                   **window.summary(session.world_size), "final": done}
                        window = Window()
                        if done:
                            metrics["stopped_by"] = "steps" if step >= s.steps else "max_minutes"
                        if preempted and not done:
                            metrics["stopped_by"] = "preempted"
                        gathered = session.gather(pending) if pass_starts is not None else []
                        pending = []
                        if ledger is not None:
                            for rank_pending in gathered:
                                for at, keys in rank_pending:
                                    ledger.add(keys, at)
                            metrics.update(clips_delivered=len(ledger.delivered), clips_repeated=int(ledger.repeats.sum()))
                        if session.rank == 0:
                            if validate is not None:
                                metrics.update(validate(core, step, done))
                            if keep:
                                save(core, step, metrics, done)
                            run.log_metrics(metrics)
                            if ledger is not None:
                                run.write_text("delivery.json", json.dumps(delivery_report(ledger), indent=1))
                        session.report(metrics, {"model": core.state_dict(), "optimizer": optimizer.state_dict(),
                                                 "scaler": scaler.state_dict(), "step": step, "elapsed_s": elapsed,
                                                 "stream": ledger.state() if ledger is not None else None})
                    if preempted and not done:
                        raise preempt.Preempted(f"{s.stage}: SIGTERM; checkpoint saved at step {step}, "
                                                "the run resumes from it")
                prof.after_step(step)
                if done:
                    preempt.finish()
                    break
                t_wait = time.monotonic()
                prof.wait_begins()
            if batches == 0:
                raise ValueError(no_batch)
    except Exception as e:  # the step it was running: a repeat after a restart is a bug (training.faults)
        stamp_step(e, running, running - restored_step)
        e.add_note(f"(raised by {s.stage} step {running}, {running - restored_step} after the start or restore)")
        raise


def guard_note(stage: str, key: str, metrics: dict) -> str | None:
    """A line for the driver when the wall-clock guard, not the step count, ended a run: its
    figures then depend on the machine's speed and load."""
    if metrics.get("stopped_by") != "max_minutes":
        return None
    return (f"{stage}: stopped by {key} at step {metrics.get('step')} (elapsed {metrics.get('elapsed_s')} s), "
            "before its step count: what follows depends on this machine's speed")
