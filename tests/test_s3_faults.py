"""S3 going away during checkpoint uploads, against a real S3 API server (moto) behind a
loopback proxy the test switches off and on (tests/s3proxy.py).

botocore is held to one attempt per request here (AWS_MAX_ATTEMPTS=1), so every recovery
seen below is sslsep.storage's own retry loop, and the outages can stay a few seconds long.
"""

from __future__ import annotations

import io
import logging
import threading
import time

import aiohttp
import botocore.exceptions
import fsspec.exceptions
import pytest
import s3fs
import torch

from sslsep import storage
from sslsep.checkpoint import load_module, read_checkpoint, save_module
from sslsep.config import load_config
from sslsep.run import RunDir
from sslsep.separation.model import build_separator
from sslsep.separation.registry import read_registry
from sslsep.separation.train import _save_state_file

from conftest import S3_PORT
from s3proxy import TcpProxy

DIRECT = f"http://127.0.0.1:{S3_PORT}"  # the server itself, bypassing the proxy


class Tiny(torch.nn.Module):
    def __init__(self, n: int = 8):
        super().__init__()
        self.config = {"n": n}
        self.lin = torch.nn.Linear(n, n)


@pytest.fixture
def flaky_s3(s3_server, monkeypatch):
    """(proxy, bucket URI): the storage client reaches S3 only through the proxy."""
    proxy = TcpProxy(S3_PORT).start()
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", proxy.endpoint)
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "1")
    monkeypatch.setenv(storage.RETRY_SECONDS_ENV, "30")
    s3fs.S3FileSystem.clear_instance_cache()
    yield proxy, s3_server
    proxy.close()
    s3fs.S3FileSystem.clear_instance_cache()


def direct_fs() -> s3fs.S3FileSystem:
    """A client that talks to the server without the proxy: what another reader sees."""
    return s3fs.S3FileSystem(client_kwargs={"endpoint_url": DIRECT}, skip_instance_cache=True)


def retry_warnings(caplog, uri: str) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "sslsep.storage" and uri in r.getMessage()]


def test_checkpoint_save_waits_out_an_outage(flaky_s3, caplog):
    proxy, bucket = flaky_s3
    uri = f"{bucket}/faults/outage/model.pt"
    model = Tiny()
    # the client made and the bucket seen before the outage: on a loaded machine building the
    # client alone can outlast a 3 s outage, and then no request of the save meets it
    assert not storage.exists(uri)
    proxy.down()
    threading.Timer(3.0, proxy.up).start()
    t0 = time.monotonic()
    with caplog.at_level(logging.WARNING, logger="sslsep.storage"):
        save_module(model, uri, step=7)
    assert time.monotonic() - t0 >= 2.5  # it really waited for the server to come back
    assert retry_warnings(caplog, uri), "each retry is logged with the URI"
    loaded = load_module(Tiny, uri)
    torch.testing.assert_close(loaded.lin.weight, model.lin.weight)
    assert read_checkpoint(uri)["step"] == 7


def test_outage_past_the_budget_fails_naming_the_uri_and_registers_nothing(flaky_s3, monkeypatch):
    """The registry entry is written only after its checkpoint: a save that cannot finish
    leaves the registry as it was."""
    proxy, bucket = flaky_s3
    run = RunDir(f"{bucket}/faults/run")
    cfg = load_config(None, ["audio.clip_seconds=0.5"])
    model = build_separator("quick", sample_rate=16000)
    _save_state_file(model, run, 1, {"step": 1}, cfg)
    monkeypatch.setenv(storage.RETRY_SECONDS_ENV, "2")
    proxy.down()
    t0 = time.monotonic()
    with pytest.raises(storage.StorageUnavailableError) as err:
        _save_state_file(model, run, 2, {"step": 2}, cfg)
    assert time.monotonic() - t0 < 15  # bounded: the budget plus one attempt
    assert f"{bucket}/faults/run/separators/step-000002.pt" in str(err.value)
    assert "SSLSEP_S3_RETRY_SECONDS=2" in str(err.value)
    proxy.up()
    reg = read_registry(run.uri("registry.json"))
    assert [e["step"] for e in reg["separators"]] == [1]
    assert not direct_fs().exists("sslsep-test/faults/run/separators/step-000002.pt")


