"""`sslsep report run RUN_DIR`: the page a joint job writes, opened in headless Chromium (every
audio element plays a duration, every image decodes, no console error; a screenshot is kept),
and pages of incomplete or older run directories (what exists is shown, what is missing is
said, never a crash)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import REPO

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
TINY = ["--set", "separation.steps=2", "--set", "separation.checkpoint_steps=[1]", "--set", "separation.use_ray=false",
        "--set", "pretrain.use_ray=false", "--set", "pretrain.steps=2", "--set", "pretrain.log_every=1",
        "--set", "joint.controls=[mixture-only]", "--set", "evaluation.folds=2",
        "--set", "joint.report_clips=4", "--set", "joint.report_map=tsne"]  # the page users get


def artifacts(tmp_path: Path) -> Path:
    """Where a test keeps files for people to look at: $SSLSEP_TEST_ARTIFACTS (CI sets it), else tmp."""
    out = Path(os.environ.get("SSLSEP_TEST_ARTIFACTS") or tmp_path)
    out.mkdir(parents=True, exist_ok=True)
    return out


@pytest.fixture(scope="module")
def joint_run(tmp_path_factory) -> tuple[Path, str]:
    out = tmp_path_factory.mktemp("report") / "run"
    cmd = [sys.executable, str(REPO / "experiments" / "joint.py"), "--config",
           str(REPO / "experiments" / "configs" / "debug.yaml"), "--out", str(out), *TINY]
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=400)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    return out, res.stdout


@pytest.mark.slow
def test_joint_job_writes_the_report_and_prints_its_path(joint_run):
    out, stdout = joint_run
    assert f"report: {out / 'report.html'}" in stdout
    page = (out / "report.html").read_text()
    results = json.loads((out / "results.json").read_text())
    for task in results["tasks"]:  # a table per task holds every row of results.json, its protocol stated
        for row in task["rows"]:
            assert f"<td>{row['extractor']}</td>" in page.replace("&#x27;", "'")
        assert task["protocol"]["description"] in page and f"<h3>Task {task['name']}</h3>" in page
    assert 'id="results"' in page and "mean over tasks" in page and "suite verdict (linear" in page
    assert 'id="verdict"' in page and "verdict (linear" in page
    for title in ("Separator training", "Pretraining, one line per variant", "Throughput per stage",
                  "Frozen embeddings of the evaluation clips"):
        assert title in page, title
    assert page.count('class="clip"') == 4  # the listening panel's clips
    assert "step-000001" in page and "step-000002" in page  # both convergence states separated them
    assert "<script" not in page and "http://" not in page and "https://" not in page  # offline, self-contained
    assert 'id="missing"' not in page  # a complete run lacks nothing
    # the live monitor ran (synthetic scenes carry labels): its curve is drawn, its protocol stated
    assert "no live-monitor figures" not in page and 'id="monitor-protocol">Live monitor: weighted cosine' in page


@pytest.mark.slow
@pytest.mark.skipif(CHROMIUM is None, reason="headless Chromium is not installed (apt-get install chromium)")
def test_report_plays_and_renders_in_headless_chromium(joint_run, tmp_path):
    from playwright.sync_api import sync_playwright

    out, _ = joint_run
    errors = []
    shot = artifacts(tmp_path) / "run_report.png"
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        page = browser.new_page(viewport={"width": 1400, "height": 900})
        page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.goto((out / "report.html").resolve().as_uri())
        page.wait_for_load_state("load")
        n_audio = page.locator("audio").count()
        assert n_audio >= 4 * 2  # per clip at least the mixture and the views
        page.wait_for_function("Array.from(document.querySelectorAll('audio')).every(a => a.readyState >= 1)",
                               timeout=30_000)
        durations = page.evaluate("Array.from(document.querySelectorAll('audio')).map(a => a.duration)")
        assert len(durations) == n_audio and all(d > 0 for d in durations), durations
        broken = page.evaluate("Array.from(document.images).filter(i => !(i.complete && i.naturalWidth > 0))"
                               ".map(i => i.alt)")
        assert page.evaluate("document.images.length") >= 4 + n_audio and broken == []
        for chart in page.locator("img.chart").all():
            box = chart.bounding_box()
            assert box and box["width"] > 300 and box["height"] > 150, chart.get_attribute("data-title")
        page.screenshot(path=str(shot), full_page=True)
        browser.close()
    assert errors == []
    print(f"screenshot: {shot}")


def _copy(run: Path, dst: Path, drop: tuple[str, ...] = ()) -> Path:
    shutil.copytree(run, dst)
    for name in drop:
        target = dst / name
        shutil.rmtree(target) if target.is_dir() else target.unlink()
    return dst


@pytest.mark.slow
def test_incomplete_runs_give_a_page_that_says_what_is_missing(joint_run, tmp_path):
    from sslsep.reporting.run_report import write_run_report

    run, _ = joint_run
    # interrupted during pretraining: no evaluation yet, the last metrics line cut mid-write,
    # and separators from elsewhere that have since gone
    cut = _copy(run, tmp_path / "cut", drop=("results.json", "verdict.txt", "embeddings.npz", "results.md",
                                              "report.html", "registry.json"))
    metrics = cut / "pretrain" / "mixture-only" / "metrics.jsonl"
    metrics.write_text(metrics.read_text()[:-25])
    page = Path(write_run_report(str(cut), clips=1, method="pca")[0]).read_text()
    for what in ("results.json: not written", "verdict.txt: not written", "embeddings.npz: not written",
                 "registry.json: not written", "no results.json: the evaluation stage did not finish",
                 "no RUN_DIR/embeddings.npz", "mixtures only"):
        assert what in page, what
    assert "Pretraining, one line per variant" in page and 'class="clip"' in page
    # stopped right after start: a config and nothing else
    bare = tmp_path / "bare"
    bare.mkdir()
    shutil.copy(run / "config.yaml", bare / "config.yaml")
    page = Path(write_run_report(str(bare), clips=0)[0]).read_text()
    assert page.count("not run / not finished") == 4 and "no pretraining metrics" in page
    # an older layout: a config key this version does not know
    old = _copy(run, tmp_path / "old", drop=("report.html",))
    (old / "config.yaml").write_text((old / "config.yaml").read_text() + "legacy_section:\n  key: 1\n")
    page = Path(write_run_report(str(old), clips=1)[0]).read_text()
    assert "not a config of this version" in page and "no usable config.yaml" in page
    assert 'id="results"' in page  # the rest is still shown


def _task(name, multilabel, acc):
    rows = [{"extractor": e, "classifier": "linear", "dim": 8, "mAP": 0.5, "mAP_std": 0.0, "auc": 0.6, "auc_std": 0.0,
             "d_prime": 0.3, "d_prime_std": 0.0, "accuracy": None if multilabel else a, "accuracy_std": 0.0}
            for e, a in (("logmel-stats", acc), ("random-init", acc - 0.1))]
    return {"name": name, "rows": rows, "clips": {"total": 5, "used": 4, "skipped": [], "unlabelled": ["u.wav"]},
            "protocol": {"name": "folds", "description": f"{name} protocol", "multilabel": multilabel, "n_splits": 3}}


def test_results_section_shows_the_suite_then_each_task():
    from sslsep.evaluation.suite import suite_summary
    from sslsep.reporting.contents import RunContents
    from sslsep.reporting.run_report import _stages, results_section

    tasks = [_task("esc50", False, 0.8), _task("scenes", True, 0.0)]
    results = {"tasks": tasks, "suite": suite_summary(tasks, [{"name": "bare", "reason": "no labels"}])}
    c = RunContents("/nowhere", results=results, verdict="suite verdict (linear, 2 task(s)): ...")
    html = results_section(c)
    assert html.index('id="results"') < html.index('id="verdict"') < html.index("<h3>Task esc50</h3>") \
        < html.index("<h3>Task scenes</h3>")
    assert "<th>esc50 (accuracy)</th><th>scenes (mAP)</th><th>mean over tasks</th>" in html
    assert "<td>0.650</td>" in html  # logmel-stats: mean of 0.8 (esc50 accuracy) and 0.5 (scenes mAP)
    assert "bare: no labels" in html and "Clips: 5 in = 4 evaluated + 0 skipped + 1 unlabelled" in html
    assert "2 task(s) (esc50, scenes), 4 rows" in _stages(c)
    legacy = RunContents("/nowhere", results={k: v for k, v in tasks[0].items() if k != "name"})
    assert 'id="results"' in results_section(legacy) and "1 task(s) (folds), 2 rows" in _stages(legacy)


def test_report_of_a_missing_directory_is_a_clear_error(tmp_path):
    res = subprocess.run([sys.executable, "-m", "sslsep.cli", "report", "run", str(tmp_path / "nope")],
                         capture_output=True, text=True, timeout=120)
    assert res.returncode == 2 and "no such run directory" in res.stderr
