"""Train MixIT separators and keep several convergence states.

    python experiments/separator.py --config experiments/configs/quick.yaml --out RUN_DIR
    python experiments/separator.py --data ../shared/data/urbansound8k-fold1 --set separation.max_minutes=15

Writes RUN_DIR/separators/step-XXXXXX.pt (each loads alone with
sslsep.separation.load_separator), RUN_DIR/registry.json and metrics.jsonl. Running the same
config again resumes from the latest checkpoint; a finished run is reused.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # runnable from a checkout too

from sslsep.cluster import check_fits, init_ray  # noqa: E402
from sslsep.run import add_run_args, main_guard, start_run  # noqa: E402
from sslsep.separation.train import train_separators  # noqa: E402


def main() -> None:
    args = add_run_args(argparse.ArgumentParser(description=__doc__)).parse_args()
    cfg, run = start_run(args, "separator")
    print(f"run directory: {run.path}")
    if cfg.separation.use_ray:
        init_ray(cfg.ray)
        check_fits(cfg, ["separation"])
    reg = train_separators(cfg, run)
    for e in reg["separators"]:
        m = e["metrics"]
        print(json.dumps({"name": e["name"], "step": e["step"],
                          **{k: round(v, 2) for k, v in m.items() if k.startswith("val_")}}))


if __name__ == "__main__":
    sys.exit(main_guard(main))
