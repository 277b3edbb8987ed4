"""The stages of one run, in order, each writing under the run directory and skipped when
its output is already there (so running the same config again resumes):

    data        count the clips from metadata, decode a hash sample of them (or all:
                data.check); RUN_DIR/data_report.json
    separation  MixIT separators at several convergence states; RUN_DIR/registry.json
    pretrain    the configured model and each control on the same budget;
                RUN_DIR/pretrain/<variant>/encoder.pt (Ray Train fed live by the views)
    evaluate    shallow classifiers on frozen embeddings; RUN_DIR/results.{json,md}

experiments/joint.py runs them all; the sweep runs pretrain + evaluate per trial.
"""

from __future__ import annotations

import math
import re
import statistics
import time

from sslsep.audio import DecodeReport
from sslsep.config import ExperimentConfig, replace
from sslsep.contrastive.controls import control_config, describe
from sslsep.run import RunDir

MAIN = "configured"  # the variant name of the configured model (not a control)


MADE = "every scene, counted: made by code, none can fail to decode"


def data_stage(cfg: ExperimentConfig, run: RunDir) -> dict:
    """Account for the configured sources before training: count each source's clips from
    metadata (listing, labels, shard footers), then decode `data.check_clips` of them in hash
    order of their ids (`data.check: sample`, the default: a cost independent of the corpus
    size, and the whole corpus when it is smaller; a mix takes from each source in proportion
    to its clips) or stream every clip through Ray Data once (`data.check: full`). Every figure
    is kept per source as well (`sources`), and a source that is missing or unreadable stops
    the run here, named. The synthetic scenes alone are counted, not made: each is "ok" by
    construction. RUN_DIR/data_report.json."""
    from sslsep.data.sources import clip_dataset, hash_sample, leaves, open_source

    if run.exists("data_report.json"):
        print(f"data: done already ({run.uri('data_report.json')})")
        return run.read_json("data_report.json")
    source = open_source(cfg.data)
    t0 = time.monotonic()
    per: dict[str, dict] = {}
    reports: dict[str, DecodeReport] = {}
    for child, weight in leaves(source):
        try:
            n, problems = child.listed()
        except (OSError, ValueError) as e:
            raise type(e)(f"data: source {child.name!r}: {e}") from e
        per[child.name] = {"name": child.name, "kind": child.kind, "path": child.cfg.path, "weight": weight,
                           "listed": n, "audio_s": 0.0}
        reports[child.name] = DecodeReport()
        for problem in problems:
            reports[child.name].add_label_problem(*problem)
    listed = sum(p["listed"] for p in per.values())
    only = next(iter(per)) if len(per) == 1 else None

    def add(row_source, cid, status, detail, samples) -> None:
        name = only or str(row_source)
        reports[name].add(str(cid), str(status), str(detail))
        per[name]["audio_s"] += samples / cfg.audio.sample_rate

    made = source.kind == "synthetic"
    full = made or cfg.data.check == "full" or listed <= cfg.data.check_clips
    if made:
        # scenes are made by code (sslsep.data.synthetic) from their seed and index, never read:
        # each one is "ok" by construction, so they are counted here rather than made only to be
        # thrown away (2000 quick-preset scenes took ~20 s of a 15-minute promise)
        from sslsep.data.synthetic import scene_id

        for i in range(listed):
            add(None, scene_id(cfg.data.synth.seed, i), "ok", "", cfg.audio.num_samples)
    elif full:
        from tqdm import tqdm

        bar = tqdm(total=listed, desc=f"data ({source.kind})", unit="clip", mininterval=0.5)
        for batch in clip_dataset(cfg.data, cfg.audio).iter_batches(batch_size=64, batch_format="numpy"):
            for src, cid, status, detail in zip(batch["source"], batch["clip_id"], batch["status"], batch["detail"]):
                add(src, cid, status, detail, batch["audio"].shape[1])
            bar.update(len(batch["clip_id"]))
        bar.close()
    else:
        for r in hash_sample(cfg.data, cfg.audio, cfg.data.check_clips):
            add(r["source"], r["clip_id"], r["status"], r["detail"], len(r["audio"]))
    wall = time.monotonic() - t0
    report = DecodeReport()
    for name, rep in reports.items():
        report.merge(rep)
        per[name].update(checked=MADE if made else "every clip" if full else
                         f"a sample of {rep.total} of {per[name]['listed']}",
                         audio_hours=round(per[name].pop("audio_s") / 3600, 3), **rep.to_dict())
    checked = MADE if made else "every clip" if full else f"a sample of {report.total} of {listed} clips (hash order of ids)"
    seconds = sum(p["audio_hours"] for p in per.values()) * 3600
    out = {"source": source.kind, "path": cfg.data.path, "listed": listed, "checked": checked, "wall_s": round(wall, 2),
           "clips_per_s": round(report.total / wall, 2), "audio_hours": round(seconds / 3600, 3),
           **report.to_dict(), "sources": list(per.values())}
    run.write_json("data_report.json", out)
    run.log_metrics({"stage": "data", "listed": listed, "clips": report.total, "kept": report.kept,
                     "skipped": len(report.skipped), "clips_per_s": out["clips_per_s"]})
    for p in per.values() if len(per) > 1 else ():  # one source: the line above is its own
        run.log_metrics({"stage": "data", "source": p["name"], "listed": p["listed"], "clips": p["total"],
                         "kept": p["kept"], "skipped": len(p["skipped"])})
    print(f"data: checked {checked}")
    if len(per) > 1:
        for p in per.values():
            print(f"  {p['name']} ({p['kind']}, weight {p['weight']:g}): {p['listed']} listed, {p['total']} checked, "
                  f"{p['kept']} kept, {len(p['skipped'])} skipped")
    print(report.summary())
    return out


