"""The whole pipeline as one job: `python experiments/joint.py` (laptop, synthetic scenes)
or `ray job submit --working-dir . -- python experiments/joint.py --config ...`.

Stages run in order, each writing under the run directory; a finished stage is skipped
when the same config runs again. Stages so far: data (stream every clip through Ray Data,
decode, account for each one) and separation (MixIT separators at several convergence
states, RUN_DIR/registry.json).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # runnable from a checkout too

from sslsep.cluster import init_ray  # noqa: E402
from sslsep.data.sources import clip_dataset, folder_items, resolve_source  # noqa: E402
from sslsep.audio import DecodeReport  # noqa: E402
from sslsep.progress import Progress  # noqa: E402
from sslsep.run import add_run_args, main_guard, start_run  # noqa: E402
from sslsep.separation.train import train_separators  # noqa: E402


def data_stage(cfg, run) -> dict:
    """Stream the configured source through Ray Data once and account for every clip."""
    if run.exists("data_report.json"):
        print(f"data: done already ({run.uri('data_report.json')})")
        return run.read_json("data_report.json")
    kind = resolve_source(cfg.data)
    problems = folder_items(cfg.data)[1] if kind == "folder" else []
    ds = clip_dataset(cfg.data, cfg.audio)
    report = DecodeReport()
    for problem in problems:
        report.add_label_problem(*problem)
    t0, seconds = time.monotonic(), 0.0
    bar = Progress(cfg.data.synth.num_clips if kind == "synthetic" else 0, f"data ({kind})")
    for batch in ds.iter_batches(batch_size=64, batch_format="numpy"):
        for cid, status, detail in zip(batch["clip_id"], batch["status"], batch["detail"]):
            report.add(str(cid), str(status), str(detail))
        seconds += batch["audio"].shape[0] * batch["audio"].shape[1] / cfg.audio.sample_rate
        bar.total = max(bar.total, report.total)
        bar.update(len(batch["clip_id"]))
    wall = time.monotonic() - t0
    out = {"source": kind, "path": cfg.data.path, "wall_s": round(wall, 2),
           "clips_per_s": round(report.total / wall, 2), "audio_hours": round(seconds / 3600, 3),
           **report.to_dict()}
    run.write_json("data_report.json", out)
    run.log_metrics({"stage": "data", "clips": report.total, "kept": report.kept,
                     "skipped": len(report.skipped), "clips_per_s": out["clips_per_s"]})
    print(report.summary())
    return out


def main() -> None:
    parser = add_run_args(argparse.ArgumentParser(description=__doc__))
    args = parser.parse_args()
    cfg, run = start_run(args, "joint")
    print(f"run directory: {run.path}")
    init_ray(cfg.ray)
    data_stage(cfg, run)
    reg = train_separators(cfg, run)
    print(f"separation: {len(reg['separators'])} convergence states in {run.uri('registry.json')}")


if __name__ == "__main__":
    sys.exit(main_guard(main))
