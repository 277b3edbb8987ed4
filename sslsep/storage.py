"""One way to reach files, local or s3://, through fsspec.

S3 endpoints other than AWS (MinIO, a loopback test server) come from the standard
environment variable AWS_ENDPOINT_URL_S3 (or AWS_ENDPOINT_URL), which s3fs, pyarrow and
Ray all honour; we pass it explicitly too so that older clients agree.
"""

from __future__ import annotations

import os
import posixpath
from typing import Iterable

import fsspec


def is_remote(uri: str) -> bool:
    return "://" in str(uri) and not str(uri).startswith("file://")


def s3_endpoint() -> str | None:
    return os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL")


def get_fs(uri: str) -> tuple[fsspec.AbstractFileSystem, str]:
    """uri -> (filesystem, path inside it)."""
    uri = str(uri)
    kwargs = {}
    if uri.startswith("s3://") and s3_endpoint():
        kwargs["client_kwargs"] = {"endpoint_url": s3_endpoint()}
    fs, path = fsspec.core.url_to_fs(uri, **kwargs)
    return fs, path


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
    with fs.open(path, "rb") as f:
        return f.read()


def write_bytes(uri: str, data: bytes) -> None:
    """Write to a temporary name, then move: a reader never sees half a file."""
    fs, path = get_fs(uri)
    parent = posixpath.dirname(path) if is_remote(uri) else os.path.dirname(path)
    if parent:
        fs.makedirs(parent, exist_ok=True)
    if is_remote(uri):  # an S3 PUT is atomic already
        with fs.open(path, "wb") as f:
            f.write(data)
        return
    tmp = f"{path}.tmp-{os.getpid()}"
    with open(tmp, "wb") as f:
        f.write(data)
    os.replace(tmp, path)


def exists(uri: str) -> bool:
    fs, path = get_fs(uri)
    return fs.exists(path)


def makedirs(uri: str) -> None:
    fs, path = get_fs(uri)
    fs.makedirs(path, exist_ok=True)


def relpath(uri: str, root: str) -> str:
    """Path of `uri` relative to `root`, with forward slashes (used as a clip id)."""
    uri, root = str(uri).rstrip("/"), str(root).rstrip("/")
    if is_remote(uri):
        return uri[len(root) + 1:] if uri.startswith(root + "/") else uri
    return os.path.relpath(uri, root).replace(os.sep, "/")
