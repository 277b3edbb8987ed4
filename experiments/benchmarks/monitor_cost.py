"""What the k-NN representation monitor costs pretraining at the quick preset.

    python experiments/benchmarks/monitor_cost.py [--steps 40] [--calls 4] [--config experiments/configs/quick.yaml]

The preset's pretraining settings (encoder, batch, views, crops, precision, monitor_clips) in
process (`pretrain.use_ray=false`, one torch thread, as one Ray Train worker has), on separators
with random weights (the cost does not depend on their training; as many as the preset keeps:
three convergence states). Per arm (the configured model's separated views, and mixture-only,
whose steps are cheapest and so show the monitor's largest share) two runs of `--steps` steps,
the same seed and data: the monitor off, and on at `--calls` evenly spaced report steps
(the preset monitors 400 steps at 100, 200, 300, 400: 4 calls). Measured: wall time of each run,
the monitor's seconds (`monitor_s`: the first call builds the split), the step time.
Extrapolated to the preset: (first call + (calls - 1) x later call) / (steps x step time).
Prints one JSON line and writes results/monitor_cost.json.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

import torch  # noqa: E402

from sslsep.config import load_config, replace  # noqa: E402
from sslsep.contrastive.controls import control_config  # noqa: E402
from sslsep.contrastive.train import pretrain  # noqa: E402
from sslsep.run import RunDir  # noqa: E402
from sslsep.training.schedule import resolve_precision  # noqa: E402

sys.path.insert(0, str(REPO / "experiments" / "benchmarks"))
from pretrain_speed import random_registry  # noqa: E402


def timed_run(cfg) -> tuple[float, list[dict]]:
    run = RunDir(tempfile.mkdtemp(prefix="sslsep-bench-monitor-"))
    t0 = time.monotonic()
    pretrain(cfg, run)
    return time.monotonic() - t0, run.metrics()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", default=str(REPO / "experiments" / "configs" / "quick.yaml"))
    ap.add_argument("--steps", type=int, default=40)
    ap.add_argument("--calls", type=int, default=4, help="monitor calls in the measured run")
    ap.add_argument("--separators", type=int, default=3)
    ap.add_argument("--set", action="append", default=[], help="extra dotted.key=value overrides")
    args = ap.parse_args()
    load_at_start = round(os.getloadavg()[0], 2)
    preset = load_config(args.config)
    every = max(1, args.steps // args.calls)
    sets = [f"pretrain.steps={args.steps}", "pretrain.use_ray=false", f"pretrain.log_every={every}",
            "pretrain.checkpoint_steps=[]", *args.set]
    base = load_config(args.config, sets)
    registry = random_registry(base, args.separators)
    base = replace(base, {"separation.registry": registry}, origin="benchmark")
    arms = {"configured": base, "mixture-only": control_config(base, "mixture-only")}
    timed_run(replace(base, {"pretrain.steps": 2, "pretrain.monitor_every": 0}, origin="warm-up"))  # imports, caches
    out = {}
    for arm, cfg in arms.items():
        figures = {}
        for state, m_every in (("off", 0), ("on", every)):
            wall, lines = timed_run(replace(cfg, {"pretrain.monitor_every": m_every}, origin="benchmark"))
            figures[state] = {"wall_s": wall, "lines": lines}
        on, off = figures["on"], figures["off"]
        calls = [x["monitor_s"] for x in on["lines"] if "monitor_s" in x]
        step_s = off["wall_s"] / args.steps  # start-up included: a slight overestimate of a step
        steady = [1 / x["steps_per_s"] for x in off["lines"][1:]] or [step_s]
        first, later = calls[0], statistics.mean(calls[1:]) if len(calls) > 1 else calls[0]
        p = preset.pretrain
        n_calls = p.steps // p.monitor_every + (p.steps % p.monitor_every != 0) if p.monitor_every else 0
        preset_monitor_s = first + (n_calls - 1) * later if n_calls else 0.0
        preset_pretrain_s = p.steps * statistics.mean(steady)
        out[arm] = {"wall_off_s": round(off["wall_s"], 1), "wall_on_s": round(on["wall_s"], 1),
                    "measured_ratio": round((on["wall_s"] - off["wall_s"]) / off["wall_s"], 3),
                    "measured_monitor_share": round(sum(calls) / off["wall_s"], 3),
                    "monitor_calls": len(calls), "monitor_s": [round(c, 2) for c in calls],
                    "step_s": round(statistics.mean(steady), 3),
                    "preset_calls": n_calls, "preset_monitor_s": round(preset_monitor_s, 1),
                    "preset_pretrain_s": round(preset_pretrain_s, 1),
                    "preset_ratio": round(preset_monitor_s / preset_pretrain_s, 3),
                    "monitor_figure_last": next((v for x in reversed(on["lines"]) for k, v in x.items()
                                                 if k.startswith("monitor_knn_")), math.nan)}
    worst = max(a["preset_ratio"] for a in out.values())
    p = preset.pretrain
    result = {"benchmark": "monitor_cost", "config": Path(args.config).name, "steps_measured": args.steps,
              "monitor_every_measured": every, "preset_steps": p.steps, "preset_monitor_every": p.monitor_every,
              "monitor_clips": base.pretrain.monitor_clips, "clip_seconds": base.audio.clip_seconds,
              "batch_clips": base.pretrain.batch_clips,
              "precision": resolve_precision(base.pretrain.precision, torch.device("cpu")), "overrides": args.set,
              "separators": args.separators, **out, "preset_ratio_worst": worst, "target": 0.10,
              "met": worst < 0.10,
              "machine": {"platform": platform.platform(), "cpu_count": os.cpu_count(), "torch": torch.__version__,
                          "load_1min_at_start": load_at_start, "device": "cpu"}}
    line = json.dumps(result)
    print(line)
    (REPO / "experiments" / "benchmarks" / "results" / "monitor_cost.json").write_text(line + "\n")


if __name__ == "__main__":
    main()
