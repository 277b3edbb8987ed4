"""Start-up cost against corpus size: from job start to the separator's first training batch,
and the peak memory of the process tree, for Parquet corpora of 2k, 20k and 200k clips.

    python experiments/benchmarks/startup_scale.py [--sizes 2000 20000 200000] [--keep DIR]

Each corpus is made by writing one set of 64 encoded clips (1 s FLAC) over and over under new
clip ids and recording groups into shards of 256 clips (row groups of 64, as `sslsep data
pack` writes them). For each size a fresh Python process runs what a job runs before its first
training step: the data stage (clips counted from the footers, a hash sample decoded), the
separator's validation set (chosen from the id/group columns, only its clips decoded),
`ray.init`, and the first batch of the separator's training Dataset. Memory: the unique memory
(USS) of that process and every process it started (Ray's GCS, raylet, workers), sampled every
second. The ratio of the largest corpus to the smallest is the figure; 1.2 is the target.
Prints one JSON line and writes results/startup_scale.json.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import platform
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import psutil

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from joint_quick import sample  # noqa: E402

SHARD, GROUP_ROWS = 256, 64


def make_corpus(root: Path, n: int) -> None:
    """`n` clips in shards of SHARD rows under `root` (the pack schema; 64 distinct recordings
    of 1 s, repeated under new ids, 4 clips per recording group)."""
    import pyarrow as pa
    import pyarrow.parquet as pq
    import soundfile as sf

    from sslsep.data.pack import SCHEMA

    rng = np.random.default_rng(0)
    t = np.arange(16000) / 16000
    encoded = []
    for k in range(64):
        x = 0.2 * np.sin(2 * np.pi * (200 + 37 * k) * t) + 0.01 * rng.standard_normal(16000)
        buf = io.BytesIO()
        sf.write(buf, x.astype(np.float32), 16000, format="FLAC")
        encoded.append(buf.getvalue())
    root.mkdir(parents=True, exist_ok=True)
    for s in range(0, n, SHARD):
        ids = range(s, min(n, s + SHARD))
        table = pa.Table.from_pylist([
            {"clip_id": f"clip-{i:07d}", "audio_bytes": encoded[i % 64], "format": "flac",
             "labels": [f"c{i % 10}"], "fold": -1, "group": f"rec-{i // 4:06d}", "status": "ok",
             "source_rate": 16000, "source_channels": 1, "source_frames": 16000} for i in ids], schema=SCHEMA)
        pq.write_table(table, root / f"shard-{s // SHARD:05d}.parquet", compression="zstd",
                       row_group_size=GROUP_ROWS)


def child(shards: str, run_dir: str) -> None:
    """What a job does before its first separator step; prints one JSON line of times."""
    from sslsep.cluster import init_ray
    from sslsep.config import load_config
    from sslsep.pipeline import data_stage
    from sslsep.run import RunDir
    from sslsep.separation.train import cached, train_dataset, validation_set

    t0 = time.monotonic()
    # every size takes the sampled data check (1000 clips), so the smallest is no special case
    cfg = load_config(None, ["audio.clip_seconds=1.0", "separation.batch_clips=8", "ray.num_cpus=2",
                             "data.check_clips=1000"], data=shards)
    run = RunDir(run_dir)
    report = data_stage(cfg, run)
    t_data = time.monotonic() - t0
    val = validation_set(cfg, run.uri("validation.npz"))
    t_val = time.monotonic() - t0
    init_ray(cfg.ray)
    t_ray = time.monotonic() - t0
    ds = train_dataset(cfg, cached(cfg))
    t_plan = time.monotonic() - t0
    batch = next(iter(ds.iter_batches(batch_size=8, batch_format="numpy")))
    t_first = time.monotonic() - t0
    print("CHILD " + json.dumps({"listed": report["listed"], "checked": report["total"],
                                 "val_clips": int(val["audio"].shape[0]), "batch": list(batch["audio"].shape),
                                 "data_stage_s": round(t_data, 2), "validation_done_s": round(t_val, 2),
                                 "ray_up_s": round(t_ray, 2), "dataset_built_s": round(t_plan, 2),
                                 "first_batch_s": round(t_first, 2)}), flush=True)


def measure(shards: Path, tmp: Path) -> dict:
    base = psutil.virtual_memory().used
    proc = subprocess.Popen([sys.executable, __file__, "--child", str(shards), str(tmp / f"run-{shards.name}")],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=REPO)
    peaks: dict = {}
    stop = threading.Event()
    watcher = threading.Thread(target=sample, args=(psutil.Process(proc.pid), stop, peaks, base))
    watcher.start()
    out, _ = proc.communicate()
    stop.set()
    watcher.join()
    lines = [ln for ln in out.splitlines() if ln.startswith("CHILD ")]
    if proc.returncode != 0 or not lines:
        raise RuntimeError(f"start-up run on {shards} failed:\n{out[-3000:]}")
    return {**json.loads(lines[-1][6:]), "peak_uss_gb": round(peaks.get("uss", 0) / 1e9, 3)}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sizes", type=int, nargs="+", default=[2000, 20000, 200000])
    p.add_argument("--keep", default="", help="make the corpora here and keep them (default: a temp dir)")
    p.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        child(*args.child)
        return
    with tempfile.TemporaryDirectory(prefix="sslsep-startup-") as tmp:
        root = Path(args.keep or tmp)
        rows = {}
        for n in args.sizes:
            shards = root / f"corpus-{n}"
            if not shards.exists():
                t = time.monotonic()
                make_corpus(shards, n)
                print(f"corpus of {n} clips written in {time.monotonic() - t:.0f} s", flush=True)
            rows[n] = measure(shards, Path(tmp))
            print(json.dumps({"clips": n, **rows[n]}), flush=True)
    small, big = rows[min(rows)], rows[max(rows)]
    out = {"benchmark": "startup_scale", "sizes": {str(k): v for k, v in rows.items()},
           "first_batch_ratio": round(big["first_batch_s"] / small["first_batch_s"], 2),
           "memory_ratio": round(big["peak_uss_gb"] / small["peak_uss_gb"], 2), "target_ratio": 1.2,
           "machine": f"{platform.machine()}, {os.cpu_count()} CPUs", "command": " ".join(sys.argv)}
    (Path(__file__).parent / "results").mkdir(exist_ok=True)
    (Path(__file__).parent / "results" / "startup_scale.json").write_text(json.dumps(out, indent=1) + "\n")
    print(json.dumps(out))


if __name__ == "__main__":
    main()
