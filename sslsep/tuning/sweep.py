"""Sweeps on Ray Tune: OptunaSearch (TPE, persistent study) + ASHA over driver trials.

Each trial is a Tune function trainable (the "driver") that, for every rung of the sweep
file, continues its own pretraining (a TorchTrainer fed live by the augmentation service;
Train V2 resumes from the trial's latest checkpoint) to the rung's step count, runs a short
shallow evaluation of the frozen encoder and reports the metric. ASHA stops weak trials at
a rung; TPE proposes the next parameters from the finished ones. Layout of a sweep run:

    RUN_DIR/sweep.json                the resolved sweep file
    RUN_DIR/optuna.db                 the Optuna study (default storage; optuna-dashboard reads it)
    RUN_DIR/tune/<name>/              Tune's experiment state, per-trial result.json/progress.csv/TensorBoard
    RUN_DIR/trials/<trial_id>/        each trial's pretraining run and evaluations

An interrupted sweep resumes with `Tuner.restore` (same command again): finished trials are
kept, unfinished ones continue from their checkpoints, errored ones are marked, not rerun.
"""

from __future__ import annotations

import functools
import math
import os

from sslsep import fit, storage
from sslsep.config import ExperimentConfig, from_dict, replace, to_dict
from sslsep.run import RunDir
from sslsep.separation.registry import read_registry
from sslsep.tuning.space import SweepSpec, spec_from_dict, suggest, trial_overrides


def trial_config(base: ExperimentConfig, spec: SweepSpec, params: dict) -> ExperimentConfig:
    """The experiment config of one trial: base <- sweep `set` <- sampled parameters (values,
    checked as a loaded config is). The separators are the base's `separation.registry`."""
    return replace(base, {**spec.set, **trial_overrides(params, spec)}, origin=f"sweep {spec.name}")


def check_trials(base: ExperimentConfig, spec: SweepSpec) -> None:
    """Before anything trains: the sweep's `set` and each discrete choice (a bundle, a plain
    choice value), one at a time, make a valid config with `base`; a ConfigError names the
    sweep and the key. (Combinations and continuous values are checked per trial.)"""
    trial_config(base, spec, {})
    for p in spec.params:
        if p.kind == "choice":
            for label in p.args:
                trial_config(base, spec, {p.name: label})


def trial_cpus(cfg: ExperimentConfig) -> float:
    """CPUs one trial holds at once (sslsep.fit, stage "trial"): training workers, the
    augmentation actors the pool starts with, one decode task."""
    return fit.need(cfg, ["trial"])["CPU"]


def concurrency(cfg: ExperimentConfig, spec: SweepSpec, cluster: dict) -> int:
    """max_concurrent_trials from the sweep file, else as many trials as the cluster fits
    (`cluster`: ray.cluster_resources(), or `ray.max_resources` when set)."""
    fit.check(cfg, ["trial"], cluster)  # a trial that can never get its resources hangs instead of failing
    if spec.max_concurrent_trials:
        return spec.max_concurrent_trials
    need, have = fit.need(cfg, ["trial"]), fit.capacity(cfg, cluster)
    fits = [math.floor(have[r] / need[r] + fit.EPS) for r in fit.RESOURCES if need[r] > 0]
    return max(1, min(fits, default=1))


def check_sweep_fits(base: ExperimentConfig, spec: SweepSpec) -> None:
    """Right after Ray starts: the separation stage (when the sweep trains its own separators)
    and one trial fit the cluster, else sslsep.fit.ClusterFitError (the Tune driver holds 0 CPU)."""
    from sslsep.cluster import check_fits

    if not base.separation.registry and any(p.kind == "subsets" for p in spec.params):
        check_fits(base, ["separation"])
    check_fits(trial_config(base, spec, {}), ["trial"])


def optuna_storage(spec: SweepSpec, run: RunDir):
    """'' -> sqlite in the run directory; sqlite:// or another RDB URL; a *.log journal file."""
    import optuna

    url = spec.storage
    if not url:
        if storage.is_remote(run.path):
            raise ValueError(f"sweep {spec.name}: the run directory {run.path} is remote; set `storage` in the "
                             "sweep file to an RDB URL (e.g. postgresql://...) or a local journal file")
        url = f"sqlite:///{os.path.abspath(run.uri('optuna.db'))}"
    if url.endswith(".log"):
        from optuna.storages.journal import JournalFileBackend

        return optuna.storages.JournalStorage(JournalFileBackend(url))
    return optuna.storages.RDBStorage(url)


def _metric_of(results: dict, metric: str) -> float:
    """The sweep's metric from an evaluation: the mean over the suite's tasks of the best
    classifier's (and extractor's) value of `metric` on each task. A task that does not report
    `metric` (accuracy on a multi-label task) counts with its headline metric (mAP multi-label,
    accuracy single-label) instead."""
    from sslsep.evaluation.suite import headline_metric, task_results

    per_task = []
    for t in task_results(results):
        values = [r[metric] for r in t["rows"] if r.get(metric) is not None]
        if not values:
            values = [r[headline_metric(t)] for r in t["rows"] if r.get(headline_metric(t)) is not None]
        if not values:
            raise ValueError(f"evaluation task {t['name']!r} reported no {metric!r} and no "
                             f"{headline_metric(t)!r} (single-label sets report accuracy; multi-label sets "
                             "report mAP, auc, d_prime)")
        per_task.append(max(values))
    return sum(per_task) / len(per_task)


