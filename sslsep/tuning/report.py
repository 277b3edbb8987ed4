"""`sslsep report sweep RUN_DIR`: one self-contained HTML dashboard of a sweep.

Reads the sweep's Optuna study (the storage named in RUN_DIR/sweep.json) and writes
RUN_DIR/sweep.html: matplotlib figures inline as PNG through `sslsep.figures`, the module
the run report uses too, so both pages share one style and frame (no script, no network).
Charts: optimisation history, parameter importances, parallel coordinates, the metric
against separator checkpoints and against view combinations; then a table of the best trials.
"""

from __future__ import annotations

import itertools
import math
import statistics

from sslsep import figures
from sslsep.run import RunDir
from sslsep.tuning.space import spec_from_dict


def _axes(width: float = 6.4, height: float = 3.2):
    fig, axs = figures.figure(width, height)
    return fig, axs[0, 0]


def history_chart(trials, metric: str, maximize: bool) -> str:
    title = "Optimisation history"
    pts = sorted((t.number, t.value) for t in trials if t.value is not None)
    if not pts:
        return figures.empty(title, "no finished trial yet")
    from matplotlib.ticker import MaxNLocator

    fig, ax = _axes()
    nums, values = zip(*pts)
    ax.scatter(nums, values, zorder=3, label="trial")
    ax.step(nums, list(itertools.accumulate(values, max if maximize else min)), where="post",
            color=figures.PALETTE[3], label="best so far")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set(xlabel="trial number", ylabel=metric)
    ax.legend()
    return figures.img(fig, title)


def importance_chart(study) -> str:
    import optuna

    title = "Parameter importances (PED-ANOVA)"
    try:  # named, as optuna's default has changed; unlike fANOVA it rates conditional parameters too
        imp = optuna.importance.get_param_importances(
            study, evaluator=optuna.importance.PedAnovaImportanceEvaluator())
    except (RuntimeError, ValueError) as e:
        return figures.empty(title, f"not computable yet: {e}")
    if not imp:
        return figures.empty(title, "needs at least two finished trials with varied parameters")
    fig, ax = _axes()
    names = list(imp)[::-1]  # the most important on top
    ax.bar_label(ax.barh(names, [imp[n] for n in names], color=figures.PALETTE[2]), fmt="%.2f", padding=3)
    ax.set(xlabel="importance (sums to 1)", xlim=(0, max(imp.values()) * 1.15 or 1))
    ax.grid(axis="y", visible=False)
    return figures.img(fig, title, "how differently the best trials sample a parameter than all trials do")


def _axis(values: list, log: bool = False) -> tuple:
    """One parallel axis: position in [0, 1] of a value, and tick labels by position. Numbers
    min-max (in log10 if sampled log-uniform); anything else categories spaced evenly."""
    present = [v for v in values if v is not None]
    if all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in present):
        f, inv = (math.log10, lambda x: 10 ** x) if log else (float, float)
        lo, hi = min(map(f, present)), max(map(f, present))
        if hi == lo:
            return (lambda v: 0.5), {0.5: f"{present[0]:.3g}"}
        return (lambda v: (f(v) - lo) / (hi - lo)), {p: f"{inv(lo + p * (hi - lo)):.3g}" for p in (0, 0.5, 1)}
    cats = sorted({str(v) for v in present})
    at = {c: (i + 0.5) / len(cats) for i, c in enumerate(cats)}
    return (lambda v: at[str(v)]), {p: c for c, p in at.items()}


def parallel_chart(trials, metric: str) -> str:
    import matplotlib

    title = f"Parallel coordinates (colour: {metric})"
    done = [t for t in trials if t.value is not None]
    names = sorted({k for t in done for k in t.params})
    if not done or not names:
        return figures.empty(title, "no finished trial yet")
    logs = {n: getattr(t.distributions[n], "log", False) for t in done for n in t.params}
    axes = [_axis([t.params.get(n) for t in done], logs[n]) for n in names] + [_axis([t.value for t in done])]
    fig, ax = _axes(12, 3.6)
    cmap = matplotlib.colormaps["viridis"]
    for t in done:  # a conditional parameter the trial did not have is skipped: its line joins its neighbours
        pts = [(i, axes[i][0](v)) for i, v in enumerate([t.params.get(n) for n in names] + [t.value])
               if v is not None]
        ax.plot(*zip(*pts), color=cmap(axes[-1][0](t.value)), alpha=0.8, lw=1.2)
    for i, (_, ticks) in enumerate(axes):
        ax.axvline(i, color="#888", lw=1)
        for p, label in ticks.items():
            ax.text(i + 0.03, p, label if len(label) <= 28 else label[:27] + "…", fontsize=7, va="center",
                    bbox={"facecolor": "white", "alpha": 0.75, "edgecolor": "none", "pad": 1})
    ax.set_xticks(range(len(axes)), [n.replace(".", ".\n") for n in names] + [metric])
    ax.set(yticks=[], xlim=(-0.15, len(axes) - 0.4), ylim=(-0.06, 1.06))
    ax.grid(visible=False)
    ax.spines[["left", "bottom"]].set_visible(False)
    return figures.img(fig, title, "numbers min to max (log-uniform parameters on a log axis); "
                       "a parameter a trial did not sample is skipped")


