"""The separator's validation clips: chosen from metadata, only they are decoded, the same from a
folder and from its shards, and cached in the run directory for resumes."""

import zlib

import numpy as np
import pytest
import soundfile as sf
import torch

from sslsep.config import load_config
from sslsep.data import pack, sources
from sslsep.data import rows as rows_mod
from sslsep.data.sources import held_out_rows, is_held_out, iter_clips
from sslsep.separation.train import validation_set

FRACTION, COUNT = 0.3, 8


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    """120 short clips in 12 recording groups (labels.csv `group`), three of the held-out
    ones broken; packed into shards of 50 clips, row groups of 16."""
    root = tmp_path_factory.mktemp("corpus")
    rng = np.random.default_rng(0)
    lines = ["path,labels,group"]
    for i in range(120):
        name = f"clip{i:03d}.wav"
        sf.write(root / name, (0.1 * rng.standard_normal(8000)).astype(np.float32), 16000, subtype="PCM_16")
        lines.append(f"{name},c{i % 3},rec{i % 12}")
    (root / "labels.csv").write_text("\n".join(lines) + "\n")
    held = [f"clip{i:03d}.wav" for i in range(120) if is_held_out(f"clip{i:03d}.wav", f"rec{i % 12}", FRACTION)]
    broken = held[:3]
    for n in broken:
        (root / n).write_bytes(b"not audio")
    cfg = load_config(None, ["audio.clip_seconds=0.5", "data.shard_clips=50", f"separation.val_fraction={FRACTION}",
                             f"separation.val_clips={COUNT}"], data=str(root))
    shards = tmp_path_factory.mktemp("shards")
    old, pack.ROW_GROUP_CLIPS = pack.ROW_GROUP_CLIPS, 16
    try:
        pack.pack_folder(cfg.data, str(shards), cfg.audio, progress=False)
    finally:
        pack.ROW_GROUP_CLIPS = old
    return cfg, root, shards, broken


def counting_decodes(monkeypatch):
    """Count the clips `sources` decodes (the real decoder still runs)."""
    calls = []
    real = rows_mod.decode_row

    def decode_row(data, clip_id, *a, **k):
        calls.append(clip_id)
        return real(data, clip_id, *a, **k)

    monkeypatch.setattr(rows_mod, "decode_row", decode_row)
    return calls


def test_the_first_usable_held_out_clips_in_hash_order(corpus, monkeypatch):
    cfg, root, _, broken = corpus
    every = list(iter_clips(cfg.data, cfg.audio))
    held = sorted((r for r in every if is_held_out(r["clip_id"], r["group"], FRACTION)),
                  key=lambda r: zlib.crc32(r["clip_id"].encode()))
    expected = [r["clip_id"] for r in held if r["status"] == "ok"][:COUNT]
    decoded = counting_decodes(monkeypatch)
    rows = held_out_rows(cfg.data, cfg.audio, FRACTION, COUNT)
    assert [r["clip_id"] for r in rows] == expected and all(r["status"] == "ok" for r in rows)
    last = [r["clip_id"] for r in held].index(expected[-1])
    skipped_on_the_way = [r for r in held[:last + 1] if r["status"] != "ok"]
    assert len(decoded) == COUNT + len(skipped_on_the_way) < len(every) / 3  # not the corpus nor the held-out side


def test_shards_give_the_same_clips_reading_only_their_row_groups(corpus, monkeypatch):
    cfg, root, shards, _ = corpus
    from_folder = held_out_rows(cfg.data, cfg.audio, FRACTION, COUNT)
    data = load_config(None, ["audio.clip_seconds=0.5"], data=str(shards)).data
    decoded = counting_decodes(monkeypatch)
    from_shards = held_out_rows(data, cfg.audio, FRACTION, COUNT)
    assert [r["clip_id"] for r in from_shards] == [r["clip_id"] for r in from_folder]
    for a, b in zip(from_shards, from_folder):
        np.testing.assert_array_equal(a["audio"], b["audio"])
    assert len(decoded) == COUNT  # broken files are never packed: every candidate is usable


def test_validation_set_is_cached_in_the_run_directory(corpus, monkeypatch, tmp_path):
    cfg, *_ = corpus
    cache = str(tmp_path / "validation.npz")
    first = validation_set(cfg, cache)
    assert first["audio"].shape == (COUNT, 8000) and (tmp_path / "validation.npz").exists()
    decoded = counting_decodes(monkeypatch)
    again = validation_set(cfg, cache)  # a resume: no audio read
    assert decoded == [] and torch.equal(first["audio"], again["audio"])
    cfg.separation.val_clips = COUNT - 2  # another choice: made anew, not the stale cache
    assert validation_set(cfg, cache)["audio"].shape[0] == COUNT - 2 and len(decoded) >= COUNT - 2


def test_the_data_stage_samples_a_large_corpus_and_counts_it_from_metadata(corpus, monkeypatch, tmp_path):
    """Start-up independent of the corpus size: the joint job's data check decodes
    `data.check_clips` clips in hash order (the broken ones among them named), and counts the
    rest from the listing."""
    from sslsep.pipeline import data_stage
    from sslsep.run import RunDir

    cfg, root, shards, broken = corpus
    cfg.data.check_clips = 40
    decoded = counting_decodes(monkeypatch)
    report = data_stage(cfg, RunDir(str(tmp_path / "run")))
    assert report["listed"] == 120 and report["total"] == 40 == len(decoded)
    assert report["checked"] == "a sample of 40 of 120 clips (hash order of ids)"
    ids = sorted((f"clip{i:03d}.wav" for i in range(120)), key=lambda c: zlib.crc32(c.encode()))[:40]
    assert sorted(decoded) == sorted(ids)
    assert set(broken) & set(ids) and {s["name"] for s in report["skipped"]} == set(broken) & set(ids)


def test_the_data_stage_counts_synthetic_scenes_without_making_them(monkeypatch, tmp_path):
    """Scenes are made by code and cannot fail to decode: the data stage accounts for every one
    by its id and makes none of them (the quick job spent ~20 s making 2000 only to drop them)."""
    from sslsep.data import synthetic
    from sslsep.pipeline import MADE, data_stage
    from sslsep.run import RunDir

    made = []
    real = synthetic.generate_scene
    monkeypatch.setattr(synthetic, "generate_scene", lambda *a, **k: made.append(a) or real(*a, **k))
    for reader in ("clip_dataset", "hash_sample"):  # the paths that make scenes (in Ray workers, or here)
        monkeypatch.setattr(sources, reader, lambda *a, _r=reader, **k: made.append(_r))
    cfg = load_config(None, ["data.synth.num_clips=50", "data.synth.seed=7", "audio.clip_seconds=2.0"])
    report = data_stage(cfg, RunDir(str(tmp_path / "run")))
    assert made == []
    assert report["listed"] == report["total"] == report["kept"] == 50 and report["skipped"] == []
    assert report["checked"] == MADE and report["sources"][0]["checked"] == MADE
    assert report["audio_hours"] == round(50 * 2.0 / 3600, 3)
    lines = (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()
    assert '"clips": 50' in lines[0] and '"kept": 50' in lines[0]
