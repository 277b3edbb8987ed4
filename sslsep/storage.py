"""One way to reach files, local or s3://, through fsspec.

S3 endpoints other than AWS (MinIO, a loopback test server) come from the standard
environment variable AWS_ENDPOINT_URL_S3 (or AWS_ENDPOINT_URL), which s3fs, pyarrow and
Ray all honour; we pass it explicitly too so that older clients agree.

Remote reads and writes (`read_bytes`, `write_bytes`, `exists`, `makedirs`) survive an
endpoint that is unreachable for a while: connection-type errors (refused, reset, closed
mid-request, timed out) are retried with exponential backoff and jitter for up to
SSLSEP_S3_RETRY_SECONDS (default 120 s), each retry logged as a warning naming the URI;
after that a :class:`StorageUnavailableError` naming the URI is raised. Errors about the
object itself (FileNotFoundError, PermissionError, ...) are never retried. Under this
layer botocore retries each request (AWS_RETRY_MODE, default "standard"; AWS_MAX_ATTEMPTS,
default 3) and s3fs retries a few transient HTTP errors (5 tries, < 2 s of waits);
docs/failure-modes.md spells out the combined bound.
"""

from __future__ import annotations

import errno
import logging
import os
import posixpath
import random
import time
from typing import Callable, Iterable, TypeVar


log = logging.getLogger(__name__)
T = TypeVar("T")

RETRY_SECONDS_ENV = "SSLSEP_S3_RETRY_SECONDS"
DEFAULT_RETRY_SECONDS = 120.0
_BACKOFF_FIRST_S, _BACKOFF_MAX_S = 0.5, 10.0
_CONNECTION_ERRNOS = {errno.ECONNREFUSED, errno.ECONNRESET, errno.ECONNABORTED, errno.EPIPE,
                      errno.ETIMEDOUT, errno.EHOSTUNREACH, errno.ENETUNREACH, errno.ENETDOWN}


class StorageUnavailableError(RuntimeError):
    """A remote store stayed unreachable for the whole retry budget. Deliberately not an
    OSError: readers that turn an OSError into a per-file "unreadable" row must not mistake
    an outage for a broken file."""


def is_remote(uri: str) -> bool:
    return "://" in str(uri) and not str(uri).startswith("file://")


def s3_endpoint() -> str | None:
    return os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL")


def get_fs(uri: str) -> tuple[fsspec.AbstractFileSystem, str]:
    """uri -> (filesystem, path inside it)."""
    uri = str(uri)
    kwargs = {}
    if uri.startswith("s3://"):
        if s3_endpoint():
            kwargs["client_kwargs"] = {"endpoint_url": s3_endpoint()}
        # botocore's own per-request retries, explicit so that their bound is known (the
        # legacy default spends 8-25 s per call on a dead endpoint before our layer sees it)
        kwargs["config_kwargs"] = {"retries": {"mode": os.environ.get("AWS_RETRY_MODE", "standard"),
                                               "max_attempts": int(os.environ.get("AWS_MAX_ATTEMPTS", "3"))}}
    import fsspec  # here, not at import: the model code that imports this module runs without it (gpu.py)

    fs, path = fsspec.core.url_to_fs(uri, **kwargs)
    return fs, path


def retry_seconds() -> float:
    return float(os.environ.get(RETRY_SECONDS_ENV, DEFAULT_RETRY_SECONDS))


def is_connection_error(e: BaseException) -> bool:
    """True for errors that say the endpoint could not be reached or dropped the
    connection (worth retrying), False for errors about the object or the request."""
    if isinstance(e, (FileNotFoundError, PermissionError, FileExistsError, IsADirectoryError,
                      NotADirectoryError)):
        return False
    if isinstance(e, (ConnectionError, TimeoutError)):  # builtins: refused, reset, broken pipe
        return True
    if isinstance(e, OSError) and e.errno in _CONNECTION_ERRNOS:
        return True
    try:
        import botocore.exceptions as be

        # EndpointConnectionError, ConnectTimeoutError, ProxyConnectionError (ConnectionError);
        # ConnectionClosedError, ReadTimeoutError (HTTPClientError)
        if isinstance(e, (be.ConnectionError, be.HTTPClientError)):
            return True
    except ImportError:
        pass
    try:
        import aiohttp

        # ClientConnectorError, ServerDisconnectedError, ClientOSError; a body cut short
        if isinstance(e, (aiohttp.ClientConnectionError, aiohttp.ClientPayloadError)):
            return True
    except ImportError:
        pass
    cause = e.__cause__  # s3fs / fsspec wrap some errors `from` the original one
    return cause is not None and cause is not e and is_connection_error(cause)