def driver(params: dict, *, base: dict, spec: dict, root: str) -> None:
    """One trial (a Tune function trainable): rung by rung, pretrain further, evaluate, report."""
    import ray.tune

    from sslsep.contrastive.train import pretrain
    from sslsep.evaluation import evaluate_encoders
    sweep = spec_from_dict(spec)
    cfg = trial_config(from_dict(base, "sweep base config"), sweep, params)
    trial_id = ray.tune.get_context().get_trial_id()
    run = RunDir(storage.join(root, "trials", trial_id))
    run.write_json("params.json", {"params": params, "values": trial_overrides(params, sweep)})
    for steps in sweep.rungs:
        cfg = replace(cfg, {"pretrain.steps": steps}, origin=f"sweep {sweep.name} rung {steps}")
        encoder = pretrain(cfg, run)
        ev = RunDir(run.uri("eval", f"step-{steps:06d}"))
        results = ev.read_json("results.json") if ev.exists("results.json") else \
            evaluate_encoders(cfg, {"trial": encoder}, ev)
        last = next((m for m in reversed(run.metrics()) if m.get("stage") == "pretrain"), {})
        ray.tune.report({sweep.metric: _metric_of(results, sweep.metric), "step": steps,
                         "loss": last.get("total"), "coinc_acc": last.get("coinc_acc"),
                         "separators": params.get("separators", "all"), "views": params.get("views", "configured")})


def _error_line(error: BaseException) -> str:
    """The exception line of a trial's error (Ray wraps it in a traceback with ANSI headers)."""
    lines = [ln for ln in str(error).splitlines() if ln.strip() and not ln.startswith((" ", "\x1b", "Traceback"))]
    cause = getattr(error, "cause", None)
    return f"{type(cause).__name__}: {cause}" if cause is not None else (lines[-1] if lines else repr(error))


def run_sweep(spec: SweepSpec, base: ExperimentConfig, run: RunDir) -> dict:
    """Run (or resume) the sweep on the separators of `base.separation.registry`; returns a
    summary with the best trial."""
    import ray
    from ray import tune
    from ray.tune.schedulers import ASHAScheduler
    from ray.tune.search.optuna import OptunaSearch

    registry = base.separation.registry
    states = [e["name"] for e in read_registry(registry)["separators"]] if registry else []
    if any(p.kind == "subsets" for p in spec.params) and not states:
        raise ValueError(f"sweep {spec.name}: the space samples separator subsets but no registry was given")
    run.write_json("sweep.json", spec.to_dict())
    trainable = tune.with_parameters(driver, base=to_dict(base), spec=spec.to_dict(), root=run.path)
    # The driver only waits: it holds no CPU (its trainer, actors and decode tasks hold them; even
    # 0.01 CPU would leave a 2-CPU trial one decode task short and hang it). Tune needs a non-empty
    # bundle, so the driver reserves a little of Ray's logical `memory` resource instead.
    trainable = tune.with_resources(trainable, {"CPU": 0, "memory": 256 * 2**20})
    fs, path = None, os.path.abspath(run.uri("tune"))
    if storage.is_remote(run.path):
        fs, path = storage.pyarrow_fs(run.uri("tune"))
    experiment = storage.join(path, spec.name) if fs is None else f"{path}/{spec.name}"
    check_trials(base, spec)
    sample_cfg = trial_config(base, spec, {})
    if tune.Tuner.can_restore(experiment, storage_filesystem=fs):
        print(f"sweep: resuming {experiment}")
        tuner = tune.Tuner.restore(experiment, trainable, resume_unfinished=True, resume_errored=False,
                                   storage_filesystem=fs)
    else:
        search = OptunaSearch(functools.partial(suggest, spec=spec, states=states), metric=spec.metric,
                              mode=spec.mode, study_name=spec.name, storage=optuna_storage(spec, run),
                              seed=spec.seed, points_to_evaluate=[dict(p) for p in spec.start] or None)
        asha = ASHAScheduler(time_attr="training_iteration", max_t=len(spec.rungs),
                             grace_period=spec.asha.get("grace_period", 1),
                             reduction_factor=spec.asha.get("reduction_factor", 2))
        tuner = tune.Tuner(
            trainable,
            tune_config=tune.TuneConfig(metric=spec.metric, mode=spec.mode, search_alg=search, scheduler=asha,
                                        num_samples=spec.num_samples,
                                        max_concurrent_trials=concurrency(sample_cfg, spec, ray.cluster_resources())),
            run_config=tune.RunConfig(name=spec.name, storage_path=path, storage_filesystem=fs,
                                      failure_config=tune.FailureConfig(max_failures=spec.max_failures)),
        )
    grid = tuner.fit()
    errors = [_error_line(r.error) for r in grid if r.error]
    done = [r for r in grid if r.error is None and r.metrics and spec.metric in r.metrics]
    summary = {"name": spec.name, "trials": len(grid), "finished": len(done), "errored": len(errors),
               "errors": errors, "metric": spec.metric, "mode": spec.mode}
    if done:
        best = grid.get_best_result(metric=spec.metric, mode=spec.mode, scope="all")
        summary["best"] = {"value": best.metrics[spec.metric], "params": best.config, "path": best.path}
    run.write_json("sweep_summary.json", summary)
    return summary
