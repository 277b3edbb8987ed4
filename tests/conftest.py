"""Shared fixtures: one local Ray session, one loopback S3 API server, small audio folders.

The S3 endpoint is chosen when this file is imported and exported through the standard
AWS_* variables before Ray starts, so Ray's workers (which inherit the driver's
environment) reach the same server.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

REPO = Path(__file__).resolve().parents[1]
US8K = REPO.parent / "shared" / "data" / "urbansound8k-fold1"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


S3_PORT = _free_port()
os.environ.update({
    "AWS_ENDPOINT_URL_S3": f"http://127.0.0.1:{S3_PORT}",
    "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_DEFAULT_REGION": "us-east-1", "AWS_EC2_METADATA_DISABLED": "true",
})


@pytest.fixture(scope="session")
def ray_session():
    import ray
    import ray.data

    if not ray.is_initialized():
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False,
                 runtime_env={"env_vars": {"PYTHONPATH": str(REPO)}})
    ctx = ray.data.DataContext.get_current()
    ctx.enable_progress_bars = False
    yield ray
    ray.shutdown()


@pytest.fixture(scope="session")
def s3_server():
    """A real S3 API (moto's standalone server) on loopback; yields a bucket URI prefix."""
    proc = subprocess.Popen([sys.executable, "-m", "moto.server", "-p", str(S3_PORT), "-H", "127.0.0.1"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 30
    while True:
        try:
            socket.create_connection(("127.0.0.1", S3_PORT), timeout=0.5).close()
            break
        except OSError:
            if time.monotonic() > deadline or proc.poll() is not None:
                proc.kill()
                pytest.fail("moto S3 server did not start")
            time.sleep(0.2)
    from sslsep import storage

    fs, _ = storage.get_fs("s3://sslsep-test")
    fs.mkdir("sslsep-test")
    yield "s3://sslsep-test"
    proc.terminate()
    proc.wait(10)


def tone(seconds: float = 1.0, rate: int = 16000, freq: float = 440.0, channels: int = 1) -> np.ndarray:
    t = np.arange(int(seconds * rate)) / rate
    x = 0.3 * np.sin(2 * np.pi * freq * t).astype(np.float32)
    return np.stack([x] * channels, axis=1) if channels > 1 else x


def rows_per_reader(folder: Path) -> dict[str, int]:
    """Rows of a Parquet folder as each common reader sees it, opened as it is: pyarrow.dataset,
    pandas and DuckDB on the folder, DuckDB and polars on its `*.parquet` glob (polars' folder form
    refuses any other file in the folder, even one its siblings skip)."""
    import duckdb
    import pandas as pd
    import polars as pl
    import pyarrow.dataset as pads

    return {"pyarrow.dataset": pads.dataset(str(folder), format="parquet").count_rows(),
            "pandas": len(pd.read_parquet(folder)),
            "duckdb folder": duckdb.sql(f"SELECT count(*) FROM read_parquet('{folder}')").fetchall()[0][0],
            "duckdb glob": duckdb.sql(f"SELECT count(*) FROM '{folder}/*.parquet'").fetchall()[0][0],
            "polars glob": pl.scan_parquet(f"{folder}/*.parquet").select(pl.len()).collect().item()}


def read_scalars(folder: Path) -> dict[str, list[tuple[int, float]]]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(folder))
    acc.Reload()
    return {tag: [(e.step, e.value) for e in acc.Scalars(tag)] for tag in acc.Tags()["scalars"]}


def write_bad_folder(root: Path) -> dict[str, str]:
    """A folder with good, converted, silent and broken files -> {relative path: expected status}."""
    (root / "sub").mkdir(parents=True, exist_ok=True)
    sf.write(root / "good.wav", tone(), 16000, subtype="PCM_16")
    sf.write(root / "good.flac", tone(freq=660), 16000)
    sf.write(root / "good.ogg", tone(freq=880), 16000, format="OGG", subtype="VORBIS")
    sf.write(root / "sub" / "stereo_44k.wav", tone(rate=44100, channels=2), 44100, subtype="PCM_16")
    sf.write(root / "silent.wav", np.zeros(16000, np.float32), 16000, subtype="PCM_16")
    (root / "empty.wav").write_bytes(b"")
    (root / "garbage.flac").write_bytes(np.random.default_rng(0).bytes(5000))
    sf.write(root / "full.wav", tone(), 16000, subtype="PCM_16")
    data = (root / "full.wav").read_bytes()
    (root / "full.wav").unlink()
    (root / "truncated.wav").write_bytes(data[: len(data) // 2])
    sf.write(root / "full.flac", tone(2.0), 16000)
    data = (root / "full.flac").read_bytes()
    (root / "full.flac").unlink()
    (root / "truncated.flac").write_bytes(data[: len(data) // 2])
    nan = tone()
    nan[100:110] = np.nan
    sf.write(root / "nan.wav", nan, 16000, subtype="FLOAT")
    (root / "labels.csv").write_text(
        "path,labels\n"
        "good.wav,dog;bird\ngood.flac,bird\ngood.ogg,car\nsub/stereo_44k.wav,car\n"
        "silent.wav,\nnan.wav,dog\nmissing.wav,dog\n")
    return {"good.wav": "ok", "good.flac": "ok", "good.ogg": "ok", "sub/stereo_44k.wav": "ok",
            "silent.wav": "silent", "empty.wav": "empty", "garbage.flac": "unreadable",
            "truncated.wav": "truncated", "truncated.flac": "truncated", "nan.wav": "non_finite"}


@pytest.fixture
def bad_folder(tmp_path) -> tuple[Path, dict[str, str]]:
    root = tmp_path / "audio"
    return root, write_bad_folder(root)


@pytest.fixture
def us8k() -> Path:
    if not (US8K / "metadata.csv").exists():
        pytest.skip(f"real-audio check: {US8K} is absent (it ships beside the repo, not in it)")
    return US8K


@pytest.fixture(scope="session")
def registry(tmp_path_factory) -> str:
    """Two convergence states (steps 1 and 2) of a tiny quick-size separator trained in
    process on 0.5 s synthetic clips: the separators every views/pretraining test uses."""
    from sslsep.config import load_config
    from sslsep.run import RunDir
    from sslsep.separation.train import train_separators

    out = tmp_path_factory.mktemp("sep")
    cfg = load_config(None, ["audio.clip_seconds=0.5", "data.synth.num_clips=24", "separation.batch_clips=4",
                             "pretrain.batch_clips=4",
                             "separation.val_clips=4", "separation.steps=2", "separation.checkpoint_steps=[1]",
                             "separation.use_ray=false"])
    train_separators(cfg, RunDir(str(out)))
    return str(out / "registry.json")


def pytest_collection_modifyitems(config, items):
    """Test tiers (README, "Tests"): a test on the shared Ray session is marked `ray` and `slow`,
    one on the loopback S3 server `slow`; the rest (pure functions, models, configs, small
    in-process runs) is the fast tier, `pytest -m "not slow"`."""
    for item in items:
        fixtures = set(getattr(item, "fixturenames", ()))
        if "ray_session" in fixtures:
            item.add_marker(pytest.mark.ray)
        if item.get_closest_marker("ray") or "s3_server" in fixtures:
            item.add_marker(pytest.mark.slow)
