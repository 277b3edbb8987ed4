"""The results tables: fold scores -> mean and std rows -> Markdown for people (a suite table over
the tasks, the verdict, then a table per task)."""

from __future__ import annotations

import math

import numpy as np

METRICS = ("mAP", "auc", "d_prime", "accuracy")
HEADERS = {"mAP": "mAP", "auc": "AUC", "d_prime": "d'", "accuracy": "accuracy"}


def mean_std(values) -> tuple[float | None, float | None]:
    """Mean and population std over folds, ignoring nan/None; (None, None) when nothing is left."""
    vals = [float(v) for v in values if v is not None and not math.isnan(float(v))]
    if not vals:
        return None, None
    return float(np.mean(vals)), float(np.std(vals))


def summarise(folds: list[dict]) -> dict:
    """Per-fold dicts (with the METRICS keys) -> {metric: mean, metric_std: std}."""
    out = {}
    for m in METRICS:
        out[m], out[f"{m}_std"] = mean_std([f.get(m) for f in folds])
    return out


def _cell(mean, std, digits: int = 3) -> str:
    if mean is None:
        return "—"
    return f"{mean:.{digits}f}" + (f" ± {std:.{digits}f}" if std else "")


def markdown(results: dict) -> str:
    """results.json's dict -> results.md: the suite table and verdict, then each task's table
    (one task's dict, or a results.json written before the suite, -> that task's table alone)."""
    if "tasks" not in results:
        return task_markdown(results)
    lines = ["# Shallow evaluation", "", *suite_markdown(results), ""]
    for t in results["tasks"]:
        lines.append(task_markdown(t, f"## Task {t['name']}"))
    return "\n".join(lines)


def suite_markdown(results: dict) -> list[str]:
    """The suite table (extractor, classifier, each task's headline metric, mean over tasks),
    the tasks left out, and the verdict lines."""
    suite, names = results["suite"], [t["name"] for t in results["tasks"]]
    metric = {t["name"]: t["metric"] for t in suite["tasks"]}
    seeds = results.get("runs", {}).get("seeds", [])
    cols = ["extractor", "classifier"] + [f"{n} ({metric[n]})" for n in names] + ["mean over tasks"]
    lines = [f"Suite: {len(names)} task(s), each with its headline metric (accuracy single-label, mAP "
             "multi-label; mean over its splits); the last column is the mean over tasks."
             + (f" Runs: {len(seeds)} pretraining seeds, a row per variant and seed." if seeds else ""), "",
             "| " + " | ".join(cols) + " |", "|" + " --- |" * len(cols)]
    for s in suite["scores"]:
        cells = [s["extractor"], s["classifier"]] + [_cell(s["per_task"].get(n), None) for n in names]
        lines.append("| " + " | ".join(cells + [_cell(s["mean"], None)]) + " |")
    if suite.get("not_tasks"):
        lines += ["", "Not tasks:", ""] + [f"- `{t['name']}`: {t['reason']}" for t in suite["not_tasks"]]
    if suite.get("verdict"):
        lines += ["", "Verdict:", "", "```", suite["verdict"], "```"]
    return lines


def task_markdown(results: dict, heading: str = "# Shallow evaluation") -> str:
    """One task's results dict -> its section: protocol, splits, accounting, table, skips."""
    p, clips = results["protocol"], results["clips"]
    seeds = results.get("runs", {}).get("seeds", [])
    single = not p["multilabel"]
    lines = [heading, "",
             f"Protocol: {p['description']}.", "",
             f"Splits: {p['n_splits']} ({', '.join(p['splits'])}); mean ± std (population) over them. "
             f"Early stopping on the validation {results['settings']['early_stop']} of "
             f"{results['settings']['val_fraction']:.0%} of each training side's recording groups"
             + ("; then refit on the whole training side for that many epochs" if results["settings"]["refit"]
                else "") + ". Embeddings are standardised with training statistics.", "",
             *([f"Runs: {len(seeds)} pretraining seeds ({', '.join(map(str, seeds))}); a row per variant "
                "and seed, `[seed N]`.", ""] if seeds else []),
             f"Clips: {clips['total']} in = {clips['used']} evaluated + {len(clips['skipped'])} skipped "
             f"(unusable audio) + {len(clips['unlabelled'])} unlabelled.", ""]
    cols = ["extractor", "classifier", "dim", "mAP", "AUC", "d'"] + (["accuracy"] if single else [])
    cols += ["n train", "n eval", "skipped"]
    lines += ["| " + " | ".join(cols) + " |", "|" + " --- |" * len(cols)]
    for r in results["rows"]:
        cells = [r["extractor"], r["classifier"], str(r["dim"])]
        for m in ("mAP", "auc", "d_prime") + (("accuracy",) if single else ()):
            cells.append(_cell(r[m], r[f"{m}_std"], 2 if m == "d_prime" else 3))
        cells += [f"{r['n_train']:g}", f"{r['n_eval']:g}", str(r["skipped"])]
        lines.append("| " + " | ".join(cells) + " |")
    lines.append("")
    lines.append("n train / n eval: clips per split (mean over splits); n train includes the "
                 "early-stopping validation clips.")
    if clips["skipped"] or clips["unlabelled"]:
        lines += ["", "Skipped clips:", ""]
        lines += [f"- `{s['name']}`: {s['status']}" + (f" ({s['detail']})" if s["detail"] else "")
                  for s in clips["skipped"]]
        lines += [f"- `{name}`: unlabelled" for name in clips["unlabelled"]]
    if clips.get("label_problems"):
        lines += ["", "Labels CSV rows without a usable clip:", ""]
        lines += [f"- `{q['name']}`: {q['kind']} ({q['detail']})" for q in clips["label_problems"]]
    lines += ["", "Extractors:", ""]
    lines += [f"- `{name}`: {src}" for name, src in results["extractors"].items()]
    return "\n".join(lines) + "\n"