def registry_uri(cfg: ExperimentConfig, run: RunDir) -> str:
    """The registry the run's separator-using stages read: `separation.registry`, or ('') the
    run's own RUN_DIR/registry.json."""
    return cfg.separation.registry or run.uri("registry.json")


def separation_stage(cfg: ExperimentConfig, run: RunDir) -> str:
    """Train (or resume, or reuse `separation.registry`); returns the registry's URI."""
    from sslsep.separation.train import train_separators

    t0 = time.monotonic()
    reg = train_separators(cfg, run)
    uri = registry_uri(cfg, run)
    states = ", ".join(e["name"] for e in reg["separators"])
    print(f"separation: {len(reg['separators'])} convergence states ({states}) in {uri} "
          f"[{time.monotonic() - t0:.0f} s]")
    return uri


def variants(cfg: ExperimentConfig) -> dict[str, ExperimentConfig]:
    """The configured model and each control of `joint.controls`, by variant name (each one
    checked like a loaded config: experiments/joint.py builds them before any stage runs)."""
    out = {MAIN: cfg}
    for name in cfg.joint.controls:
        out[name] = control_config(cfg, name)
    return out


def shared_streams(todo: dict[str, ExperimentConfig]) -> list[list[str]]:
    """Variant names grouped by the view stream they can share (`stream_key`), in order of
    first appearance: the configured model, sim-only and coinc-only make one group."""
    from sslsep.contrastive.train import stream_key

    groups: dict[str, list[str]] = {}
    for name, vcfg in todo.items():
        groups.setdefault(stream_key(vcfg), []).append(name)
    return list(groups.values())


def seeds(cfg: ExperimentConfig) -> list[int]:
    """The pretraining seeds of a run: `joint.seeds`, or the config's own `seed`."""
    return list(cfg.joint.seeds) or [cfg.seed]


def seed_suffix(cfg: ExperimentConfig, seed: int) -> str:
    """What a variant's row and directory carry for `seed`: nothing with one seed (the layout of
    a one-seed run does not change), ' [seed N]' with several."""
    return f" [seed {seed}]" if len(seeds(cfg)) > 1 else ""


_SEEDED = re.compile(r"^(?P<name>.*) \[seed (?P<seed>\d+)\]$")


