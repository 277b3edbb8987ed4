"""Pretraining steps/s fed live by the augmentation service vs. from pre-computed views.

    python experiments/benchmarks/pretrain_speed.py [--steps 60] [--batch 16]

Both runs train the same compact encoder on Ray Train (1 worker, 1 CPU) with the same
views: live = clips -> separator actor pool (0.5 CPU) -> trainer, streamed; precomputed =
the same view Dataset materialised in Ray's object store first (the baseline: no data
work during training); live_unordered = live with `data.preserve_order=false` (what row
order, and so reproducibility, costs); mixture_only_live = live with mixture-only views (no
separator at all: what separating costs the trainer). The first logged window (start-up) is
left out of the rates.
Prints one JSON line and writes results/pretrain_speed.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

import torch  # noqa: E402

from sslsep.config import load_config, replace  # noqa: E402
from sslsep.contrastive.train import pretrain  # noqa: E402
from sslsep.run import RunDir  # noqa: E402
from sslsep.separation.model import build_separator  # noqa: E402
from sslsep.separation.train import _save_state_file  # noqa: E402


def random_registry(cfg, k: int) -> str:
    """k quick separators with random weights: speed does not depend on training."""
    run = RunDir(tempfile.mkdtemp(prefix="sslsep-bench-reg-"))
    for step in range(1, k + 1):
        torch.manual_seed(step)
        _save_state_file(build_separator(cfg.separation.size), run, step, {}, cfg)
    return run.uri("registry.json")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=60)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--separators", type=int, default=2)
    args = ap.parse_args()
    log_every = max(args.steps // 6, 1)
    sets = [f"pretrain.steps={args.steps}", f"pretrain.batch_clips={args.batch}", f"pretrain.log_every={log_every}",
            f"data.synth.num_clips={args.steps * args.batch + 64}", "augment.cpus_per_actor=0.5",
            "augment.views_per_clip=2", "augment.batch_size=8"]
    import ray

    ray.init(num_cpus=os.cpu_count(), include_dashboard=False, log_to_driver=False,
             runtime_env={"env_vars": {"PYTHONPATH": str(REPO)}})
    import ray.data

    ray.data.DataContext.get_current().enable_progress_bars = False
    registry = random_registry(load_config(None, sets), args.separators)
    out = {}
    arms = {"precomputed": ["pretrain.views_source=precomputed"], "live": ["pretrain.views_source=live"],
            "live_unordered": ["pretrain.views_source=live", "data.preserve_order=false"],
            "mixture_only_live": ["pretrain.views_source=live", "augment.kinds=[mixture]"]}
    for arm, extra in arms.items():
        cfg = replace(load_config(None, sets + extra), {"separation.registry": registry}, origin="benchmark")
        run = RunDir(tempfile.mkdtemp(prefix=f"sslsep-bench-pretrain-{arm}-"))
        t0 = time.monotonic()
        pretrain(cfg, run)
        wall = time.monotonic() - t0
        m = run.metrics()[1:]  # leave out the start-up window
        out[arm] = {"steps_per_s": round(sum(x["steps_per_s"] for x in m) / len(m), 3),
                    "samples_per_s": round(sum(x["samples_per_s"] for x in m) / len(m), 1),
                    "data_wait_share": round(sum(x["data_wait_share"] for x in m) / len(m), 3),
                    "wall_s": round(wall, 1)}
    ray.shutdown()
    result = {"benchmark": "pretrain_speed", "steps": args.steps, "batch_clips": args.batch,
              "separators": args.separators, **out,
              "ratio_live_over_precomputed": round(out["live"]["steps_per_s"] / out["precomputed"]["steps_per_s"], 2),
              "ratio_separated_over_mixture_only": round(out["live"]["steps_per_s"]
                                                         / out["mixture_only_live"]["steps_per_s"], 2),
              "ratio_ordered_over_unordered": round(out["live"]["steps_per_s"] / out["live_unordered"]["steps_per_s"],
                                                    2),
              "resources": {"trainer_cpus": 1, "actor_cpus": 0.5, "ray_cpus": os.cpu_count()},
              "machine": {"platform": platform.platform(), "cpu_count": os.cpu_count(), "torch": torch.__version__,
                          "ray": ray.__version__, "device": "cpu"}}
    line = json.dumps(result)
    print(line)
    (REPO / "experiments" / "benchmarks" / "results" / "pretrain_speed.json").write_text(line + "\n")


if __name__ == "__main__":
    main()