def with_retries(uri: str, what: str, fn: Callable[[], T]) -> T:
    """Call `fn` (one remote operation on `uri`); retry connection errors with exponential
    backoff and jitter until SSLSEP_S3_RETRY_SECONDS have passed."""
    budget = retry_seconds()
    deadline = time.monotonic() + budget
    attempt = 0
    while True:
        try:
            return fn()
        except Exception as e:
            if not is_connection_error(e):
                raise
            left = deadline - time.monotonic()
            if left <= 0:
                raise StorageUnavailableError(
                    f"{uri}: {what} failed, storage unreachable for {budget:.0f} s "
                    f"({attempt + 1} attempts; {RETRY_SECONDS_ENV}={budget:g}): {type(e).__name__}: {e}") from e
            step = min(_BACKOFF_MAX_S, _BACKOFF_FIRST_S * 2 ** attempt)
            delay = min(left, step / 2 + random.uniform(0, step / 2))
            attempt += 1
            log.warning("%s: %s failed (%s: %s); retry %d in %.1f s, %.0f s of %g s left",
                        uri, what, type(e).__name__, e, attempt, delay, left, budget)
            time.sleep(delay)


def pyarrow_fs(uri: str):
    """uri -> (pyarrow FileSystem, path) for pyarrow and ray.data readers/writers."""
    import pyarrow.fs as pafs

    fs, path = get_fs(uri)
    if not is_remote(uri):
        return pafs.LocalFileSystem(), os.path.abspath(path)
    return pafs.PyFileSystem(pafs.FSSpecHandler(fs)), path


def join(base: str, *parts: str) -> str:
    base = str(base)
    if is_remote(base):
        return posixpath.join(base, *parts)
    return os.path.join(base, *parts)


def find(uri: str, extensions: Iterable[str]) -> list[str]:
    """Every file below `uri` whose name ends with one of `extensions` (case-insensitive),
    sorted, as full URIs (or local paths)."""
    fs, root = get_fs(uri)
    if not fs.isdir(root):
        raise FileNotFoundError(f"{uri}: no such folder")
    exts = tuple(e.lower() for e in extensions)
    found = sorted(p for p in fs.find(root) if p.lower().endswith(exts))
    if is_remote(uri):
        proto = uri.split("://", 1)[0]
        return [f"{proto}://{p}" for p in found]
    return found


def read_bytes(uri: str) -> bytes:
    fs, path = get_fs(uri)
    if is_remote(uri):
        return with_retries(uri, "read", lambda: fs.cat_file(path))
    with fs.open(path, "rb") as f:
        return f.read()


def write_bytes(uri: str, data: bytes) -> None:
    """Write to a temporary name, then move: a reader never sees half a file. On S3 one
    PutObject (or a multipart upload, aborted on failure) is atomic already: the object
    appears whole when the request completes, or not at all, and a retry rewrites it whole."""
    fs, path = get_fs(uri)
    if is_remote(uri):
        parent = posixpath.dirname(path)
        # an object store has no folders to make (s3fs's makedirs only probes the bucket, and
        # creates it when the probe fails, even when it failed for an outage)
        if parent and not uri.startswith(("s3://", "gs://", "gcs://")):
            with_retries(uri, "makedirs", lambda: fs.makedirs(parent, exist_ok=True))
        with_retries(uri, "write", lambda: fs.pipe_file(path, data))
        return
    parent = os.path.dirname(path)
    if parent:
        fs.makedirs(parent, exist_ok=True)
    tmp = f"{path}.tmp-{os.getpid()}"
    with open(tmp, "wb") as f:
        f.write(data)
    os.replace(tmp, path)


def exists(uri: str) -> bool:
    fs, path = get_fs(uri)
    if is_remote(uri):
        return with_retries(uri, "exists", lambda: fs.exists(path))
    return fs.exists(path)


def makedirs(uri: str) -> None:
    fs, path = get_fs(uri)
    if is_remote(uri):
        with_retries(uri, "makedirs", lambda: fs.makedirs(path, exist_ok=True))
        return
    fs.makedirs(path, exist_ok=True)


def relpath(uri: str, root: str) -> str:
    """Path of `uri` relative to `root`, with forward slashes (used as a clip id)."""
    uri, root = str(uri).rstrip("/"), str(root).rstrip("/")
    if is_remote(uri):
        return uri[len(root) + 1:] if uri.startswith(root + "/") else uri
    return os.path.relpath(uri, root).replace(os.sep, "/")
