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


def data_stage(cfg: ExperimentConfig, run: RunDir) -> dict:
    """Account for the configured source before training: count its clips from metadata
    (listing, labels, shard footers), then decode `data.check_clips` of them in hash order of
    their ids (`data.check: sample`, the default: a cost independent of the corpus size, and
    the whole corpus when it is smaller) or stream every clip through Ray Data once
    (`data.check: full`). RUN_DIR/data_report.json."""
    from sslsep.data.sources import clip_dataset, hash_sample, listed_clips, resolve_source

    if run.exists("data_report.json"):
        print(f"data: done already ({run.uri('data_report.json')})")
        return run.read_json("data_report.json")
    kind = resolve_source(cfg.data)
    t0 = time.monotonic()
    listed, problems = listed_clips(cfg.data)
    report = DecodeReport()
    for problem in problems:
        report.add_label_problem(*problem)
    full = cfg.data.check == "full" or listed <= cfg.data.check_clips
    seconds = 0.0
    if full:
        from tqdm import tqdm

        bar = tqdm(total=listed, desc=f"data ({kind})", unit="clip", mininterval=0.5)
        for batch in clip_dataset(cfg.data, cfg.audio).iter_batches(batch_size=64, batch_format="numpy"):
            for cid, status, detail in zip(batch["clip_id"], batch["status"], batch["detail"]):
                report.add(str(cid), str(status), str(detail))
            seconds += batch["audio"].shape[0] * batch["audio"].shape[1] / cfg.audio.sample_rate
            bar.update(len(batch["clip_id"]))
        bar.close()
    else:
        for r in hash_sample(cfg.data, cfg.audio, cfg.data.check_clips):
            report.add(r["clip_id"], r["status"], r["detail"])
            seconds += len(r["audio"]) / cfg.audio.sample_rate
    wall = time.monotonic() - t0
    checked = "every clip" if full else f"a sample of {report.total} of {listed} clips (hash order of ids)"
    out = {"source": kind, "path": cfg.data.path, "listed": listed, "checked": checked, "wall_s": round(wall, 2),
           "clips_per_s": round(report.total / wall, 2), "audio_hours": round(seconds / 3600, 3),
           **report.to_dict()}
    run.write_json("data_report.json", out)
    run.log_metrics({"stage": "data", "listed": listed, "clips": report.total, "kept": report.kept,
                     "skipped": len(report.skipped), "clips_per_s": out["clips_per_s"]})
    print(f"data: checked {checked}")
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


def verdict(results: dict) -> str:
    """Did separated views beat mixture-only views on the same budget? One line per classifier
    on the protocol's headline metric (mAP for multi-label, accuracy for single-label),
    paired: same splits, same seeds. With one pretraining run the spread is over its splits
    (standard error of the mean per-split difference); with several runs (`joint.seeds`) it is
    over the runs, each run counted by its mean over splits (the runs are the independent
    units: splits of one run share its encoder). "beat" needs the mean difference above 2
    standard errors, "leans" above 1. With one run of one split there is no spread estimate
    and a gap under 0.01 is a tie."""
    metric = "mAP" if results["protocol"]["multilabel"] else "accuracy"
    by: dict[tuple[str, str], dict[int | None, dict]] = {}
    for r in results["rows"]:
        name, seed = split_row_name(r["extractor"])
        kind = "ours" if name.startswith(MAIN) else name
        by.setdefault((kind, r["classifier"]), {})[seed] = {**r, "name": name}
    if not any(k == "ours" for k, _ in by) or not any(k == "mixture-only" for k, _ in by):
        return "verdict: no mixture-only control in this run (joint.controls), nothing to compare"
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
        if se is None:
            call = "no clear difference (under 0.01)" if abs(diff) <= 0.01 else \
                ("separated views ahead" if diff > 0 else "mixture-only views ahead") + " on this one split"
        elif abs(diff) > 2 * se:
            call = "separated views BEAT mixture-only" if diff > 0 else "mixture-only views beat separated"
        elif abs(diff) > se:
            call = "leans towards " + ("separated views" if diff > 0 else "mixture-only views") + \
                " (within 2 standard errors: not conclusive)"
        else:
            call = "no clear difference"
        lines.append(f"verdict ({clf}, {metric}): {name} {a:.3f} vs mixture-only {b:.3f} "
                     f"(diff {diff:+.3f}, {spread}): {call}")
    return "\n".join(lines)
