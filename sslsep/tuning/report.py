"""`sslsep report sweep RUN_DIR`: one self-contained HTML dashboard of a sweep.

Reads the sweep's Optuna study (the storage named in RUN_DIR/sweep.json) and writes
RUN_DIR/sweep.html with inline SVG charts (no script, no network): optimisation history,
parameter importances, parallel coordinates, the metric against separator checkpoints and
against view combinations, and a table of the best trials.
"""

from __future__ import annotations

import html
import math
import statistics

from sslsep.run import RunDir
from sslsep.tuning.space import spec_from_dict

W, H, PAD = 640, 300, 48
PALETTE = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#17becf")


def _esc(x) -> str:
    return html.escape(str(x))


def _scale(v: float, lo: float, hi: float, a: float, b: float) -> float:
    return a + (b - a) * (0.5 if hi == lo else (v - lo) / (hi - lo))


def _svg(title: str, body: list[str], note: str = "") -> str:
    marks = "".join(body) or f'<text x="{W / 2}" y="{H / 2}" text-anchor="middle">{_esc(note or "no data")}</text>'
    return (f'<figure><figcaption>{_esc(title)}</figcaption>'
            f'<svg class="chart" data-title="{_esc(title)}" width="{W}" height="{H}" viewBox="0 0 {W} {H}" '
            f'xmlns="http://www.w3.org/2000/svg">'
            f'<rect class="frame" x="0" y="0" width="{W}" height="{H}" fill="#fff" stroke="#ccc"/>{marks}</svg>'
            f'{f"<p class=note>{_esc(note)}</p>" if note and body else ""}</figure>')


def _axes(lo: float, hi: float, ylabel: str) -> list[str]:
    out = [f'<line x1="{PAD}" y1="{H - PAD}" x2="{W - 10}" y2="{H - PAD}" stroke="#333"/>',
           f'<line x1="{PAD}" y1="10" x2="{PAD}" y2="{H - PAD}" stroke="#333"/>',
           f'<text x="12" y="{H / 2}" transform="rotate(-90 12 {H / 2})" text-anchor="middle">{_esc(ylabel)}</text>']
    for v in (lo, (lo + hi) / 2, hi):
        y = _scale(v, lo, hi, H - PAD, 10)
        out.append(f'<text x="{PAD - 4}" y="{y + 4:.1f}" text-anchor="end" font-size="10">{v:.3f}</text>')
    return out


def history_chart(trials, metric: str, maximize: bool) -> str:
    pts = [(t.number, t.value) for t in trials if t.value is not None]
    if not pts:
        return _svg("Optimisation history", [], "no finished trial yet")
    lo, hi = min(v for _, v in pts), max(v for _, v in pts)
    n = max(n for n, _ in pts) or 1
    body = _axes(lo, hi, metric)
    best, line = None, []
    for num, v in sorted(pts):
        best = v if best is None else (max(best, v) if maximize else min(best, v))
        x, y = _scale(num, 0, n, PAD + 10, W - 20), _scale(v, lo, hi, H - PAD, 10)
        body.append(f'<circle class="mark" cx="{x:.1f}" cy="{y:.1f}" r="4" fill="{PALETTE[0]}">'
                    f'<title>trial {num}: {v:.4f}</title></circle>')
        line.append(f"{x:.1f},{_scale(best, lo, hi, H - PAD, 10):.1f}")
    body.append(f'<polyline class="mark" points="{" ".join(line)}" fill="none" stroke="{PALETTE[3]}"/>')
    body.append(f'<text x="{W / 2}" y="{H - 12}" text-anchor="middle">trial number (red: best so far)</text>')
    return _svg("Optimisation history", body)


