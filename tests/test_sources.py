"""Clip sources: in-process and Ray Data paths give the same rows, and every input is accounted for."""

import numpy as np
import pytest

from sslsep.config import load_config
from sslsep.data.sources import (clip_dataset, dataset_report, iter_clips, resolve_source, usable)
from sslsep.data.pack import pack_folder

pytestmark = pytest.mark.ray


def cfg_for(path="", *sets):
    return load_config(None, ["audio.clip_seconds=1.0", "data.synth.num_clips=12", "pretrain.batch_clips=4", *sets],
                       data=path or None)


def rows_by_id(rows):
    return {str(r["clip_id"]): r for r in rows}


def test_resolve_source(tmp_path, bad_folder):
    root, _ = bad_folder
    assert resolve_source(cfg_for().data) == "synthetic"
    assert resolve_source(cfg_for(str(root)).data) == "folder"
    with pytest.raises(FileNotFoundError, match="no such file or folder"):
        resolve_source(cfg_for(str(tmp_path / "nowhere")).data)


def test_folder_rows_account_for_every_file(bad_folder):
    root, expected = bad_folder
    cfg = cfg_for(str(root))
    rows = rows_by_id(iter_clips(cfg.data, cfg.audio))
    assert {k: r["status"] for k, r in rows.items()} == expected
    assert rows["good.wav"]["labels"] == ["dog", "bird"] and rows["good.ogg"]["labels"] == ["car"]
    assert rows["truncated.wav"]["labels"] == [] and rows["sub/stereo_44k.wav"]["sample_rate"] == 16000
    assert all(r["audio"].shape == (16000,) for r in rows.values())


def test_ray_dataset_matches_in_process_rows(ray_session, bad_folder):
    root, expected = bad_folder
    cfg = cfg_for(str(root))
    local = rows_by_id(iter_clips(cfg.data, cfg.audio))
    remote = rows_by_id(clip_dataset(cfg.data, cfg.audio).iter_rows())
    assert set(remote) == set(local) == set(expected)
    for k in local:
        assert remote[k]["status"] == local[k]["status"]
        np.testing.assert_array_equal(remote[k]["audio"], local[k]["audio"])
        assert list(remote[k]["labels"]) == local[k]["labels"]
    kept = {r["clip_id"] for r in usable(clip_dataset(cfg.data, cfg.audio)).iter_rows()}
    assert kept == {k for k, s in expected.items() if s in ("ok", "silent")}


def test_dataset_report_names_skips_and_label_problems(ray_session, bad_folder):
    from sslsep.data.sources import folder_items

    root, expected = bad_folder
    cfg = cfg_for(str(root))
    problems = folder_items(cfg.data)[1]
    report = dataset_report(clip_dataset(cfg.data, cfg.audio), problems)
    assert report.total == len(expected)
    assert sorted(n for n, _, _ in report.skipped) == sorted(k for k, s in expected.items()
                                                               if s not in ("ok", "silent"))
    assert report.silent == ["silent.wav"]
    assert report.converted["resampled"] == 1 and report.converted["downmixed"] == 1
    assert [p[:2] for p in report.label_problems] == [("missing.wav", "missing_file")]


def test_synthetic_stream_is_deterministic_and_has_stems(ray_session):
    cfg = cfg_for()
    local = list(iter_clips(cfg.data, cfg.audio, with_stems=True))
    assert len(local) == 12 and len({r["clip_id"] for r in local}) == 12
    remote = rows_by_id(clip_dataset(cfg.data, cfg.audio, with_stems=True).iter_rows())
    for r in local:
        got = remote[r["clip_id"]]
        np.testing.assert_array_equal(got["audio"], r["audio"])
        assert got["stems"].shape == (4, 16000)
        np.testing.assert_allclose(got["stems"].sum(0), got["audio"], atol=1e-5)
        assert 1 <= got["num_events"] == len(got["labels"]) <= 4


def test_parquet_shards_round_trip(ray_session, bad_folder, tmp_path):
    root, expected = bad_folder
    cfg = cfg_for(str(root), "data.shard_clips=2")
    report = pack_folder(cfg.data, str(tmp_path / "shards"), cfg.audio, progress=False)
    assert report.kept == 5 and len(report.skipped) == 5
    shards = cfg_for(str(tmp_path / "shards"))
    assert resolve_source(shards.data) == "parquet"
    from_folder = rows_by_id(r for r in iter_clips(cfg.data, cfg.audio) if r["status"] in ("ok", "silent"))
    for rows in (iter_clips(shards.data, shards.audio), clip_dataset(shards.data, shards.audio).iter_rows()):
        got = rows_by_id(rows)
        assert set(got) == set(from_folder)
        for k, r in got.items():
            np.testing.assert_array_equal(r["audio"], from_folder[k]["audio"])
            assert list(r["labels"]) == from_folder[k]["labels"]


def test_wrong_shard_schema_is_a_clear_error(ray_session, tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    (tmp_path / "s").mkdir()
    pq.write_table(pa.table({"clip_id": ["a"], "wave": [b"x"]}), tmp_path / "s" / "shard-00000.parquet")
    cfg = cfg_for(str(tmp_path / "s"))
    missing = r"shard-00000.parquet: Parquet shard lacks column\(s\) \['audio_bytes', 'labels'\]"
    with pytest.raises(ValueError, match=missing):
        clip_dataset(cfg.data, cfg.audio)
    (tmp_path / "s" / "shard-00000.parquet").unlink()
    (tmp_path / "s" / "shard-00001.parquet").write_bytes(b"not parquet")
    with pytest.raises(ValueError, match="shard-00001.parquet: not a readable Parquet shard"):
        list(iter_clips(cfg.data, cfg.audio))