def split_row_name(name: str) -> tuple[str, int | None]:
    """'mixture-only [seed 2]' -> ('mixture-only', 2); a name without a seed -> (name, None)."""
    m = _SEEDED.match(name)
    return (m["name"], int(m["seed"])) if m else (name, None)


def pretrain_stage(cfg: ExperimentConfig, run: RunDir) -> dict[str, dict]:
    """Pretrain every variant, once per seed (`seeds`), on the separators of `registry_uri` (set
    on each variant as `separation.registry`): the variants that share a view stream train
    together, on one stream and the same batches (`pretrain_together`); each resumes or is
    reused from its own directory (RUN_DIR/pretrain/<variant>, or .../<variant>/seed-N with
    several seeds). Returns {row name: {"encoder": uri, "label": description, "run_dir": uri}},
    the row name being the variant's, with ' [seed N]' when there are several seeds."""
    from sslsep.contrastive.train import finished, pretrain_together

    registry = registry_uri(cfg, run)
    todo, subs = {}, {}
    for seed in seeds(cfg):
        suffix = seed_suffix(cfg, seed)
        for name, vcfg in variants(cfg).items():
            values = {"separation.registry": registry, "seed": seed}
            todo[name + suffix] = replace(vcfg, values, origin=f"variant {name}{suffix}")
            subs[name + suffix] = RunDir(run.uri("pretrain", name, *([f"seed-{seed}"] if suffix else [])))
    order = {name: i for i, name in enumerate(todo, 1)}
    for group in shared_streams(todo):
        left = [n for n in group if not finished(subs[n], todo[n].pretrain.steps)]
        for n in group:
            if n not in left:
                print(f"pretrain [{order[n]}/{len(todo)}] {n}: done already ({subs[n].uri('encoder.pt')})")
        if not left:
            continue
        together = f" (one view stream for {', '.join(left)})" if len(left) > 1 else ""
        for n in left:
            print(f"pretrain [{order[n]}/{len(todo)}] {n}: {describe(todo[n])}, {todo[n].pretrain.steps} steps"
                  f"{together} ...", flush=True)
        t0 = time.monotonic()
        pretrain_together({n: todo[n] for n in left}, {n: subs[n] for n in left})
        wall = round(time.monotonic() - t0, 1)
        for n in left:
            last = next((m for m in reversed(subs[n].metrics()) if m.get("stage") == "pretrain"), {})
            print(f"pretrain [{order[n]}/{len(todo)}] {n}: step {last.get('step')} loss "
                  f"{last.get('total', float('nan')):.3f} coincidence acc {last.get('coinc_acc', float('nan')):.2f} "
                  f"[{wall:.0f} s{', shared' if together else ''}]", flush=True)
            run.log_metrics({"stage": "pretrain", "variant": n, "label": describe(todo[n]), "step": last.get("step"),
                             "total": last.get("total"), "coinc_acc": last.get("coinc_acc"), "wall_s": wall,
                             "trained_with": left})
    return {n: {"encoder": subs[n].uri("encoder.pt"), "label": describe(todo[n]), "run_dir": subs[n].path}
            for n in todo}


def evaluation_stage(cfg: ExperimentConfig, run: RunDir, encoders: dict[str, dict]) -> dict:
    """Shallow evaluation of every pretrained variant (and seed) beside the log-mel and
    random-init baselines; RUN_DIR/results.{json,md}. Returns the results dict."""
    from sslsep.evaluation import evaluate_encoders

    if run.exists("results.json"):
        print(f"evaluate: done already ({run.uri('results.json')})")
        return run.read_json("results.json")
    extractors = {"logmel-stats": "logmel", "random-init": "random"}
    for row, info in encoders.items():
        name, seed = split_row_name(row)
        label = f"{MAIN} ({info['label']})" if name == MAIN else name
        extractors[label + (f" [seed {seed}]" if seed is not None else "")] = info["encoder"]
    runs = {"seeds": seeds(cfg)} if len(seeds(cfg)) > 1 else None
    return evaluate_encoders(cfg, extractors, run, runs=runs)