def importance_chart(study) -> str:
    import optuna

    try:
        imp = optuna.importance.get_param_importances(study)
    except (RuntimeError, ValueError) as e:
        return _svg("Parameter importances", [], f"not computable yet: {e}")
    if not imp:
        return _svg("Parameter importances", [], "needs at least two finished trials with varied parameters")
    body, row = [], (H - 20) / max(len(imp), 1)
    for i, (name, v) in enumerate(imp.items()):
        y = 10 + i * row
        body.append(f'<rect class="mark" x="170" y="{y:.1f}" width="{max(v, 0) * (W - 200):.1f}" '
                    f'height="{row * 0.7:.1f}" fill="{PALETTE[2]}"><title>{_esc(name)}: {v:.3f}</title></rect>')
        body.append(f'<text x="165" y="{y + row * 0.5:.1f}" text-anchor="end" font-size="11">{_esc(name)}</text>')
        body.append(f'<text x="{175 + max(v, 0) * (W - 200):.1f}" y="{y + row * 0.5:.1f}" font-size="10">'
                    f'{v:.2f}</text>')
    return _svg("Parameter importances (fANOVA)", body)


def _positions(values: list) -> tuple[dict, bool]:
    """Axis positions in [0, 1] for one parameter's values (numbers: min-max; else categories)."""
    nums = [v for v in values if isinstance(v, (int, float)) and not isinstance(v, bool)]
    if len(nums) == len([v for v in values if v is not None]) and nums:
        lo, hi = min(nums), max(nums)
        return {v: _scale(v, lo, hi, 0.0, 1.0) for v in nums}, True
    cats = sorted({str(v) for v in values if v is not None})
    return {c: (i + 0.5) / len(cats) for i, c in enumerate(cats)}, False


def parallel_chart(trials, metric: str) -> str:
    done = [t for t in trials if t.value is not None]
    names = sorted({k for t in done for k in t.params})
    if not done or not names:
        return _svg("Parallel coordinates", [], "no finished trial yet")
    axes = names + [metric]
    cols = {n: [t.params.get(n) for t in done] for n in names} | {metric: [t.value for t in done]}
    pos = {n: _positions(cols[n]) for n in axes}
    lo, hi = min(cols[metric]), max(cols[metric])
    xs = {n: _scale(i, 0, len(axes) - 1, PAD, W - PAD) for i, n in enumerate(axes)}
    body = []
    for n in axes:
        body.append(f'<line x1="{xs[n]:.1f}" y1="20" x2="{xs[n]:.1f}" y2="{H - 40}" stroke="#999"/>')
        if not pos[n][1] and len(pos[n][0]) <= 8:  # category names beside a categorical axis
            for c, p in pos[n][0].items():
                body.append(f'<text x="{xs[n] + 3:.1f}" y="{_scale(p, 0, 1, H - 40, 20):.1f}" font-size="8" '
                            f'fill="#555">{_esc(c if len(c) <= 16 else c[:15] + "…")}</text>')
        body.append(f'<text x="{xs[n]:.1f}" y="{H - 24}" text-anchor="middle" font-size="10">{_esc(n)}</text>')
    for t, value in zip(done, cols[metric]):
        pts = []
        for n in axes:
            v = value if n == metric else t.params.get(n)
            if v is None:
                continue  # a conditional parameter this trial did not have
            p = pos[n][0].get(v if pos[n][1] else str(v), 0.5)
            pts.append(f"{xs[n]:.1f},{_scale(p, 0, 1, H - 40, 20):.1f}")
        colour = PALETTE[0] if _scale(value, lo, hi, 0, 1) < 0.5 else PALETTE[3]
        body.append(f'<polyline class="mark" points="{" ".join(pts)}" fill="none" stroke="{colour}" '
                    f'stroke-opacity="0.7"><title>trial {t.number}: {value:.4f}</title></polyline>')
    return _svg("Parallel coordinates (red: upper half of the metric)", body)


