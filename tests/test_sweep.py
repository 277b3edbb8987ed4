"""A sweep as users run it: experiments/sweep.py with Tune + Optuna (sqlite) + ASHA on a local
Ray cluster; interrupted with Ctrl-C and run again; a trial that errors is retried, then
marked, and the sweep goes on; the dashboards (HTML, TensorBoard, Optuna study) are there."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest

REPO = Path(__file__).resolve().parents[1]
SWEEP = """
name: tiny
set:
  audio.clip_seconds: 0.5
  data.synth.num_clips: 32
  augment.crop_seconds: 0.25
  augment.batch_size: 4
  augment.cpus_per_actor: 0.5
  pretrain.batch_clips: 4
  pretrain.log_every: 1
  pretrain.cpus_per_worker: 0.5
  evaluation.synth_train_clips: 24
  evaluation.synth_eval_clips: 12
  evaluation.max_epochs: 3
  evaluation.classifiers: [linear]
  ray.num_cpus: 2
  pretrain.use_ray: false   # the sweep machinery is under test here; Ray Train pretraining has its own tests
metric: mAP
num_samples: 3
rungs: [1, 2]
max_failures: 1
start: [{views: broken}, {views: mixture-only}]
space:
  views:
    choice:
      mixture-only: {augment.kinds: [mixture]}
      separated: {augment.kinds: [mixture, channel, sum]}
      broken: {augment.separators: [step-999999]}     # not in the registry: the trial errors
  separators: {subsets: registry, when: {views: [separated]}}
  pretrain.w_coinc: {uniform: [0.0, 1.0]}
"""


def trials(db: Path) -> list:
    if not db.exists():
        return []
    try:
        return optuna.load_study(study_name="tiny", storage=f"sqlite:///{db}").get_trials()
    except Exception:  # the study may not be created yet (KeyError), or the file is mid-write
        return []


@pytest.mark.slow
@pytest.mark.ray
def test_sweep_interrupted_resumes_keeps_finished_trials_and_marks_errors(tmp_path, registry):
    sweep = tmp_path / "tiny.yaml"
    sweep.write_text(SWEEP)
    out = tmp_path / "sweep"
    cmd = [sys.executable, str(REPO / "experiments" / "sweep.py"), "--sweep", str(sweep), "--registry", registry,
           "--out", str(out)]
    env = {**os.environ, "TUNE_RESULT_BUFFER_LENGTH": "1"}
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)
    db = out / "optuna.db"
    deadline = time.monotonic() + 420
    while proc.poll() is None and time.monotonic() < deadline:
        if any(t.state == optuna.trial.TrialState.COMPLETE for t in trials(db)):
            break
        time.sleep(2)
    assert proc.poll() is None, f"the sweep ended before it could be interrupted:\n{proc.stdout.read()[-4000:]}"
    os.killpg(proc.pid, signal.SIGINT)  # Ctrl-C
    try:
        proc.wait(120)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(30)
    first = {t.number: (t.state, t.value, dict(t.params)) for t in trials(db)}
    finished = {n: v for n, v in first.items() if v[0] == optuna.trial.TrialState.COMPLETE}
    assert finished, first
    trial_dirs = {p.name: (p / "metrics.jsonl").read_text() for p in (out / "trials").iterdir()
                  if (p / "eval" / "step-000002" / "results.json").exists()}
    assert trial_dirs

    res = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stdout[-4000:] + res.stderr[-4000:]
    assert "sweep: resuming" in res.stdout
    summary = json.loads((out / "sweep_summary.json").read_text())
    assert summary["trials"] == 3 and summary["errored"] == 1 and summary["finished"] == 2, summary
    assert "step-999999" in summary["errors"][0]
    # nothing finished was lost or run again
    for name, metrics in trial_dirs.items():
        assert (out / "trials" / name / "metrics.jsonl").read_text() == metrics, name
    after = {t.number: (t.state, t.value, dict(t.params)) for t in trials(db)}
    for n, v in finished.items():
        assert after[n] == v
    states = [t.state for t in trials(db)]
    assert states.count(optuna.trial.TrialState.COMPLETE) == 2 and optuna.trial.TrialState.FAIL in states
    # the three views of a sweep: HTML dashboard, TensorBoard event files per trial, the Optuna study
    page = (out / "sweep.html").read_text()
    assert page.count('class="chart"') == 5 and "Best trials" in page
    assert list((out / "tune" / "tiny").rglob("events.out.tfevents*"))
    assert "optuna-dashboard sqlite:///" in res.stdout
