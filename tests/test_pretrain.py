"""Contrastive pretraining: the loop in process and on Ray Train, controls, resume."""

import json

import numpy as np
import pytest
import torch

from sslsep.config import load_config, replace, to_dict
from sslsep.contrastive import load_encoder
from sslsep.contrastive.controls import control_config
from sslsep.contrastive.train import pretrain, pretrain_together, train_loop
from sslsep.run import RunDir

BASE = ["audio.clip_seconds=0.5", "data.synth.num_clips=32", "augment.crop_seconds=0.25",
        "augment.views_per_clip=2", "augment.batch_size=4", "pretrain.batch_clips=4",
        "pretrain.log_every=2", "pretrain.steps=4", "augment.cpus_per_actor=0.5"]


def with_registry(cfg, registry):
    """The separators are config (`separation.registry`), set as a value."""
    return replace(cfg, {"separation.registry": registry}, origin="test")


def lines(path):
    return [json.loads(x) for x in (path / "metrics.jsonl").read_text().splitlines()]


@pytest.mark.parametrize("controls", [
    [],                                                    # separated views, both objectives
    ["augment.kinds=[mixture]"],                           # mixture-only (COLA-style) control
    ["augment.kinds=[channel]", "augment.anchor_mixture=true", "pretrain.w_coinc=0"],
    ["augment.kinds=[channel, sum]", "pretrain.w_sim=0", "pretrain.similarity=bilinear"],
])
def test_local_pretraining_runs_every_control(tmp_path, registry, controls):
    cfg = with_registry(load_config(None, BASE + controls + ["pretrain.use_ray=false"]), registry)
    uri = pretrain(cfg, RunDir(str(tmp_path)))
    m = lines(tmp_path)
    assert [x["step"] for x in m] == [2, 4] and m[-1]["final"] is True
    for key in ("total", "coinc_acc", "samples_per_s", "steps_per_s", "data_wait_share", "lr"):
        assert np.isfinite(m[-1][key]), key
    if cfg.pretrain.w_sim == 0:
        assert m[-1]["sim"] is None  # a part with weight 0 is reported as NaN (null in JSON)
    enc = load_encoder(uri)
    assert enc.embed(torch.randn(2, 8000)).shape == (2, 128)


def test_loss_falls_and_training_resumes(tmp_path, registry):
    cfg = with_registry(load_config(None, BASE + ["pretrain.use_ray=false", "pretrain.steps=12",
                                                  "pretrain.log_every=4", "pretrain.lr=3e-3"]), registry)
    config = {"cfg": to_dict(cfg), "run_dir": str(tmp_path), "local": True}
    cfg.pretrain.steps = 8
    train_loop({**config, "cfg": to_dict(cfg)})
    cfg.pretrain.steps = 12  # continued, as after an interruption at step 8
    train_loop({**config, "cfg": to_dict(cfg)})
    m = lines(tmp_path)
    assert [x["step"] for x in m] == [4, 8, 12]
    assert m[-1]["total"] < m[0]["total"]


def same_stream(cfg):
    """The configured model and the two one-objective controls: one view stream."""
    return {"configured": cfg, "sim-only": control_config(cfg, "sim-only"),
            "coinc-only": control_config(cfg, "coinc-only")}


def test_variants_on_one_stream_train_exactly_as_they_would_alone(tmp_path, registry):
    """Trained together (one stream, one loop, summed losses, one optimizer), each variant ends
    with the weights it gets when trained alone on the same batches."""
    cfg = with_registry(load_config(None, BASE + ["pretrain.use_ray=false", "pretrain.grad_clip=1.0"]), registry)
    variants = same_stream(cfg)
    pretrain_together(variants, {n: RunDir(str(tmp_path / "together" / n)) for n in variants})
    for name in ("sim-only", "coinc-only"):
        pretrain(variants[name], RunDir(str(tmp_path / "alone" / name)))
        a = load_encoder(str(tmp_path / "together" / name / "encoder.pt")).state_dict()
        b = load_encoder(str(tmp_path / "alone" / name / "encoder.pt")).state_dict()
        for k in a:
            torch.testing.assert_close(a[k], b[k], rtol=1e-5, atol=1e-6, msg=f"{name}: {k}")
        m = lines(tmp_path / "together" / name)
        assert [x["step"] for x in m] == [2, 4] and "sim-only/total" not in m[-1]
        assert m[-1]["total"] == pytest.approx(lines(tmp_path / "alone" / name)[-1]["total"], rel=1e-5)
        assert {"fallback_share/step-000001", "fallback_share/step-000002"} <= set(m[-1])
    assert not (tmp_path / "together" / "sim-only" / "pretrain_state.pt").exists()  # the state is the group's
    with pytest.raises(ValueError, match="need a stream each"):
        pretrain_together({"a": cfg, "b": control_config(cfg, "mixture-only")},
                          {"a": RunDir(str(tmp_path / "a")), "b": RunDir(str(tmp_path / "b"))})


