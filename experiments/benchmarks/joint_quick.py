"""The laptop promise: `python experiments/joint.py` (quick preset, synthetic scenes) within
15 minutes wall and 8 GB peak memory on a 2-core CPU machine.

    python experiments/benchmarks/joint_quick.py [--data PATH] [--tag T --target-min M] [-- extra joint.py args]

Runs joint.py as users do (a subprocess, a fresh run directory) and samples memory every
second: the unique memory (USS) of the driver and every process it started (Ray's GCS,
raylet, workers), plus the machine's used memory above what it was before the start (which
also counts Ray's shared-memory object store once). The ratios are against the targets.
Prints one JSON line and writes results/joint_quick[_<data>].json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import psutil

REPO = Path(__file__).resolve().parents[2]
TARGET_S, TARGET_GB = 15 * 60, 8.0


def sample(proc: psutil.Process, stop: threading.Event, peaks: dict, base_used: int) -> None:
    while not stop.is_set():
        uss = 0
        try:
            procs = [proc, *proc.children(recursive=True)]
        except psutil.NoSuchProcess:
            break
        for p in procs:
            try:
                uss += p.memory_full_info().uss
            except (psutil.NoSuchProcess, psutil.AccessDenied):
                pass
        used = psutil.virtual_memory().used - base_used
        peaks["uss"] = max(peaks.get("uss", 0), uss)
        peaks["used"] = max(peaks.get("used", 0), used)
        peaks["procs"] = max(peaks.get("procs", 0), len(procs))
        stop.wait(1.0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default="")
    ap.add_argument("--tag", default="", help="suffix of the results file (another preset: --tag hour)")
    ap.add_argument("--target-min", type=float, default=TARGET_S / 60, help="wall target in minutes (15)")
    ap.add_argument("extra", nargs="*")
    args = ap.parse_args()
    out = tempfile.mkdtemp(prefix="sslsep-joint-bench-")
    cmd = [sys.executable, str(REPO / "experiments" / "joint.py"), "--out", out, *args.extra]
    if args.data:
        cmd += ["--data", args.data]
    load_before = round(os.getloadavg()[0], 2)
    base_used = psutil.virtual_memory().used
    t0 = time.monotonic()
    popen = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    peaks: dict = {}
    stop = threading.Event()
    sampler = threading.Thread(target=sample, args=(psutil.Process(popen.pid), stop, peaks, base_used), daemon=True)
    sampler.start()
    stage_times, log = {}, []
    for line in popen.stdout:
        log.append(line)
        sys.stderr.write(line)
        for stage in ("separation:", "pretrain [", "evaluation:", "verdict", "done in"):
            key = stage.strip(" [:")  # the first line of each (the key, not the prefix, is what is kept)
            if line.startswith(stage) and key not in stage_times:
                stage_times[key] = round(time.monotonic() - t0, 1)
    rc = popen.wait()
    wall = time.monotonic() - t0
    stop.set()
    sampler.join()
    verdict = Path(out, "verdict.txt").read_text().strip().splitlines() if Path(out, "verdict.txt").exists() else []
    results = json.loads(Path(out, "results.json").read_text()) if Path(out, "results.json").exists() else {}
    tasks = results.get("tasks") or ([{**results, "name": "task"}] if results else [])  # (before the suite: one)
    rows = [{"task": t["name"], **{k: r.get(k) for k in ("extractor", "classifier", "mAP", "mAP_std", "auc", "d_prime",
                                                          "accuracy", "accuracy_std")}}
            for t in tasks for r in t["rows"]]
    target_s = args.target_min * 60
    res = {"bench": "joint_quick", "returncode": rc, "data": args.data or "synthetic", "extra": args.extra,
           "wall_s": round(wall, 1), "target_s": target_s, "wall_ratio": round(wall / target_s, 3),
           "peak_uss_gb": round(peaks.get("uss", 0) / 2**30, 2),
           "peak_used_delta_gb": round(peaks.get("used", 0) / 2**30, 2), "target_gb": TARGET_GB,
           "memory_ratio": round(max(peaks.get("uss", 0), peaks.get("used", 0)) / 2**30 / TARGET_GB, 3),
           "max_processes": peaks.get("procs", 0), "first_line_s": stage_times, "verdict": verdict,
           "rows": rows, "run_dir": out,
           "machine": {"platform": platform.platform(), "cpu_count": os.cpu_count(),
                       "memory_gb": round(psutil.virtual_memory().total / 2**30, 1), "loadavg_before": load_before}}
    print(json.dumps(res))
    name = "joint_quick" + (f"_{Path(args.data).name}" if args.data else "") + (f"_{args.tag}" if args.tag else "")
    (REPO / "experiments" / "benchmarks" / "results" / f"{name}.json").write_text(json.dumps(res, indent=1) + "\n")
    if rc:
        sys.exit(rc)


if __name__ == "__main__":
    main()
