"""Tests for sslsep.data.synthetic: the procedurally generated sound scenes."""

from __future__ import annotations

import csv
import itertools
import json
from collections import Counter

import numpy as np
import pytest

from sslsep.data.synthetic import (CLASSES, CONTEXTS, MAX_EVENTS, Scene, generate_scene, iter_scenes, multi_hot,
                                   write_scenes)

SR = 16000


def _same(a: Scene, b: Scene) -> bool:
    return (a.clip_id == b.clip_id and a.labels == b.labels and a.context == b.context and a.events == b.events
            and np.array_equal(a.audio, b.audio) and np.array_equal(a.stems, b.stems))


@pytest.fixture(scope="module")
def layouts():
    # The scene layout does not depend on clip length, so short clips keep label statistics cheap.
    return list(iter_scenes(500, seed=11, num_samples=4000))


def test_api_shapes_and_dtypes():
    assert len(CLASSES) >= 12 and list(CLASSES) == sorted(set(CLASSES))
    assert set(CLASSES) == {c for w in CONTEXTS.values() for c in w}
    s = generate_scene(42, seed=3)
    assert s.clip_id == "synth-3-00000042"
    assert s.audio.dtype == np.float32 and s.audio.shape == (64000,)
    assert s.stems.dtype == np.float32 and s.stems.shape == (len(s.labels), 64000)
    assert 1 <= len(s.labels) <= 4 and len(set(s.labels)) == len(s.labels) == len(s.events)
    assert set(s.labels) <= set(CONTEXTS[s.context])
    for label, ev in zip(s.labels, s.events):
        assert set(ev) == {"label", "onset_s", "duration_s", "gain_db"} and ev["label"] == label
        assert 0 <= ev["onset_s"] and ev["onset_s"] + ev["duration_s"] <= 4.0 + 1e-9
        assert -12.0 <= ev["gain_db"] <= 0.0
    assert [ev["onset_s"] for ev in s.events] == sorted(ev["onset_s"] for ev in s.events)
    json.dumps(s.events)  # plain Python types, ready for the CSV


def test_deterministic_and_seed_dependent():
    assert _same(generate_scene(5, seed=3), generate_scene(5, seed=3))
    assert not np.array_equal(generate_scene(5, seed=3).audio, generate_scene(5, seed=4).audio)
    assert not np.array_equal(generate_scene(5, seed=3).audio, generate_scene(6, seed=3).audio)


def test_order_independent():
    streamed = list(iter_scenes(10, seed=2))
    assert _same(generate_scene(7, seed=2), streamed[7])
    assert _same(next(iter_scenes(3, start=7, seed=2)), streamed[7])
    assert [s.clip_id for s in iter_scenes(3, start=98, seed=2)] == [f"synth-2-{i:08d}" for i in (98, 99, 100)]


def test_layout_independent_of_clip_length():
    for i in range(20):  # stems are ordered by onset, which does depend on length, hence sorted()
        a, b = generate_scene(i, seed=1), generate_scene(i, seed=1, num_samples=4000)
        assert a.context == b.context and sorted(a.labels) == sorted(b.labels)


def test_mixture_is_sum_of_stems_finite_and_unclipped():
    for s in iter_scenes(40, seed=5):
        assert np.isfinite(s.stems).all()
        assert np.allclose(s.audio, s.stems.sum(0), atol=1e-5)
        assert np.abs(s.audio).max() <= 0.95
        for stem, ev in zip(s.stems, s.events):
            a = round(ev["onset_s"] * SR)
            b = a + round(ev["duration_s"] * SR)
            assert np.any(stem[a:b] != 0)                       # every stem has sound ...
            assert not stem[:a].any() and not stem[b:].any()    # ... and only inside its event


@pytest.mark.parametrize("sample_rate, num_samples", [(8000, 400), (22050, 700), (48000, 4800)])
def test_other_rates_and_very_short_clips(sample_rate, num_samples):
    for s in iter_scenes(30, seed=1, sample_rate=sample_rate, num_samples=num_samples):
        assert s.audio.shape == (num_samples,) and np.isfinite(s.stems).all()
        assert np.abs(s.audio).max() <= 0.95
        assert (np.abs(s.stems).max(axis=1) > 0).all()


def test_event_counts(layouts):
    counts = Counter(len(s.labels) for s in layouts)
    assert set(counts) == {1, 2, 3, 4} and min(counts.values()) >= 50
    assert all(len(s.labels) == 2 for s in iter_scenes(20, num_samples=1000, min_events=2, max_events=2))
    assert {len(s.labels) for s in iter_scenes(60, num_samples=1000, min_events=3, max_events=MAX_EVENTS)} \
        == set(range(3, MAX_EVENTS + 1))


def test_every_class_and_context_appears(layouts):
    per_class = Counter(label for s in layouts for label in s.labels)
    assert set(per_class) == set(CLASSES) and min(per_class.values()) >= 15
    assert set(s.context for s in layouts) == set(CONTEXTS)
    assert all(set(s.labels) <= set(CONTEXTS[s.context]) for s in layouts)


def test_co_occurrence_structure(layouts):
    allowed = {frozenset(p) for w in CONTEXTS.values() for p in itertools.combinations(w, 2)}
    everything = {frozenset(p) for p in itertools.combinations(CLASSES, 2)}
    seen = {frozenset(p) for s in layouts for p in itertools.combinations(s.labels, 2)}
    assert seen <= allowed                        # only classes sharing a context meet ...
    assert len(everything - seen) >= 20           # ... so many pairs never do
    assert frozenset(("chirp", "engine")) not in seen and frozenset(("rain", "babble")) not in seen
    assert frozenset(("engine", "horn")) in seen and frozenset(("chirp", "wind")) in seen
    assert len(seen) >= 0.8 * len(allowed)        # and most allowed pairs do occur


