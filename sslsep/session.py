"""Where a per-worker training loop runs: inside Ray Train, or in this process.

A loop asks its session for batches, wraps its model, restores and reports state; the
same loop code then runs under `TorchTrainer` (DDP, the Dataset shard, Ray checkpoints)
and at world size 1 without Ray (for debugging), which is the only place that knows the
difference. Ray is imported only by `RaySession`.
"""

from __future__ import annotations

import io
import json
import os
import tempfile
from typing import Callable, Iterator

import torch

from sslsep import storage


def device() -> torch.device:
    if torch.cuda.is_available():
        try:
            import ray.train.torch

            return ray.train.torch.get_device()
        except Exception:
            return torch.device("cuda")
    return torch.device("cpu")


STREAM_FILE = "stream.json"  # beside state.pt in a checkpoint: the delivery ledger (sslsep.data.delivery)


class LocalSession:
    """World size 1 in this process; training state in one file (local or s3://)."""
    rank, world_size = 0, 1

    def __init__(self, batches: Callable[[], Iterator[dict]], state_uri: str):
        self._batches, self.state_uri = batches, state_uri

    def batches(self) -> Iterator[dict]:
        return self._batches()

    def prepare(self, model: torch.nn.Module) -> torch.nn.Module:
        return model

    def restore(self) -> dict | None:
        if not storage.exists(self.state_uri):
            return None
        return torch.load(io.BytesIO(storage.read_bytes(self.state_uri)), weights_only=False)

    def report(self, metrics: dict, state: dict | None) -> None:
        if state is not None:
            buf = io.BytesIO()
            torch.save(state, buf)
            storage.write_bytes(self.state_uri, buf.getvalue())

    def any_ranks(self, *flags: bool) -> tuple[bool, ...]:
        return flags

    def gather(self, obj) -> list:
        return [obj]


# Per-step figures exported to Prometheus (as ray_sslsep_train_*) for dashboards/grafana:
# metric name -> keys of the loop's metrics dict (the first one present is exported).
TRAIN_GAUGES = {"sslsep_train_steps_per_s": ("steps_per_s",), "sslsep_train_samples_per_s": ("samples_per_s",),
                "sslsep_train_data_wait_share": ("data_wait_share",),
                "sslsep_train_loss": ("total", "train_mixit_loss"), "sslsep_train_monitor_s": ("monitor_s",)}
# The k-NN monitor's figures (sslsep.contrastive.monitor), one per variant trained in the loop:
# a metrics line holds them as `variant/key`; exported with the variant as a tag.
VARIANT_GAUGE_KEYS = ("monitor_knn_acc", "monitor_knn_map")


def variant_figures(metrics: dict, keys=VARIANT_GAUGE_KEYS) -> list[tuple[str, str, float]]:
    """(key, variant, value) of each finite per-variant figure (`variant/key`) of a metrics line."""
    out = []
    for name, value in metrics.items():
        variant, _, key = name.rpartition("/")
        if key in keys and variant and isinstance(value, (int, float)) and value == value:
            out.append((key, variant, float(value)))
    return out


