"""Connecting to Ray: a local cluster on a laptop, or the running cluster of a job."""

from __future__ import annotations

import os

from sslsep.config import ExperimentConfig, RayConfig


def init_ray(cfg: RayConfig, **kwargs):
    """Start or join Ray once per process. Inside `ray job submit` the job's cluster is
    joined (RAY_ADDRESS is set); otherwise `cfg.address` decides ('' = start a local one)."""
    import ray

    if ray.is_initialized():
        return ray
    address = cfg.address or os.environ.get("RAY_ADDRESS") or None
    opts = {**local_options(cfg), **kwargs} if address is None else dict(kwargs)
    opts.setdefault("include_dashboard", None)
    opts.setdefault("log_to_driver", True)
    ray.init(address=address, **opts)
    how = "joined the running cluster" if address else "started a local cluster"
    print(f"ray: {how} ({ray.cluster_resources().get('CPU', 0):g} CPUs, "
          f"{ray.cluster_resources().get('GPU', 0):g} GPUs)", flush=True)
    import ray.data

    # our own progress lines say more per stage than Ray Data's bars, which flood job logs
    ray.data.DataContext.get_current().enable_progress_bars = cfg.progress_bars
    return ray


def local_options(cfg: RayConfig) -> dict:
    """`ray.init` options of a local cluster: its CPUs and GPUs, and how long an idle worker
    process waits for the next task before Ray kills it (Ray's 1 s made the quick job start
    111 worker processes in 16 minutes, each importing torch again; docs/benchmarks.md)."""
    opts: dict = {}
    if cfg.num_cpus:
        opts["num_cpus"] = cfg.num_cpus
    if cfg.num_gpus:
        opts["num_gpus"] = cfg.num_gpus
    if cfg.idle_worker_keep_s:
        opts["_system_config"] = {"idle_worker_killing_time_threshold_ms": int(cfg.idle_worker_keep_s * 1000)}
    return opts


def live_cluster() -> tuple[dict, list[dict]]:
    """The running cluster: its total resources and each alive node's."""
    import ray

    return dict(ray.cluster_resources()), [dict(n.get("Resources", {})) for n in ray.nodes() if n.get("Alive")]


def check_fits(cfg: ExperimentConfig, stages) -> None:
    """Right after `init_ray`, before any Ray work: fail with sslsep.fit.ClusterFitError when a
    stage of `stages` ("separation", "pretrain", "joint", ...) holds more than the cluster has
    (or, with `ray.max_resources`, can grow to), instead of waiting forever for resources."""
    from sslsep import fit

    plan = fit.phases(cfg, stages)
    if not plan:
        return
    total, nodes = live_cluster()
    fit.check(cfg, stages, total, nodes)
    print(f"ray: {fit.summary(plan, total, fit.max_resources(cfg))}", flush=True)
