"""Levers of pretraining on one budget: separated views against mixture-only, arm by arm.

    python experiments/benchmarks/ablation.py --data ../shared/data/urbansound8k-fold1 \
        --registry RUN_DIR/registry.json --arms base cosine bf16-steps gain mixback --seeds 0 1

Every arm is a set of config values on top of the preset (`--config`, quick by default) and
`--set`s common to all arms. For each arm and seed the configured model (separated views)
and the mixture-only control are pretrained on the same separators (`--registry`: trained
once, so the arms differ only in pretraining) with the same steps, batch and views, then
judged by the fixed evaluation of the preset (same classifiers, settings and splits): the
linear probe by default (`--classifiers`). The paired difference (separated - mixture-only)
over every split of every seed gives a mean, a standard error over those pairs and the splits
won; each seed's own difference is listed too (with several seeds, their spread is what the
joint job's verdict uses).

No arm looks at labels during pretraining: labels enter only the evaluation. Prints one JSON
line per arm as it finishes and the whole table at the end; writes results/ablation[_tag].json.
Arms run one after the other in one Ray session (never two benchmarks at once on 2 cores).
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from sslsep import pipeline  # noqa: E402
from sslsep.cluster import check_fits, init_ray  # noqa: E402
from sslsep.config import dump_yaml, load_config, replace  # noqa: E402
from sslsep.run import RunDir  # noqa: E402

# name -> values on top of the preset; each states the lever it changes
ARMS: dict[str, dict] = {
    "base": {},
    "cosine": {"pretrain.lr_schedule": "cosine", "pretrain.warmup_steps": 20},
    "bf16": {"pretrain.precision": "bf16"},
    "temp0.2": {"pretrain.temperature": 0.2},
    "temp0.05": {"pretrain.temperature": 0.05},
    "batch32": {"pretrain.batch_clips": 32},
    "crop1": {"augment.crop_seconds": 1.0},
    "crop3": {"augment.crop_seconds": 3.0},
    "views3": {"augment.views_per_clip": 3},
    "gain": {"augment.gain_db": [-6.0, 6.0]},
    "mixback": {"augment.mix_prob": 0.5, "augment.mix_db": [-20.0, -10.0]},
    "gain+mixback": {"augment.gain_db": [-6.0, 6.0], "augment.mix_prob": 0.5},
    "lr3e-3": {"pretrain.lr": 3e-3},
    # the quick preset's convergence states (separation.checkpoint_steps 175, 350 + the last, 525)
    "states-early": {"augment.separators": ["175"]},
    "states-middle": {"augment.separators": ["350"]},
    "states-late": {"augment.separators": ["525"]},
    "channel-only-kinds": {"augment.kinds": ["channel", "sum"]},
    "anchor-mixture": {"augment.anchor_mixture": True},
}


def parse_value(text: str):
    import yaml

    return yaml.safe_load(text)


def paired(rows: list[tuple[float, float]]) -> dict:
    d = [a - b for a, b in rows]
    se = statistics.stdev(d) / math.sqrt(len(d)) if len(d) >= 2 else float("nan")
    return {"diff": statistics.fmean(d), "se": se, "won": sum(x > 0 for x in d), "n": len(d)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", default=str(REPO / "experiments" / "configs" / "quick.yaml"))
    ap.add_argument("--data", default="")
    ap.add_argument("--registry", required=True, help="registry.json of trained separators (shared by every arm)")
    ap.add_argument("--arms", nargs="+", default=["base"], help=f"from {list(ARMS)}, or name:key=value,key=value")
    ap.add_argument("--seeds", nargs="+", type=int, default=[0])
    ap.add_argument("--set", dest="sets", action="append", default=[], help="dotted.key=value for every arm")
    ap.add_argument("--classifiers", nargs="+", default=["linear"])
    ap.add_argument("--out", default="/tmp/sslsep-ablation")
    ap.add_argument("--tag", default="")
    args = ap.parse_args()

    base = load_config(args.config, args.sets, args.data or None)
    base = replace(base, {"separation.registry": str(Path(args.registry).resolve()) if "://" not in args.registry
                          else args.registry, "joint.controls": ["mixture-only"],
                          "evaluation.classifiers": args.classifiers}, origin="ablation")
    init_ray(base.ray)
    check_fits(base, ["pretrain"])
    metrics: dict[str, str] = {}  # task -> its headline metric
    table = []
    for arm in args.arms:
        if ":" in arm:
            name, text = arm.split(":", 1)
            values = {k: parse_value(v) for k, v in (kv.split("=", 1) for kv in text.split(","))}
        else:
            name, values = arm, ARMS[arm]
        pairs, per_seed, t0 = {}, [], time.monotonic()
        for seed in args.seeds:
            cfg = replace(base, {**values, "seed": seed}, origin=f"arm {name}")
            run = RunDir(str(Path(args.out) / name / f"seed-{seed}"))
            run.write_text("config.yaml", dump_yaml(cfg))  # what budget_curve.py reads
            encoders = pipeline.pretrain_stage(cfg, run)
            from sslsep.evaluation import evaluate_encoders

            if run.exists("results.json"):
                results = run.read_json("results.json")
            else:
                results = evaluate_encoders(cfg, {n: e["encoder"] for n, e in encoders.items()}, run)
            from sslsep.evaluation.suite import headline_metric, task_results

            for task in task_results(results):  # every task of the suite, each on its headline metric
                metric = metrics[task["name"]] = headline_metric(task)
                rows = {(r["extractor"], r["classifier"]): r for r in task["rows"]}
                for clf in args.classifiers:
                    ours, mix = rows[(pipeline.MAIN, clf)], rows[("mixture-only", clf)]
                    pairs.setdefault(clf, []).extend((a[metric], b[metric])
                                                     for a, b in zip(ours["folds"], mix["folds"]))
                    per_seed.append({"seed": seed, "task": task["name"], "classifier": clf,
                                     "separated": ours[metric], "mixture_only": mix[metric]})
        line = {"arm": name, "values": values, "metric": dict(metrics), "seeds": args.seeds, "wall_s":
                round(time.monotonic() - t0, 1), "per_seed": per_seed}
        for clf, pr in pairs.items():
            # each seed's suite mean difference (mean over tasks)
            seed_diffs = [statistics.fmean(p["separated"] - p["mixture_only"] for p in per_seed
                                           if p["classifier"] == clf and p["seed"] == sd) for sd in args.seeds]
            line[clf] = {"separated": statistics.fmean(a for a, _ in pr),
                         "mixture_only": statistics.fmean(b for _, b in pr), **paired(pr),
                         # the verdict's estimate: runs are the independent units (pipeline.verdict)
                         "seed_diffs": seed_diffs, "se_seeds": statistics.stdev(seed_diffs) / math.sqrt(len(seed_diffs))
                         if len(seed_diffs) >= 2 else float("nan")}
        print(json.dumps(line), flush=True)
        table.append(line)
    out = {"benchmark": "ablation", "config": args.config, "data": args.data, "registry": args.registry,
           "sets": args.sets, "seeds": args.seeds, "arms": table,
           "machine": {"cpus": __import__("os").cpu_count(), "platform": platform.platform()}}
    res = REPO / "experiments" / "benchmarks" / "results" / f"ablation{'_' + args.tag if args.tag else ''}.json"
    res.write_text(json.dumps(out, indent=1))
    print("\n| arm | classifier | separated | mixture-only | diff | s.e. (seed x split pairs) | per-seed diffs "
          "| splits won |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    for line in table:
        for clf in args.classifiers:
            r = line[clf]
            seeds = ", ".join(f"{d:+.3f}" for d in r["seed_diffs"])
            print(f"| {line['arm']} | {clf} | {r['separated']:.3f} | {r['mixture_only']:.3f} | {r['diff']:+.3f} | "
                  f"{r['se']:.3f} | {seeds} | {r['won']}/{r['n']} |")
    print(json.dumps({"benchmark": "ablation", "arms": len(table), "results": str(res)}))


if __name__ == "__main__":
    main()
