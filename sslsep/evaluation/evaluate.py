"""The evaluation stage: frozen extractors -> embeddings -> shallow classifiers -> table.

    evaluate_encoders(cfg, {"logmel-stats": "logmel", "random-init": "random",
                            "trained": "runs/pre/encoder.pt"}, run) -> results dict

Every extractor embeds the same clips in one pass (a clip is decoded once), then every
classifier in ``evaluation.classifiers`` is trained on every split of the protocol with the
same seeds, so rows differ only by their extractor and classifier. With a run directory the
results land in ``results.json`` and ``results.md`` and one metrics line per row.
"""

from __future__ import annotations

import time

import numpy as np

from sslsep.config import ExperimentConfig, to_dict
from sslsep.evaluation.classifiers import FitSettings, fit_classifier
from sslsep.evaluation.embeddings import Embedder, EmbeddedSet, embed_in_process, embed_with_ray
from sslsep.evaluation.metrics import score_all
from sslsep.evaluation.protocols import Task, build_task, resolve_protocol, sources, task_features
from sslsep.evaluation.splits import grouped_holdout
from sslsep.evaluation.table import markdown, summarise


def _check(cfg: ExperimentConfig, extractors: dict[str, str]) -> None:
    # the config's own rules (classifier kinds, actor counts, protocol keys) held when it was loaded
    if not extractors:
        raise ValueError("no extractors to evaluate")


def embed_sources(cfg: ExperimentConfig, protocol: str, extractors: dict[str, str]
                  ) -> tuple[dict[str, EmbeddedSet], list[tuple[str, str, str]]]:
    """Embed each side of the protocol -> ({side: EmbeddedSet}, labels-CSV problems)."""
    from sslsep.data.sources import clip_dataset, folder_items, iter_clips, resolve_source

    ev = cfg.evaluation
    sets, problems = {}, []
    embedder = None
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


def run_classifiers(cfg: ExperimentConfig, task: Task, x: np.ndarray) -> list[dict]:
    """One row per classifier kind: per-split scores and their mean and std."""
    ev = cfg.evaluation
    y = task.targets if task.multilabel else task.label_index
    out = []
    for kind in ev.classifiers:
        folds = []
        for i, split in enumerate(task.splits):
            t0 = time.monotonic()
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
            folds.append({"split": split.name, "n_train": len(split.train), "n_fit": len(fit),
                          "n_val": len(val), "n_eval": len(split.test),
                          **score_all(task.targets[split.test], scores, labels),
                          "epochs": rep.epochs, "best_epoch": rep.best_epoch,
                          "val_score": rep.best_val_score, "refit": bool(ev.refit and len(val)),
                          "fit_s": round(time.monotonic() - t0, 3)})
        out.append({"classifier": kind, **summarise(folds),
                    "n_train": float(np.mean([f["n_train"] for f in folds])),
                    "n_eval": float(np.mean([f["n_eval"] for f in folds])), "folds": folds})
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


def evaluate_encoders(cfg: ExperimentConfig, extractors: dict[str, str], run=None, runs: dict | None = None) -> dict:
    """Judge each extractor (row name -> checkpoint URI, or "logmel" / "random") under the
    configured protocol. Returns the results dict (also written to `run`, a RunDir). `runs`
    ({"seeds": [...]}) says how many pretraining runs the rows come from (the table states it)."""
    _check(cfg, extractors)
    t0 = time.monotonic()
    protocol = resolve_protocol(cfg)
    sets, problems = embed_sources(cfg, protocol, extractors)
    embed_s = time.monotonic() - t0
    task = build_task(cfg, protocol, sets)
    skipped = sorted(s for e in sets.values() for s in e.skipped)
    rows, keep, maps = [], map_subset(len(task.rows)), {}
    for name, spec in extractors.items():
        x = task_features(task, sets, name)
        maps[name] = x[keep].astype(np.float16)  # what the report's maps draw (embeddings.npz)
        for r in run_classifiers(cfg, task, x):
            rows.append({"extractor": name, "source": spec, "dim": int(x.shape[1]), **r,
                         "skipped": len(skipped) + len(task.unlabelled)})
            figures = "  ".join(f"{m} {r[k]:.3f}" for m, k in (("mAP", "mAP"), ("AUC", "auc"), ("acc", "accuracy"))
                                if r[k] is not None)
            print(f"evaluation: {name:>18} {r['classifier']:>6}  {figures}", flush=True)
    total = sum(e.total for e in sets.values())
    results = {
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
        results["runs"] = runs
    if results["clips"]["used"] + len(skipped) + len(task.unlabelled) != total:
        raise RuntimeError("evaluation: clip accounting does not add up")  # a bug, never data
    if run is not None:
        run.write_json("results.json", results)
        run.write_text("results.md", markdown(results))
        save_embeddings(run, task, [c for s in sets.values() for c in s.clip_ids], keep, maps)
        for r in rows:
            run.log_metrics({"stage": "evaluate", "extractor": r["extractor"], "classifier": r["classifier"],
                             **{k: r[k] for k in ("mAP", "auc", "d_prime", "accuracy")}})
    return results

