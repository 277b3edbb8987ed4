"""Contrastive pretraining fed live by the separation augmentation service.

    python experiments/pretrain.py --config experiments/configs/quick.yaml \
        --registry RUN_DIR/registry.json --out DIR

Writes DIR/encoder.pt (loads alone with sslsep.contrastive.load_encoder), the encoder at each
`pretrain.checkpoint_steps` under DIR/encoders/, and metrics.jsonl (each loss part,
coincidence accuracy, views/s, share of step time spent waiting on data). Controls from the
paper are config: `--set augment.kinds=[mixture]` (mixture-only, COLA-style),
`augment.kinds=[channel]`, `augment.kinds=[channel] --set augment.anchor_mixture=true`
(mixture <-> channel), `pretrain.w_coinc=0` / `pretrain.w_sim=0` (one objective).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # runnable from a checkout too

from sslsep.cluster import check_fits, init_ray  # noqa: E402
from sslsep.contrastive.train import pretrain  # noqa: E402
from sslsep.run import add_registry_arg, add_run_args, main_guard, start_run  # noqa: E402


def main() -> None:
    args = add_registry_arg(add_run_args(argparse.ArgumentParser(description=__doc__))).parse_args()
    cfg, run = start_run(args, "pretrain")
    if not cfg.separation.registry and cfg.augment.kinds != ["mixture"]:
        raise ValueError("no separator registry: pass --registry RUN_DIR/registry.json "
                         "(or --set augment.kinds=[mixture] for the mixture-only control)")
    if cfg.pretrain.use_ray:
        init_ray(cfg.ray)
        check_fits(cfg, ["pretrain"])
    print(f"encoder: {pretrain(cfg, run)}")


if __name__ == "__main__":
    sys.exit(main_guard(main))
