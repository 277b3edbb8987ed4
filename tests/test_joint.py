"""experiments/joint.py as users run it: run directory contents, resume, --data."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
import soundfile as sf
import yaml

from conftest import read_scalars, tone

REPO = Path(__file__).resolve().parents[1]


def joint(*args):
    cmd = [sys.executable, str(REPO / "experiments" / "joint.py"), "--set", "ray.num_cpus=2", *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=300)


@pytest.mark.slow
@pytest.mark.ray
def test_joint_on_a_folder_accounts_for_every_clip_and_resumes(tmp_path, bad_folder):
    root, expected = bad_folder
    for i in range(10):  # enough usable clips for a train and a held-out side
        sf.write(root / f"tone{i}.wav", tone(freq=200.0 + 150 * i), 16000)
        expected[f"tone{i}.wav"] = "ok"
    out = tmp_path / "run"
    tiny = ["--set", "audio.clip_seconds=1.0", "--set", "separation.steps=2", "--set", "separation.val_clips=4",
            "--set", "separation.batch_clips=2", "--set", "separation.checkpoint_steps=[1]",
            "--set", "separation.val_fraction=0.5", "--set", "separation.use_ray=false",
            "--set", "augment.crop_seconds=0.5", "--set", "augment.batch_size=4", "--set", "pretrain.steps=2",
            "--set", "pretrain.batch_clips=4", "--set", "pretrain.log_every=1", "--set", "pretrain.use_ray=false",
            "--set", "joint.controls=[mixture-only, sim-only, coinc-only]", "--set", "evaluation.classifiers=[linear]",
            "--set", "evaluation.folds=2", "--set", "evaluation.max_epochs=3"]
    res = joint("--data", str(root), *tiny, "--out", str(out))
    assert res.returncode == 0, res.stderr[-3000:]
    cfg = yaml.safe_load((out / "config.yaml").read_text())
    assert cfg["data"]["path"] == str(root) and cfg["audio"]["clip_seconds"] == 1.0
    meta = json.loads((out / "run.json").read_text())
    assert meta["packages"]["ray"].startswith("2.60") and meta["git_commit"]
    report = json.loads((out / "data_report.json").read_text())
    assert report["total"] == len(expected) and report["kept"] == 15
    assert {s["name"] for s in report["skipped"]} == {k for k, s in expected.items() if s not in ("ok", "silent")}
    lines = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    assert lines[0]["stage"] == "data" and lines[0]["clips"] == len(expected)
    assert [ln["stage"] for ln in lines[1:]] == ["separation"] * 2 + ["pretrain"] * 4 + ["evaluate"] * 6
    # the three variants that see the same views trained on one stream; mixture-only on its own
    trained = {ln["variant"]: ln["trained_with"] for ln in lines if ln["stage"] == "pretrain"}
    assert list(trained) == ["configured", "sim-only", "coinc-only", "mixture-only"]
    assert trained["sim-only"] == ["configured", "sim-only", "coinc-only"]
    assert trained["mixture-only"] == ["mixture-only"]
    for name in trained:
        steps = [json.loads(x)["step"] for x in (out / "pretrain" / name / "metrics.jsonl").read_text().splitlines()]
        assert steps == [1, 2] and (out / "pretrain" / name / "encoder.pt").exists(), name
    results = json.loads((out / "results.json").read_text())
    [task] = results["tasks"]  # the one folder source is the one task
    assert task["clips"]["total"] == len(expected)  # the evaluation accounts for every file too
    assert {s["name"] for s in task["clips"]["skipped"]} == {s["name"] for s in report["skipped"]}
    assert "verdict (linear" in (out / "verdict.txt").read_text()
    assert f"report: {out / 'report.html'}" in res.stdout  # the page of the run (tests/test_run_report.py)
    assert (out / "report.html").read_text().count('class="clip"') == 4  # the folder's own clips, to listen to
    # `tensorboard --logdir RUN_DIR` shows every stage: the job's lines, and each variant's curves
    top = read_scalars(out)
    assert "data/clips" in top and any(t.startswith("evaluate/mixture-only/linear/") for t in top)
    for name in ("configured", "mixture-only"):
        tags = read_scalars(out / "pretrain" / name)
        assert [s for s, _ in tags["pretrain/total"]] == [1, 2] and "pretrain/steps_per_s" in tags, name
    assert [e["step"] for e in json.loads((out / "registry.json").read_text())["separators"]] == [1, 2]
    again = joint("--data", str(root), *tiny, "--out", str(out))
    assert again.returncode == 0 and "data: done already" in again.stdout
    assert len((out / "metrics.jsonl").read_text().splitlines()) == len(lines)


def test_joint_bad_config_fails_fast_naming_the_key(tmp_path):
    res = joint("--set", "data.synth.num_clipz=3", "--out", str(tmp_path / "x"))
    assert res.returncode == 2 and "unknown key 'data.synth.num_clipz'" in res.stderr


@pytest.mark.slow
@pytest.mark.ray
def test_interrupted_job_resumes_where_it_stopped(tmp_path):
    """Ctrl-C during pretraining on Ray Train, then the same command again: finished stages are
    skipped and pretraining continues from its latest checkpoint instead of step 0."""
    import os
    import signal
    import time

    out = tmp_path / "run"
    args = [sys.executable, str(REPO / "experiments" / "joint.py"), "--config",
            str(REPO / "experiments" / "configs" / "debug.yaml"), "--out", str(out),
            "--set", "separation.steps=2", "--set", "separation.checkpoint_steps=[1]",
            "--set", "separation.batch_clips=4", "--set", "separation.val_clips=4",
            "--set", "separation.use_ray=false", "--set", "data.synth.num_clips=64",
            "--set", "augment.batch_size=4", "--set", "augment.cpus_per_actor=0.5",
            "--set", "augment.kinds=[mixture]", "--set", "pretrain.cpus_per_worker=0.5",
            "--set", "pretrain.steps=14", "--set", "pretrain.batch_clips=4", "--set", "pretrain.log_every=2",
            "--set", "joint.controls=[]", "--set", "joint.evaluate=false"]
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)
    snapshot = out / "pretrain" / "configured" / "ray_train" / "pretrain" / "checkpoint_manager_snapshot.json"
    deadline = time.monotonic() + 240
    while proc.poll() is None and time.monotonic() < deadline and not snapshot.exists():
        time.sleep(0.5)
    assert proc.poll() is None, "the job finished before it could be interrupted:\n" + proc.stdout.read()[-3000:]
    os.killpg(proc.pid, signal.SIGINT)  # Ctrl-C reaches the whole foreground group
    try:
        proc.wait(60)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(30)
    metrics = out / "pretrain" / "configured" / "metrics.jsonl"
    before = [json.loads(x)["step"] for x in metrics.read_text().splitlines()] if metrics.exists() else []
    assert not before or before[-1] < 14, "the interruption came too late to test anything"

    res = subprocess.run(args, capture_output=True, text=True, timeout=400)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    assert "data: done already" in res.stdout
    steps = [json.loads(x)["step"] for x in metrics.read_text().splitlines()]
    assert steps[-1] == 14
    resumed = steps[len(before):]
    assert resumed and resumed[0] > 2, f"pretraining restarted from step 0: before {before}, after {resumed}"
    assert (out / "pretrain" / "configured" / "encoder.pt").exists()
    # ... and from its place in the view stream: the same command again reads on where the
    # checkpoint stood, so the final weights' lineage trained on 14 x 4 different clips
    delivery = json.loads((out / "pretrain" / "configured" / "delivery.json").read_text())
    assert delivery["delivered"] == 14 * 4 and delivery["repeats"] == 0, delivery
    assert [r["step"] for r in delivery["restarts"]] == [resumed[0] - 2], delivery["restarts"]
