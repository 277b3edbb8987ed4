"""TensorBoard event files beside every metrics.jsonl, so `tensorboard --logdir RUN_DIR` shows a
run's stages (and each pretraining variant as its own run, by its sub-directory).

Every line a RunDir logs becomes scalars (tensorboardX's protobufs and writer; no TensorFlow):

    {"stage": "pretrain", "step": 100, "total": 1.3, ...}   -> pretrain/total @ step 100
    {"stage": "evaluate", "extractor": "x", "classifier": "linear", "mAP": 0.6, ...}
                                                            -> evaluate/x/linear/mAP @ step 0

Numbers only (strings, lists and flags are left to metrics.jsonl). A local run directory gets
its event file directly; an s3:// one gets it through a local buffer, uploaded whole after
each line (S3 has no append, as for metrics.jsonl).
"""

from __future__ import annotations

import math
import os
import shutil
import tempfile
import time

import numpy as np

from sslsep import storage

SKIP = {"time", "step", "final", "epoch"}


def scalars(metrics: dict) -> tuple[list[tuple[str, float]], int]:
    """One metrics line -> ([(tag, value)], step). Tags are '<stage>/<key>', with the
    evaluation's extractor, classifier and task (of the suite) in the path."""
    stage = str(metrics.get("stage", "run"))
    prefix = stage
    if "extractor" in metrics:
        prefix += f"/{metrics['extractor']}"
    if "classifier" in metrics:
        prefix += f"/{metrics['classifier']}"
    if "task" in metrics:
        prefix += f"/{metrics['task']}"
    out = []
    for key, value in metrics.items():
        if key in SKIP or isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            continue
        out.append((f"{prefix}/{key}", float(value)))
    step = metrics.get("step")
    return out, int(step) if isinstance(step, (int, float)) and not isinstance(step, bool) else 0


class EventLog:
    """A lazily opened event file for one run directory (local or s3://). Written synchronously
    (tensorboardX's low-level EventsWriter, not SummaryWriter's background queue), so a line
    logged is on disk, and a process that ends abruptly loses nothing it logged."""

    def __init__(self, run_path: str):
        self.run_path = run_path
        self._writer = None
        self._local: str | None = None

    def _open(self):
        from tensorboardX.event_file_writer import EventsWriter

        if storage.is_remote(self.run_path):
            self._local = tempfile.mkdtemp(prefix="sslsep-events-")
            folder = self._local
        else:
            folder = self.run_path
            os.makedirs(folder, exist_ok=True)
        # events.out.tfevents.<time>.<host>.<pid>: one file per process and run directory
        self._writer = EventsWriter(os.path.join(folder, "events"), f".{os.getpid()}")
        return self._writer

    def log(self, metrics: dict) -> None:
        from tensorboardX.proto.event_pb2 import Event
        from tensorboardX.summary import scalar

        values, step = scalars(metrics)
        if not values:
            return
        writer = self._writer or self._open()
        now = time.time()
        for tag, value in values:
            writer.write_event(Event(wall_time=now, step=step, summary=scalar(tag, value)))
        self._flush(writer)

    def audio(self, clips: dict[str, np.ndarray], sample_rate: int, step: int) -> None:
        """Audio summaries (TensorBoard's Audio tab), tag -> waveform (T,), each scaled to the same
        peak; written, flushed (and on s3:// uploaded) once for all of them."""
        from tensorboardX.proto.event_pb2 import Event
        from tensorboardX.summary import audio

        from sslsep.audio import peak_normalised

        writer = self._writer or self._open()
        now = time.time()
        for tag, x in clips.items():
            writer.write_event(Event(wall_time=now, step=int(step),
                                     summary=audio(tag, peak_normalised(x)[:, None], sample_rate)))
        self._flush(writer)

    def _flush(self, writer) -> None:
        writer.flush()
        if self._local:
            for name in os.listdir(self._local):
                with open(os.path.join(self._local, name), "rb") as f:
                    storage.write_bytes(storage.join(self.run_path, name), f.read())

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None
        if self._local:
            shutil.rmtree(self._local, ignore_errors=True)
            self._local = None

    def __getstate__(self):  # a RunDir that travels to a Ray worker opens its own writer there
        return {"run_path": self.run_path, "_writer": None, "_local": None}
