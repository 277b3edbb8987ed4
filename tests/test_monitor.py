"""The k-NN representation monitor of pretraining (sslsep.contrastive.monitor): the weighted k-NN
on hand-made cases, the grouped fixed split, no effect on training, where its figures land."""

import json

import numpy as np
import pytest
import soundfile as sf
import torch

from conftest import read_scalars, tone
from sslsep.config import load_config, replace
from sslsep.contrastive import load_encoder
from sslsep.contrastive.controls import control_config
from sslsep.contrastive.monitor import Monitor, MonitorSplit, build_split, knn_figure, knn_scores
from sslsep.contrastive.train import pretrain_together
from sslsep.run import RunDir
from sslsep.session import TRAIN_GAUGES, VARIANT_GAUGE_KEYS, variant_figures

BASE = ["audio.clip_seconds=0.5", "data.synth.num_clips=32", "augment.crop_seconds=0.25",
        "augment.views_per_clip=2", "augment.batch_size=4", "pretrain.batch_clips=4",
        "pretrain.log_every=2", "augment.cpus_per_actor=0.5", "pretrain.monitor_clips=16"]


def lines(path):
    return [json.loads(x) for x in (path / "metrics.jsonl").read_text().splitlines()]


# --------------------------------------------------------------------------- the k-NN itself

def test_knn_single_label_one_right_one_wrong():
    ref = np.array([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0], [0.1, 0.9]])  # classes 0, 0, 1, 1
    ref_t = np.array([[1, 0], [1, 0], [0, 1], [0, 1]], np.float32)
    query = np.array([[1.0, 0.05], [0.05, 1.0]])  # near class 0, near class 1
    scores = knn_scores(ref, ref_t, query, k=2, temperature=0.07)
    np.testing.assert_allclose(scores, [[1, 0], [0, 1]], atol=1e-12)  # shares of the vote
    truth = np.array([[1, 0], [1, 0]], np.float32)  # the second query is labelled class 0: knn says 1
    assert knn_figure(scores, truth, multilabel=False) == 0.5


def test_knn_votes_are_weighted_by_exp_similarity_over_temperature():
    """One very close reference of class 0 against two farther ones of class 1 (k = 3): a low
    temperature lets the close one win (DINO's weighting), a high one leaves it to the majority."""
    ref = np.array([[1.0, 0.0], [0.6, 0.8], [0.6, 0.8]])
    ref_t = np.array([[1, 0], [0, 1], [0, 1]], np.float32)
    query = np.array([[1.0, 0.0]])
    sharp = knn_scores(ref, ref_t, query, k=3, temperature=0.07)[0]
    w = np.exp(np.array([1.0, 0.6, 0.6]) / 0.07)
    np.testing.assert_allclose(sharp, [w[0] / w.sum(), 2 * w[1] / w.sum()], rtol=1e-9)
    assert sharp.argmax() == 0
    assert knn_scores(ref, ref_t, query, k=3, temperature=10.0)[0].argmax() == 1
    assert knn_scores(ref, ref_t, query, k=1, temperature=10.0)[0].argmax() == 0  # k = 1: the nearest alone
    assert knn_scores(ref, ref_t, query, k=50, temperature=0.07).shape == (1, 2)  # k beyond the references


def test_knn_multi_label_map():
    ref = np.array([[1.0, 0.0], [0.0, 1.0], [0.7071, 0.7071]])  # {a}, {b}, {a, b}
    ref_t = np.array([[1, 0], [0, 1], [1, 1]], np.float32)
    query = np.array([[1.0, 0.1], [0.1, 1.0], [0.72, 0.7]])
    scores = knn_scores(ref, ref_t, query, k=1, temperature=0.07)
    np.testing.assert_allclose(scores, [[1, 0], [0, 1], [1, 1]])
    assert knn_figure(scores, np.array([[1, 0], [0, 1], [1, 1]]), multilabel=True) == 1.0
    # the second query is really {a}: class a is still ranked perfectly (AP 1); class b ranks a
    # negative level with its one positive (AP 0.5)
    assert knn_figure(scores, np.array([[1, 0], [1, 0], [1, 1]]), multilabel=True) == pytest.approx(0.75)


# --------------------------------------------------------------------------- the split

def grouped_folder(root, groups: int = 8, per_group: int = 3):
    """A labelled folder in UrbanSound8K's layout: `per_group` clips per recording (fsID), the
    class a function of the recording."""
    root.mkdir(parents=True, exist_ok=True)
    rows = ["slice_file_name,fsID,fold,class"]
    for g in range(groups):
        for i in range(per_group):
            name = f"{100 + g}-{i}.wav"
            sf.write(root / name, tone(0.25, freq=200 + 40 * g + 5 * i), 16000, subtype="PCM_16")
            rows.append(f"{name},{100 + g},1,{'dog' if g % 2 else 'siren'}")
    (root / "metadata.csv").write_text("\n".join(rows) + "\n")
    return {r.split(",")[0]: r.split(",")[1] for r in rows[1:]}


def test_split_is_grouped_fixed_and_sized_by_config(tmp_path):
    groups = grouped_folder(tmp_path / "audio")
    cfg = load_config(None, ["audio.clip_seconds=0.25", "pretrain.monitor_clips=16"], data=str(tmp_path / "audio"))
    s = build_split(cfg)
    assert isinstance(s, MonitorSplit) and not s.multilabel and s.metric == "knn_acc"
    assert len(s.ref_ids) + len(s.query_ids) == 16  # of 24 clips: the split's size, not the corpus's
    ref_groups, query_groups = {groups[c] for c in s.ref_ids}, {groups[c] for c in s.query_ids}
    assert ref_groups and query_groups and not ref_groups & query_groups  # no recording on both sides
    assert s.groups == (len(ref_groups | query_groups), len(ref_groups), len(query_groups))
    assert s.ref_audio.shape == (len(s.ref_ids), 4000) and s.ref_targets.shape == (len(s.ref_ids), 2)
    again = build_split(cfg)
    assert (again.ref_ids, again.query_ids) == (s.ref_ids, s.query_ids)
    np.testing.assert_array_equal(again.query_audio, s.query_audio)
    # more clips in the corpus: still 16 clips, chosen in hash order of their ids
    grouped_folder(tmp_path / "audio", groups=12)
    assert len(build_split(cfg).ref_ids) + len(build_split(cfg).query_ids) == 16