def category_chart(trials, param: str, metric: str, title: str, note: str = "", split: str = "") -> str:
    """Metric per category of `param` (points: trials; bar: mean); with `split`, 'a+b' counts for a and b."""
    groups: dict[str, list[float]] = {}
    for t in trials:
        if t.value is not None:
            value = str(t.params.get(param, "(not sampled)"))
            for c in (value.split(split) if split else [value]):
                groups.setdefault(c, []).append(t.value)
    if not groups:
        return figures.empty(title, f"no finished trial sampled {param!r}")
    fig, ax = _axes()
    cats = sorted(groups)
    for i, c in enumerate(cats):
        vs = groups[c]
        offsets = [0.0] if len(vs) == 1 else [-0.2 + 0.4 * j / (len(vs) - 1) for j in range(len(vs))]
        ax.scatter([i + o for o in offsets], vs, color=figures.PALETTE[i % len(figures.PALETTE)], zorder=3)
        ax.hlines(statistics.mean(vs), i - 0.3, i + 0.3, color="#222", lw=2.5, zorder=2,
                  label="mean" if i == 0 else None)
    ax.set_xticks(range(len(cats)), [f"{c}\n(n={len(groups[c])})" for c in cats])
    ax.set(ylabel=metric, xlim=(-0.6, len(cats) - 0.4))
    ax.grid(axis="x", visible=False)
    ax.legend()
    return figures.img(fig, title, note)


def best_table(trials, metric: str, maximize: bool, k: int = 10) -> str:
    done = sorted((t for t in trials if t.value is not None), key=lambda t: t.value, reverse=maximize)[:k]
    names = sorted({n for t in done for n in t.params})
    rows = [[i, t.number, f"{t.value:.4f}"] + [
        (f"{t.params[n]:.4g}" if isinstance(t.params.get(n), float) else t.params.get(n, "—")) for n in names]
        for i, t in enumerate(done, 1)]
    return figures.table(["rank", "trial", metric, *names], rows, table_id="best")


def render(study, spec_name: str, metric: str, maximize: bool) -> str:
    import optuna

    trials = study.get_trials(deepcopy=False)
    states = {s.name: sum(t.state == s for t in trials) for s in optuna.trial.TrialState}
    counts = ", ".join(f"{n.lower()} {c}" for n, c in states.items() if c)
    best = [t.value for t in trials if t.value is not None]
    best_v = (max(best) if maximize else min(best)) if best else math.nan
    charts = [history_chart(trials, metric, maximize), importance_chart(study), parallel_chart(trials, metric),
              category_chart(trials, "separators", metric, f"{metric} by separator checkpoint",
                             "a trial counts for each checkpoint of its subset (a+b: for a and for b)", split="+"),
              category_chart(trials, "views", metric, f"{metric} by view combination")]
    esc = figures.esc
    return figures.page(f"sweep {spec_name}", [
        f"<h1>Sweep {esc(spec_name)}</h1>",
        f"<p>{len(trials)} trials ({esc(counts)}); metric {esc(metric)} ({'max' if maximize else 'min'}); "
        f"best {best_v:.4f}.</p>", *charts, "<h2>Best trials</h2>", best_table(trials, metric, maximize)])


def write_report(run_dir: str) -> str:
    """Write RUN_DIR/sweep.html from the sweep's study; returns its URI."""
    import optuna

    from sslsep.tuning.sweep import optuna_storage

    run = RunDir(run_dir)
    if not run.exists("sweep.json"):
        raise FileNotFoundError(f"{run.uri('sweep.json')}: not a sweep run directory")
    spec = spec_from_dict(run.read_json("sweep.json"))
    study = optuna.load_study(study_name=spec.name, storage=optuna_storage(spec, run))
    return run.write_text("sweep.html", render(study, spec.name, spec.metric, spec.mode == "max"))
