"""The evaluation suite: the labelled tasks a run is judged on, and the summary over them.

    suite_tasks(cfg) -> ([(task name, that task's ExperimentConfig)], [skipped entries])

* With the audioset protocol (``evaluation.train_csv`` and ``eval_csv``, or ``protocol:
  audioset``) the suite is that one task, named ``audioset``.
* Otherwise, with ``evaluation.source_tasks`` (the default), each source of the run
  (``config.source_entries``: ``data.path``, or each entry of ``data.sources``) is a task named
  like the source; its config is the run's with ``data`` replaced by that one source, so
  ``protocols.resolve_protocol`` picks synthetic for the synthetic scenes and folds for a
  labelled folder (its own folds left out one by one, or grouped k-fold over one fold). A
  forced ``evaluation.protocol`` applies to these source tasks, as it did to the one source.
* Then each entry of ``evaluation.tasks``, named by its ``name`` (default: the folder's name);
  its protocol always follows from its own data. An entry with the same data (path and labels
  CSV) as a source task is the same task: it is skipped and listed as such; an entry that
  only shares a source task's name is an error naming ``evaluation.tasks[i].name``.

A task whose data turns out to have no labels at all is not an error: it is listed under
``suite.not_tasks`` of results.json with the reason (:class:`NotATask`); only a suite left with
no task at all is an error.
"""

from __future__ import annotations

import copy

from sslsep.config import DataConfig, ExperimentConfig, one_source, source_entries, source_name

AUDIOSET = "audioset"  # the task name of the audioset protocol


class NotATask(ValueError):
    """A source of the suite without labels: listed in results (suite.not_tasks), not judged."""


def audioset_protocol(cfg: ExperimentConfig) -> bool:
    ev = cfg.evaluation
    return ev.protocol == "audioset" or (ev.protocol == "auto" and bool(ev.train_csv and ev.eval_csv))


def with_data(cfg: ExperimentConfig, data: DataConfig, protocol: str | None = None) -> ExperimentConfig:
    """`cfg` with `data` replaced (and `evaluation.protocol`, when given): a task's config."""
    out = copy.deepcopy(cfg)
    out.data = data
    if protocol is not None:
        out.evaluation.protocol = protocol
    return out


def _same_data(a: DataConfig, b: DataConfig) -> bool:
    return (a.path, a.labels_csv, a.max_clips) == (b.path, b.labels_csv, b.max_clips) and \
        (a.source == b.source or "auto" in (a.source, b.source))


def suite_tasks(cfg: ExperimentConfig) -> tuple[list[tuple[str, ExperimentConfig]], list[dict]]:
    """The suite's tasks in order -> ([(name, config)], [{"name", "reason"} of skipped entries]).
    Pure: reads no data (whether a task has labels is found when it is read, `NotATask`)."""
    ev = cfg.evaluation
    if audioset_protocol(cfg):
        return [(AUDIOSET, cfg)], []
    tasks: list[tuple[str, ExperimentConfig]] = []
    if ev.source_tasks:
        tasks += [(name, with_data(cfg, data)) for name, _weight, data in source_entries(cfg.data)]
    skipped = []
    for i, entry in enumerate(ev.tasks):
        name = entry.name or source_name(entry.path, entry.kind)
        data = one_source(cfg.data, entry)
        same = next((n for n, c in tasks if _same_data(c.data, data)), None)
        if same is not None:
            skipped.append({"name": name, "reason": f"evaluation.tasks[{i}] is the same data as the task {same!r}"})
            continue
        if any(n == name for n, _ in tasks):
            raise ValueError(f"key 'evaluation.tasks[{i}].name': {name!r} is already the name of a source task "
                             "(data.path / data.sources); give the entry another 'name'")
        tasks.append((name, with_data(cfg, data, protocol="auto")))
    if not tasks:
        raise ValueError("evaluation: no task to judge (evaluation.source_tasks is false and evaluation.tasks "
                         "is empty)")
    return tasks, skipped


def folder_labels_missing(data: DataConfig) -> str | None:
    """Why a folder source is no task (no clip with a label), from its listing alone; None when
    it has labels, or is not a folder (shards and scenes are checked once read)."""
    from sslsep.data.sources import folder_items, resolve_source

    if resolve_source(data) != "folder":
        return None
    items, _problems, _classes = folder_items(data)
    if any(item.labels for item in items):
        return None
    return f"none of its {len(items)} clips has a label (no labels CSV, or one that names none of them)"


# ----------------------------------------------------------------------------- results


def headline_metric(task: dict) -> str:
    """A task result's headline metric: mAP (multi-label) or accuracy (single-label)."""
    return "mAP" if task["protocol"]["multilabel"] else "accuracy"


def task_results(results: dict) -> list[dict]:
    """The per-task result dicts of results.json; a results.json written before the suite (one
    protocol at the top level) reads as one task named after its protocol."""
    if "tasks" in results:
        return results["tasks"]
    return [{**results, "name": results.get("name") or results.get("protocol", {}).get("name", "task")}]


def suite_scores(tasks: list[dict]) -> list[dict]:
    """Each extractor x classifier (in table order): its headline figure per task, and the mean
    over the tasks that report it -> [{"extractor", "classifier", "per_task": {task: value},
    "mean", "n_tasks"}]."""
    out: dict[tuple[str, str], dict] = {}
    for t in tasks:
        metric = headline_metric(t)
        for r in t["rows"]:
            entry = out.setdefault((r["extractor"], r["classifier"]),
                                   {"extractor": r["extractor"], "classifier": r["classifier"], "per_task": {}})
            entry["per_task"][t["name"]] = r.get(metric)
    for entry in out.values():
        values = [v for v in entry["per_task"].values() if v is not None]
        entry["mean"] = sum(values) / len(values) if values else None
        entry["n_tasks"] = len(values)
    return list(out.values())


def suite_summary(tasks: list[dict], not_tasks: list[dict]) -> dict:
    """results.json's `suite` (less its verdict): the tasks with their headline metric, the
    entries that are no task, and `suite_scores`."""
    return {"tasks": [{"name": t["name"], "protocol": t["protocol"]["name"], "metric": headline_metric(t),
                       "multilabel": t["protocol"]["multilabel"], "n_splits": t["protocol"]["n_splits"],
                       "clips": t["clips"]["used"]} for t in tasks],
            "not_tasks": not_tasks, "scores": suite_scores(tasks)}
