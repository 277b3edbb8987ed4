"""The evaluation stage: frozen extractors -> embeddings -> shallow classifiers -> tables.

    evaluate_encoders(cfg, {"logmel-stats": "logmel", "random-init": "random",
                            "trained": "runs/pre/encoder.pt"}, run) -> results dict

The run is judged on a suite of labelled tasks (sslsep.evaluation.suite: each labelled source,
each `evaluation.tasks` entry, or the audioset protocol). Per task, every extractor embeds the
same clips in one pass (a clip is decoded once), then every classifier in
``evaluation.classifiers`` is trained on every split of the task's protocol with the same
seeds, so rows differ only by their extractor and classifier. With a run directory the
results land in ``results.json`` and ``results.md`` and one metrics line per task and row:

    results.json  {"tasks": [per-task results: name, protocol, clips, extractors, rows,
                             settings, (runs), embed_s, wall_s],
                   "suite": {"tasks", "not_tasks", "scores", "verdict"},
                   "extractors", "settings", ("runs"), "embed_s", "wall_s"}
"""

from __future__ import annotations

import time

import numpy as np
import torch

from sslsep.config import ExperimentConfig, to_dict
from sslsep.evaluation.classifiers import FitSettings, fit_classifier
from sslsep.evaluation.embeddings import Embedder, EmbeddedSet, embed_in_process, embed_with_ray
from sslsep.evaluation.metrics import score_all
from sslsep.evaluation.protocols import Task, build_task, resolve_protocol, sources, task_features
from sslsep.evaluation.splits import grouped_holdout
from sslsep.evaluation.suite import NotATask, folder_labels_missing, suite_summary, suite_tasks
from sslsep.evaluation.table import markdown, summarise


def _check(cfg: ExperimentConfig, extractors: dict[str, str]) -> None:
    # the config's own rules (classifier kinds, actor counts, protocol keys) held when it was loaded
    if not extractors:
        raise ValueError("no extractors to evaluate")


def embed_sources(cfg: ExperimentConfig, protocol: str, extractors: dict[str, str],
                  embedder: Embedder | None = None) -> tuple[dict[str, EmbeddedSet], list[tuple[str, str, str]]]:
    """Embed each side of the protocol -> ({side: EmbeddedSet}, labels-CSV problems). In process,
    `embedder` (built here when None) is shared by the tasks of a suite: checkpoints load once."""
    from sslsep.data.sources import clip_dataset, folder_items, iter_clips, resolve_source

    ev = cfg.evaluation
    sets, problems = {}, []
    for side, data in sources(cfg, protocol).items():
        if resolve_source(data) == "folder":
            problems += folder_items(data)[1]
        if ev.use_ray:
            from sslsep.cluster import init_ray

            init_ray(cfg.ray)
            sets[side] = embed_with_ray(clip_dataset(data, cfg.audio), extractors, cfg)
        else:
            embedder = embedder or Embedder(extractors, cfg)
            sets[side] = embed_in_process(iter_clips(data, cfg.audio), embedder, ev.embed_batch)
        if not sets[side].clip_ids:
            raise ValueError(f"evaluation: no usable clips on the {side} side ({data.path or 'synthetic'})")
    return sets, problems


def fit_split(task: Task, x: np.ndarray, ev, kind: str, i: int) -> dict:
    """One classifier kind on split i of the task -> that split's scores (a fold row). Pure and
    seeded (evaluation.seed + i): the same row in this process or in a worker process."""
    t0 = time.monotonic()
    split = task.splits[i]
    y = task.targets if task.multilabel else task.label_index
    strata = None if task.multilabel else task.label_index[split.train]
    fit, val = grouped_holdout(task.groups[split.train], ev.val_fraction, ev.seed + i, strata)
    fit, val = split.train[fit], split.train[val]
    settings = FitSettings.from_config(ev, kind, task.multilabel, seed=ev.seed + i)
    model, rep = fit_classifier(x[fit], y[fit], x[val], y[val], len(task.classes), settings)
    if ev.refit and len(val):
        # the validation clips chose the epoch count; now they train too (on small real sets,
        # a fifth of the recordings left out costs more than early stopping gains)
        settings.max_epochs = rep.best_epoch
        model, _ = fit_classifier(x[split.train], y[split.train], None, None, len(task.classes), settings)
    scores = model.predict(x[split.test])  # (N_test, C)
    labels = None if task.multilabel else task.label_index[split.test]
    return {"split": split.name, "n_train": len(split.train), "n_fit": len(fit),
            "n_val": len(val), "n_eval": len(split.test),
            **score_all(task.targets[split.test], scores, labels),
            "epochs": rep.epochs, "best_epoch": rep.best_epoch,
            "val_score": rep.best_val_score, "refit": bool(ev.refit and len(val)),
            "fit_s": round(time.monotonic() - t0, 3)}


