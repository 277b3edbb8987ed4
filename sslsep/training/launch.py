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
POLL_S = 5.0      # how often a waiting attempt looks at the cluster's nodes again


class NoRoomError(RuntimeError):
    """The cluster's nodes could not hold a stage's workers for its whole `node_wait_s`."""


def workers_that_fit(need: dict[str, float], nodes: list[dict]) -> int:
    """How many workers holding `need` each the nodes' total resources hold (a node lost is a
    node absent from `nodes`). Totals, not what is free: actors and tasks come and go."""
    wanted = {r: v for r, v in need.items() if v > 0}
    if not wanted:
        return 1 << 30
    return sum(min(int(float(n.get(r, 0.0)) / v + 1e-9) for r, v in wanted.items()) for n in nodes)


def _alive_nodes() -> list[dict]:
    import ray

    return [n["Resources"] for n in ray.nodes() if n.get("Alive")]


def wait_for_room(s: LoopSettings, name: str, run: RunDir, nodes: Callable[[], list[dict]] = _alive_nodes,
                  sleep: Callable[[float], None] = time.sleep) -> int:
    """The number of workers the next attempt starts: `s.num_workers` once the nodes hold them.
    Until then one line says what the stage waits for; after `s.node_wait_s` it goes on with
    as many as fit (down to `s.min_workers`), or raises `NoRoomError` naming what is missing
    and where the checkpoint to resume from is."""
    need = {"CPU": s.cpus_per_worker, **({"GPU": 1.0} if s.use_gpu else {}), **dict(s.resources)}
    fit = workers_that_fit(need, nodes())
    if fit >= s.num_workers:
        return s.num_workers
    what = ", ".join(f"{v:g} {r}" for r, v in need.items() if v > 0)
    print(f"{name}: waiting for nodes: {s.num_workers} workers of {what} each, the alive nodes hold {fit}; "
          f"waiting up to {s.node_wait_s:g} s ({s.stage}.node_wait_s)", flush=True)
    deadline = time.monotonic() + s.node_wait_s
    while time.monotonic() < deadline:
        sleep(min(POLL_S, max(0.0, deadline - time.monotonic())))
        fit = workers_that_fit(need, nodes())
        if fit >= s.num_workers:
            print(f"{name}: the nodes hold {s.num_workers} workers again; going on", flush=True)
            return s.num_workers
    floor = s.min_workers or s.num_workers
    if 1 <= floor <= fit:
        print(f"{name}: going on with {fit} of {s.num_workers} workers ({s.stage}.min_workers={s.min_workers}): "
              "each keeps its batch, so a step holds fewer clips", flush=True)
        return fit
    raise NoRoomError(f"{name}: the alive nodes hold {fit} of the {s.num_workers} workers of {what} each, and "
                      f"did not hold more for {s.node_wait_s:g} s ({s.stage}.node_wait_s); the latest checkpoint "
                      f"is kept in {run.uri('ray_train', name)}: run the same command again once nodes are back, "
                      f"or allow fewer workers with {s.stage}.min_workers")


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
    history: list[Failure] = []
    while True:
        scaling = ray.train.ScalingConfig(num_workers=wait_for_room(s, name, run), use_gpu=s.use_gpu,
                                          resources_per_worker={"CPU": s.cpus_per_worker, **dict(s.resources)})
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
