"""How close a training step comes to what this machine can compute: FLOPs per step against the
machine's own peak, measured in the same run.

    python experiments/benchmarks/compute_efficiency.py [--size quick] [--threads 1 2] [--steps 5]

For the separator's MixIT training step and the encoder's contrastive training step at the
quick preset's sizes (experiments/benchmarks/gpu.py SIZES), in fp32 and bf16 autocast, with 1
and 2 torch threads: FLOPs per step (torch.utils.flop_counter: matmuls and convolutions,
forward and backward), seconds per step, achieved FLOP/s, and the share of the peak: a large
matrix multiply (2048^3) of the same dtype and thread count, timed in the same run. The encoder
is also measured with channels_last. Prints one JSON line; writes results/compute_efficiency.json.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import torch  # noqa: E402
from torch.utils.flop_counter import FlopCounterMode  # noqa: E402

from gpu import SIZES, encoder_step, separator_step, timed  # noqa: E402


def peak_flops(dtype: str, n: int = 2048, reps: int = 5) -> float:
    """FLOP/s of an n x n x n matrix multiply in `dtype` with the current thread count."""
    t = torch.float32 if dtype == "fp32" else torch.bfloat16
    a, b = torch.randn(n, n, dtype=t), torch.randn(n, n, dtype=t)
    return timed(lambda: a @ b, reps, 2, "cpu") * 2 * n ** 3


def step_flops(step) -> int:
    with FlopCounterMode(display=False) as counter:
        step()
    return counter.get_total_flops()


def cpu_flags() -> list[str]:
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return []
    flags = next((ln.split(":", 1)[1].split() for ln in text.splitlines() if ln.startswith("flags")), [])
    return sorted(f for f in flags if f in ("avx2", "avx512f", "avx512_bf16", "amx_bf16", "amx_tile"))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", default="quick", choices=list(SIZES))
    ap.add_argument("--threads", nargs="+", type=int, default=[1, 2])
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--out", default="")
    args = ap.parse_args()
    s = {**SIZES[args.size], "steps": args.steps}
    rows = []
    for threads in args.threads:
        torch.set_num_threads(threads)
        for dtype in ("fp32", "bf16"):
            peak = peak_flops(dtype)
            arms = {"separator": lambda: separator_step(s, "cpu", dtype, s["sep_batch"]),
                    "encoder": lambda: encoder_step(s, "cpu", dtype, s["pre_batch"]),
                    "encoder_channels_last": lambda: encoder_step(s, "cpu", dtype, s["pre_batch"], True)}
            for name, make in arms.items():
                step = make()
                flops = step_flops(step)
                rate = timed(step, s["steps"], s["warmup"], "cpu")
                rows.append({"model": name, "dtype": dtype, "threads": threads, "gflop_per_step": round(flops / 1e9, 2),
                             "steps_s": round(rate, 3), "achieved_gflops": round(flops * rate / 1e9, 1),
                             "peak_gflops": round(peak / 1e9, 1), "share_of_peak": round(flops * rate / peak, 3)})
                print(json.dumps(rows[-1]), file=sys.stderr, flush=True)
    out = {"benchmark": "compute_efficiency", "size": args.size, "torch": torch.__version__,
           "machine": {"cpu": platform.processor() or platform.machine(), "flags": cpu_flags()}, "rows": rows}
    line = json.dumps(out)
    print(line)
    dest = Path(args.out) if args.out else Path(__file__).resolve().parent / "results" / "compute_efficiency.json"
    dest.write_text(line + "\n")


if __name__ == "__main__":
    main()
