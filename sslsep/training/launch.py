"""One launcher for every training stage: a TorchTrainer on Ray, or the same loop here."""

from __future__ import annotations

import json
import os
import time
from typing import Callable

from sslsep import storage

from sslsep.run import RunDir
from sslsep.session import STREAM_FILE
from sslsep.training import preempt
from sslsep.training.faults import Failure, classify, decide, original_error
from sslsep.training.loop import LoopSettings

MAX_FAILURES = 3  # failed attempts (faults, or first occurrences of an error) restarted from a checkpoint


def launch(train_loop: Callable[[dict], None], config: dict, s: LoopSettings,
           datasets: Callable[[dict | None], dict], run: RunDir, name: str) -> None:
    """Run `train_loop(config)`: with `s.use_ray`, on `s.num_workers` Ray Train workers fed by
    `datasets(stream)` (built only then, for each attempt: `stream` is the delivery ledger's
    state in the checkpoint the attempt restores, None without one), checkpoints under
    RUN_DIR/ray_train/<name>; otherwise in this process at world size 1 (`config["local"] = True`).

    A failed attempt is restarted from the latest checkpoint up to `MAX_FAILURES` times, unless
    it failed with the error of the attempt before it (`sslsep.training.faults`): then the
    training function's own exception is raised. Every failed attempt is recorded in
    RUN_DIR/failures.json."""
    if not s.use_ray:
        with preempt.installed():
            train_loop({**config, "local": True})
        return
    import ray.train
    from ray.train.torch import TorchConfig, TorchTrainer

    # Ray Train resolves ingest options in its controller, where the driver's DataContext
    # (row order: data.preserve_order) is not: hand them over from here
    ingest = ray.train.DataConfig(execution_options=ray.train.DataConfig.default_ingest_options())
    # logical GPUs (a dry run): NCCL needs real ones; gloo runs the same DDP on CPU
    backend = {"torch_config": TorchConfig(backend="gloo")} if s.fake_gpus else {}
    scaling = ray.train.ScalingConfig(num_workers=s.num_workers, use_gpu=s.use_gpu,
                                      resources_per_worker={"CPU": s.cpus_per_worker, **dict(s.resources)})
    history: list[Failure] = []
    while True:
        # A new trainer on the same storage path and name restores the latest checkpoint. Its
        # data are built anew: blocks of a materialized stream may have died with a lost node.
        trainer = TorchTrainer(train_loop, train_loop_config=config,
                               datasets=datasets(latest_stream_state(run.uri("ray_train"), name)),
                               dataset_config=ingest, scaling_config=scaling,
                               run_config=ray_run_config(run.uri("ray_train"), name), **backend)
        try:
            trainer.fit()
            return
        except ray.train.TrainingFailedError as e:
            history.append(classify(e))
            decision = decide(history, MAX_FAILURES)
            _record_failure(run, name, len(history), history[-1], decision)
            if decision == "retry":
                print(f"{name}: attempt {len(history)} failed ({history[-1].describe()}); "
                      "restarting from the latest checkpoint", flush=True)
                continue
            if decision == "repeated":
                print(f"{name}: the same error again after a restart ({history[-1].describe()}): "
                      "a bug, not a fault; not retrying", flush=True)
                raise original_error(e) from e
            raise


def _record_failure(run: RunDir, name: str, attempt: int, failure: Failure, decision: str) -> None:
    """Append the failed attempt to RUN_DIR/failures.json (what failed, what was decided)."""
    old = run.read_json("failures.json") if run.exists("failures.json") else []
    run.write_json("failures.json", old + [{"time": round(time.time(), 3), "stage": name, "attempt": attempt,
                                            "failure": failure.describe(), "fault": failure.fault,
                                            "decision": decision}])


def _storage(storage_uri: str):
    """(pyarrow filesystem or None, path) of a Ray Train storage path."""
    if storage.is_remote(storage_uri):
        return storage.pyarrow_fs(storage_uri)
    return None, os.path.abspath(storage_uri)


def latest_stream_state(storage_uri: str, name: str) -> dict | None:
    """The delivery ledger (sslsep.data.delivery) of the checkpoint a new trainer on this
    storage path and name restores: the latest one Ray Train registered; None before any."""
    import ray.train

    fs, path = _storage(storage_uri)
    try:
        result = ray.train.Result.from_path(f"{path.rstrip('/')}/{name}", storage_filesystem=fs)
    except RuntimeError:  # no run there yet, or no checkpoint registered
        return None
    ckpt = result.checkpoint
    if ckpt is None:
        return None
    try:
        with ckpt.filesystem.open_input_stream(f"{ckpt.path}/{STREAM_FILE}") as f:
            return json.loads(f.read())
    except FileNotFoundError:  # a checkpoint of a stage or run without a planned stream
        return None


def ray_run_config(storage_uri: str, name: str, max_failures: int = 0):
    """Ray Train's RunConfig for a run directory (local or s3://): the same storage path and
    name on a rerun is what lets Train V2 restore the latest checkpoint. Training stages retry
    in `launch` (faults, not repeated bugs), so Ray Train's own retries are off by default."""
    import ray.train

    fs, path = _storage(storage_uri)
    return ray.train.RunConfig(name=name, storage_path=path, storage_filesystem=fs,
                               failure_config=ray.train.FailureConfig(max_failures=max_failures),
                               checkpoint_config=ray.train.CheckpointConfig(num_to_keep=2),
                               callbacks=[preempt.callback()])
