"""Bad input, in one table, end to end through the public entry points: every broken input
is a named status or a clear error that names the file or key; nothing is dropped silently
(clips in == clips accounted for out).

Items covered elsewhere are not repeated here; docs/failure-modes.md lists them all with
the test that proves each one.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import soundfile as sf

from sslsep.audio import KEEP_STATUSES
from sslsep.config import load_config
from sslsep.data.pack import pack_folder
from sslsep.data.sources import (check_shards, clip_dataset, folder_items, iter_clips, report_from_rows,
                                 shard_uris, usable)
from sslsep.separation.registry import read_registry

from conftest import tone

RATE = 16000


@dataclass(frozen=True)
class Bad:
    name: str                          # path in the folder
    make: Callable[[Path], None]
    status: str                        # the row's status
    detail: str = ""                   # a substring of the row's detail


def audio(x, rate=RATE, subtype="PCM_16", fmt=None) -> Callable[[Path], None]:
    return lambda p: sf.write(p, x, rate, subtype=subtype, format=fmt)


def raw(data: bytes) -> Callable[[Path], None]:
    return lambda p: p.write_bytes(data)


def cut(fmt: str, keep: float) -> Callable[[Path], None]:
    def make(p: Path) -> None:
        sf.write(p, tone(2.0), RATE, format=fmt)
        data = p.read_bytes()
        p.write_bytes(data[: int(len(data) * keep)])
    return make


def wav_rate(rate: int) -> Callable[[Path], None]:
    """A good WAV whose header claims another sample rate (a corrupt header)."""
    def make(p: Path) -> None:
        sf.write(p, tone(0.5), RATE, subtype="PCM_16")
        data = p.read_bytes()
        p.write_bytes(data[:24] + rate.to_bytes(4, "little") + (2 * rate).to_bytes(4, "little") + data[32:])
    return make


def with_values(value: float, channels: int = 1) -> Callable[[Path], None]:
    x = tone(channels=channels)
    x[1000:1100] = value
    return audio(x, subtype="FLOAT")


def dangling(p: Path) -> None:
    os.symlink(p.parent / "no-such-target.wav", p)


QUIET = (1e-4 * np.random.default_rng(0).standard_normal(RATE)).astype(np.float32)  # -80 dBFS

AUDIO = [
    Bad("ok/tone.wav", audio(tone()), "ok"),
    Bad("corrupt/random.flac", raw(np.random.default_rng(1).bytes(4000)), "unreadable"),
    Bad("corrupt/text.wav", raw(b"this is not audio\n"), "unreadable"),
    Bad("corrupt/header-rate-500.wav", wav_rate(500), "unreadable", "sample rate 500 Hz"),
    Bad("corrupt/dangling-link.wav", dangling, "unreadable", "cannot open"),
    Bad("truncated/half.wav", cut("WAV", 0.5), "truncated", "shorter than its header"),
    Bad("truncated/half.flac", cut("FLAC", 0.5), "truncated"),
    Bad("truncated/half.ogg", cut("OGG", 0.5), "unreadable"),  # libsndfile: "malformed"
    Bad("empty/zero-bytes.wav", raw(b""), "empty", "0 bytes"),
    Bad("empty/zero-bytes.flac", raw(b""), "empty", "0 bytes"),
    Bad("empty/no-frames.wav", audio(np.zeros(0, np.float32)), "empty", "no audio frames"),
    Bad("nonfinite/nan.wav", with_values(np.nan), "non_finite", "100 NaN/Inf samples"),
    Bad("nonfinite/inf.wav", with_values(-np.inf), "non_finite", "100 NaN/Inf samples"),
    Bad("nonfinite/overflow-stereo.wav", with_values(3e38, channels=2), "non_finite", "after downmixed"),
    Bad("silent/zeros.flac", audio(np.zeros(RATE, np.float32)), "silent"),
    Bad("silent/minus-80-dbfs.wav", audio(QUIET, subtype="FLOAT"), "silent"),
    Bad("convert/8k.wav", audio(tone(rate=8000), 8000), "ok", "resampled from 8000 Hz"),
    Bad("convert/44k1-stereo.flac", audio(tone(rate=44100, channels=2), 44100), "ok",
        "downmixed from 2 channels; resampled from 44100 Hz"),
    Bad("convert/6-channels.wav", audio(tone(channels=6)), "ok", "downmixed from 6 channels"),
    Bad("convert/odd-rate-12347.wav", audio(tone(rate=12347), 12347), "ok", "resampled from 12347 Hz"),
    Bad("convert/10-ms.ogg", audio(tone(0.01), fmt="OGG", subtype="VORBIS"), "ok"),  # padded
]
SKIPPED = {b.name: b.status for b in AUDIO if b.status not in KEEP_STATUSES}
KEPT = {b.name: b.status for b in AUDIO if b.status in KEEP_STATUSES}

# labels.csv: a row without its file, a row with a bad fold (its file is kept, unlabelled),
# a broken file with labels (still named as broken), files with no row (kept, unlabelled)
LABELS = ("path,labels,fold\n"
          "ok/tone.wav,dog;bird,1\nconvert/8k.wav,car,2\ncorrupt/random.flac,dog,1\n"
          "gone.wav,dog,1\nconvert/6-channels.wav,siren,x\n")
LABEL_PROBLEMS = {("gone.wav", "missing_file"), ("convert/6-channels.wav", "bad_row")}


@pytest.fixture
def bad_inputs(tmp_path) -> Path:
    root = tmp_path / "bad"
    for b in AUDIO:
        (root / b.name).parent.mkdir(parents=True, exist_ok=True)
        b.make(root / b.name)
    (root / "labels.csv").write_text(LABELS)
    return root


def check_rows(rows: list[dict]) -> None:
    """Every input file has exactly one row with the expected status and reason."""
    by_id = {str(r["clip_id"]): r for r in rows}
    assert len(rows) == len(by_id) == len(AUDIO), "clips in == clips out"
    for b in AUDIO:
        r = by_id[b.name]
        assert (r["status"], b.detail in r["detail"]) == (b.status, True), (b.name, r["status"], r["detail"])
        assert r["audio"].shape == (RATE,) and np.isfinite(r["audio"]).all()
        if b.status in SKIPPED.values():
            assert r["detail"] and not r["audio"].any()
    assert list(by_id["ok/tone.wav"]["labels"]) == ["dog", "bird"] and by_id["ok/tone.wav"]["fold"] == 1
    assert list(by_id["convert/6-channels.wav"]["labels"]) == []  # bad row: kept, unlabelled
    assert list(by_id["corrupt/random.flac"]["labels"]) == ["dog"]


@pytest.mark.parametrize("entry", ["iter_clips", "clip_dataset"])
def test_folder_of_bad_audio_every_file_named(entry, bad_inputs, request):
    cfg = load_config(None, ["audio.clip_seconds=1.0"], str(bad_inputs))
    if entry == "iter_clips":
        rows = list(iter_clips(cfg.data, cfg.audio))
    else:
        request.getfixturevalue("ray_session")
        ds = clip_dataset(cfg.data, cfg.audio)
        rows = list(ds.iter_rows())
        assert usable(ds).count() == len(KEPT)
    check_rows(rows)
    report = report_from_rows(rows, folder_items(cfg.data)[1])
    assert {n: s for n, s, _ in report.skipped} == SKIPPED
    assert report.total == len(AUDIO) and report.kept == len(KEPT)
    assert sorted(report.silent) == sorted(n for n, s in KEPT.items() if s == "silent")
    assert report.converted == {"resampled": 3, "downmixed": 2}
    assert {(n, k) for n, k, _ in report.label_problems} == LABEL_PROBLEMS


def test_pack_keeps_good_clips_names_the_rest_and_reads_back(bad_inputs, tmp_path):
    cfg = load_config(None, ["audio.clip_seconds=1.0", "data.shard_clips=4"], str(bad_inputs))
    dst = tmp_path / "shards"
    report = pack_folder(cfg.data, str(dst), cfg.audio, progress=False)
    manifest = json.loads((dst / "_manifest.json").read_text())
    assert {s["name"]: s["status"] for s in manifest["report"]["skipped"]} == SKIPPED
    assert manifest["clips"] + len(manifest["report"]["skipped"]) == len(AUDIO) == report.total
    shards = load_config(None, ["audio.clip_seconds=1.0"], str(dst))
    rows = {r["clip_id"]: r for r in iter_clips(shards.data, shards.audio)}
    assert {k: r["status"] for k, r in rows.items()} == KEPT


# --------------------------------------------------------------------------- shards

def good_wav() -> bytes:
    import io

    buf = io.BytesIO()
    sf.write(buf, tone(), RATE, format="WAV", subtype="PCM_16")
    return buf.getvalue()


SHARDS = {
    "labels as a string": (pa.table({"clip_id": ["a"], "audio_bytes": [good_wav()], "labels": ["dog"]}),
                           "labels is string, expected list<string>"),
    "audio as text": (pa.table({"clip_id": ["a"], "audio_bytes": ["RIFF"], "labels": [["dog"]]}),
                      "audio_bytes is string, expected binary"),
    "fold as text": (pa.table({"clip_id": ["a"], "audio_bytes": [good_wav()], "labels": [["dog"]],
                               "fold": ["1"]}), "fold is string, expected integer"),
}


@pytest.mark.parametrize("case", list(SHARDS))
def test_shard_of_the_wrong_schema_is_an_error_naming_it(case, tmp_path):
    table, needle = SHARDS[case]
    pq.write_table(table, tmp_path / "shard-00000.parquet")
    cfg = load_config(None, ["audio.clip_seconds=1.0"], str(tmp_path))
    with pytest.raises(ValueError, match="shard-00000.parquet: Parquet shard column"):
        check_shards(shard_uris(str(tmp_path)))
    with pytest.raises(ValueError, match=needle):
        list(iter_clips(cfg.data, cfg.audio))


def test_shard_rows_with_nulls_and_broken_bytes_are_named(ray_session, tmp_path):
    table = pa.table({
        "clip_id": ["good", "null-audio", "garbage", "null-labels"],
        "audio_bytes": pa.array([good_wav(), None, b"\x00garbage" * 10, good_wav()], pa.binary()),
        "labels": pa.array([["dog"], ["cat"], [], None], pa.list_(pa.string())),
        "fold": pa.array([1, None, 2, 3], pa.int32()),
        "group": pa.array(["g1", "g2", None, "g3"])})
    pq.write_table(table, tmp_path / "shard-00000.parquet")
    cfg = load_config(None, ["audio.clip_seconds=1.0"], str(tmp_path))
    want = {"good": "ok", "null-audio": "empty", "garbage": "unreadable", "null-labels": "ok"}
    for rows in (list(iter_clips(cfg.data, cfg.audio)), list(clip_dataset(cfg.data, cfg.audio).iter_rows())):
        by_id = {r["clip_id"]: r for r in rows}
        assert {k: r["status"] for k, r in by_id.items()} == want
        assert list(by_id["null-labels"]["labels"]) == [] and by_id["null-audio"]["fold"] == -1
        assert by_id["garbage"]["group"] == "" and by_id["garbage"]["detail"]


# --------------------------------------------------------------------------- config, registry

REGISTRIES = {
    "absent": (None, FileNotFoundError, "separator registry not found"),
    "not JSON": ("{nope", ValueError, "not a valid registry"),
    "no list": ('{"run": "x"}', ValueError, "registry has no 'separators' list"),
    "entry without path": ('{"separators": [{"name": "step-000001", "step": 1}]}', ValueError,
                           "separator entry 0 needs name, step and path"),
    "missing checkpoint": ('{"separators": [{"name": "step-000001", "step": 1, "path": "separators/x.pt"}]}',
                           FileNotFoundError, "'step-000001' points at missing checkpoint .*separators/x.pt"),
}


@pytest.mark.parametrize("case", list(REGISTRIES))
def test_bad_registry_is_an_error_naming_it(case, tmp_path):
    """A registry whose checkpoint does not load: tests/test_augment_service.py."""
    text, exc, needle = REGISTRIES[case]
    uri = tmp_path / "registry.json"
    if text is not None:
        uri.write_text(text)
    with pytest.raises(exc, match=needle) as e:
        read_registry(str(uri))
    assert str(uri) in str(e.value)


# --------------------------------------------------------------------------- the CLI

def test_data_check_cli_names_audioset_label_problems(tmp_path):
    """AudioSet segments with a class the index does not know and a row whose clip is
    absent, plus a broken clip: `sslsep data check` names each one and exits 0."""
    root = tmp_path / "audioset"
    root.mkdir()
    sf.write(root / "Y--PJHxphWEs.wav", tone(), RATE, subtype="PCM_16")
    (root / "Y-0RWZT-miFs.wav").write_bytes(b"RIFF....WAVEfmt junk")
    (root / "balanced_train_segments.csv").write_text(
        "# YTID, start_seconds, end_seconds, positive_labels\n"
        '--PJHxphWEs, 30.000, 40.000, "/m/09x0r,/m/zzzz"\n'
        '-0RWZT-miFs, 0.000, 10.000, "/m/09x0r"\n'
        'abcdefghijk, 0.000, 10.000, "/m/09x0r"\n')
    index = tmp_path / "class_labels_indices.csv"
    index.write_text('index,mid,display_name\n0,/m/09x0r,"Speech"\n')
    res = subprocess.run([sys.executable, "-m", "sslsep.cli", "data", "check", str(root), "--json",
                          "--set", f"data.class_index_csv={index}", "--set", "audio.clip_seconds=1.0"],
                         capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    report = json.loads(res.stdout)
    assert report["total"] == 2 and report["kept"] == 1
    assert [(s["name"], s["status"]) for s in report["skipped"]] == [("Y-0RWZT-miFs.wav", "unreadable")]
    problems = {(p["name"], p["kind"]) for p in report["label_problems"]}
    assert problems == {("--PJHxphWEs", "unknown_class"), ("abcdefghijk", "missing_file")}
    assert any("/m/zzzz" in p["detail"] for p in report["label_problems"])
