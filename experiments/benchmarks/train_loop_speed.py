"""Steps/s of the shared training loop against a bare step loop, for both stages, in fp32 and bf16.

    python experiments/benchmarks/train_loop_speed.py [--steps 30] [--repeats 3] [--threads 1]

For each stage (MixIT separation: quick separator, 8 clips of 4 s; contrastive pretraining:
compact encoder, 16 clips x 2 views of 2 s) the same in-memory batches go through
  bare   the baseline: forward, loss, zero_grad, backward, optimizer step — nothing else;
  loop   sslsep.training.run_loop in this process (LocalSession): schedule, autocast, scaler,
         throughput window, any-rank stop, and the one resumable checkpoint a finished run
         writes (timed whole, and by the loop's own window, which leaves the checkpoint out);
  bf16   the same loop with precision bf16 (CPU autocast).
Runs alternate (bare, loop, bf16, bare, ...) and the median of the repeats is reported, so a
busy moment of the machine hits every variant alike. Prints one JSON line and writes
results/train_loop_speed.json.
"""

from __future__ import annotations

import argparse
import json
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

from sslsep.config import load_config  # noqa: E402
from sslsep.contrastive.encoder import build_encoder  # noqa: E402
from sslsep.contrastive.train import PretrainModel, PretrainModels, contrastive_step  # noqa: E402
from sslsep.run import RunDir  # noqa: E402
from sslsep.separation.model import build_separator  # noqa: E402
from sslsep.separation.train import mixit_step  # noqa: E402
from sslsep.session import LocalSession  # noqa: E402
from sslsep.training import LoopSettings, run_loop  # noqa: E402


def stage_pieces(stage: str, cfg):
    """(model builder, step function, batches) of a stage, batches made once in memory."""
    g = torch.Generator().manual_seed(0)
    if stage == "separation":
        batches = [{"audio": 0.1 * torch.randn(8, 64000, generator=g)} for _ in range(4)]  # (B, T)
        return lambda: build_separator("quick"), lambda: mixit_step(cfg), batches
    batches = [{"views": 0.1 * torch.randn(16, 2, 32000, generator=g)} for _ in range(4)]  # (B, V, T)

    def step():  # one model: the loop as a single variant runs it
        return contrastive_step({"model": cfg}, {"model": torch.Generator().manual_seed(0)})
    return lambda: PretrainModels({"model": PretrainModel(build_encoder("compact"), "cosine")}), step, batches


def bare(build, make_step, batches, steps: int) -> float:
    torch.manual_seed(0)
    model = build()
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    step_fn = make_step()
    t0 = time.perf_counter()
    for i in range(steps):
        loss, _ = step_fn(model, batches[i % len(batches)])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    return steps / (time.perf_counter() - t0)


def loop(build, make_step, batches, steps: int, precision: str, threads: int) -> float:
    torch.manual_seed(0)
    model = build()
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    s = LoopSettings(stage="bench", steps=steps, report_every=10 ** 9, lr=1e-3, precision=precision,
                     torch_threads=threads, use_ray=False)

    def data():
        for i in range(steps):
            yield batches[i % len(batches)]

    run = RunDir(tempfile.mkdtemp(prefix="sslsep-bench-loop-"))
    t0 = time.perf_counter()
    run_loop(LocalSession(data, run.uri("state.pt")), s, model, opt, make_step(), run=run,
             save=lambda *a: None)
    wall = time.perf_counter() - t0
    # wall: the whole call, one resumable checkpoint written at the end included; window: the
    # loop's own steps_per_s (data wait + step compute, what metrics.jsonl reports)
    return steps / wall, run.metrics()[-1]["steps_per_s"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=1, help="torch threads (a 1-CPU Ray Train worker has 1)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    cfg = load_config(None, [])
    out = {}
    for stage in ("separation", "pretrain"):
        build, make_step, batches = stage_pieces(stage, cfg)
        loop(build, make_step, batches, 3, "fp32", args.threads)  # warm-up: allocator, kernels
        runs = {"bare": [], "loop": [], "loop_window": [], "loop_bf16": []}
        for _ in range(args.repeats):
            runs["bare"].append(bare(build, make_step, batches, args.steps))
            wall, window = loop(build, make_step, batches, args.steps, "fp32", args.threads)
            runs["loop"].append(wall)
            runs["loop_window"].append(window)
            runs["loop_bf16"].append(loop(build, make_step, batches, args.steps, "bf16", args.threads)[0])
        med = {k: statistics.median(v) for k, v in runs.items()}
        out[stage] = {**{f"{k}_steps_per_s": round(v, 3) for k, v in med.items()},
                      "ratio_loop_over_bare": round(med["loop"] / med["bare"], 3),
                      "ratio_loop_window_over_bare": round(med["loop_window"] / med["bare"], 3),
                      "ratio_bf16_over_fp32": round(med["loop_bf16"] / med["loop"], 3),
                      "spread_bare_steps_per_s": [round(min(runs["bare"]), 3), round(max(runs["bare"]), 3)],
                      "spread_loop_steps_per_s": [round(min(runs["loop"]), 3), round(max(runs["loop"]), 3)]}
    result = {"benchmark": "train_loop_speed", "steps": args.steps, "repeats": args.repeats,
              "threads": args.threads, **out,
              "machine": {"platform": platform.platform(), "cpu_count": os.cpu_count(), "torch": torch.__version__,
                          "device": "cpu"}}
    line = json.dumps(result)
    print(line)
    (REPO / "experiments" / "benchmarks" / "results" / "train_loop_speed.json").write_text(line + "\n")


if __name__ == "__main__":
    main()
