"""A sweep over separator checkpoints, view combinations and loss weights (Ray Tune + Optuna).

    python experiments/sweep.py --sweep experiments/sweeps/quick.yaml [--registry RUN_DIR/registry.json]
        [--config BASE.yaml] [--set KEY=VALUE ...] [--out DIR]

Without a registry (and with separator subsets in the space) the base config's separators are
trained first, in the sweep's run directory. Running the same command again resumes the
sweep (Tuner.restore): finished trials are kept. Afterwards RUN_DIR/sweep.html is the sweep
dashboard (`sslsep report sweep RUN_DIR`), `optuna-dashboard sqlite:///RUN_DIR/optuna.db`
shows the study and `tensorboard --logdir RUN_DIR/tune` every trial's curves.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # runnable from a checkout too

from sslsep import pipeline, storage  # noqa: E402
from sslsep.cluster import init_ray  # noqa: E402
from sslsep.config import config_hash, replace  # noqa: E402
from sslsep.run import add_registry_arg, add_run_args, config_from_args, main_guard, start_run  # noqa: E402
from sslsep.tuning.report import write_report  # noqa: E402
from sslsep.tuning.space import load_sweep  # noqa: E402
from sslsep.tuning.sweep import check_sweep_fits, check_trials, run_sweep  # noqa: E402


def main() -> None:
    parser = add_registry_arg(add_run_args(argparse.ArgumentParser(description=__doc__)))
    parser.add_argument("--sweep", required=True, help="sweep file (see experiments/sweeps/)")
    args = parser.parse_args()
    spec = load_sweep(args.sweep)
    args.config = args.config or spec.config or None
    if not args.out:
        cfg = config_from_args(args)
        blob = json.dumps([config_hash(cfg), spec.to_dict() | {"source": ""}], sort_keys=True)
        args.out = storage.join("runs", f"{spec.name}-sweep-{hashlib.sha256(blob.encode()).hexdigest()[:8]}")
    cfg, run = start_run(args, "sweep")
    check_trials(cfg, spec)  # the sweep's values meet the base config before any separator trains
    print(f"sweep {spec.name}: run directory {run.path}", flush=True)
    init_ray(cfg.ray)
    check_sweep_fits(cfg, spec)  # the separation stage and one trial fit the cluster, or exit 2
    if not cfg.separation.registry and any(p.kind == "subsets" for p in spec.params):
        cfg = replace(cfg, {"separation.registry": pipeline.separation_stage(cfg, run)}, origin="sweep")
    summary = run_sweep(spec, cfg, run)
    print(json.dumps({k: v for k, v in summary.items() if k != "errors"}, default=str))
    for e in summary["errors"]:
        print(f"errored trial: {e}")
    print(f"dashboard: {write_report(run.path)}")
    print(f"optuna-dashboard: optuna-dashboard sqlite:///{Path(run.uri('optuna.db')).resolve()}"
          if not storage.is_remote(run.path) else "")
    print(f"tensorboard: tensorboard --logdir {run.uri('tune')}")


if __name__ == "__main__":
    sys.exit(main_guard(main))