@pytest.mark.ray
def test_two_workers_ddp_with_global_negatives(ray_session, tmp_path, registry):
    """The configured model, sim-only and coinc-only on Ray Train from one live view stream, on
    two DDP workers with negatives gathered across workers (the one-objective controls
    included: a part with weight 0 still reaches every parameter): one trainer (its state with
    the first variant), each variant's own metrics and kept encoders; both workers stop
    together and no worker group is restarted.

    Then a longer schedule whose two workers (1.2 CPU each) the 2-CPU node cannot hold, as after
    a node lost: the stage says what it waits for and, after `node_wait_s`, goes on with the
    one worker the node holds (`min_workers: 1`), restoring the two workers' checkpoint and
    their place in the stream (the ledger is global, not per rank)."""
    import contextlib
    import io

    cfg = load_config(None, BASE + ["pretrain.num_workers=2", "pretrain.cpus_per_worker=0.5",
                                    "pretrain.global_negatives=true", "augment.cpus_per_actor=0.25",
                                    "data.cpus_per_task=0.25", "pretrain.checkpoint_steps=[2]"])
    variants = same_stream(with_registry(cfg, registry))
    uris = pretrain_together(variants, {n: RunDir(str(tmp_path / n)) for n in variants})
    for name, uri in uris.items():
        m = lines(tmp_path / name)
        assert [x["step"] for x in m] == [2, 4] and np.isfinite(m[-1]["total"]), name
        assert (tmp_path / name / "encoders" / "step-000002.pt").exists() and uri.endswith("encoder.pt")
        # the k-NN monitor, on rank 0 alone (the other rank waits at the next all-reduce), scores
        # every variant of the loop at the final step (monitor_every 100 > 4 steps)
        assert "monitor_knn_map" not in m[0] and 0.0 <= m[-1]["monitor_knn_map"] <= 1.0, name
        assert (tmp_path / name / "monitor.json").exists(), name
    assert [x["samples_per_s"] for x in lines(tmp_path / "sim-only")] == \
        [x["samples_per_s"] for x in lines(tmp_path / "configured")]  # one loop
    assert (tmp_path / "configured" / "ray_train" / "pretrain" / "checkpoint_manager_snapshot.json").exists()
    assert not (tmp_path / "sim-only" / "ray_train").exists()  # no second trainer, no second stream
    assert not (tmp_path / "configured" / "failures.json").exists()  # no worker group was restarted

    longer = {n: replace(c, {"pretrain.steps": 8, "pretrain.min_workers": 1, "pretrain.cpus_per_worker": 1.2,
                             "pretrain.node_wait_s": 1}, origin="test") for n, c in variants.items()}
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        pretrain_together(longer, {n: RunDir(str(tmp_path / n)) for n in variants})
    said = out.getvalue()
    assert "pretrain: waiting for nodes: 2 workers of 1.2 CPU each, the alive nodes hold 1" in said, said
    assert "going on with 1 of 2 workers" in said
    assert [x["step"] for x in lines(tmp_path / "configured")] == [2, 4, 6, 8]
    delivery = json.loads((tmp_path / "configured" / "delivery.json").read_text())
    assert delivery["delivered"] == 4 * 4 * 2 + 4 * 4 and delivery["repeats"] == 0, delivery
    assert [r["step"] for r in delivery["restarts"]] == [4]


@pytest.mark.ray
@pytest.mark.parametrize("control", ["mixture-channel"])
def test_two_ddp_workers_train_every_view_control(ray_session, tmp_path, registry, control):
    """A view control with a stream of its own on two workers, without a restart. DDP's risk is
    in the loss parts (a head without a gradient), which the controls sharing the configured
    model's stream cover (the test above); the view kinds are drawn per clip by the augmenter
    whatever the world size (tests/test_augment_service.py, test_local_pretraining_runs_every_control),
    so one control here, the one that draws two kinds, is enough."""
    cfg = load_config(None, BASE + ["pretrain.num_workers=2", "pretrain.cpus_per_worker=0.5",
                                    "augment.cpus_per_actor=0.25", "data.cpus_per_task=0.25"])
    cfg = control_config(with_registry(cfg, registry), control)
    pretrain(cfg, RunDir(str(tmp_path)))
    m = lines(tmp_path)
    assert [x["step"] for x in m] == [2, 4] and np.isfinite(m[-1]["total"])
    assert not (tmp_path / "failures.json").exists()


