"""Where a training step's time goes: torch.profiler over a few steps of the loop, on rank 0.

`training.profile_steps: N` (either stage's section) profiles steps s+1 .. s+N, s being the
first report step (warm-up, first batches and the first metrics line left out). The loop
labels the parts of a step with `record_function`: data_wait (the next batch from the stream),
forward (loss, inside autocast), backward, optimizer (clip, step), report (validation or the
k-NN monitor, kept encoders, metrics line and the resumable checkpoint handed to Ray). The
encoder labels its own log-mel and CNN inside forward. The summary, per part: milliseconds per
step and share of the profiled wall, plus the operators by self CPU time, lands in
RUN_DIR/profile_<stage>.json with a Chrome trace (chrome://tracing, Perfetto) beside it.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
import time

import torch
from torch.profiler import ProfilerActivity, profile, record_function

PARTS = ("data_wait", "forward", "backward", "optimizer", "report")
INNER = ("logmel", "cnn")  # labelled inside the encoder's forward


def label(name: str):
    """A `record_function` scope (cheap when no profiler runs)."""
    return record_function(f"sslsep/{name}")


class StepProfiler:
    """Profiles steps (start, start + count] when `count` > 0 and this rank writes (rank 0)."""

    def __init__(self, stage: str, start: int, count: int, write_text, enabled: bool):
        self.stage, self.start, self.count, self.write_text = stage, start, count, write_text
        self.enabled = enabled and count > 0
        self.prof = None
        self.t0 = 0.0
        self._wait = None

    def after_step(self, step: int) -> None:
        """Call after every step: starts after step `start`, stops after `start + count`."""
        if not self.enabled:
            return
        if self.prof is None and step == self.start:
            activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if torch.cuda.is_available() else [])
            self.prof = profile(activities=activities, record_shapes=False)
            self.prof.__enter__()
            self.t0 = time.perf_counter()
        elif self.prof is not None and step == self.start + self.count:
            wall = time.perf_counter() - self.t0
            self.prof.__exit__(None, None, None)
            self._write(wall)
            self.prof, self.enabled = None, False

    @property
    def active(self) -> bool:
        return self.prof is not None

    def wait_begins(self) -> None:
        if self.active:
            self._wait = label("data_wait")
            self._wait.__enter__()

    def wait_ends(self) -> None:
        if self._wait is not None:
            self._wait.__exit__(None, None, None)
            self._wait = None

    def part(self, name: str):
        return label(name) if self.active else contextlib.nullcontext()

    def _write(self, wall: float) -> None:
        events = self.prof.key_averages()
        by = {e.key: e for e in events}
        parts = {}
        for name in PARTS + INNER:
            e = by.get(f"sslsep/{name}")
            ms = (e.cpu_time_total / 1000 / self.count) if e is not None else 0.0  # us -> ms per step
            parts[name] = {"ms_per_step": round(ms, 2), "share": round(ms / 1000 * self.count / wall, 3)}
        listed = sum(parts[n]["ms_per_step"] for n in PARTS)
        step_ms = wall * 1000 / self.count
        parts["other"] = {"ms_per_step": round(step_ms - listed, 2), "share": round(1 - listed / step_ms, 3)}
        ops = sorted((e for e in events if not e.key.startswith("sslsep/")), key=lambda e: -e.self_cpu_time_total)
        summary = {"stage": self.stage, "steps": [self.start + 1, self.start + self.count],
                   "wall_s": round(wall, 3), "ms_per_step": round(step_ms, 2), "parts": parts,
                   "top_ops": [{"op": e.key, "self_cpu_ms_per_step": round(e.self_cpu_time_total / 1000 / self.count, 2),
                                "calls_per_step": round(e.count / self.count, 1)} for e in ops[:15]],
                   "threads": torch.get_num_threads()}
        self.write_text(f"profile_{self.stage}.json", json.dumps(summary, indent=1))
        with tempfile.TemporaryDirectory() as d:  # the trace goes through the run directory (local or s3://)
            path = os.path.join(d, "trace.json")
            self.prof.export_chrome_trace(path)
            with open(path) as f:
                self.write_text(f"profile_{self.stage}.trace.json", f.read())
        print(f"{self.stage}: profiled steps {self.start + 1}-{self.start + self.count}: "
              + ", ".join(f"{n} {parts[n]['ms_per_step']:.0f} ms" for n in PARTS + ("other",))
              + f" per step of {step_ms:.0f} ms", flush=True)
