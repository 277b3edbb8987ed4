"""`sslsep report sweep RUN_DIR`: the self-contained HTML dashboard, opened in headless Chromium.

The study is a real Optuna study in sqlite, filled through the sweep's own define-by-run
space (as OptunaSearch fills it), so the report reads what a sweep writes."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import optuna
import pytest

from sslsep.run import RunDir
from sslsep.tuning.space import load_sweep, suggest

REPO = Path(__file__).resolve().parents[1]
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
CHART_TITLES = ["Optimisation history", "Parameter importances", "Parallel coordinates",
                "mAP by separator checkpoint", "mAP by view combination"]  # each a data-title's start


@pytest.fixture
def sweep_dir(tmp_path):
    spec = load_sweep(REPO / "experiments" / "sweeps" / "quick.yaml")
    run = RunDir(str(tmp_path / "sweep"))
    run.write_json("sweep.json", spec.to_dict())
    study = optuna.create_study(study_name=spec.name, storage=f"sqlite:///{tmp_path / 'sweep' / 'optuna.db'}",
                                direction="maximize", sampler=optuna.samplers.RandomSampler(seed=1))
    for i in range(12):
        trial = study.ask()
        suggest(trial, spec, ["step-000500", "step-001000", "step-002000"])
        if i == 5:
            study.tell(trial, state=optuna.trial.TrialState.FAIL)  # an errored trial
            continue
        p = trial.params
        study.tell(trial, 0.3 + 0.2 * p["pretrain.w_coinc"] + (0.1 if p["views"] == "separated" else 0.0))
    return tmp_path / "sweep", study


def test_report_command_writes_every_chart(sweep_dir):
    path, study = sweep_dir
    res = subprocess.run([sys.executable, "-m", "sslsep.cli", "report", "sweep", str(path)], capture_output=True,
                         text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    page = (path / "sweep.html").read_text()
    assert page.count('<img class="chart"') == 5
    for title in CHART_TITLES:
        assert f'data-title="{title}' in page, title
    best = max(t.value for t in study.trials if t.value is not None)
    assert f"best {best:.4f}" in page and "fail 1" in page
    assert "<script" not in page and "<svg" not in page and "http://" not in page and "https://" not in page


def test_report_of_a_folder_without_a_sweep_is_a_clear_error(tmp_path):
    res = subprocess.run([sys.executable, "-m", "sslsep.cli", "report", "sweep", str(tmp_path)],
                         capture_output=True, text=True, timeout=120)
    assert res.returncode == 2 and "sweep.json: not a sweep run directory" in res.stderr


@pytest.mark.skipif(CHROMIUM is None, reason="headless Chromium is not installed (apt-get install chromium)")
@pytest.mark.slow
def test_dashboard_renders_in_headless_chromium(sweep_dir, tmp_path):
    from playwright.sync_api import sync_playwright

    from sslsep.tuning.report import write_report

    path, _ = sweep_dir
    page_uri = Path(write_report(str(path))).resolve().as_uri()
    shot = Path(os.environ.get("SSLSEP_TEST_ARTIFACTS") or tmp_path) / "sweep_report.png"
    shot.parent.mkdir(parents=True, exist_ok=True)
    errors = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        page = browser.new_page(viewport={"width": 1500, "height": 1000})
        page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.goto(page_uri)
        page.wait_for_load_state("load")
        decoded = page.evaluate("() => Array.from(document.querySelectorAll('img.chart'), "
                                "i => [i.dataset.title, i.complete && i.naturalWidth > 0])")
        assert len(decoded) == 5 and all(ok for _, ok in decoded), decoded  # every PNG decoded
        charts = page.locator("img.chart")
        for i in range(5):
            chart = charts.nth(i)
            title = chart.get_attribute("data-title")
            box = chart.bounding_box()
            assert box and box["width"] > 300 and box["height"] > 200, f"chart {title!r} not laid out"
        rows = page.locator("table#best tbody tr")
        assert rows.count() == 10
        values = [float(rows.nth(i).locator("td").nth(2).inner_text()) for i in range(10)]
        assert values == sorted(values, reverse=True)
        page.screenshot(path=str(shot), full_page=True)
        browser.close()
    print(f"sweep report screenshot: {shot}")
    assert errors == []