class RaySession:
    """Inside Ray Train: the "train" Dataset shard, DDP, ray.train.report/get_checkpoint."""

    def __init__(self, batch_size: int, columns: list[str], shuffle_buffer: int = 64,
                 stage: str = "", run: str = "", seed: int | None = None):
        import ray.train
        from ray.util.metrics import Gauge

        self.train = ray.train
        ctx = ray.train.get_context()
        self.rank, self.world_size = ctx.get_world_rank(), ctx.get_world_size()
        self.shard = ray.train.get_dataset_shard("train")
        self.batch_size, self.columns, self.shuffle_buffer = batch_size, columns, shuffle_buffer
        self.seed, self.epoch = seed, 0
        self.tags = {"stage": stage, "run": run, "rank": str(self.rank)}
        self.gauges = {keys: Gauge(name, description=f"training {keys[0]} (per reporting window)",
                                   tag_keys=("stage", "run", "rank"))
                       for name, keys in TRAIN_GAUGES.items()}
        self.variant_gauges = {  # literal names: tests/test_grafana_dashboards.py reads them from here
            "monitor_knn_acc": Gauge("sslsep_monitor_knn_acc", description="k-NN monitor: query top-1 accuracy",
                                     tag_keys=("stage", "run", "rank", "variant")),
            "monitor_knn_map": Gauge("sslsep_monitor_knn_map", description="k-NN monitor: query mAP",
                                     tag_keys=("stage", "run", "rank", "variant"))}

    def batches(self) -> Iterator[dict]:
        # a seeded local shuffle (one seed per rank and pass) keeps a rerun's batches identical
        seed = None if self.seed is None else (self.seed * 1009 + self.rank) * 1009 + self.epoch
        self.epoch += 1
        # onto this process's device, not Ray's guess from the GPU ids (logical ones in a dry run)
        for batch in self.shard.iter_torch_batches(batch_size=self.batch_size, drop_last=True, device=device(),
                                                   local_shuffle_buffer_size=self.shuffle_buffer,
                                                   local_shuffle_seed=seed):
            yield {c: batch[c] for c in self.columns}

    def prepare(self, model: torch.nn.Module) -> torch.nn.Module:
        import ray.train.torch

        # onto this process's device (CPU where CUDA is absent, e.g. logical GPUs of a dry run)
        return ray.train.torch.prepare_model(model, move_to_device=device())

    def restore(self) -> dict | None:
        ckpt = self.train.get_checkpoint()
        if ckpt is None:
            return None
        with ckpt.as_directory() as d:
            return torch.load(os.path.join(d, "state.pt"), weights_only=False)

    def report(self, metrics: dict, state: dict | None) -> None:
        """Every rank reports; rank 0 attaches the checkpoint."""
        for keys, gauge in self.gauges.items():
            value = next((metrics[k] for k in keys if k in metrics), None)
            if isinstance(value, (int, float)) and value == value:  # skips NaN (a part switched off)
                gauge.set(float(value), tags=self.tags)
        for key, variant, value in variant_figures(metrics):
            self.variant_gauges[key].set(value, tags={**self.tags, "variant": variant})
        if state is None or self.rank != 0:
            self.train.report(metrics)
            return
        with tempfile.TemporaryDirectory() as d:
            torch.save(state, os.path.join(d, "state.pt"))
            if state.get("stream") is not None:  # what the driver reads to resume the stream (launch)
                with open(os.path.join(d, STREAM_FILE), "w") as f:
                    json.dump(state["stream"], f)
            self.train.report(metrics, checkpoint=self.train.Checkpoint.from_directory(d))

    def any_ranks(self, *flags: bool) -> tuple[bool, ...]:
        """Each flag true on every rank if it is true on one (one all-reduce): DDP workers must
        stop together."""
        import torch.distributed as dist

        if self.world_size == 1 or not dist.is_initialized():
            return flags
        t = torch.tensor([float(f) for f in flags], device=device())
        dist.all_reduce(t, op=dist.ReduceOp.MAX)
        return tuple(bool(x) for x in t.tolist())

    def gather(self, obj) -> list:
        """Every rank's `obj` (picklable), on every rank."""
        import torch.distributed as dist

        if self.world_size == 1 or not dist.is_initialized():
            return [obj]
        out = [None] * self.world_size
        dist.all_gather_object(out, obj)
        return out


def open_session(config: dict, local_batches: Callable[[], Iterator[dict]], *, columns: list[str], batch_size: int,
                 stage: str, run, seed: int, state_file: str):
    """The session a stage's `train_loop(config)` runs in: in this process when `config["local"]`
    (state in RUN_DIR/`state_file`; `local_batches()` is called once per pass), else Ray
    Train's (the "train" shard's `columns`)."""
    if config.get("local"):
        return LocalSession(local_batches, run.uri(state_file))
    return RaySession(batch_size, list(columns), shuffle_buffer=max(64, 4 * batch_size), stage=stage, run=run.name,
                      seed=seed)
