"""Several sources in one stream (data.sources): a folder with broken files beside Parquet
shards of another folder. Accounting per source, weights, errors that name the source."""

from collections import Counter
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import soundfile as sf

from conftest import tone, write_bad_folder
from sslsep.config import ConfigError, load_config
from sslsep.data.pack import pack_folder
from sslsep.data.sources import MixSource, clip_dataset, hash_sample, iter_clips, open_source, plan_passes
from sslsep.pipeline import data_stage
from sslsep.reporting.run_report import data_section
from sslsep.run import RunDir

BASE = ["audio.clip_seconds=1.0", "pretrain.batch_clips=4", "separation.batch_clips=4"]


def write_labelled(root: Path, n: int, prefix: str) -> None:
    root.mkdir(parents=True, exist_ok=True)
    lines = ["path,fold,group,labels"]
    for i in range(n):
        sf.write(root / f"{prefix}{i:02d}.wav", tone(freq=200 + 40 * i), 16000, subtype="PCM_16")
        lines.append(f"{prefix}{i:02d}.wav,{i % 3 + 1},rec{i // 2},{'a' if i % 2 else 'b'}")
    (root / "labels.csv").write_text("\n".join(lines) + "\n")


@pytest.fixture(scope="module")
def corpora(tmp_path_factory):
    """(a folder with 10 files of which 6 are broken, shards of a clean 24-clip folder in 3 shards)."""
    base = tmp_path_factory.mktemp("mix")
    bad = base / "street"
    expected = write_bad_folder(bad)
    clean = base / "clean"
    write_labelled(clean, 24, "c")
    shards = base / "shards"
    cfg = load_config(None, BASE + ["data.shard_clips=8"], data=str(clean))
    pack_folder(cfg.data, str(shards), cfg.audio, progress=False)
    return bad, expected, shards


def mix_cfg(bad, shards, *sets):
    return load_config(None, BASE + list(sets), data=[str(bad), str(shards)])


def test_two_data_arguments_make_a_mix_named_by_folder(corpora):
    bad, _, shards = corpora
    cfg = mix_cfg(bad, shards)
    source = open_source(cfg.data)
    assert isinstance(source, MixSource) and source.kind == "mix"
    assert [(c.name, c.kind, w) for c, w in source.children] == [("street", "folder", 1.0), ("shards", "parquet", 1.0)]
    assert source.listed_by_source() == {"street": 10, "shards": 24}


def test_every_clip_of_every_source_is_accounted_for_in_process(corpora):
    bad, expected, shards = corpora
    cfg = mix_cfg(bad, shards)
    rows = list(iter_clips(cfg.data, cfg.audio))
    by_source = Counter(r["source"] for r in rows)
    assert by_source == {"street": 10, "shards": 24}
    street = {r["clip_id"]: r["status"] for r in rows if r["source"] == "street"}
    assert street == {f"street:{k}": v for k, v in expected.items()}  # ids tagged with their source
    assert all(r["status"] == "ok" for r in rows if r["source"] == "shards")
    assert all(r["audio"].shape == (16000,) for r in rows)


def test_hash_sample_takes_each_source_in_proportion(corpora):
    bad, _, shards = corpora
    cfg = mix_cfg(bad, shards)
    rows = hash_sample(cfg.data, cfg.audio, 17)
    assert Counter(r["source"] for r in rows) == {"street": 5, "shards": 12}  # 17 x 10/34, 17 x 24/34


