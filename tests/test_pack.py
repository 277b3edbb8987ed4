"""`sslsep data pack` and the Parquet source, locally and on a real S3 API server."""

import json
import shutil
import subprocess
import sys

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from sslsep import storage
from sslsep.audio import read_audio
from sslsep.config import load_config
from sslsep.data.pack import pack_folder
from sslsep.data.sources import clip_dataset, iter_clips

from conftest import rows_per_reader, write_bad_folder


def read_shards(folder):
    return pa.concat_tables(pq.read_table(p) for p in sorted(folder.glob("shard-*.parquet")))


def run_cli(*args, check=True):
    res = subprocess.run([sys.executable, "-m", "sslsep.cli", *args], capture_output=True, text=True)
    if check and res.returncode != 0:
        raise AssertionError(res.stderr)
    return res


def test_pack_cli_names_every_broken_file(bad_folder, tmp_path):
    root, expected = bad_folder
    res = run_cli("data", "pack", str(root), str(tmp_path / "shards"), "--shard-clips", "2", "--quiet")
    broken = [k for k, s in expected.items() if s not in ("ok", "silent")]
    for name in broken:
        assert f"skipped {name}: {expected[name]}" in res.stdout
    assert "labels  missing.wav: missing_file" in res.stdout
    manifest = json.loads((tmp_path / "shards" / "_manifest.json").read_text())
    assert manifest["clips"] == 5 and manifest["num_shards"] == 3
    # the folder opens as it is with the readers people use (the report's "_" makes them skip it)
    assert set(rows_per_reader(tmp_path / "shards").values()) == {5}
    assert sorted(s["name"] for s in manifest["report"]["skipped"]) == sorted(broken)
    # shards hold the original bytes of every good file
    table = read_shards(tmp_path / "shards")
    packed = dict(zip(table["clip_id"].to_pylist(), table["audio_bytes"].to_pylist()))
    assert set(packed) == {k for k, s in expected.items() if s in ("ok", "silent")}
    for k, data in packed.items():
        assert data == (root / k).read_bytes()


def test_a_folder_packed_the_old_way_still_reads(bad_folder, tmp_path):
    """Folders packed before the report became _manifest.json hold manifest.json among the shards:
    sslsep reads them as before (only *.parquet files are shards); other readers need the rename
    that README states (mv manifest.json _manifest.json)."""
    root, expected = bad_folder
    cfg = load_config(None, ["data.shard_clips=2"], str(root))
    dst = tmp_path / "old"
    pack_folder(cfg.data, str(dst), cfg.audio, progress=False)
    (dst / "_manifest.json").rename(dst / "manifest.json")
    old = load_config(None, [], str(dst))
    ids = sorted(r["clip_id"] for r in iter_clips(old.data, old.audio))
    assert ids == sorted(k for k, s in expected.items() if s in ("ok", "silent"))


def test_pack_is_deterministic(bad_folder, tmp_path):
    root, _ = bad_folder
    cfg = load_config(None, ["data.shard_clips=3"], str(root))
    for out in ("a", "b"):
        pack_folder(cfg.data, str(tmp_path / out), cfg.audio, workers=3, progress=False)
    for name in ("shard-00000.parquet", "shard-00001.parquet", "_manifest.json"):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()


def test_pack_to_s3_and_stream_back_through_ray(ray_session, s3_server, bad_folder, tmp_path):
    root, expected = bad_folder
    dst = f"{s3_server}/pack-test/shards"
    cfg = load_config(None, ["audio.clip_seconds=1.0", "data.shard_clips=2"], str(root))
    report = pack_folder(cfg.data, dst, cfg.audio, progress=False)
    assert report.kept == 5
    fs, path = storage.get_fs(dst)
    assert sorted(p.rsplit("/", 1)[-1] for p in fs.ls(path)) == [
        "_manifest.json", "shard-00000.parquet", "shard-00001.parquet", "shard-00002.parquet"]
    s3cfg = load_config(None, ["audio.clip_seconds=1.0"], dst)
    local = {r["clip_id"]: r for r in iter_clips(cfg.data, cfg.audio) if r["status"] in ("ok", "silent")}
    rows = {r["clip_id"]: r for r in clip_dataset(s3cfg.data, s3cfg.audio).iter_rows()}
    assert set(rows) == set(local)
    for k, r in rows.items():
        np.testing.assert_array_equal(r["audio"], local[k]["audio"])


def test_read_folder_on_s3(ray_session, s3_server, tmp_path):
    root = tmp_path / "src"
    expected = write_bad_folder(root)
    fs, _ = storage.get_fs(s3_server)
    fs.put(str(root) + "/", "sslsep-test/folder-test/", recursive=True)
    cfg = load_config(None, ["audio.clip_seconds=1.0"], f"{s3_server}/folder-test")
    rows = {r["clip_id"]: r for r in clip_dataset(cfg.data, cfg.audio).iter_rows()}
    assert {k: r["status"] for k, r in rows.items()} == expected
    assert list(rows["good.wav"]["labels"]) == ["dog", "bird"]


def test_us8k_pack_with_broken_files_decodes_bit_identically(us8k, tmp_path):
    """The real folder plus a few broken files: every good clip is packed, its bytes and
    decoded samples equal the source file's, and each broken file is named."""
    src = tmp_path / "us8k"
    shutil.copytree(us8k, src)
    (src / "fold1" / "zz-empty.flac").write_bytes(b"")
    (src / "fold1" / "zz-garbage.flac").write_bytes(b"fLaC" + bytes(4000))
    good = (src / "fold1" / "101415-3-0-2.flac").read_bytes()
    (src / "fold1" / "zz-truncated.flac").write_bytes(good[: len(good) // 3])
    res = run_cli("data", "pack", str(src), str(tmp_path / "shards"), "--quiet")
    for name, status in (("zz-empty", "empty"), ("zz-garbage", "unreadable"), ("zz-truncated", "truncated")):
        assert f"skipped fold1/{name}.flac: {status}" in res.stdout
    table = read_shards(tmp_path / "shards")
    assert table.num_rows == 873
    labels = dict(zip(table["clip_id"].to_pylist(), table["labels"].to_pylist()))
    assert labels["fold1/101415-3-0-2.flac"] == ["dog_bark"]
    for cid, data in zip(table["clip_id"].to_pylist()[::25], table["audio_bytes"].to_pylist()[::25]):
        source = (us8k / cid).read_bytes()
        assert data == source
        np.testing.assert_array_equal(read_audio(data)[0], read_audio(source)[0])
