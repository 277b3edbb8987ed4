"""Run the separation augmentation service standalone and write the views to Parquet.

    python experiments/augment.py --config experiments/configs/quick.yaml \
        --registry RUN_DIR/registry.json --out DIR [--data PATH_OR_URI]

DIR/views/*.parquet holds one row per clip: clip_id, views (V x crop samples), view_kind,
view_separator, view_channels, labels. DIR/augment_report.json counts clips in and out.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # runnable from a checkout too

from sslsep import storage  # noqa: E402
from sslsep.cluster import check_fits, init_ray  # noqa: E402
from sslsep.run import add_registry_arg, add_run_args, main_guard, start_run  # noqa: E402
from sslsep.views.service import view_dataset  # noqa: E402


def main() -> None:
    args = add_registry_arg(add_run_args(argparse.ArgumentParser(description=__doc__))).parse_args()
    cfg, run = start_run(args, "augment")
    if not cfg.separation.registry:
        raise ValueError("no separator registry: pass --registry RUN_DIR/registry.json")
    init_ray(cfg.ray)
    check_fits(cfg, ["augment"])
    t0 = time.monotonic()
    ds = view_dataset(cfg)
    out = run.uri("views")
    if storage.is_remote(out):
        fs, path = storage.pyarrow_fs(out)
        ds.write_parquet(path, filesystem=fs)
    else:
        ds.write_parquet(str(Path(out).resolve()))
    import ray.data

    written = ray.data.read_parquet(out if storage.is_remote(out) else str(Path(out).resolve()),
                                    **({"filesystem": storage.pyarrow_fs(out)[0]} if storage.is_remote(out) else {}))
    clips = written.count()
    wall = time.monotonic() - t0
    report = {"clips": clips, "views_per_clip": cfg.augment.views_per_clip, "wall_s": round(wall, 1),
              "views_per_s": round(clips * cfg.augment.views_per_clip / wall, 1), "path": out}
    run.write_json("augment_report.json", report)
    run.log_metrics({"stage": "augment", **report})
    print(report)


if __name__ == "__main__":
    sys.exit(main_guard(main))
