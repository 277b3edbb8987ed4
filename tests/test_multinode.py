"""A Ray cluster of three nodes started with `ray start`, as users run one, and the joint job
submitted to it with `ray job submit`: custom resources pin the augmentation actors to one node
and the trainers to another. In the middle of pretraining the trainer node is killed (its
raylet and workers, by process group) and a replacement joins, as an autoscaler would start
one; later the node of the augmentation actors (the separator GPUs of a real cluster) is killed
and replaced too. The job still finishes: pretraining resumed from its latest checkpoint and
its place in the view stream, and its delivery accounting shows what was redone."""

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

    def registered_step() -> int:
        try:
            return json.loads((ckpts / "checkpoint_manager_snapshot.json").read_text())[
                "latest_checkpoint_result"]["metrics"]["step"]
        except (FileNotFoundError, json.JSONDecodeError, KeyError, TypeError):
            return -1

    def kill_the_trainer_node_then_the_augmenter_node():
        deadline = time.monotonic() + 500
        while time.monotonic() < deadline and registered_step() < 3:
            time.sleep(0.2)
        if registered_step() < 3:
            return
        events["placed"] = cluster.actors()  # who runs where, before the loss
        events["lines_before"] = len(metrics.read_text().splitlines())
        events["killed_at"] = time.time()
        cluster.kill("trainers")
        cluster.add_node("trainers-2", num_cpus=1, resources={"trainer_node": 1})
        # then the augmenter node, once the restored attempt's stream has its actors working
        while time.monotonic() < deadline and registered_step() < 18:
            alive = [a for a in cluster.actors() if a.get("state") == "ALIVE"
                     and "SeparationAugmenter" in (a.get("repr_name") or "")]
            if alive and registered_step() < 15:
                events["augmenters_killed_at"], events["augmenters_before"] = time.time(), alive
                cluster.kill("separators")
                cluster.add_node("separators-2", num_cpus=1, resources={"separator_node": 1})
                return
            time.sleep(0.2)

    watcher = threading.Thread(target=kill_the_trainer_node_then_the_augmenter_node)
    watcher.start()
    cmd = [RAY, "job", "submit", "--address", cluster.dashboard, "--working-dir", str(REPO), "--",
           "python", "experiments/joint.py", "--config", "experiments/configs/debug.yaml", "--out", str(out),
           "--set", "pretrain.steps=18", "--set", "pretrain.log_every=3", *PINNED]
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
    assert steps[-1] == 18 and after and after[0] > 3, steps
    lines = [json.loads(x) for x in metrics.read_text().splitlines()]
    restart = next(i for i in range(1, len(lines)) if lines[i]["step"] <= lines[i - 1]["step"])  # steps go back
    lost = lines[restart]["time"] - events["killed_at"]  # to the first report of the restarted attempt
    figures = {"job_wall_s": round(wall, 1), "kill_to_first_report_after_restart_s": round(lost, 1)}
    failures = json.loads((out / "pretrain" / "configured" / "failures.json").read_text())
    assert failures and all((f["fault"], f["decision"]) == (True, "retry") for f in failures), failures

    # the augmenter node was lost too: its actors came back on the replacement node (or the
    # trainer restarted on a stream rebuilt there), and the job finished
    assert "augmenters_killed_at" in events and events["augmenters_before"], "the augmenter node was never killed"
    replaced = {n["node_id"] for n in cluster.listed() if n["state"] == "ALIVE"
                and "separator_node" in n["resources_total"]}
    later = [a for a in cluster.actors() if "SeparationAugmenter" in (a.get("repr_name") or "")
             and a["node_id"] in replaced]
    assert later, "no augmentation actor ran on the replacement node"
    # every restart resumed the stream: the lineage of the final weights trained on 18 steps of
    # 4 clips, each a different clip; what was redone is counted
    delivery = json.loads((out / "pretrain" / "configured" / "delivery.json").read_text())
    assert delivery["delivered"] == 18 * 4 and delivery["repeats"] == 0, delivery
    assert len(delivery["restarts"]) == len(failures), (delivery["restarts"], failures)
    figures["restarts"] = len(failures)
    figures["steps_redone_at_least"] = delivery["steps_redone_at_least"]
    print("multinode " + json.dumps(figures))
    now = [a for a in cluster.actors() if a.get("state") == "ALIVE" and a["class_name"] == "RayTrainWorker"]
    assert not now  # the job's trainers are gone with it
    assert (out / "results.md").exists() and "verdict" in (out / "verdict.txt").read_text()
