"""Separation quality against wall time: SI-SNRi of the quick separator during MixIT training.

    python experiments/benchmarks/separation_quality.py --minutes 15                   # synthetic scenes
    python experiments/benchmarks/separation_quality.py --minutes 15 \\
        --data ../shared/data/urbansound8k-fold1                                        # real clips

Trains through experiments/separator.py (Ray Train, as users run it) with a wall-clock
budget, validating every `--val-every` steps on held-out data:
- synthetic: scenes of an unseen seed; multi-source SI-SNRi against the stems, single-source
  SI-SNR, and SI-SNRi on mixtures of two held-out scenes;
- a folder: mixtures of two real clips from recordings (fsID) held out of training; the
  references are the clips (the outputs are remixed by the MixIT assignment).
Baseline, same run: the same separator untrained (step 0) on the same validation set.
Prints one JSON line and writes results/separation_quality_<synthetic|folder>.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

import torch  # noqa: E402

from sslsep.config import load_config  # noqa: E402
from sslsep.separation.model import build_separator  # noqa: E402
from sslsep.separation.train import evaluate, validation_set  # noqa: E402

TARGETS_DB = {"synthetic": 10.0, "folder": 3.0}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--minutes", type=float, default=15.0)
    ap.add_argument("--data", default="")
    ap.add_argument("--val-every", type=int, default=100)
    ap.add_argument("--out", default="")
    ap.add_argument("--set", dest="overrides", action="append", default=[])
    args = ap.parse_args()
    kind = "folder" if args.data else "synthetic"
    out = args.out or f"/tmp/sslsep-bench-separation-{kind}"
    sets = [f"separation.max_minutes={args.minutes}", "separation.steps=1000000",
            f"separation.val_every={args.val_every}", "separation.val_clips=64",
            "separation.checkpoint_steps=[250,500,1000,2000,4000,8000]",
            "separation.torch_threads=2", "data.synth.num_clips=4000", *args.overrides]
    cfg = load_config(None, sets, args.data or None)

    torch.manual_seed(cfg.seed)  # the loop's rank-0 initialisation
    untrained = build_separator(cfg.separation.size, sample_rate=cfg.audio.sample_rate,
                                **cfg.separation.model_overrides())
    baseline = evaluate(untrained, validation_set(cfg), cfg.separation.snr_max)

    cmd = [sys.executable, str(REPO / "experiments" / "separator.py"), "--out", out]
    for s in sets:
        cmd += ["--set", s]
    if args.data:
        cmd += ["--data", args.data]
    t0 = time.monotonic()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
    wall = time.monotonic() - t0
    curve = [json.loads(x) for x in (Path(out) / "metrics.jsonl").read_text().splitlines()]
    curve = [c for c in curve if c.get("stage") == "separation"]
    key = "val_si_snri" if kind == "synthetic" else "val_mom_si_snri"
    best = max(curve, key=lambda c: c[key])
    target = TARGETS_DB[kind]
    reached = next((c["elapsed_s"] for c in curve if c[key] >= target), None)
    keep = ("step", "elapsed_s", "train_mixit_loss", "val_mixit_loss", "val_mom_si_snri", "val_si_snri",
            "val_ss_si_snr", "val_ss_best_si_snr", "steps_per_s", "data_wait_share")
    result = {
        "benchmark": f"separation_quality_{kind}", "data": args.data or "synthetic scenes",
        "metric": key, "target_db": target, "budget_minutes": args.minutes,
        "final": {k: curve[-1].get(k) for k in keep}, "best": {k: best.get(k) for k in keep},
        "baseline_untrained": baseline, "improvement_over_untrained_db": round(best[key] - baseline[key], 2),
        "ratio_to_target": round(best[key] / target, 2), "reached_target_at_s": reached,
        "wall_s_including_startup": round(wall, 1),
        "curve": [{k: c.get(k) for k in ("elapsed_s", "step", key)} for c in curve],
        "config": {"size": cfg.separation.size, "batch_clips": cfg.separation.batch_clips,
                   "clip_seconds": cfg.audio.clip_seconds, "lr": cfg.separation.lr},
        "machine": {"platform": platform.platform(), "cpu_count": os.cpu_count(),
                    "torch": torch.__version__, "device": "cpu"},
    }
    line = json.dumps(result)
    print(line)
    path = REPO / "experiments" / "benchmarks" / "results" / f"separation_quality_{kind}.json"
    path.write_text(line + "\n")


if __name__ == "__main__":
    main()