PARALLEL_MIN_CLIPS = 200  # below this, a task's fits take less than starting the worker processes


def fit_processes(ev, task: Task, fits: int) -> int:
    """How many processes train the task's classifiers at once (evaluation.fit_jobs; 0 = auto)."""
    if ev.fit_jobs:
        return min(ev.fit_jobs, fits)
    if len(task.rows) < PARALLEL_MIN_CLIPS:
        return 1
    # the CPUs this process is meant to use: all cores in a script, Ray's share in a Ray worker
    # (Ray sets OMP_NUM_THREADS), OMP_NUM_THREADS or torch.set_num_threads where a user set them
    return max(1, min(torch.get_num_threads(), fits))


def run_classifiers(cfg: ExperimentConfig, task: Task, features: dict[str, np.ndarray]) -> dict[str, list[dict]]:
    """{extractor: one row per classifier kind (per-split scores and their mean and std)}. The
    fits are independent and seeded, so they run in `fit_processes` worker processes (joblib)
    and give the same rows as one after another in this process."""
    from joblib import Parallel, delayed

    ev = cfg.evaluation
    jobs = [(ex, kind, i) for ex in features for kind in ev.classifiers for i in range(len(task.splits))]
    n = fit_processes(ev, task, len(jobs))
    folds = Parallel(n_jobs=n)(delayed(fit_split)(task, features[ex], ev, kind, i) for ex, kind, i in jobs)
    by_row: dict[tuple[str, str], list[dict]] = {}
    for (ex, kind, _), fold in zip(jobs, folds):
        by_row.setdefault((ex, kind), []).append(fold)
    out: dict[str, list[dict]] = {ex: [] for ex in features}
    for (ex, kind), rows in by_row.items():
        out[ex].append({"classifier": kind, **summarise(rows),
                        "n_train": float(np.mean([f["n_train"] for f in rows])),
                        "n_eval": float(np.mean([f["n_eval"] for f in rows])), "folds": rows})
    return out


MAP_CLIPS = 2000  # embeddings kept for the report's maps (a seeded subset of larger sets)


def map_subset(n: int, max_clips: int = MAP_CLIPS) -> np.ndarray:
    """Indices of the task rows whose embeddings the report's maps keep: all, or a seeded subset."""
    if n <= max_clips:
        return np.arange(n)
    return np.sort(np.random.default_rng(0).choice(n, max_clips, replace=False))


def save_embeddings(run, task: Task, clip_ids: list[str], keep: np.ndarray, maps: dict[str, np.ndarray]) -> str:
    """RUN_DIR/embeddings.npz: the frozen embeddings of the task rows `keep` (`map_subset`) as the
    classifiers saw them (`maps`: extractor -> (len(keep), D) float16), stored as `x<i>` in the
    order named in `extractors`, with clip ids, targets (N, C) and classes: what the run report
    draws its embedding maps from."""
    import io
    import json

    from sslsep import storage

    ids = np.array(clip_ids, dtype=object)[task.rows][keep]
    buf = io.BytesIO()
    np.savez_compressed(buf, clip_ids=ids.astype(str), targets=task.targets[keep].astype(np.uint8),
                        extractors=np.array(json.dumps(list(maps))), classes=np.array(task.classes, dtype=str),
                        multilabel=np.array(task.multilabel), **{f"x{i}": x for i, x in enumerate(maps.values())})
    uri = run.uri("embeddings.npz")
    storage.write_bytes(uri, buf.getvalue())
    return uri