@pytest.mark.ray
def test_an_error_that_repeats_after_a_restart_is_raised_not_retried(ray_session, tmp_path, registry):
    """A bug is not a fault: the run directory cannot take the kept encoder of step 2 (its
    `encoders` is a file), the restarted attempt fails the same way at the same step, and the
    run stops with the training function's own error after two attempts, not four."""
    (tmp_path / "encoders").write_text("not a directory")
    cfg = with_registry(load_config(None, BASE + ["pretrain.checkpoint_steps=[2]"]), registry)
    with pytest.raises(OSError) as err:
        pretrain(cfg, RunDir(str(tmp_path)))
    assert "encoders" in str(err.value) and "pretrain step 2" in "".join(getattr(err.value, "__notes__", []))
    failures = json.loads((tmp_path / "failures.json").read_text())
    assert [f["decision"] for f in failures] == ["retry", "repeated"]
    assert not any(f["fault"] for f in failures) and "at step 2" in failures[-1]["failure"]


def _train_workers():
    import ray

    return [a for a in ray._private.state.actors().values()
            if a.get("ActorClassName") == "RayTrainWorker" and a.get("State") == "ALIVE"]


def _registered_step(tmp_path) -> int:
    """The step of the latest checkpoint Ray Train registered (what a restart restores), or -1."""
    snapshot = tmp_path / "ray_train" / "pretrain" / "checkpoint_manager_snapshot.json"
    try:
        return json.loads(snapshot.read_text())["latest_checkpoint_result"]["metrics"]["step"]
    except (FileNotFoundError, json.JSONDecodeError, KeyError, TypeError):
        return -1


def _wait_registered(tmp_path, min_step: int, deadline_s: float = 240) -> bool:
    """Until a checkpoint of step >= `min_step` is registered and training workers are alive."""
    import time

    deadline = time.monotonic() + deadline_s
    while time.monotonic() < deadline:
        if _registered_step(tmp_path) >= min_step and _train_workers():
            return True
        time.sleep(0.05)
    return False


@pytest.mark.ray
@pytest.mark.slow
def test_killed_twice_then_preempted_the_stream_resumes_and_no_clip_is_trained_on_twice(ray_session, tmp_path,
                                                                                      registry):
    """The training worker is killed (SIGKILL) after the checkpoint of step 4, again after step 12
    of the restored attempt, then told to go away (SIGTERM) after step 16. Each attempt restores
    the weights and the stream's place: the run's lineage trains on every step's clips once
    (a restart that reads the stream from its start, as before, delivers its first clips
    again: repeats). The SIGTERM saves a checkpoint at the next step boundary, and the next
    attempt restores that very step: no step is lost or trained twice."""
    import os
    import signal
    import threading
    import time

    cfg = load_config(None, BASE + ["augment.kinds=[mixture]", "pretrain.steps=24", "pretrain.log_every=4",
                                    "data.synth.num_clips=16"])  # 4 steps a pass
    sent = []

    def interrupt():
        for min_step, sig in ((4, signal.SIGKILL), (12, signal.SIGKILL), (16, signal.SIGTERM)):
            if not _wait_registered(tmp_path, min_step):
                return
            sent.append((sig, time.time()))
            for a in _train_workers():
                os.kill(a["Pid"], sig)

    t = threading.Thread(target=interrupt)
    t.start()
    pretrain(with_registry(cfg, registry), RunDir(str(tmp_path)))
    t.join()
    assert len(sent) == 3, f"interrupted {len(sent)} times"
    m = lines(tmp_path)
    assert m[-1]["step"] == 24
    failures = json.loads((tmp_path / "failures.json").read_text())
    assert [(f["fault"], f["decision"]) for f in failures] == [(True, "retry")] * 3, failures
    assert failures[-1]["failure"].startswith("preempted") and "Preempted" in failures[-1]["failure"]
    stopped = [x for x in m if x.get("stopped_by") == "preempted"]
    assert len(stopped) == 1 and 16 < stopped[0]["step"] < 24, [(x["step"], x.get("stopped_by")) for x in m]
    report = json.loads((tmp_path / "delivery.json").read_text())
    restored = [r["step"] for r in report["restarts"]]
    assert len(restored) == 3 and 4 <= restored[0] < restored[1] < restored[2], report["restarts"]
    assert restored[1] >= 12 and restored[2] == stopped[0]["step"]  # the preempted attempt lost no step
    assert report["restarts"][2]["steps_redone_at_least"] == 0
    # the weights' lineage trained on 24 steps x 4 clips, every one of them a different clip
    assert report["delivered"] == 96 and report["repeats"] == 0, report
    per_pass = [p["delivered"] for p in report["passes"]]
    assert sum(per_pass) == 96 and all(p["delivered"] <= p["clips"] for p in report["passes"]), report
    print("preemption " + json.dumps({"sigterm_to_checkpoint_s": round(stopped[0]["time"] - sent[-1][1], 2),
                                      "steps_lost": restored[2] - stopped[0]["step"],
                                      "steps_redone_after_sigkill": [r["steps_redone_at_least"]
                                                                     for r in report["restarts"][:2]]}))


