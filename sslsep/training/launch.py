"""One launcher for every training stage: a TorchTrainer on Ray, or the same loop here."""

from __future__ import annotations

import os
from typing import Callable

from sslsep import storage

from sslsep.run import RunDir
from sslsep.training.loop import LoopSettings


def launch(train_loop: Callable[[dict], None], config: dict, s: LoopSettings,
           datasets: Callable[[], dict], run: RunDir, name: str) -> None:
    """Run `train_loop(config)`: with `s.use_ray`, on `s.num_workers` Ray Train workers fed by
    `datasets()` (built only then), checkpoints under RUN_DIR/ray_train/<name>; otherwise in
    this process at world size 1 (`config["local"] = True`)."""
    if not s.use_ray:
        train_loop({**config, "local": True})
        return
    import ray.train
    from ray.train.torch import TorchTrainer

    data = datasets()
    # Ray Train resolves ingest options in its controller, where the driver's DataContext
    # (row order: data.preserve_order) is not: hand them over from here
    ingest = ray.train.DataConfig(execution_options=ray.train.DataConfig.default_ingest_options())
    TorchTrainer(
        train_loop, train_loop_config=config, datasets=data, dataset_config=ingest,
        scaling_config=ray.train.ScalingConfig(num_workers=s.num_workers, use_gpu=s.use_gpu,
                                               resources_per_worker={"CPU": s.cpus_per_worker}),
        run_config=ray_run_config(run.uri("ray_train"), name),
    ).fit()


def ray_run_config(storage_uri: str, name: str, max_failures: int = 3):
    """Ray Train's RunConfig for a run directory (local or s3://): the same storage path and
    name on a rerun is what lets Train V2 restore the latest checkpoint; a failed worker
    group is restarted from it up to `max_failures` times."""
    import ray.train

    fs, path = None, os.path.abspath(storage_uri)
    if storage.is_remote(storage_uri):
        fs, path = storage.pyarrow_fs(storage_uri)
    return ray.train.RunConfig(name=name, storage_path=path, storage_filesystem=fs,
                               failure_config=ray.train.FailureConfig(max_failures=max_failures),
                               checkpoint_config=ray.train.CheckpointConfig(num_to_keep=2))
