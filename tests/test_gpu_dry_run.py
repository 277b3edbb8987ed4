"""The audioset_gpu preset without a GPU: a cluster shaped like cluster/gpu.yaml (a CPU-only head
and two worker nodes of 48 CPUs and 4 GPUs, logical: `ray start --num-gpus`), the preset as it
is (paper separator on 4 DDP workers, 4..8 augmentation actors on GPU shares, the resnet encoder
on 4 workers, embedding actors), only its sizes cut (clip length, steps, batches) and its data
replaced by a tiny packed corpus and tiny AudioSet-format evaluation folders. Every stage builds,
places its workers and actors on GPU resources, and runs a few steps on CPU (`ray.fake_gpus`),
so a mistake in resource arithmetic or placement shows here before anyone pays for GPUs."""

from __future__ import annotations

import json
import subprocess

import numpy as np
import pytest
import soundfile as sf

from conftest import REPO
from raynodes import RAY, LocalCluster
from sslsep.config import load_config
from sslsep.data.pack import pack_folder

pytestmark = [pytest.mark.ray, pytest.mark.slow, pytest.mark.timeout(900)]

SMALL = {  # the preset's sizes cut for a CPU; its placement (workers, actors, GPUs) left as it is
    "audio.clip_seconds": "1.0", "separation.steps": "2", "separation.checkpoint_steps": "[1]",
    "separation.val_every": "1", "separation.val_clips": "4", "separation.batch_clips": "2",
    "separation.warmup_steps": "0", "augment.crop_seconds": "0.5", "augment.batch_size": "4",
    "pretrain.steps": "2", "pretrain.batch_clips": "2", "pretrain.log_every": "1", "pretrain.warmup_steps": "0",
    "pretrain.checkpoint_steps": "[1]", "evaluation.embed_batch": "4", "evaluation.max_epochs": "2",
    "data.class_index_csv": "''", "joint.controls": "[]", "joint.report_clips": "1", "joint.report_map": "pca",
    "pretrain.monitor_clips": "8", "ray.fake_gpus": "true",
}


def audio_folder(root, n, seed=0):
    rng = np.random.default_rng(seed)
    root.mkdir(parents=True)
    for i in range(n):
        sf.write(root / f"clip{i:02d}.wav", (0.1 * rng.standard_normal(16000)).astype(np.float32), 16000)
    (root / "labels.csv").write_text("path,labels,group\n" + "".join(
        f"clip{i:02d}.wav,c{i % 2},rec{i // 2}\n" for i in range(n)))


def audioset_side(root, ids, seed):
    rng = np.random.default_rng(seed)
    root.mkdir(parents=True)
    lines = ["# Segments csv", "# YTID, start_seconds, end_seconds, positive_labels"]
    for i, ytid in enumerate(ids):
        sf.write(root / f"Y{ytid}.wav", (0.1 * rng.standard_normal(16000)).astype(np.float32), 16000)
        lines.append(f'{ytid}, 30.000, 40.000, "/m/0{i % 2},/m/09x"')
    csv = root.parent / f"{root.name}_segments.csv"
    csv.write_text("\n".join(lines) + "\n")
    return csv


def gpus(actor: dict) -> float:
    """The GPUs an actor holds: `GPU`, or `GPU_group_<placement group>` inside a placement group
    (Ray Train's workers)."""
    return max((v for k, v in (actor.get("required_resources") or {}).items() if k.split("_group_")[0] == "GPU"),
               default=0.0)


@pytest.fixture
def gpu_cluster(tmp_path):
    c = LocalCluster(tmp_path)
    try:
        c.start_head(num_cpus=0)  # cluster/gpu.yaml's head holds no work
        for name in ("gpu-node-1", "gpu-node-2"):
            c.add_node(name, num_cpus=48, resources=None, timeout=120, num_gpus=4)
        yield c
    finally:
        c.stop()


def test_audioset_gpu_preset_places_every_stage_on_logical_gpus(gpu_cluster, tmp_path):
    audio_folder(tmp_path / "corpus", 24)
    cfg = load_config(None, ["audio.clip_seconds=1.0"], data=str(tmp_path / "corpus"))
    pack_folder(cfg.data, str(tmp_path / "shards"), cfg.audio, progress=False)
    train_csv = audioset_side(tmp_path / "balanced_train", [c * 11 for c in "abcdefgh"], 1)
    eval_csv = audioset_side(tmp_path / "eval", [c * 11 for c in "ijklmn"], 2)
    sets = {**SMALL, "evaluation.train_path": str(tmp_path / "balanced_train"),
            "evaluation.train_csv": str(train_csv), "evaluation.eval_path": str(tmp_path / "eval"),
            "evaluation.eval_csv": str(eval_csv)}
    out = tmp_path / "run"
    cmd = [RAY, "job", "submit", "--address", gpu_cluster.dashboard, "--working-dir", str(REPO), "--",
           "python", "experiments/joint.py", "--config", "experiments/configs/audioset_gpu.yaml",
           "--data", str(tmp_path / "shards"), "--out", str(out)]
    for k, v in sets.items():
        cmd += ["--set", f"{k}={v}"]
    res = subprocess.run(cmd, env=gpu_cluster.env, capture_output=True, text=True, timeout=1200, cwd=REPO)
    log = res.stdout + res.stderr
    (tmp_path / "job.log").write_text(log)
    assert res.returncode == 0 and "succeeded" in log, log[-4000:]
    assert "fits: the largest stage, pretrain, holds 24.5 of 192 CPUs, 6 of 16 GPUs" in log

    # every stage ran on GPU resources: 4 separation and 4 pretraining workers with a GPU each,
    # augmentation actors and embedding actors on GPU shares, across both nodes
    actors = gpu_cluster.actors()
    workers = [a for a in actors if a["class_name"] == "RayTrainWorker"]
    augmenters = [a for a in actors if "SeparationAugmenter" in (a.get("repr_name") or "")]
    held = [(a["class_name"], a.get("required_resources")) for a in workers + augmenters]
    assert len(workers) >= 4 * 2 and all(gpus(a) == 1 for a in workers), held
    assert len(augmenters) >= 4 and all(gpus(a) == 0.5 for a in augmenters), held
    assert len({a["node_id"] for a in workers + augmenters}) == 2
    registry = json.loads((out / "registry.json").read_text())
    assert [e["step"] for e in registry["separators"]] == [1, 2]
    ckpt_cfg = json.loads((out / "pretrain" / "configured" / "metrics.jsonl").read_text().splitlines()[-1])
    assert ckpt_cfg["step"] == 2
    results = json.loads((out / "results.json").read_text())
    [task] = results["tasks"]  # the audioset protocol: a suite of one task
    assert task["protocol"]["name"] == "audioset" and {r["extractor"].split(" ")[0] for r in task["rows"]} >= {
        "configured", "logmel-stats"}
