"""What Ray Data's scheduling loop costs a pretraining run when paced (sslsep.data.pacing) and
not, and what a second torch thread gives a trainer whose stream runs no separator.

    python experiments/benchmarks/idle_loop.py [--steps 120] [--data PATH] [--arms a,b,...]

Each arm trains the quick preset's encoder on Ray Train (1 worker) fed live, for `--steps`
steps, in a fresh Ray session of its own (actors and idle workers of an earlier arm neither
run beside it nor count in its CPU figures), one after the other:
  mixture_spin / mixture_paced:  mixture-only views, 1 torch thread, `data.loop_period_ms` 0
                                 (Ray Data's own loop) / 20 (the default);
  mixture_paced_2threads:        the same, paced, with 2 torch threads (what a stream with no
                                 separator now gets by default);
  separated_spin / separated_paced: the quick preset's separated views (3 random-weight
                                 quick separators in a 0.5-CPU actor), period 0 / 20.
Per arm: steady-state steps/s (the first logged window left out), wall, and the CPU seconds
of the stream's executor (Ray Train's SplitCoordinator actor) and of the trainer, sampled
every second, counted from each process's reading at the arm's start (0 for processes the arm
starts). `precision: auto` as in the preset (fp32 on a CPU without native bf16, or under
ONEDNN_MAX_CPU_ISA=AVX2). Prints one JSON line and writes results/idle_loop[_<data>].json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import threading
import time
from pathlib import Path

import psutil

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

import torch  # noqa: E402

from sslsep.cluster import init_ray  # noqa: E402
from sslsep.config import load_config, replace  # noqa: E402
from sslsep.contrastive.train import pretrain  # noqa: E402
from sslsep.run import RunDir  # noqa: E402
from sslsep.training.schedule import resolve_precision  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from pretrain_speed import random_registry  # noqa: E402

QUICK = REPO / "experiments" / "configs" / "quick.yaml"
ARMS = {
    "mixture_spin": ["augment.kinds=[mixture]", "data.loop_period_ms=0", "pretrain.torch_threads=1"],
    "mixture_paced": ["augment.kinds=[mixture]", "data.loop_period_ms=20", "pretrain.torch_threads=1"],
    "mixture_paced_2threads": ["augment.kinds=[mixture]", "data.loop_period_ms=20", "pretrain.torch_threads=2"],
    "separated_spin": ["data.loop_period_ms=0"],
    "separated_paced": ["data.loop_period_ms=20"],
}
ROLES = {"SplitCoordinator": "executor", "RayTrainWorker": "trainer", "MapWorker": "augmenter"}


def cpu_readings() -> dict[tuple[str, int], float]:
    """CPU seconds (user + system) so far of every Ray process that has a role, by (role, pid)."""
    out = {}
    for p in psutil.process_iter(["cmdline"]):
        try:
            line = " ".join(p.info["cmdline"] or [])
            role = next((r for k, r in ROLES.items() if f"ray::{k}" in line), None)
            if role:
                t = p.cpu_times()
                out[(role, p.pid)] = t.user + t.system
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            pass
    return out


def cpu_sampler(stop: threading.Event, seen: dict) -> None:
    """The latest reading per process, every second (a process that exits keeps its last)."""
    while not stop.is_set():
        seen.update(cpu_readings())
        stop.wait(1.0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=120)
    ap.add_argument("--data", default="", help="a labelled folder (default: the preset's synthetic scenes)")
    ap.add_argument("--arms", default=",".join(ARMS))
    args = ap.parse_args()
    base = [f"pretrain.steps={args.steps}", f"pretrain.log_every={max(args.steps // 6, 1)}",
            "pretrain.monitor_every=0", "pretrain.checkpoint_steps=[]"]
    data = [args.data] if args.data else None
    import ray
    import ray.data

    cfg0 = load_config(str(QUICK), base, data)
    registry = random_registry(cfg0, 3)
    out = {}
    for arm in args.arms.split(","):
        cfg = replace(load_config(str(QUICK), base + ARMS[arm], data), {"separation.registry": registry},
                      origin="benchmark")
        run = RunDir(tempfile.mkdtemp(prefix=f"sslsep-bench-idle-{arm}-"))
        # as the job starts its local cluster (idle workers kept: sslsep.cluster.local_options)
        init_ray(cfg.ray, num_cpus=os.cpu_count(), include_dashboard=False, log_to_driver=False,
                 runtime_env={"env_vars": {"PYTHONPATH": str(REPO)}})
        ray.data.DataContext.get_current().enable_progress_bars = False
        before = cpu_readings()
        seen: dict = {}
        stop = threading.Event()
        sampler = threading.Thread(target=cpu_sampler, args=(stop, seen), daemon=True)
        sampler.start()
        t0 = time.monotonic()
        pretrain(cfg, run)
        wall = time.monotonic() - t0
        stop.set()
        sampler.join()
        ray.shutdown()
        m = [x for x in run.metrics() if x.get("stage") == "pretrain" and "steps_per_s" in x][1:]
        cpu = {}
        for (role, _), s in seen.items():
            cpu[role] = round(cpu.get(role, 0.0) + s - before.get((role, _), 0.0), 1)  # the arm's own seconds
        out[arm] = {"steps_per_s": round(sum(x["steps_per_s"] for x in m) / len(m), 3),
                    "data_wait_share": round(sum(x["data_wait_share"] for x in m) / len(m), 3),
                    "wall_s": round(wall, 1), "cpu_s": cpu,
                    "executor_cpu_share": round(cpu.get("executor", 0.0) / wall, 3)}
        print(arm, json.dumps(out[arm]), flush=True)

    def ratio(a: str, b: str) -> float | None:
        return round(out[a]["steps_per_s"] / out[b]["steps_per_s"], 2) if a in out and b in out else None

    flags = open("/proc/cpuinfo").read() if os.path.exists("/proc/cpuinfo") else ""
    result = {"benchmark": "idle_loop", "steps": args.steps, "data": args.data or "synthetic", **out,
              "ratio_mixture_paced_over_spin": ratio("mixture_paced", "mixture_spin"),
              "ratio_mixture_2threads_over_1": ratio("mixture_paced_2threads", "mixture_paced"),
              "ratio_separated_paced_over_spin": ratio("separated_paced", "separated_spin"),
              "machine": {"platform": platform.platform(), "cpu_count": os.cpu_count(), "torch": torch.__version__,
                          "ray": ray.__version__, "avx512_bf16": "avx512_bf16" in flags, "amx": "amx_bf16" in flags,
                          "onednn_max_cpu_isa": os.environ.get("ONEDNN_MAX_CPU_ISA", ""),
                          "precision": resolve_precision(cfg0.pretrain.precision, torch.device("cpu"))}}
    line = json.dumps(result)
    print(line)
    tag = f"_{Path(args.data).name}" if args.data else ""
    (REPO / "experiments" / "benchmarks" / "results" / f"idle_loop{tag}.json").write_text(line + "\n")


if __name__ == "__main__":
    main()
