"""The job path as users run it: `ray start --head` with token authentication, then
`ray job submit --working-dir . -- python experiments/joint.py --config ...`; and the same
config run again locally gives the same results (same config + seed -> same results.json).

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
import torch

from conftest import REPO, _free_port

RAY = str(Path(sys.executable).with_name("ray"))
DEBUG = REPO / "experiments" / "configs" / "debug.yaml"
# what may differ between two runs of one config: wall-clock figures and the run's own paths
VOLATILE = {"fit_s", "embed_s", "wall_s", "source", "extractors"}


def _stable(obj):
    if isinstance(obj, dict):
        return {k: _stable(v) for k, v in obj.items() if k not in VOLATILE}
    if isinstance(obj, list):
        return [_stable(v) for v in obj]
    return obj


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
def test_joint_job_through_ray_job_submit_repeats_a_local_run(head, tmp_path):
    """The debug preset submitted as a job, then run locally: both succeed, and the same config
    and seed give the same results to every digit and the same encoder weights. Both run
    directories have a path YAML would misread (' #', ': '), which reaches every stage as it is."""
    address, env = head
    job, local = tmp_path / "run #1: job", tmp_path / "run #2: local"
    res = submit(address, env, "--config", "experiments/configs/debug.yaml", "--out", str(job))
    log = res.stdout + res.stderr
    assert res.returncode == 0 and "succeeded" in log, log[-4000:]
    assert "ray: joined the running cluster" in log  # not a private local one
    jobs = subprocess.run([RAY, "job", "list", "--address", address], env=env, capture_output=True, text=True)
    assert "SUCCEEDED" in jobs.stdout
    res = subprocess.run([sys.executable, str(REPO / "experiments" / "joint.py"), "--config", str(DEBUG),
                          "--out", str(local)], capture_output=True, text=True, timeout=400)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    assert "ray: started a local cluster" in res.stdout
    for out in (job, local):
        registry = json.loads((out / "registry.json").read_text())
        assert [e["step"] for e in registry["separators"]] == [2, 4]
        ckpt = torch.load(out / "pretrain" / "configured" / "encoder.pt", weights_only=True)
        assert ckpt["config"]["separation"]["registry"] == str(out / "registry.json")
        assert 'class="clip"' in (out / "report.html").read_text()  # the page, drawn by the job's driver
    first, second = (json.loads((out / "results.json").read_text()) for out in (job, local))
    names = {row["extractor"] for task in first["tasks"] for row in task["rows"]}
    assert {"logmel-stats", "random-init"} <= names and any(n.startswith("configured") for n in names)
    assert _stable(first) == _stable(second)
    tables = [(out / "results.md").read_text().replace(str(out), "RUN_DIR") for out in (job, local)]
    assert tables[0] == tables[1] and tables[0].count("|") > 10
    a, b = (torch.load(out / "pretrain" / "configured" / "encoder.pt", weights_only=True)["state_dict"]
            for out in (job, local))
    assert all(torch.equal(a[k], b[k]) for k in a)  # the same weights, not merely close figures
