"""Shallow evaluation of frozen encoders against the log-mel and random-init baselines.

    python experiments/evaluate.py --config experiments/configs/quick.yaml \
        --encoder RUN_DIR/encoder.pt [--baseline NAME=CKPT ...] --out DIR

Writes DIR/results.json and DIR/results.md: a suite table over the tasks (each labelled source
and `evaluation.tasks` entry; README, "Evaluation"), then per task one row per (extractor, classifier) with the
embedding size, mAP, ROC AUC, d' (and accuracy for single-label data), mean +- std over the
protocol's splits, and the clips used and skipped. The protocol follows the data:
synthetic scenes (held-out seeds), a folder with folds (leave-one-fold-out, or grouped
k-fold over recordings when there is one fold), or AudioSet CSVs
(`--set evaluation.train_csv=... --set evaluation.eval_csv=...`). Same as `sslsep evaluate`.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # runnable from a checkout too

from sslsep.evaluation.command import add_evaluate_args, evaluate_command  # noqa: E402
from sslsep.run import main_guard  # noqa: E402


def main() -> None:
    args = add_evaluate_args(argparse.ArgumentParser(description=__doc__,
                                                     formatter_class=argparse.RawDescriptionHelpFormatter)).parse_args()
    evaluate_command(args)


if __name__ == "__main__":
    sys.exit(main_guard(main))