def _paired(ours: list[dict], mix: list[dict], metric: str) -> list[float]:
    """Per-split differences of two rows judged on the same splits."""
    return [a[metric] - b[metric] for a, b in zip(ours, mix)
            if a.get("split") == b.get("split") and a.get(metric) is not None and b.get(metric) is not None]


def _variants(rows: list[dict]) -> dict[tuple[str, str], dict[int | None, dict]]:
    """A task's rows by (kind, classifier) and seed; kind 'ours' for the configured model's rows
    (named `configured...`), else the row's name without its seed."""
    by: dict[tuple[str, str], dict[int | None, dict]] = {}
    for r in rows:
        name, seed = split_row_name(r["extractor"])
        kind = "ours" if name.startswith(MAIN) else name
        by.setdefault((kind, r["classifier"]), {})[seed] = {**r, "name": name}
    return by


def _call(diff: float, se: float | None) -> str:
    """The words of a verdict: BEAT above 2 standard errors, leans above 1; without a spread
    estimate (one run, one split) a gap under 0.01 is a tie."""
    if se is None:
        return "no clear difference (under 0.01)" if abs(diff) <= 0.01 else \
            ("separated views ahead" if diff > 0 else "mixture-only views ahead") + " on this one split"
    if abs(diff) > 2 * se:
        return "separated views BEAT mixture-only" if diff > 0 else "mixture-only views beat separated"
    if abs(diff) > se:
        return "leans towards " + ("separated views" if diff > 0 else "mixture-only views") + \
            " (within 2 standard errors: not conclusive)"
    return "no clear difference"


def _task_verdict(task: dict) -> list[str]:
    """One task's verdict lines (one per classifier, `verdict`'s per-task rules), each prefixed
    by the task's name."""
    from sslsep.evaluation.suite import headline_metric

    metric = headline_metric(task)
    by = _variants(task["rows"])
    lines = []
    for (kind, clf), ours in by.items():
        mix = by.get(("mixture-only", clf))
        if kind != "ours" or mix is None:
            continue
        run_seeds = [s for s in ours if s in mix]
        if not run_seeds:
            continue
        per_run = {s: _paired(ours[s].get("folds", []), mix[s].get("folds", []), metric) for s in run_seeds}
        a = statistics.fmean(ours[s][metric] for s in run_seeds)
        b = statistics.fmean(mix[s][metric] for s in run_seeds)
        diff = a - b
        name = ours[run_seeds[0]]["name"]
        n_splits = len(next(iter(per_run.values())))
        if len(run_seeds) >= 2:
            means = [statistics.fmean(d) if d else ours[s][metric] - mix[s][metric] for s, d in per_run.items()]
            se = statistics.stdev(means) / math.sqrt(len(means))
            won = sum(x > 0 for x in means)
            splits_won = sum(x > 0 for d in per_run.values() for x in d)
            spread = (f"paired over {len(means)} runs (seeds {', '.join(map(str, run_seeds))}) x {n_splits} "
                      f"splits: standard error {se:.3f} over runs, separated better in {won}/{len(means)} runs "
                      f"and {splits_won}/{len(means) * n_splits} splits")
        elif n_splits >= 2:
            d = per_run[run_seeds[0]]
            se = statistics.stdev(d) / math.sqrt(len(d))
            spread = (f"one run, paired over {len(d)} splits: standard error {se:.3f}, separated better on "
                      f"{sum(x > 0 for x in d)}/{len(d)}")
        else:
            se = None
            spread = "one run, one split: no spread estimate"
        lines.append(f"{task['name']}: verdict ({clf}, {metric}): {name} {a:.3f} vs mixture-only {b:.3f} "
                     f"(diff {diff:+.3f}, {spread}): {_call(diff, se)}")
    return lines