def category_chart(trials, param: str, metric: str, title: str, split: str = "") -> str:
    """Metric per category of `param`; with `split`, a value 'a+b' counts for a and for b."""
    groups: dict[str, list[float]] = {}
    for t in trials:
        if t.value is not None:
            value = str(t.params.get(param, "(not sampled)"))
            for c in (value.split(split) if split else [value]):
                groups.setdefault(c, []).append(t.value)
    if not groups:
        return _svg(title, [], f"no finished trial sampled {param!r}")
    allv = [v for vs in groups.values() for v in vs]
    lo, hi = min(allv), max(allv)
    body = _axes(lo, hi, metric)
    cats = sorted(groups)
    for i, c in enumerate(cats):
        x = _scale(i + 0.5, 0, len(cats), PAD, W - 10)
        for v in groups[c]:
            body.append(f'<circle class="mark" cx="{x:.1f}" cy="{_scale(v, lo, hi, H - PAD, 10):.1f}" r="4" '
                        f'fill="{PALETTE[i % len(PALETTE)]}"><title>{_esc(c)}: {v:.4f}</title></circle>')
        m = statistics.mean(groups[c])
        y = _scale(m, lo, hi, H - PAD, 10)
        body.append(f'<line class="mark" x1="{x - 14:.1f}" y1="{y:.1f}" x2="{x + 14:.1f}" y2="{y:.1f}" stroke="#000"/>')
        label = c if len(c) <= 28 else c[:26] + "…"
        body.append(f'<text x="{x:.1f}" y="{H - PAD + 14}" text-anchor="middle" font-size="9">{_esc(label)} '
                    f'(n={len(groups[c])})</text>')
    return _svg(title, body)


def best_table(trials, metric: str, maximize: bool, k: int = 10) -> str:
    done = sorted((t for t in trials if t.value is not None), key=lambda t: t.value, reverse=maximize)[:k]
    names = sorted({n for t in done for n in t.params})
    head = "".join(f"<th>{_esc(n)}</th>" for n in ["rank", "trial", metric, *names])
    rows = []
    for i, t in enumerate(done, 1):
        cells = [i, t.number, f"{t.value:.4f}"] + [
            (f"{t.params[n]:.4g}" if isinstance(t.params.get(n), float) else t.params.get(n, "—")) for n in names]
        rows.append("<tr>" + "".join(f"<td>{_esc(c)}</td>" for c in cells) + "</tr>")
    return f'<table id="best"><thead><tr>{head}</tr></thead><tbody>{"".join(rows)}</tbody></table>'


def render(study, spec_name: str, metric: str, maximize: bool) -> str:
    import optuna

    trials = study.get_trials(deepcopy=False)
    states = {s.name: sum(t.state == s for t in trials) for s in optuna.trial.TrialState}
    counts = ", ".join(f"{n.lower()} {c}" for n, c in states.items() if c)
    best = [t.value for t in trials if t.value is not None]
    best_v = (max(best) if maximize else min(best)) if best else math.nan
    charts = [history_chart(trials, metric, maximize), importance_chart(study), parallel_chart(trials, metric),
              category_chart(trials, "separators", metric, f"{metric} by separator checkpoint (a trial counts "
                             "for each checkpoint of its subset)", split="+"),
              category_chart(trials, "views", metric, f"{metric} by view combination")]
    style = ("body{font-family:sans-serif;margin:24px;color:#222}figure{display:inline-block;margin:8px}"
             "figcaption{font-weight:bold;margin-bottom:4px}table{border-collapse:collapse}"
             "td,th{border:1px solid #ccc;padding:3px 8px;font-size:13px}.note{font-size:12px;color:#666}")
    return (f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>sweep {_esc(spec_name)}</title>"
            f"<style>{style}</style></head><body><h1>Sweep {_esc(spec_name)}</h1>"
            f"<p>{len(trials)} trials ({_esc(counts)}); metric {_esc(metric)} ({'max' if maximize else 'min'}); "
            f"best {best_v:.4f}.</p>{''.join(charts)}<h2>Best trials</h2>{best_table(trials, metric, maximize)}"
            f"</body></html>")


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