def test_synthetic_scenes_are_multi_label_and_grouped_by_clip():
    cfg = load_config(None, ["audio.clip_seconds=0.25", "data.synth.num_clips=40", "pretrain.monitor_clips=20"])
    s = build_split(cfg)
    assert s.multilabel and s.metric == "knn_map" and s.groups[0] == 20  # a scene is its own recording
    assert not set(s.ref_ids) & set(s.query_ids) and len(s.ref_ids) == len(s.query_ids) == 10


def test_a_source_without_labels_gives_no_monitor_and_one_note(tmp_path, capsys):
    root = tmp_path / "audio"
    root.mkdir()
    for i in range(6):
        sf.write(root / f"{i}.wav", tone(0.25, freq=300 + 50 * i), 16000, subtype="PCM_16")
    cfg = load_config(None, ["audio.clip_seconds=0.25", "pretrain.monitor_every=2"], data=str(root))
    run = RunDir(str(tmp_path / "run"))
    monitor = Monitor(cfg, {"model": run})
    encoder = load_encoder_like(cfg)
    assert monitor({"model": encoder}, 2, False) == {}
    assert monitor({"model": encoder}, 4, True) == {}
    out = capsys.readouterr().out.strip().splitlines()
    assert len(out) == 1 and "monitor off" in out[0] and "label" in out[0]
    assert json.loads((tmp_path / "run" / "monitor.json").read_text())["enabled"] is False


def load_encoder_like(cfg):
    from sslsep.contrastive.train import build_model

    return build_model(cfg).encoder


def test_the_monitors_keys_are_exported_to_prometheus():
    """Every figure the monitor writes has a gauge: per variant (a `variant` tag) and its time."""
    assert {f"monitor_{m}" for m in ("knn_acc", "knn_map")} <= set(VARIANT_GAUGE_KEYS)
    assert ("monitor_s",) in TRAIN_GAUGES.values()
    line = {"configured/monitor_knn_map": 0.5, "sim-only/monitor_knn_map": 0.25, "configured/total": 1.0,
            "monitor_s": 1.5, "coinc-only/monitor_knn_map": float("nan")}
    assert sorted(variant_figures(line)) == [("monitor_knn_map", "configured", 0.5),
                                             ("monitor_knn_map", "sim-only", 0.25)]


# --------------------------------------------------------------------------- in a training run

def test_monitor_leaves_training_unchanged_and_lands_in_metrics_and_tensorboard(tmp_path, registry):
    """Two variants on one stream, in process, with the monitor every 4 steps and without it:
    the same losses at every step and the same final weights (batch-norm statistics included,
    so the monitor ran in eval mode); the figures land in each variant's metrics.jsonl at steps
    4 and 6 (the final step), in its TensorBoard file and in monitor.json."""
    def run(every: int, where):
        cfg = replace(load_config(None, BASE + ["pretrain.use_ray=false", "pretrain.steps=6",
                                                f"pretrain.monitor_every={every}"]),
                      {"separation.registry": registry}, origin="test")
        variants = {"configured": cfg, "sim-only": control_config(cfg, "sim-only")}
        pretrain_together(variants, {n: RunDir(str(where / n)) for n in variants})
        return variants

    variants = run(4, tmp_path / "on")
    run(0, tmp_path / "off")
    for name in variants:
        on, off = lines(tmp_path / "on" / name), lines(tmp_path / "off" / name)
        assert [x["step"] for x in on] == [x["step"] for x in off] == [2, 4, 6]
        for a, b in zip(on, off):
            for key in ("total", "sim", "coinc", "coinc_acc"):
                assert a[key] == b[key] or (a[key] is None and b[key] is None), (name, a["step"], key)
        wa = load_encoder(str(tmp_path / "on" / name / "encoder.pt")).state_dict()
        wb = load_encoder(str(tmp_path / "off" / name / "encoder.pt")).state_dict()
        assert all(torch.equal(wa[k], wb[k]) for k in wa), name
        assert not any("monitor" in k for x in off for k in x)
        assert "monitor_knn_map" not in on[0]
        assert [0.0 <= x["monitor_knn_map"] <= 1.0 for x in on[1:]] == [True, True]
        assert on[1]["monitor_s"] > 0 and on[1]["monitor_k"] == 20 and on[1]["monitor_temperature"] == 0.07
        assert on[1]["monitor_reference_clips"] + on[1]["monitor_query_clips"] == 16
        assert "monitor_k" not in on[2]  # the protocol once
        scalars = read_scalars(tmp_path / "on" / name)
        assert [s for s, _ in scalars["pretrain/monitor_knn_map"]] == [4, 6]
        assert scalars["pretrain/monitor_knn_map"][-1][1] == pytest.approx(on[2]["monitor_knn_map"])
        protocol = json.loads((tmp_path / "on" / name / "monitor.json").read_text())
        assert protocol["k"] == 20 and protocol["metric"] == "knn_map" and protocol["every"] == 4
        assert protocol["reference_clips"] + protocol["query_clips"] == 16 and protocol["groups"] == 16
