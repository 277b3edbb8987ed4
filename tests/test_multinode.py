"""A Ray cluster of three nodes started with `ray start`, as users run one, and the joint job
submitted to it with `ray job submit`: custom resources pin the augmentation actors to one node
and the trainers to another; the trainer node is killed in the middle of pretraining (its
raylet and workers, by process group) and a replacement joins, as an autoscaler would start
one; the job still finishes, pretraining resumed from its latest checkpoint."""

from __future__ import annotations

import json
import subprocess
import threading
import time

import pytest

from conftest import REPO
from raynodes import RAY, LocalCluster

pytestmark = [pytest.mark.ray, pytest.mark.slow]

PINNED = ["--set", "augment.resources={separator_node: 0.01}", "--set", "pretrain.resources={trainer_node: 0.01}",
          "--set", "separation.resources={trainer_node: 0.01}"]


@pytest.fixture
def cluster(tmp_path):
    c = LocalCluster(tmp_path)
    # node loss noticed within seconds (defaults: about 30 s), so the test spends its time on training
    c.env.update(RAY_health_check_period_ms="1000", RAY_health_check_failure_threshold="5")
    try:
        c.start_head(num_cpus=1)
        c.add_node("separators", num_cpus=1, resources={"separator_node": 1})
        c.add_node("trainers", num_cpus=1, resources={"trainer_node": 1})
        yield c
    finally:
        c.stop()


def test_joint_job_spans_the_nodes_and_survives_the_loss_of_the_trainer_node(cluster, tmp_path):
    out = tmp_path / "run"
    ckpts = out / "pretrain" / "configured" / "ray_train" / "pretrain"
    metrics = out / "pretrain" / "configured" / "metrics.jsonl"
    events: dict = {}

    def kill_the_trainer_node_after_a_checkpoint():
        deadline = time.monotonic() + 500
        while time.monotonic() < deadline:
            if (ckpts / "checkpoint_manager_snapshot.json").exists():
                events["placed"] = cluster.actors()  # who runs where, before the loss
                events["lines_before"] = len(metrics.read_text().splitlines())
                events["killed_at"] = time.time()
                cluster.kill("trainers")
                cluster.add_node("trainers-2", num_cpus=1, resources={"trainer_node": 1})
                return
            time.sleep(0.2)

    watcher = threading.Thread(target=kill_the_trainer_node_after_a_checkpoint)
    watcher.start()
    cmd = [RAY, "job", "submit", "--address", cluster.dashboard, "--working-dir", str(REPO), "--",
           "python", "experiments/joint.py", "--config", "experiments/configs/debug.yaml", "--out", str(out),
           "--set", "pretrain.steps=12", "--set", "pretrain.log_every=3", *PINNED]
    t0 = time.time()
    res = subprocess.run(cmd, env=cluster.env, capture_output=True, text=True, timeout=900, cwd=REPO)
    wall = time.time() - t0
    (tmp_path / "job.log").write_text(res.stdout + res.stderr)
    watcher.join()
    log = res.stdout + res.stderr
    assert res.returncode == 0 and "succeeded" in log, log[-4000:]
    assert "killed_at" in events, "the trainer node was never killed: " + log[-2000:]

    # placement (of every actor the job started so far, finished ones too): trainers only where
    # trainer_node is offered, augmentation actors only where separator_node is
    nodes = {n["node_id"]: n for n in cluster.listed()}
    (tmp_path / "actors.json").write_text(json.dumps(events["placed"], indent=1))
    workers = [a for a in events["placed"] if a["class_name"] == "RayTrainWorker"]
    augmenters = [a for a in events["placed"] if "SeparationAugmenter" in (a.get("repr_name") or "")]
    where = [(a.get("repr_name") or a["class_name"], nodes[a["node_id"]]["resources_total"])
             for a in workers + augmenters]
    assert workers and augmenters, where
    assert all("trainer_node" in nodes[a["node_id"]]["resources_total"] for a in workers), where
    assert all("separator_node" in nodes[a["node_id"]]["resources_total"] for a in augmenters), where
    killed = {a["node_id"] for a in workers if a["state"] == "ALIVE"}
    assert [nodes[n]["state"] for n in killed] == ["DEAD"]  # the running trainer was on the killed node

    # pretraining went on from its latest checkpoint, on the replacement node
    steps = [json.loads(x)["step"] for x in metrics.read_text().splitlines()]
    after = steps[events["lines_before"]:]
    assert steps[-1] == 12 and after and after[0] > 3, steps
    lines = [json.loads(x) for x in metrics.read_text().splitlines()]
    restart = next(i for i in range(1, len(lines)) if lines[i]["step"] <= lines[i - 1]["step"])  # steps go back
    lost = lines[restart]["time"] - events["killed_at"]  # to the first report of the restarted attempt
    figures = {"job_wall_s": round(wall, 1), "kill_to_first_report_after_restart_s": round(lost, 1)}
    print("multinode " + json.dumps(figures))
    failures = json.loads((out / "pretrain" / "configured" / "failures.json").read_text())
    assert [(f["fault"], f["decision"]) for f in failures] == [(True, "retry")], failures
    now = [a for a in cluster.actors() if a.get("state") == "ALIVE" and a["class_name"] == "RayTrainWorker"]
    assert not now  # the job's trainers are gone with it
    assert (out / "results.md").exists() and "verdict" in (out / "verdict.txt").read_text()