@pytest.mark.ray
def test_pretraining_with_everything_on_s3(ray_session, s3_server, registry):
    """Registry and separators read from s3://, Ray Train storage, metrics and encoder files
    written to s3:// on a real S3 API server; a rerun of the finished config reuses it."""
    from pathlib import Path

    from sslsep import storage

    fs, _ = storage.get_fs(s3_server)
    reg_dir = f"{s3_server}/registries/tiny"
    fs.put(str(Path(registry).parent) + "/", reg_dir.split("://", 1)[1], recursive=True)
    run = RunDir(f"{s3_server}/runs/pretrain-s3")
    cfg = with_registry(load_config(None, BASE + ["pretrain.checkpoint_steps=[2]"]), f"{reg_dir}/registry.json")
    uri = pretrain(cfg, run)
    assert uri == f"{run.path}/encoder.pt"
    assert [x["step"] for x in run.metrics()] == [2, 4]
    assert storage.exists(run.uri("encoders", "step-000002.pt"))
    assert load_encoder(uri).embed(torch.randn(1, 4000)).shape == (1, 128)
    _, snap = storage.get_fs(run.uri("ray_train", "pretrain", "checkpoint_manager_snapshot.json"))
    assert fs.exists(snap)
    assert pretrain(cfg, run) == uri  # finished: reused, not retrained
    assert len(run.metrics()) == 2


def test_waiting_for_nodes_says_what_for_then_goes_on_with_fewer_or_stops(tmp_path, capsys):
    """The wait itself, on node lists as `ray.nodes()` gives them: a node comes back within the
    wait; none comes back and fewer workers are allowed; none comes back and they are not."""
    from sslsep.training.launch import NoRoomError, wait_for_room, workers_that_fit
    from sslsep.training.loop import LoopSettings

    assert workers_that_fit({"CPU": 1.0, "GPU": 1.0, "trainer_node": 0.01},
                            [{"CPU": 48.0, "GPU": 4.0, "trainer_node": 1.0}, {"CPU": 8.0}]) == 4
    s = LoopSettings(stage="pretrain", steps=1, report_every=1, num_workers=2, cpus_per_worker=4.0,
                     node_wait_s=30.0, resources=(("trainer_node", 0.01),))
    one, two = [{"CPU": 4.0, "trainer_node": 1.0}], [{"CPU": 4.0, "trainer_node": 1.0}] * 2
    waited = []
    lists = iter([one, one, two])  # a replacement joins while the stage waits
    assert wait_for_room(s, "pretrain", RunDir(str(tmp_path)), nodes=lambda: next(lists), sleep=waited.append) == 2
    out = capsys.readouterr().out
    assert out.splitlines()[0] == ("pretrain: waiting for nodes: 2 workers of 4 CPU, 0.01 trainer_node each, the "
                                   "alive nodes hold 1; waiting up to 30 s (pretrain.node_wait_s)")
    assert "hold 2 workers again" in out and len(waited) == 2
    fewer = LoopSettings(**{**s.__dict__, "min_workers": 1, "node_wait_s": 0.0})
    assert wait_for_room(fewer, "pretrain", RunDir(str(tmp_path)), nodes=lambda: one) == 1
    assert "going on with 1 of 2 workers (pretrain.min_workers=1)" in capsys.readouterr().out
    stop = LoopSettings(**{**s.__dict__, "node_wait_s": 0.0})
    with pytest.raises(NoRoomError, match=r"hold 1 of the 2 workers .*/ray_train/pretrain: run the same command "
                                          r"again .*pretrain.min_workers"):
        wait_for_room(stop, "pretrain", RunDir(str(tmp_path)), nodes=lambda: one)
    with pytest.raises(NoRoomError, match="hold 0 of the 2"):  # the trainer node gone, no replacement
        wait_for_room(stop, "pretrain", RunDir(str(tmp_path)), nodes=lambda: [{"CPU": 8.0}])