def suite_pairs(tasks: list[dict], clf: str) -> dict[int | None, list[tuple[str, float]]]:
    """Paired differences, separated minus mixture-only, of classifier `clf` over the suite:
    {seed: [(task name, difference on one split)]}, each task on its own headline metric."""
    from sslsep.evaluation.suite import headline_metric

    out: dict[int | None, list[tuple[str, float]]] = {}
    for t in tasks:
        metric, by = headline_metric(t), _variants(t["rows"])
        ours, mix = by.get(("ours", clf), {}), by.get(("mixture-only", clf), {})
        for seed in (s for s in ours if s in mix):
            d = _paired(ours[seed].get("folds", []), mix[seed].get("folds", []), metric)
            if not d and ours[seed].get(metric) is not None and mix[seed].get(metric) is not None:
                d = [ours[seed][metric] - mix[seed][metric]]  # a row without its folds: its mean
            out.setdefault(seed, []).extend((t["name"], x) for x in d)
    return out


def _suite_verdict(tasks: list[dict], clf: str) -> str | None:
    """One suite line for `clf` (`verdict`'s pooled rule); None when no task pairs the two."""
    by_seed = suite_pairs(tasks, clf)
    pooled = [x for pairs in by_seed.values() for _, x in pairs]
    if not pooled:
        return None
    names = list(dict.fromkeys(n for pairs in by_seed.values() for n, _ in pairs))
    diff = statistics.fmean(pooled)
    se_pairs = statistics.stdev(pooled) / math.sqrt(len(pooled)) if len(pooled) >= 2 else None
    spread = (f"standard error {se_pairs:.3f} over pairs" if se_pairs is not None else "one pair: no spread estimate")
    se = se_pairs
    if len(by_seed) >= 2:
        means = [statistics.fmean(x for _, x in pairs) for pairs in by_seed.values()]
        se_seeds = statistics.stdev(means) / math.sqrt(len(means))
        se = max(se_seeds, se_pairs or 0.0)
        spread += (f", {se_seeds:.3f} over the {len(means)} seeds' suite means (the call uses the larger); separated "
                   f"better in {sum(m > 0 for m in means)}/{len(means)} seeds")
    return (f"suite verdict ({clf}, {len(names)} task(s): {', '.join(names)}): separated minus mixture-only "
            f"{diff:+.3f}, pooled over {len(pooled)} pairs (tasks x splits x seeds, each task's headline metric), "
            f"{spread}, separated better in {sum(x > 0 for x in pooled)}/{len(pooled)} pairs: {_call(diff, se)}")


def verdict(results: dict) -> str:
    """Did separated views beat mixture-only views on the same budget? Paired: same splits,
    same seeds, each task on its headline metric (mAP multi-label, accuracy single-label).

    Per task (lines prefixed by its name), one line per classifier: with one pretraining run the
    spread is over its splits (standard error of the mean per-split difference); with several
    runs (`joint.seeds`) it is over the runs, each run counted by its mean over splits (the
    runs are the independent units: splits of one run share its encoder).

    Then one suite line per classifier: the differences (rows `configured...` minus
    `mixture-only`) pooled over tasks x splits x seeds; their mean, its standard error over the
    pooled pairs, and the pairs won. With >= 2 seeds also the standard error over seeds of each
    seed's suite mean (the mean of that seed's pooled pairs), and the call uses the larger of
    the two standard errors (pairs of one seed share its encoders, so the pair count alone
    overstates the evidence). "BEAT" needs the mean difference above 2 standard errors,
    "leans" above 1; with a single pair there is no spread estimate and a gap under 0.01 is a
    tie. `results`: results.json's dict (a one-protocol results.json of before the suite reads
    as one task)."""
    from sslsep.evaluation.suite import task_results

    tasks = task_results(results)
    lines = [line for t in tasks for line in _task_verdict(t)]
    if not lines:
        return "verdict: no mixture-only control in this run (joint.controls), nothing to compare"
    classifiers = list(dict.fromkeys(r["classifier"] for t in tasks for r in t["rows"]))
    lines += [line for clf in classifiers if (line := _suite_verdict(tasks, clf))]
    return "\n".join(lines)
