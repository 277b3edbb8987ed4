"""The evaluation stage: extractors, protocols, clip accounting, the script end to end, Ray path."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from sslsep.audio import LogMel
from sslsep.config import ConfigError, load_config
from sslsep.contrastive.encoder import build_encoder, save_encoder
from sslsep.evaluation import evaluate_encoders, extractor_specs
from sslsep.evaluation.embeddings import EmbeddedSet, Embedder, embed_in_process, load_extractor
from sslsep.evaluation.evaluate import embed_sources
from sslsep.evaluation.protocols import build_task, resolve_protocol
from sslsep.run import RunDir

REPO = Path(__file__).resolve().parents[1]
TINY = ["audio.clip_seconds=0.5", "pretrain.embed_dim=16", "evaluation.synth_train_clips=24",
        "evaluation.synth_eval_clips=12", "evaluation.hidden=16", "evaluation.max_epochs=15",
        "evaluation.patience=3", "evaluation.synth_folds=1"]


def tiny_checkpoint(path: Path, seed: int = 1, dim: int = 24) -> str:
    torch.manual_seed(seed)
    save_encoder(build_encoder("compact", width=4, embed_dim=dim, proj_dim=8), str(path))
    return str(path)


def test_logmel_stats_and_pooling_choices():
    cfg = load_config(None, ["audio.clip_seconds=0.5"])
    audio = torch.from_numpy(np.random.default_rng(0).normal(0, 0.1, (3, 8000)).astype(np.float32))
    stats = load_extractor("logmel", cfg)
    mel = LogMel(cfg.audio)(audio)  # (B, n_mels, frames)
    out = stats(audio)
    assert stats.dim == 128 and out.shape == (3, 128)
    torch.testing.assert_close(out[:, :64], mel.mean(2))
    torch.testing.assert_close(out[:, 64:], mel.std(2, unbiased=False))
    enc = load_extractor("random", cfg)
    with torch.no_grad():
        frames = enc.encoder.frames(audio)  # (B, F, D)
        torch.testing.assert_close(enc(audio), enc.encoder.embed(audio))
        for pool, expect in (("mean", frames.mean(1)), ("max", frames.amax(1)),
                             ("meanmax", frames.mean(1) + frames.amax(1))):
            cfg.evaluation.pool = pool
            torch.testing.assert_close(load_extractor("random", cfg)(audio), expect)
    # seeded: the same random encoder every time, another one for another seed
    cfg.evaluation.pool = "encoder"
    with torch.no_grad():
        torch.testing.assert_close(load_extractor("random", cfg)(audio), enc(audio))
        cfg.evaluation.seed = 1
        assert not torch.allclose(load_extractor("random", cfg)(audio), enc(audio))


def test_checkpoint_with_another_sample_rate_is_refused(tmp_path):
    ckpt = tiny_checkpoint(tmp_path / "e.pt")
    cfg = load_config(None, ["audio.sample_rate=22050"])
    with pytest.raises(ValueError, match="22050"):
        load_extractor(ckpt, cfg)


def test_evaluate_script_end_to_end(tmp_path):
    """experiments/evaluate.py on tiny synthetic settings: rows, dims, accounting, Markdown."""
    ckpt = tiny_checkpoint(tmp_path / "enc.pt")
    other = tiny_checkpoint(tmp_path / "other.pt", seed=2, dim=12)
    cmd = [sys.executable, str(REPO / "experiments" / "evaluate.py"), "--encoder", ckpt,
           "--baseline", f"sim-only={other}", "--out", str(tmp_path / "run")]
    for s in TINY:
        cmd += ["--set", s]
    res = subprocess.run(cmd, capture_output=True, text=True, cwd=tmp_path)
    assert res.returncode == 0, res.stderr[-3000:]
    results = json.loads((tmp_path / "run" / "results.json").read_text())
    assert [t["name"] for t in results["tasks"]] == ["synthetic"]  # a suite of one: the synthetic source
    task = results["tasks"][0]
    rows = {(r["extractor"], r["classifier"]): r for r in task["rows"]}
    names = ("logmel-stats", "random-init", "trained", "sim-only")
    assert set(rows) == {(n, k) for n in names for k in ("linear", "mlp")}
    assert [r["extractor"] for r in task["rows"]][::2] == list(names)  # table order
    assert {n: rows[(n, "linear")]["dim"] for n in names} == {"logmel-stats": 128, "random-init": 16,
                                                              "trained": 24, "sim-only": 12}
    assert results["extractors"]["trained"] == ckpt
    p, clips = task["protocol"], task["clips"]
    assert p["name"] == "synthetic" and p["multilabel"] and len(p["classes"]) == 14
    assert "seed 2000000" in p["description"] and "seed 2000001" in p["description"]
    assert clips == {"total": 36, "used": 36, "skipped": [], "unlabelled": [], "label_problems": []}
    for r in task["rows"]:
        assert r["n_train"] == 24 and r["n_eval"] == 12 and r["skipped"] == 0
        assert 0 < r["mAP"] <= 1 and 0 <= r["auc"] <= 1 and r["accuracy"] is None
        assert r["mAP_std"] == 0.0 and len(r["folds"]) == 1
        fold = r["folds"][0]
        assert fold["refit"] and 1 <= fold["best_epoch"] <= fold["epochs"] <= 15
        assert fold["n_fit"] + fold["n_val"] == 24 and fold["n_val"] >= 0.15 * 24
    md = (tmp_path / "run" / "results.md").read_text()
    assert "Protocol: synthetic scenes, multi-label (14 classes)" in md
    assert "| extractor | classifier | dim | mAP | AUC | d' | n train | n eval | skipped |" in md
    assert "| extractor | classifier | synthetic (mAP) | mean over tasks |" in md and "## Task synthetic" in md
    section = md.split("## Task synthetic")[1]
    assert section.count("\n| sim-only |") == 2 and "accuracy" not in section.split("| extractor")[1].split("\n")[0]
    assert [s["mean"] for s in results["suite"]["scores"]] == [r["mAP"] for r in task["rows"]]
    metrics = [json.loads(x) for x in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert len(metrics) == 8 and {m["stage"] for m in metrics} == {"evaluate"}


def test_folder_with_broken_files_accounts_for_every_clip(bad_folder, tmp_path):
    root, expected = bad_folder
    cfg = load_config(None, TINY + ["evaluation.classifiers=[linear]"], str(root))
    results = evaluate_encoders(cfg, {"logmel-stats": "logmel"}, RunDir(str(tmp_path / "run")))
    [results] = results["tasks"]
    clips = results["clips"]
    skipped = {s["name"]: s["status"] for s in clips["skipped"]}
    assert skipped == {k: v for k, v in expected.items() if v not in ("ok", "silent")}
    assert clips["unlabelled"] == ["silent.wav"]  # kept audio but no labels row
    assert [q["name"] for q in clips["label_problems"]] == ["missing.wav"]
    assert clips["used"] == 4 and clips["total"] == len(expected) == 4 + len(skipped) + 1
    p = results["protocol"]
    assert p["name"] == "folds" and p["multilabel"]  # good.wav has two labels
    assert p["classes"] == ["bird", "car", "dog"]
    assert "grouped 4-fold" in p["description"]  # 4 clips, no recording groups: one fold each
    row = results["rows"][0]
    assert sum(f["n_eval"] for f in row["folds"]) == 4 and row["skipped"] == 6
    md = (tmp_path / "run" / "results.md").read_text()
    assert "- `garbage.flac`: unreadable" in md and "- `silent.wav`: unlabelled" in md
    assert "- `missing.wav`: missing_file" in md


def _set(ids, labels, folds, groups, dim=4, seed=0):
    x = np.random.default_rng(seed).normal(size=(len(ids), dim)).astype(np.float32)
    return EmbeddedSet(list(ids), labels, list(folds), list(groups), {"f": x})


def test_protocols_pick_splits_from_the_data():
    cfg = load_config()
    labels = [["a"], ["b"], ["a"], ["b"], ["a"], ["b"]]
    task = build_task(cfg, "folds", {"all": _set("123456", labels, [1, 1, 2, 2, 3, 3], "xxyyzz")})
    assert [s.name for s in task.splits] == ["fold 1", "fold 2", "fold 3"]
    assert not task.multilabel and task.label_index.tolist() == [0, 1, 0, 1, 0, 1]
    assert "leave-one-fold-out over 3 folds" in task.description
    groups = [f"rec{i // 3}" for i in range(30)]
    task = build_task(cfg, "folds", {"all": _set([f"c{i:02d}" for i in range(30)], [["a"], ["b"], ["c"]] * 10,
                                                 [1] * 30, groups)})
    assert len(task.splits) == 5 and "grouped 5-fold" in task.description
    for s in task.splits:
        assert not set(task.groups[s.train]) & set(task.groups[s.test])
    cfg.evaluation.task = "single"
    with pytest.raises(ValueError, match="several labels"):
        build_task(cfg, "folds", {"all": _set("1234", [["a", "b"], ["a"], ["b"], ["a"]], [1] * 4, "wxyz")})


def test_synthetic_protocol_folds_give_every_scene_one_test_split():
    cfg = load_config(None, ["evaluation.synth_folds=3"])
    labels = [["dog_bark"], ["siren", "rain"], ["rain"]] * 4
    sets = {"train": _set([f"t{i}" for i in range(8)], labels[:8], [-1] * 8, [""] * 8),
            "eval": _set([f"e{i}" for i in range(4)], labels[8:], [-1] * 4, [""] * 4, seed=1)}
    task = build_task(cfg, "synthetic", sets)
    assert [s.name for s in task.splits] == ["scene-fold 1", "scene-fold 2", "scene-fold 3"]
    tested = np.concatenate([s.test for s in task.splits])
    assert sorted(tested.tolist()) == list(range(12))  # every scene judged exactly once
    for s in task.splits:
        assert not set(s.train.tolist()) & set(s.test.tolist())
    assert "3-fold cross-validation over 12 labelled scenes of seeds 2000000 and 2000001" in task.description
    one = build_task(load_config(None, ["evaluation.synth_folds=1"]), "synthetic", sets)
    assert [s.name for s in one.splits] == ["eval"] and one.splits[0].test.tolist() == list(range(8, 12))


def test_classifier_fits_in_worker_processes_give_the_same_rows():
    # the fits are seeded per split: two worker processes (joblib) and one after another in this
    # process must give the same rows, in the same order
    from sslsep.evaluation.evaluate import PARALLEL_MIN_CLIPS, fit_processes, run_classifiers

    labels = [["a"], ["b"], ["c"]] * 20
    sets = {"all": _set([f"c{i:02d}" for i in range(60)], labels, [1] * 60, [f"r{i // 2}" for i in range(60)], dim=8)}
    rows = {}
    for jobs in (1, 2):
        cfg = load_config(None, ["evaluation.max_epochs=5", "evaluation.classifiers=[linear,mlp]",
                                 f"evaluation.fit_jobs={jobs}", "evaluation.folds=3"])
        task = build_task(cfg, "folds", sets)
        x = sets["all"].features["f"][task.rows]
        assert fit_processes(cfg.evaluation, task, 12) == jobs
        out = run_classifiers(cfg, task, {"one": x, "two": x[:, ::-1].copy() * 2})
        rows[jobs] = {ex: [{k: v for k, v in r.items() if k != "folds"} | {"folds": [
            {k: v for k, v in f.items() if k != "fit_s"} for f in r["folds"]]} for r in rs] for ex, rs in out.items()}
    assert list(rows[1]) == ["one", "two"] and [r["classifier"] for r in rows[1]["one"]] == ["linear", "mlp"]
    assert len(rows[1]["one"][0]["folds"]) == 3
    assert rows[1] == rows[2]
    # auto: one process for a small task (its fits take less than starting workers), else torch's threads
    auto = load_config().evaluation
    assert fit_processes(auto, task, 12) == 1
    big = build_task(load_config(), "folds", {"all": _set([f"c{i:03d}" for i in range(PARALLEL_MIN_CLIPS)],
                                                          [["a"], ["b"]] * (PARALLEL_MIN_CLIPS // 2),
                                                          [1] * PARALLEL_MIN_CLIPS,
                                                          [f"r{i}" for i in range(PARALLEL_MIN_CLIPS)])})
    assert fit_processes(auto, big, 12) == min(torch.get_num_threads(), 12)


def test_synthetic_protocol_refuses_pretraining_seeds():
    # refused when the config is loaded (sslsep.config._validate), before any stage runs
    with pytest.raises(ConfigError, match="evaluation.synth_seed"):
        load_config(None, ["evaluation.synth_seed=5", "data.synth.seed=6"])
    assert resolve_protocol(load_config(None, ["evaluation.synth_seed=7", "data.synth.seed=6"])) == "synthetic"
    assert extractor_specs("enc.pt", ["b=s3://x/y.pt"])["b"] == "s3://x/y.pt"
    with pytest.raises(ValueError):
        extractor_specs(None, ["random-init=x.pt"])


def test_audioset_protocol_uses_two_csvs(tmp_path):
    rng = np.random.default_rng(0)
    for side, ids in (("train", ["aaaaaaaaaaa", "bbbbbbbbbbb", "ccccccccccc", "ddddddddddd"]),
                      ("eval", ["eeeeeeeeeee", "fffffffffff", "ggggggggggg"])):
        (tmp_path / side).mkdir()
        lines = ["# Segments csv", "# YTID, start_seconds, end_seconds, positive_labels"]
        for i, ytid in enumerate(ids):
            sf.write(tmp_path / side / f"Y{ytid}.wav", rng.normal(0, 0.1, 8000).astype(np.float32), 16000)
            lines.append(f'{ytid}, 30.000, 40.000, "/m/0{i % 2},/m/09x"')
        lines.append('zzzzzzzzzzz, 0.000, 10.000, "/m/00"')  # no audio: reported, not dropped
        (tmp_path / f"{side}_segments.csv").write_text("\n".join(lines) + "\n")
    cfg = load_config(None, TINY + [f"evaluation.train_path={tmp_path / 'train'}",
                                    f"evaluation.train_csv={tmp_path / 'train_segments.csv'}",
                                    f"evaluation.eval_path={tmp_path / 'eval'}",
                                    f"evaluation.eval_csv={tmp_path / 'eval_segments.csv'}"])
    results = evaluate_encoders(cfg, {"logmel-stats": "logmel"})
    assert [t["name"] for t in results["tasks"]] == ["audioset"]
    results = results["tasks"][0]
    assert results["protocol"]["name"] == "audioset" and results["protocol"]["multilabel"]
    assert results["protocol"]["classes"] == ["/m/00", "/m/01", "/m/09x"]
    assert results["rows"][0]["n_train"] == 4 and results["rows"][0]["n_eval"] == 3
    assert [q["name"] for q in results["clips"]["label_problems"]] == ["zzzzzzzzzzz"] * 2


def test_ray_batch_inference_matches_in_process(bad_folder, ray_session):
    root, expected = bad_folder
    cfg = load_config(None, TINY, str(root))
    specs = {"logmel-stats": "logmel", "random-init": "random"}
    local, _ = embed_sources(cfg, "folds", specs)
    cfg.evaluation.use_ray, cfg.evaluation.embed_batch = True, 3
    remote, problems = embed_sources(cfg, "folds", specs)
    a, b = local["all"], remote["all"]
    assert a.clip_ids == b.clip_ids and a.labels == b.labels and a.skipped == b.skipped
    assert len(a.clip_ids) + len(a.skipped) == len(expected)
    for name in specs:
        np.testing.assert_allclose(a.features[name], b.features[name], rtol=1e-4, atol=1e-5)


def test_us8k_grouped_folds_keep_recordings_apart(us8k):
    cfg = load_config(None, ["data.max_clips=120", "evaluation.classifiers=[linear]"], str(us8k))
    embedder = Embedder({"logmel-stats": "logmel"}, cfg)
    from sslsep.data.sources import iter_clips

    sets = {"all": embed_in_process(iter_clips(cfg.data, cfg.audio), embedder, 32)}
    task = build_task(cfg, "folds", sets)
    assert not task.multilabel and len(task.splits) == 5 and "grouped 5-fold" in task.description
    for s in task.splits:
        assert not set(task.groups[s.train]) & set(task.groups[s.test])
        assert all(g.isdigit() for g in task.groups)  # fsIDs, not clip ids


def test_cli_evaluate_subcommand_shares_the_script_path(tmp_path):
    res = subprocess.run([sys.executable, "-m", "sslsep.cli", "evaluate", "--baseline", "no-checkpoint",
                          "--out", str(tmp_path / "run")], capture_output=True, text=True, cwd=REPO)
    assert res.returncode == 2 and "expected NAME=CHECKPOINT" in res.stderr
    res = subprocess.run([sys.executable, "-m", "sslsep.cli", "evaluate", "--set", "evaluation.pool=sum"],
                         capture_output=True, text=True, cwd=REPO)
    assert res.returncode == 2 and "evaluation.pool" in res.stderr