def evaluate_task(cfg: ExperimentConfig, name: str, extractors: dict[str, str], embedder: Embedder | None,
                  runs: dict | None = None, prefix: str = "") -> tuple[dict, tuple]:
    """One task of the suite -> (its results dict: today's one-protocol layout with `name`,
    what `save_embeddings` needs). Raises NotATask when its data has no labels at all."""
    t0 = time.monotonic()
    why = folder_labels_missing(cfg.data)
    if why:
        raise NotATask(why)
    protocol = resolve_protocol(cfg)
    sets, problems = embed_sources(cfg, protocol, extractors, embedder)
    embed_s = time.monotonic() - t0
    if not any(x for e in sets.values() for x in e.labels):
        raise NotATask(f"none of its {sum(len(e.clip_ids) for e in sets.values())} usable clips has a label")
    task = build_task(cfg, protocol, sets)
    skipped = sorted(s for e in sets.values() for s in e.skipped)
    rows, keep, maps = [], map_subset(len(task.rows)), {}
    features = {ex: task_features(task, sets, ex) for ex in extractors}
    fitted = run_classifiers(cfg, task, features)
    for ex, spec in extractors.items():
        x = features[ex]
        maps[ex] = x[keep].astype(np.float16)  # what the report's maps draw (embeddings.npz)
        for r in fitted[ex]:
            rows.append({"extractor": ex, "source": spec, "dim": int(x.shape[1]), **r,
                         "skipped": len(skipped) + len(task.unlabelled)})
            figures = "  ".join(f"{m} {r[k]:.3f}" for m, k in (("mAP", "mAP"), ("AUC", "auc"), ("acc", "accuracy"))
                                if r[k] is not None)
            print(f"evaluation{prefix}: {ex:>18} {r['classifier']:>6}  {figures}", flush=True)
    total = sum(e.total for e in sets.values())
    result = {
        "name": name,
        "protocol": {"name": protocol, "description": task.description, "multilabel": task.multilabel,
                     "classes": task.classes, "n_splits": len(task.splits),
                     "splits": [s.name for s in task.splits]},
        "clips": {"total": total, "used": len(task.rows),
                  "skipped": [{"name": n, "status": s, "detail": d} for n, s, d in skipped],
                  "unlabelled": task.unlabelled,
                  "label_problems": [{"name": n, "kind": k, "detail": d} for n, k, d in problems]},
        "extractors": dict(extractors),
        "rows": rows,
        "settings": to_dict(cfg.evaluation),
        "embed_s": round(embed_s, 2), "wall_s": round(time.monotonic() - t0, 2),
    }
    if runs:
        result["runs"] = runs
    if result["clips"]["used"] + len(skipped) + len(task.unlabelled) != total:
        raise RuntimeError(f"evaluation: task {name!r}: clip accounting does not add up")  # a bug, never data
    return result, (task, [c for s in sets.values() for c in s.clip_ids], keep, maps)


def evaluate_encoders(cfg: ExperimentConfig, extractors: dict[str, str], run=None, runs: dict | None = None) -> dict:
    """Judge each extractor (row name -> checkpoint URI, or "logmel" / "random") on every task of
    the suite (`suite.suite_tasks`). Returns the results dict (module docstring; also written to
    `run`, a RunDir, with RUN_DIR/embeddings.npz of the first task for the report's maps). `runs`
    ({"seeds": [...]}) says how many pretraining runs the rows come from (the tables state it)."""
    from sslsep.pipeline import verdict

    _check(cfg, extractors)
    t0 = time.monotonic()
    todo, not_tasks = suite_tasks(cfg)
    embedder = None if cfg.evaluation.use_ray else Embedder(extractors, cfg)
    tasks, first_maps = [], None
    for name, tcfg in todo:
        prefix = f" [{name}]" if len(todo) > 1 else ""
        try:
            result, payload = evaluate_task(tcfg, name, extractors, embedder, runs, prefix)
        except NotATask as e:
            print(f"evaluation{prefix}: not a task: {e}", flush=True)
            not_tasks.append({"name": name, "reason": str(e)})
            continue
        tasks.append(result)
        first_maps = first_maps or payload
    if not tasks:
        reasons = "; ".join(f"{t['name']}: {t['reason']}" for t in not_tasks)
        raise ValueError(f"evaluation: no labelled task to judge ({reasons})")
    results = {"tasks": tasks, "suite": suite_summary(tasks, not_tasks), "extractors": dict(extractors),
               "settings": to_dict(cfg.evaluation)}
    if runs:
        results["runs"] = runs
    results["embed_s"] = round(sum(t["embed_s"] for t in tasks), 2)
    results["wall_s"] = round(time.monotonic() - t0, 2)
    results["suite"]["verdict"] = verdict(results)
    if run is not None:
        run.write_json("results.json", results)
        run.write_text("results.md", markdown(results))
        save_embeddings(run, *first_maps)
        for t in tasks:
            for r in t["rows"]:
                run.log_metrics({"stage": "evaluate", "task": t["name"], "extractor": r["extractor"],
                                 "classifier": r["classifier"],
                                 **{k: r[k] for k in ("mAP", "auc", "d_prime", "accuracy")}})
    return results