def _wrapped() -> OSError:
    e = OSError(5, "Input/output error")
    e.__cause__ = ConnectionResetError()
    return e


@pytest.mark.parametrize("error, retried", [
    (lambda: botocore.exceptions.EndpointConnectionError(endpoint_url="http://x"), True),
    (lambda: botocore.exceptions.ConnectionClosedError(endpoint_url="http://x"), True),
    (lambda: aiohttp.ServerDisconnectedError(), True),
    (lambda: ConnectionRefusedError(111, "Connection refused"), True),
    (lambda: fsspec.exceptions.FSTimeoutError(), True),
    (_wrapped, True),
    (lambda: FileNotFoundError(2, "No such file"), False),
    (lambda: PermissionError(13, "Access denied"), False),
    (lambda: OSError(5, "Internal error"), False),
    (lambda: ValueError("bad"), False),
], ids=["endpoint", "closed", "aiohttp-disconnected", "refused", "fs-timeout", "wrapped-reset", "not-found",
        "denied", "server-error", "value"])
def test_connection_errors_are_told_from_object_errors(error, retried):
    assert storage.is_connection_error(error()) is retried


def test_not_found_is_not_retried(flaky_s3, caplog):
    _, bucket = flaky_s3
    t0 = time.monotonic()
    with caplog.at_level(logging.WARNING, logger="sslsep.storage"), pytest.raises(FileNotFoundError):
        storage.read_bytes(f"{bucket}/faults/no-such-object.pt")
    assert time.monotonic() - t0 < 2 and not caplog.records


class Big(torch.nn.Module):
    def __init__(self, n: int = 600):
        super().__init__()
        self.config = {"n": n}
        self.w = torch.nn.Parameter(torch.randn(n, n))  # 1.4 MB: many TCP segments


def test_reader_never_sees_a_partial_checkpoint(flaky_s3, monkeypatch):
    """Uploads are cut mid-body by the proxy while another client keeps reading the object
    from the server: every read is the old checkpoint or the new one, whole, never a part.
    Then uploads are cut until the budget runs out: the object stays the old one."""
    proxy, bucket = flaky_s3
    key = "sslsep-test/faults/partial/model.pt"
    uri = f"s3://{key}"
    old, new = Big(), Big()
    save_module(old, uri, version="old")
    reader, seen, stop = direct_fs(), [], threading.Event()

    def read_loop():
        while not stop.is_set():
            try:
                data = reader.cat_file(key)
            except FileNotFoundError:
                seen.append(None)
                continue
            seen.append(torch.load(io.BytesIO(data), weights_only=True)["version"])  # raises if partial

    t = threading.Thread(target=read_loop, daemon=True)
    t.start()
    try:
        proxy.cut_after(200_000)
        threading.Timer(2.0, proxy.up).start()
        save_module(new, uri, version="new")
        cuts = proxy.cuts
        proxy.cut_after(200_000)
        monkeypatch.setenv(storage.RETRY_SECONDS_ENV, "2")
        with pytest.raises(storage.StorageUnavailableError, match="partial/model.pt"):
            save_module(old, uri, version="third")
    finally:
        stop.set()
        t.join(10)
        proxy.up()
    assert cuts >= 1 and proxy.cuts > cuts, "uploads were really cut mid-body"
    assert seen and set(seen) <= {"old", "new"}, set(seen)
    assert "new" in seen
    assert read_checkpoint(uri)["version"] == "new"
    torch.testing.assert_close(load_module(Big, uri).w, new.w)
