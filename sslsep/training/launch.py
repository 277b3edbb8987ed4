"""One launcher for every training stage: a TorchTrainer on Ray, or the same loop here."""

from __future__ import annotations

from typing import Callable

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

    from sslsep.session import ray_run_config

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
