"""`sslsep report run RUN_DIR`: one self-contained HTML page of a run (RUN_DIR/report.html),
opened offline in a browser, from a local run directory or downloaded from s3://.

    results     the suite table (each task's headline metric, the mean over tasks), the
                verdict, then each task's table with its protocol stated
    curves      separator validation against step (convergence states marked); pretraining
                loss parts, coincidence accuracy and the live monitor, one line per variant;
                throughput per stage
    listening   a few clips: the mixture, each convergence state's active channels, the views
                drawn, as audio with log-mel spectrograms (sslsep.reporting.listening)
    maps        t-SNE / PCA of the evaluation clips' frozen embeddings per extractor (the
                suite's first task)
    data        the data stage's accounting

An incomplete run (interrupted, a stage not run, an older layout) gives a page of what exists,
with a list of what is missing and why (sslsep.reporting.contents).
"""

from __future__ import annotations

import time

from sslsep import figures, storage
from sslsep.reporting.contents import RunContents, read_run
from sslsep.reporting.curves import pretrain_curves, separation_curves, throughput_curves
from sslsep.reporting.listening import listening_panel
from sslsep.reporting.maps import embedding_maps

REPORT = "report.html"
esc = figures.esc


def _stages(c: RunContents) -> str:
    done = {
        "data": f"{c.data_report.get('kept')} of {c.data_report.get('listed')} clips usable"
        if c.data_report else None,
        "separation": f"{len(c.registry.get('separators', []))} convergence states "
                      f"({', '.join(e['name'] for e in c.registry.get('separators', []))})" if c.registry else None,
        "pretraining": f"{len(c.pretrain)} variant(s): {', '.join(sorted(c.pretrain))}" if c.pretrain else None,
        "evaluation": _evaluation_state(c.results) if c.results else None}
    return figures.table(["stage", "state"], [[k, v or "not run / not finished"] for k, v in done.items()],
                         "stages")


def _fmt(mean, std, digits: int = 3) -> str:
    return "—" if mean is None else f"{mean:.{digits}f}" + (f" ± {std:.{digits}f}" if std else "")


def _evaluation_state(results: dict) -> str:
    from sslsep.evaluation.suite import task_results

    tasks = task_results(results)
    return (f"{len(tasks)} task(s) ({', '.join(t['name'] for t in tasks)}), "
            f"{sum(len(t['rows']) for t in tasks)} rows")


def suite_table(r: dict) -> str:
    """The suite table: extractor, classifier, each task's headline metric, mean over tasks."""
    suite, names = r["suite"], [t["name"] for t in r["tasks"]]
    metric = {t["name"]: t["metric"] for t in suite["tasks"]}
    rows = [[s["extractor"], s["classifier"], *(_fmt(s["per_task"].get(n), None) for n in names), _fmt(s["mean"], None)]
            for s in suite["scores"]]
    return figures.table(["extractor", "classifier", *(f"{n} ({metric[n]})" for n in names), "mean over tasks"],
                         rows, "results")  # the page's results table (id kept from one protocol)


def task_section(t: dict, heading: bool) -> str:
    """One task's protocol, accounting and table (as the page showed the one protocol before)."""
    p, clips = t["protocol"], t["clips"]
    single = not p["multilabel"]
    metrics = ["mAP", "auc", "d_prime"] + (["accuracy"] if single else [])
    rows = [[row["extractor"], row["classifier"], row["dim"],
             *(_fmt(row.get(m), row.get(f"{m}_std"), 2 if m == "d_prime" else 3) for m in metrics)]
            for row in t["rows"]]
    table = figures.table(["extractor", "classifier", "dim", "mAP", "AUC", "d'"] + (["accuracy"] if single else []),
                          rows, f"results-{t['name']}" if heading else "results")
    seeds = t.get("runs", {}).get("seeds", [])
    return ((f"<h3>Task {esc(t['name'])}</h3>" if heading else "")
            + f"<p>Protocol: {esc(p['description'])}. Splits: {p['n_splits']}; mean ± std over them"
            + (f"; {len(seeds)} pretraining seeds, a row per variant and seed" if seeds else "")
            + f". Clips: {clips['total']} in = {clips['used']} evaluated + {len(clips['skipped'])} skipped + "
            f"{len(clips['unlabelled'])} unlabelled.</p>" + table)


def results_section(c: RunContents) -> str:
    """The suite table and the verdict, then each task's table (a results.json of before the
    suite: its one table and the verdict)."""
    head = "<h2>Results</h2>"
    if c.results is None:
        return head + '<p class="missing">no results.json: the evaluation stage did not finish</p>'
    r = c.results
    verdict = (f'<pre id="verdict">{esc(c.verdict)}</pre>' if c.verdict else '<p class="missing">no verdict.txt</p>')
    if "tasks" not in r:
        return head + task_section({**r, "name": "task"}, heading=False) + verdict
    not_tasks = r["suite"].get("not_tasks") or []
    return (head + f"<p>Suite: {len(r['tasks'])} task(s), each on its headline metric (accuracy single-label, mAP "
            "multi-label; mean over its splits), and the mean over tasks.</p>" + suite_table(r)
            + ("<p>Not tasks: " + "; ".join(f"{esc(t['name'])}: {esc(t['reason'])}" for t in not_tasks) + ".</p>"
               if not_tasks else "")
            + verdict + "".join(task_section(t, heading=True) for t in r["tasks"]))


