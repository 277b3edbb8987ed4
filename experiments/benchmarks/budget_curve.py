"""Linear-probe accuracy against pretraining steps, separated views vs mixture-only.

    python experiments/benchmarks/budget_curve.py RUN_DIR [--classifiers linear] [--tag hour]

RUN_DIR is a joint run (or an ablation arm's seed directory) whose variants kept encoder files
along the way (`pretrain.checkpoint_steps`: RUN_DIR/pretrain/<variant>[/seed-N]/encoders/
step-XXXXXX.pt). Every kept step of the configured model and of mixture-only, from every seed,
is judged by the run's own fixed evaluation (its config.yaml: same classifiers, settings and
splits) in one pass over the clips. Per step: both figures, the paired difference, its
standard error (over seeds when there are several, else over splits) and the splits won.

The points of one run lie on one learning-rate schedule: with a cosine decay an early point is
a model in the middle of its schedule, not one trained for that many steps with its own decay
(a lower bound on what a shorter run would reach). Prints one JSON line; writes
results/budget_curve[_tag].json.
"""

from __future__ import annotations

import argparse
import json
import math
import re
import statistics
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from sslsep.config import load_config, replace  # noqa: E402
from sslsep.evaluation import evaluate_encoders  # noqa: E402

STEP = re.compile(r"step-(\d+)\.pt$")


def kept_encoders(run: Path, variant: str) -> dict[tuple[int, int | None], str]:
    """{(step, seed or None): path} of a variant's kept encoder files."""
    out = {}
    base = run / "pretrain" / variant
    dirs = [(base, None)] + [(d, int(d.name.split("-")[1])) for d in sorted(base.glob("seed-*"))]
    for d, seed in dirs:
        for f in sorted((d / "encoders").glob("step-*.pt")):
            out[(int(STEP.search(f.name)[1]), seed)] = str(f)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("run_dir")
    ap.add_argument("--classifiers", nargs="+", default=["linear"])
    ap.add_argument("--tag", default="")
    args = ap.parse_args()
    run = Path(args.run_dir)
    cfg = load_config(run / "config.yaml")
    cfg = replace(cfg, {"evaluation.classifiers": args.classifiers}, origin="budget_curve")
    ours, mix = kept_encoders(run, "configured"), kept_encoders(run, "mixture-only")
    points = sorted(set(ours) & set(mix), key=lambda k: (k[0], -1 if k[1] is None else k[1]))
    if not points:
        raise SystemExit(f"{run}: no step kept by both configured and mixture-only (pretrain.checkpoint_steps)")
    extractors = {}
    for step, seed in points:
        tag = f"@{step}" + (f" s{seed}" if seed is not None else "")
        extractors[f"configured{tag}"], extractors[f"mixture-only{tag}"] = ours[(step, seed)], mix[(step, seed)]
    results = evaluate_encoders(cfg, extractors)
    from sslsep.evaluation.suite import headline_metric, task_results

    tasks = task_results(results)  # every task of the suite, each on its headline metric
    curve = []
    for clf in args.classifiers:
        for step in sorted({s for s, _ in points}):
            seeds = [sd for s, sd in points if s == step]
            pairs, means = [], []
            for sd in seeds:
                tag = f"@{step}" + (f" s{sd}" if sd is not None else "")
                seed_d = []
                for task in tasks:
                    metric = headline_metric(task)
                    rows = {(r["extractor"], r["classifier"]): r for r in task["rows"]}
                    a, b = rows[(f"configured{tag}", clf)], rows[(f"mixture-only{tag}", clf)]
                    d = [x[metric] - y[metric] for x, y in zip(a["folds"], b["folds"])]
                    pairs.append((a[metric], b[metric], d))
                    seed_d += d
                means.append(statistics.fmean(seed_d))  # the seed's suite mean (pooled over tasks x splits)
            flat = [x for _, _, d in pairs for x in d]
            units = means if len(means) >= 2 else flat
            se = statistics.stdev(units) / math.sqrt(len(units)) if len(units) >= 2 else float("nan")
            curve.append({"classifier": clf, "step": step, "seeds": seeds,
                          "separated": statistics.fmean(a for a, _, _ in pairs),
                          "mixture_only": statistics.fmean(b for _, b, _ in pairs),
                          "diff": statistics.fmean(flat), "se": se, "se_over": "seeds" if len(means) >= 2 else "splits",
                          "splits_won": sum(x > 0 for x in flat), "splits": len(flat)})
    out = {"benchmark": "budget_curve", "run_dir": str(run),
           "metric": {t["name"]: headline_metric(t) for t in tasks},
           "protocol": {t["name"]: t["protocol"]["description"] for t in tasks}, "curve": curve}
    res = REPO / "experiments" / "benchmarks" / "results" / f"budget_curve{'_' + args.tag if args.tag else ''}.json"
    res.write_text(json.dumps(out, indent=1))
    print("| classifier | step | separated | mixture-only | diff | s.e. | splits won |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for c in curve:
        print(f"| {c['classifier']} | {c['step']} | {c['separated']:.3f} | {c['mixture_only']:.3f} | "
              f"{c['diff']:+.3f} | {c['se']:.3f} ({c['se_over']}) | {c['splits_won']}/{c['splits']} |")
    print(json.dumps({"benchmark": "budget_curve", "points": len(curve), "results": str(res)}))


if __name__ == "__main__":
    main()
