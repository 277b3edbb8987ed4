"""The job path as users run it: `ray start --head` with token authentication, then
`ray job submit --working-dir . -- python experiments/joint.py --config ...`.

The head runs in its own process group with its own temp dir and ports, so stopping it
never touches the test session's own Ray cluster (`ray stop` would kill every Ray process
on the machine).
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import REPO, _free_port

RAY = str(Path(sys.executable).with_name("ray"))
TINY = ["--set", "audio.clip_seconds=1.0", "--set", "data.synth.num_clips=24",
        "--set", "separation.steps=2", "--set", "separation.checkpoint_steps=[1]",
        "--set", "separation.batch_clips=4", "--set", "separation.val_clips=4",
        "--set", "augment.crop_seconds=0.5", "--set", "augment.batch_size=4",
        "--set", "augment.cpus_per_actor=0.5",
        "--set", "pretrain.steps=2", "--set", "pretrain.batch_clips=4", "--set", "pretrain.log_every=1",
        "--set", "pretrain.cpus_per_worker=0.5",
        "--set", "joint.controls=[mixture-only]",
        "--set", "evaluation.synth_train_clips=24", "--set", "evaluation.synth_eval_clips=12",
        "--set", "evaluation.max_epochs=3", "--set", "evaluation.classifiers=[linear]"]


@pytest.fixture(scope="module")
def head(tmp_path_factory):
    """A real Ray head (2 CPUs, dashboard + job server) with token auth; yields (address, env)."""
    tmp = tmp_path_factory.mktemp("rayhead")
    dash = _free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_")}
    env.update(RAY_AUTH_MODE="token", RAY_AUTH_TOKEN=secrets.token_hex(16))
    cmd = [RAY, "start", "--head", "--block", "--num-cpus=2", f"--port={_free_port()}",
           f"--dashboard-port={dash}", "--dashboard-host=127.0.0.1", "--include-dashboard=true",
           f"--ray-client-server-port={_free_port()}", f"--dashboard-agent-listen-port={_free_port()}",
           f"--temp-dir={tmp}"]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)
    address = f"http://127.0.0.1:{dash}"
    deadline = time.monotonic() + 120
    while True:  # the job server answers once the dashboard is up
        res = subprocess.run([RAY, "job", "list", "--address", address], env=env, capture_output=True, text=True)
        if res.returncode == 0:
            break
        if proc.poll() is not None or time.monotonic() > deadline:
            os.killpg(proc.pid, signal.SIGKILL)
            why = proc.stdout.read()[-3000:] if proc.poll() is not None else res.stderr
            pytest.fail(f"ray head did not start: {why}")
        time.sleep(2)
    yield address, env
    os.killpg(proc.pid, signal.SIGTERM)
    try:  # `ray start --block` takes its time over SIGTERM; nothing of it is needed any more
        proc.wait(5)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(10)


def submit(address, env, *args, timeout=600):
    cmd = [RAY, "job", "submit", "--address", address, "--working-dir", str(REPO), "--",
           "python", "experiments/joint.py", *args]
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout, cwd=REPO)


@pytest.mark.slow
@pytest.mark.ray
def test_a_client_without_the_token_is_refused(head):
    address, env = head
    no_token = {k: v for k, v in env.items() if k != "RAY_AUTH_TOKEN"}
    no_token["RAY_AUTH_TOKEN_PATH"] = "/nonexistent/token"
    res = subprocess.run([RAY, "job", "list", "--address", address], env=no_token, capture_output=True,
                         text=True, timeout=120)
    assert res.returncode != 0
    assert "auth" in (res.stdout + res.stderr).lower()


@pytest.mark.slow
@pytest.mark.ray
def test_joint_job_through_ray_job_submit(head, tmp_path):
    address, env = head
    out = tmp_path / "run"
    res = submit(address, env, "--config", "experiments/configs/debug.yaml", *TINY, "--out", str(out))
    log = res.stdout + res.stderr
    assert res.returncode == 0 and "succeeded" in log, log[-4000:]
    assert "ray: joined the running cluster" in log  # not a private local one
    registry = json.loads((out / "registry.json").read_text())
    assert [e["step"] for e in registry["separators"]] == [1, 2]
    for variant in ("configured", "mixture-only"):
        assert (out / "pretrain" / variant / "encoder.pt").exists(), variant
    results = json.loads((out / "results.json").read_text())
    names = {row["extractor"] for row in results["rows"]}
    assert {"logmel-stats", "random-init", "mixture-only"} <= names
    assert any(n.startswith("configured") for n in names)
    assert (out / "results.md").read_text().count("|") > 10
    jobs = subprocess.run([RAY, "job", "list", "--address", address], env=env, capture_output=True, text=True)
    assert "SUCCEEDED" in jobs.stdout