def test_multi_hot():
    v = multi_hot(["siren", "alarm"])
    assert v.dtype == np.float32 and v.shape == (len(CLASSES),)
    assert v.sum() == 2 and v[CLASSES.index("siren")] == 1 and v[CLASSES.index("alarm")] == 1
    assert multi_hot([]).sum() == 0
    assert list(multi_hot(["b"], classes=("a", "b"))) == [0.0, 1.0]
    with pytest.raises(ValueError, match="nope"):
        multi_hot(["nope"])


@pytest.mark.parametrize("kwargs, name", [
    (dict(num_samples=0), "num_samples"), (dict(sample_rate=4000), "sample_rate"),
    (dict(min_events=3, max_events=2), "min_events"), (dict(max_events=MAX_EVENTS + 1), "max_events"),
    (dict(min_events=0), "min_events"), (dict(seed=-1), "seed"), (dict(gain_db=(0.0, -6.0)), "gain_db"),
])
def test_bad_arguments_raise(kwargs, name):
    with pytest.raises(ValueError, match=name):
        generate_scene(0, **kwargs)
    with pytest.raises(ValueError, match=name):
        iter_scenes(5, **kwargs)  # eagerly, before the first scene


def test_bad_index_and_unknown_keyword():
    with pytest.raises(ValueError, match="index"):
        generate_scene(-1)
    with pytest.raises(TypeError):
        iter_scenes(3, bogus=1)


def _band_features(stem: np.ndarray, event: dict, sr: int = SR) -> np.ndarray:
    """Mean and std over time of 32 log-spaced log band energies, relative to the loudest band."""
    a = round(event["onset_s"] * sr)
    x = stem[a:a + round(event["duration_s"] * sr)].astype(np.float64)
    x = np.pad(x, (0, max(0, 512 - len(x))))
    frames = np.lib.stride_tricks.sliding_window_view(x, 512)[::256] * np.hanning(512)
    power = np.abs(np.fft.rfft(frames, axis=1)) ** 2
    f, edges = np.fft.rfftfreq(512, 1 / sr), np.geomspace(60, 8000, 33)
    bands = np.stack([power[:, (f >= lo) & (f < hi)].sum(1) for lo, hi in zip(edges[:-1], edges[1:])], 1)
    logb = np.log10(bands + 1e-8)
    logb -= logb.max()
    return np.concatenate([logb.mean(0), logb.std(0)])


def test_classes_are_acoustically_distinct():
    scenes = list(iter_scenes(500, seed=1, num_samples=32000, min_events=1, max_events=1))
    X = np.array([_band_features(s.stems[0], s.events[0]) for s in scenes])
    y = np.array([CLASSES.index(s.labels[0]) for s in scenes])
    train, test = slice(0, 250), slice(250, None)
    assert set(y[train]) == set(range(len(CLASSES)))
    mu, sd = X[train].mean(0), X[train].std(0) + 1e-9
    Z = (X - mu) / sd
    centroids = np.stack([Z[train][y[train] == c].mean(0) for c in range(len(CLASSES))])
    pred = np.argmin(((Z[test][:, None] - centroids[None]) ** 2).sum(-1), axis=1)
    accuracy = (pred == y[test]).mean()
    assert accuracy > 0.7, f"nearest-centroid accuracy {accuracy:.2f} (chance {1 / len(CLASSES):.2f})"


def _tree(root) -> dict:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_write_scenes_is_byte_identical(tmp_path):
    kw = dict(seed=4, num_samples=8000, max_events=3)
    summary = write_scenes(tmp_path / "a", 6, **kw)
    write_scenes(tmp_path / "b", 6, **kw)
    a, b = _tree(tmp_path / "a"), _tree(tmp_path / "b")
    assert a == b
    assert summary["num_clips"] == 6 and summary["seconds"] == pytest.approx(3.0)

    with open(tmp_path / "a" / "labels.csv", newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    assert [r["clip_id"] for r in rows] == [f"synth-4-{i:08d}" for i in range(6)]
    for r in rows:
        scene = generate_scene(int(r["clip_id"][-8:]), **kw)
        assert r["path"] == f"audio/{scene.clip_id}.wav" and r["path"] in a
        assert r["context"] == scene.context and tuple(r["labels"].split(";")) == scene.labels
        assert tuple(json.loads(r["events"])) == scene.events
        for k, label in enumerate(scene.labels):
            assert f"stems/{scene.clip_id}/{k}_{label}.wav" in a


def test_written_wavs_read_back_exactly(tmp_path):
    sf = pytest.importorskip("soundfile")
    write_scenes(tmp_path, 2, seed=4, num_samples=8000)
    for i in range(2):
        scene = generate_scene(i, seed=4, num_samples=8000)
        audio, sr = sf.read(tmp_path / "audio" / f"{scene.clip_id}.wav", dtype="float32")
        assert sr == SR and np.array_equal(audio, scene.audio)
        info = sf.info(tmp_path / "audio" / f"{scene.clip_id}.wav")
        assert info.subtype == "FLOAT" and info.channels == 1
        for k, label in enumerate(scene.labels):
            stem, _ = sf.read(tmp_path / "stems" / scene.clip_id / f"{k}_{label}.wav", dtype="float32")
            assert np.array_equal(stem, scene.stems[k])