def test_weights_are_passes_per_pass_of_the_mix():
    """Pure planning: weight 2 reads a source twice per pass (its two passes each in its own
    order), weight 0.5 half of it, the other half in the next pass."""
    cfg = load_config(None, ["data.synth.num_clips=12", "data.sources=[{name: a, weight: 2.0}, "
                                                      "{name: b, weight: 0.5}]"])
    source = open_source(cfg.data)
    plan = plan_passes(source, 2, shuffle_seed=3)
    counts = Counter((s, e) for s, e, _ in plan)
    assert counts == {("a", 0): 12, ("a", 1): 12, ("a", 2): 12, ("a", 3): 12, ("b", 0): 12}
    b = [it["index"] for s, _, it in plan if s == "b"]
    assert sorted(b) == list(range(12))  # two halves of one pass of b: every scene once
    a0 = [it["index"] for s, e, it in plan if s == "a" and e == 0]
    a1 = [it["index"] for s, e, it in plan if s == "a" and e == 1]
    assert sorted(a0) == sorted(a1) == list(range(12)) and a0 != a1
    first = [s for s, _, _ in plan[:len(plan) // 2]]
    assert 0 < first.count("b") < len(first)  # the sources are interleaved, not one after the other


def test_a_missing_source_stops_the_run_at_start_naming_it(corpora, tmp_path):
    bad, _, shards = corpora
    cfg = load_config(None, BASE, data=[str(bad), str(tmp_path / "nowhere")])
    with pytest.raises(FileNotFoundError, match=r"data.sources\[1\] \(nowhere\).*no such file"):
        data_stage(cfg, RunDir(str(tmp_path / "run")))
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "notes.txt").write_text("no audio here")
    cfg = load_config(None, BASE, data=[str(bad), str(empty)])
    with pytest.raises(FileNotFoundError, match="source 'empty'.*no audio files"):
        data_stage(cfg, RunDir(str(tmp_path / "run2")))


def test_two_sources_of_one_name_are_refused(corpora, tmp_path):
    bad, _, _ = corpora
    other = tmp_path / "x" / "street"
    other.mkdir(parents=True)
    with pytest.raises(ConfigError, match=r"'data.sources\[1\]' and 'data.sources\[0\]' are both named 'street'"):
        load_config(None, BASE, data=[str(bad), str(other)])
    with pytest.raises(ConfigError, match="data.sources"):
        load_config(None, BASE + [f"data.path={bad}", f"data.sources=[{{path: {bad}}}]"])


def test_data_stage_accounts_per_source_on_a_sample(corpora, tmp_path):
    bad, expected, shards = corpora
    cfg = mix_cfg(bad, shards, "data.check_clips=17")
    report = data_stage(cfg, RunDir(str(tmp_path / "run")))
    per = {p["name"]: p for p in report["sources"]}
    assert set(per) == {"street", "shards"} and report["listed"] == 34
    assert per["street"]["listed"] == 10 and per["shards"]["listed"] == 24
    assert per["street"]["total"] + per["shards"]["total"] == report["total"] == 17
    for p in per.values():  # clips in = accounted for out, per source
        assert p["kept"] + len(p["skipped"]) == p["total"]
    assert per["street"]["label_problems"] and not per["shards"]["label_problems"]  # missing.wav is in street's CSV
    lines = [m for m in RunDir(str(tmp_path / "run")).metrics() if m.get("source")]
    assert {m["source"]: m["clips"] for m in lines} == {"street": per["street"]["total"], "shards": per["shards"]["total"]}
    page = data_section(SimpleNamespace(data_report=report, delivery={}))  # the run report's data panel: a row per source
    assert 'id="data-sources"' in page and "<td>street</td><td>folder</td>" in page
    assert "<td>shards</td><td>parquet</td>" in page


def test_the_ray_stream_reads_the_mix_with_exact_accounting(ray_session, corpora, tmp_path):
    bad, expected, shards = corpora
    cfg = mix_cfg(bad, shards, "data.check=full")
    report = data_stage(cfg, RunDir(str(tmp_path / "run")))
    per = {p["name"]: p for p in report["sources"]}
    assert per["street"]["total"] == 10 and per["shards"]["total"] == 24 and report["total"] == 34
    assert {s["name"] for s in per["street"]["skipped"]} == {
        f"street:{k}" for k, v in expected.items() if v not in ("ok", "silent")}
    assert per["shards"]["kept"] == 24 and not per["shards"]["skipped"]


def test_the_ray_stream_honours_weights_at_shard_granularity(ray_session, corpora):
    """street (10 files) at weight 2, shards (3 shards of 8) at weight 1/3: per pass of the mix,
    20 street rows and one shard's 8 rows; three passes read each shard once."""
    bad, _, shards = corpora
    cfg = load_config(None, BASE + [f"data.sources=[{{path: {bad}, weight: 2.0}}, {{path: {shards}, weight: 0.34}}]"])
    rows = clip_dataset(cfg.data, cfg.audio, shuffle_seed=0, epochs=3).select_columns(
        ["clip_id", "source", "epoch"]).take_all()
    counts = Counter(r["source"] for r in rows)
    assert counts["street"] == 60  # 3 passes x 2 x 10
    assert counts["shards"] == 24  # 3 passes x one shard of 8 (1/3 of 3 shards, rounded down per pass)
    ids = Counter(r["clip_id"] for r in rows if r["source"] == "shards")
    assert len(ids) == 24 and set(ids.values()) == {1}  # every shard once over the three passes
    street_epochs = Counter(r["epoch"] for r in rows if r["source"] == "street")
    assert street_epochs == {e: 10 for e in range(6)}  # street's own passes 0..5: views differ per pass


def test_a_mix_of_scenes_and_a_folder_streams_one_clip_length(corpora):
    bad, _, _ = corpora
    cfg = load_config(None, BASE + ["data.synth.num_clips=6", f"data.sources=[{{path: ''}}, {{path: {bad}}}]"])
    rows = list(iter_clips(cfg.data, cfg.audio))
    assert Counter(r["source"] for r in rows) == {"synthetic": 6, "street": 10}
    assert {r["audio"].shape for r in rows} == {(16000,)}
    val = hash_sample(cfg.data, cfg.audio, 8, split="val", val_fraction=0.5)
    scenes = [r["clip_id"] for r in val if r["source"] == "synthetic"]
    assert scenes and all(c.startswith("synthetic:synth-1000003-") for c in scenes)  # the validation seed