def monitor_protocol(c: RunContents) -> str:
    """The live monitor's protocol in words (from pretrain/<variant>/monitor.json)."""
    if not c.monitor:
        return ""
    p = next(iter(c.monitor.values()))
    if not p.get("enabled", True):
        return f'<p class="note" id="monitor-protocol">Live monitor off: {esc(p.get("reason", ""))}.</p>'
    try:
        q = int(p["query_clips"])
        se = 0.5 / q ** 0.5  # the widest binomial standard error of an accuracy on q queries
        metric = "top-1 accuracy" if p["metric"] == "knn_acc" else "mAP"
        text = (f"Live monitor: weighted cosine k-NN (k {p['k']}, vote weight exp(cos / {p['temperature']})) of each "
                f"variant's frozen clip embeddings, {metric} of {q} query clips against {p['reference_clips']} "
                f"reference clips, {p['groups']} recording groups halved so that none is on both sides; every "
                f"{p['every']} steps and at the last. Selection: {p.get('selection', '?')}. On {q} queries an "
                f"accuracy moves by up to ±{se:.2f} (one standard error) by chance: a trend, the shallow evaluation "
                f"above is the judge.")
    except (KeyError, TypeError, ValueError, ZeroDivisionError):  # another layout: show it as it is
        text = "Live monitor protocol: " + ", ".join(f"{k} {v}" for k, v in p.items())
    return f'<p class="note" id="monitor-protocol">{esc(text)}</p>'


def delivery_section(c: RunContents) -> str:
    """Per pass of each training stream: the clips that reached a training step, repeats,
    items never delivered, where each pass began, and the restarts."""
    out = []
    for variant, d in c.delivery.items():
        restarts = d.get("restarts") or []
        note = (f"{len(restarts)} restart(s), restored at step " + ", ".join(str(r.get("step")) for r in restarts)
                if restarts else "no restart")
        rows = [[p.get("pass"), p.get("clips"), p.get("delivered"), p.get("repeats"), p.get("undelivered"),
                 p.get("began_at_step"), p.get("state")] for p in d.get("passes") or [] if p.get("state") != "not started"]
        out.append(f"<h3>Training stream of {esc(variant)}</h3><p>{d.get('delivered')} clips trained on, "
                   f"{d.get('repeats')} delivered twice; {esc(note)}.</p>"
                   + figures.table(["pass", "clips planned", "delivered", "delivered twice", "not delivered",
                                    "began at step", "state"], rows, f"data-delivery-{variant.replace('/', '-')}"))
    return "".join(out)


def data_section(c: RunContents) -> str:
    d = c.data_report
    if d is None:
        return delivery_section(c)
    skipped = d.get("skipped") or []
    head = (f"<h2>Data</h2><p>{esc(d.get('source'))} {esc(d.get('path') or '')}: {d.get('listed')} clips listed; "
            f"checked {esc(d.get('checked'))}: {d.get('kept')} usable, {len(skipped)} skipped.</p>")
    per = d.get("sources") or []
    if not per:  # a report of an older run: no per-source accounting
        return head + delivery_section(c)
    rows = [[p.get("name"), p.get("kind"), f"{p.get('weight', 1):g}", p.get("listed"), p.get("total"), p.get("kept"),
             len(p.get("skipped") or []), len(p.get("silent") or []), len(p.get("label_problems") or []),
             p.get("audio_hours")] for p in per]
    return head + figures.table(["source", "kind", "weight", "listed", "checked", "usable", "skipped", "silent",
                                 "label problems", "hours checked"], rows, "data-sources") + delivery_section(c)


def render(c: RunContents, clips: int = 4, method: str = "tsne") -> str:
    from sslsep.pipeline import registry_uri

    info = c.run_info or {}
    name = c.config.name if c.config else "?"
    registry = registry_uri(c.config, c) if c.config else c.uri("registry.json")
    body = [f"<h1>Run {esc(c.path.rstrip('/').rsplit('/', 1)[-1])}</h1>",
            f"<p class=note>{esc(c.path)} · preset {esc(name)} · started as <code>{esc(' '.join(info.get('argv', [])))}"
            f"</code> · commit {esc(info.get('git_commit', '?'))} · report written "
            f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}</p>", _stages(c)]
    if c.missing:
        body.append('<h2>Missing</h2><ul id="missing">' + "".join(f"<li>{esc(m)}</li>" for m in c.missing)
                    + "</ul>")
    body += [results_section(c), "<h2>Curves</h2>", separation_curves(c.separation, c.registry),
             pretrain_curves(c.pretrain), monitor_protocol(c), throughput_curves(c.separation, c.pretrain)]
    body.append(listening_panel(c.config, registry, clips) if clips > 0 else "")
    body += ["<h2>Embedding maps</h2>", embedding_maps(c.embeddings, method), data_section(c)]
    return figures.page(f"sslsep run {c.path.rsplit('/', 1)[-1]}", body)


def write_run_report(run_dir: str, out: str | None = None, clips: int = 4, method: str = "tsne") -> list[str]:
    """Write RUN_DIR/report.html (and a copy at `out`, e.g. a local file for an s3:// run);
    returns the paths written."""
    page = render(read_run(run_dir), clips, method).encode()
    written = [storage.join(run_dir, REPORT)]
    storage.write_bytes(written[0], page)
    if out:
        storage.write_bytes(out, page)
        written.append(out)
    return written
