"""Throughput of the synthetic scene generator: clips/s for 4 s clips at 16 kHz on one CPU core.

    python experiments/benchmarks/synth_speed.py [--num-clips 200]

Prints one JSON line and writes it to experiments/benchmarks/results/synth_speed.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

# Pin BLAS/OpenMP pools to one thread *before* numpy loads: the figure is per core.
for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import numpy as np

try:
    from sslsep.data.synthetic import iter_scenes
except ImportError:  # not pip-installed: run from a checkout
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
    from sslsep.data.synthetic import iter_scenes

SAMPLE_RATE, NUM_SAMPLES = 16000, 64000


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--num-clips", type=int, default=200)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()

    for _ in iter_scenes(5, start=10**6, seed=args.seed):  # warm-up: imports, FFT plan caches
        pass
    t0 = time.perf_counter()
    events = 0
    for scene in iter_scenes(args.num_clips, seed=args.seed, sample_rate=SAMPLE_RATE, num_samples=NUM_SAMPLES):
        events += len(scene.labels)
    elapsed = time.perf_counter() - t0

    clips_per_s = args.num_clips / elapsed
    result = {
        "benchmark": "synth_speed",
        "clips_per_s": round(clips_per_s, 1),
        "realtime_factor": round(clips_per_s * NUM_SAMPLES / SAMPLE_RATE, 1),
        "num_clips": args.num_clips,
        "mean_events_per_clip": round(events / args.num_clips, 2),
        "clip_seconds": NUM_SAMPLES / SAMPLE_RATE,
        "sample_rate": SAMPLE_RATE,
        "machine": {"platform": platform.platform(), "processor": platform.processor() or platform.machine(),
                    "cpu_count": os.cpu_count(), "python": platform.python_version(), "numpy": np.__version__},
    }
    line = json.dumps(result)
    print(line)
    out = Path(__file__).resolve().parent / "results" / "synth_speed.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(line + "\n")


if __name__ == "__main__":
    main()
