"""One whole quick run with everything on S3 (a real S3 API server on loopback): Parquet
shards in, separator registry and convergence states, Ray Train storage, encoders, results
and metrics out; then the same command again reuses every stage."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from conftest import REPO


@pytest.mark.slow
def test_joint_with_data_and_run_directory_on_s3(s3_server, tmp_path):
    from sslsep import storage

    scenes, shards, run = tmp_path / "scenes", f"{s3_server}/e2e/shards", f"{s3_server}/e2e/run"
    cli = [sys.executable, "-m", "sslsep.cli"]
    res = subprocess.run([*cli, "data", "synth", str(scenes), "--num-clips", "40", "--set", "audio.clip_seconds=1.0"],
                         capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    res = subprocess.run([*cli, "data", "pack", str(scenes / "audio"), shards, "--labels", str(scenes / "labels.csv"),
                          "--shard-clips", "16", "--quiet", "--set", "audio.clip_seconds=1.0"],
                         capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    cmd = [sys.executable, str(REPO / "experiments" / "joint.py"), "--config",
           str(REPO / "experiments" / "configs" / "debug.yaml"), "--data", shards, "--out", run,
           "--set", "audio.clip_seconds=1.0", "--set", "separation.steps=2", "--set", "separation.checkpoint_steps=[1]",
           "--set", "separation.batch_clips=4", "--set", "separation.val_clips=4",
           # both training stages in process here: Ray Train with its storage on S3 has its own tests
           # (test_separation_train.py::test_run_directory_on_s3, test_pretrain.py::..._on_s3)
           "--set", "separation.use_ray=false", "--set", "pretrain.use_ray=false",
           "--set", "augment.batch_size=4", "--set", "augment.cpus_per_actor=0.5",
           "--set", "pretrain.steps=2", "--set", "pretrain.batch_clips=4", "--set", "pretrain.log_every=2",
           "--set", "pretrain.cpus_per_worker=0.5", "--set", "joint.controls=[]",
           "--set", "evaluation.classifiers=[linear]", "--set", "evaluation.folds=2",
           "--set", "evaluation.max_epochs=3"]
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    fs, _ = storage.get_fs(run)
    listing = {p.split("/e2e/run/", 1)[1] for p in fs.find(run.split("://", 1)[1])}
    for name in ("config.yaml", "run.json", "metrics.jsonl", "data_report.json", "registry.json",
                 "separators/step-000001.pt", "separators/step-000002.pt", "pretrain/configured/encoder.pt",
                 "results.json", "results.md", "verdict.txt", "pretrain/configured/pretrain_state.pt",
                 "embeddings.npz", "report.html"):
        assert name in listing, name
    report = json.loads(storage.read_bytes(f"{run}/data_report.json"))
    results = json.loads(storage.read_bytes(f"{run}/results.json"))
    assert report["total"] == 40 and results["tasks"][0]["clips"]["total"] == 40
    # the page of an s3:// run, also written where a browser opens it
    local = tmp_path / "report.html"
    res = subprocess.run([*cli, "report", "run", run, "--out", str(local), "--clips", "1", "--map", "pca"],
                         capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-3000:]
    assert res.stdout.split() == [f"{run}/report.html", str(local)]
    page = local.read_text()
    assert 'id="results"' in page and 'class="clip"' in page and 'id="missing"' not in page
    again = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert again.returncode == 0 and "data: done already" in again.stdout and "evaluate: done already" in again.stdout
    assert again.stdout.count("done already") >= 3  # data, pretraining, evaluation
