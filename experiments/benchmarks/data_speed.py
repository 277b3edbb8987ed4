"""Clip throughput of the data sources: Ray Data vs. a plain in-process loop, same run.

    python experiments/benchmarks/data_speed.py [--data ../shared/data/urbansound8k-fold1]
        [--clips 400] [--sample-rate 22050] [--synth-clips 400]

1. decode + resample: the folder's files to `--sample-rate` (22.05 kHz forces resampling of
   16 kHz sources), through `clip_dataset` on a local Ray cluster vs. `iter_clips` in one
   process (the baseline) over the same files.
2. the synthetic scene generator (4 s at 16 kHz), the same two ways.

Ray's start-up (ray.init, worker processes importing torch) is reported apart: each figure
is the second pass over the data, after one warm-up pass. The loop runs with one torch
thread, as each Ray worker does. Prints one JSON line and
writes it to experiments/benchmarks/results/data_speed.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

import torch  # noqa: E402

from sslsep.config import load_config  # noqa: E402
from sslsep.data.sources import clip_dataset, iter_clips  # noqa: E402


def timed_loop(rows) -> tuple[int, float]:
    t0, n = time.perf_counter(), 0
    for _ in rows:
        n += 1
    return n, time.perf_counter() - t0


def timed_ray(make_ds) -> tuple[int, float]:
    t0, n = time.perf_counter(), 0
    for batch in make_ds().iter_batches(batch_size=64, batch_format="numpy"):
        n += len(batch["clip_id"])
    return n, time.perf_counter() - t0


def compare(cfg, label: str) -> dict:
    timed_loop(iter_clips(cfg.data, cfg.audio))  # warm-up: imports, resampler kernels, page cache
    n_plain, s_plain = timed_loop(iter_clips(cfg.data, cfg.audio))
    timed_ray(lambda: clip_dataset(cfg.data, cfg.audio))  # warm-up: workers start, import torch
    n_ray, s_ray = timed_ray(lambda: clip_dataset(cfg.data, cfg.audio))
    assert n_plain == n_ray, f"{label}: {n_plain} clips in the loop, {n_ray} through Ray"
    plain, ray_ = n_plain / s_plain, n_ray / s_ray
    return {"clips": n_plain, "plain_clips_per_s": round(plain, 1), "ray_clips_per_s": round(ray_, 1),
            "ratio_ray_over_plain": round(ray_ / plain, 2)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default=str(REPO.parent / "shared" / "data" / "urbansound8k-fold1"))
    ap.add_argument("--clips", type=int, default=400)
    ap.add_argument("--sample-rate", type=int, default=22050)
    ap.add_argument("--synth-clips", type=int, default=400)
    ap.add_argument("--num-cpus", type=int, default=os.cpu_count())
    args = ap.parse_args()
    # Ray starts its workers with one torch thread each; give the loop the same, so the ratio
    # measures parallel decoding and not torch's thread pool spinning on a busy second core.
    torch.set_num_threads(1)

    import ray
    import ray.data

    t0 = time.perf_counter()
    ray.init(num_cpus=args.num_cpus, include_dashboard=False, log_to_driver=False,
             runtime_env={"env_vars": {"PYTHONPATH": str(REPO)}})
    ray.data.DataContext.get_current().enable_progress_bars = False
    init_s = time.perf_counter() - t0

    folder = load_config(None, [f"audio.sample_rate={args.sample_rate}", f"data.max_clips={args.clips}"],
                         data=args.data)
    synth = load_config(None, [f"data.synth.num_clips={args.synth_clips}"])
    result = {
        "benchmark": "data_speed",
        "decode_resample": {"source": args.data, "from_hz": 16000, "to_hz": args.sample_rate,
                            **compare(folder, "folder")},
        "synthetic": compare(synth, "synthetic"),
        "ray_init_s": round(init_s, 1),
        "machine": {"platform": platform.platform(), "cpu_count": os.cpu_count(), "ray_num_cpus": args.num_cpus,
                    "python": platform.python_version(), "ray": ray.__version__},
    }
    ray.shutdown()
    line = json.dumps(result)
    print(line)
    out = REPO / "experiments" / "benchmarks" / "results" / "data_speed.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(line + "\n")


if __name__ == "__main__":
    main()
