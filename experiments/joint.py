"""The whole pipeline as one job: `python experiments/joint.py` (laptop, synthetic scenes)
or `ray job submit --working-dir . -- python experiments/joint.py --config ...`.

Stages (sslsep.pipeline): data -> separation (or `separation.registry`) -> pretraining of the
configured model and of each control in `joint.controls`, on the same budget -> shallow
evaluation and RUN_DIR/results.md, with a verdict: did separated views beat mixture-only
views? -> RUN_DIR/report.html, the page to open in a browser (`sslsep report run`). Every
artifact lives under one run directory (local or s3://); running the same
config again resumes where it stopped.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # runnable from a checkout too

from sslsep import pipeline  # noqa: E402
from sslsep.cluster import check_fits, init_ray  # noqa: E402
from sslsep.run import add_run_args, main_guard, start_run  # noqa: E402


QUICK = Path(__file__).resolve().parent / "configs" / "quick.yaml"


def write_report(cfg, run) -> None:
    """RUN_DIR/report.html (sslsep.reporting); a failure to draw it never costs the run's results."""
    from sslsep.reporting.run_report import write_run_report

    try:
        page = write_run_report(run.path, clips=cfg.joint.report_clips, method=cfg.joint.report_map)[0]
        print(f"report: {page} (open it in a browser)", flush=True)
    except Exception as e:  # noqa: BLE001 - the results are written; say why the page is not
        print(f"report: not written ({type(e).__name__}: {e}); try `sslsep report run {run.path}`",
              file=sys.stderr, flush=True)


def main() -> None:
    parser = add_run_args(argparse.ArgumentParser(description=__doc__))
    args = parser.parse_args()
    args.config = args.config or str(QUICK)  # no arguments: the laptop preset
    cfg, run = start_run(args, "joint")
    t0 = time.monotonic()
    print(f"run directory: {run.path}", flush=True)
    pipeline.variants(cfg)  # every control's config is checked before any stage runs
    init_ray(cfg.ray)
    check_fits(cfg, ["joint"])  # every stage it will run fits the cluster, or exit 2
    pipeline.data_stage(cfg, run)
    pipeline.separation_stage(cfg, run)
    encoders = pipeline.pretrain_stage(cfg, run)
    if cfg.joint.evaluate:
        from sslsep.evaluation.table import markdown

        results = pipeline.evaluation_stage(cfg, run, encoders)
        print(markdown(results))
        print(pipeline.verdict(results))
        run.write_text("verdict.txt", pipeline.verdict(results) + "\n")
    write_report(cfg, run)
    print(f"done in {time.monotonic() - t0:.0f} s; everything is under {run.path}")


if __name__ == "__main__":
    sys.exit(main_guard(main))
