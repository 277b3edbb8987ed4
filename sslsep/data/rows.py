"""Clip rows, what every source yields: ``{clip_id, audio float32[T], sample_rate, labels
list[str], fold, group, source, status, detail}``.

Every input becomes exactly one row: a skipped input keeps its row with ``status`` naming
the reason and silent audio, so that clips in = clips accounted for out. ``source`` names the
corpus the clip came from (the accounting of a mix is per source).
"""

from __future__ import annotations

import zlib

import numpy as np

from sslsep import storage
from sslsep.audio import decode_clip
from sslsep.config import AudioConfig


def is_held_out(clip_id: str, group: str, fraction: float) -> bool:
    """Deterministic train/validation split by recording group (e.g. UrbanSound8K's fsID),
    or by clip when there is no group: all clips of one recording land on one side."""
    key = group or clip_id
    return zlib.crc32(key.encode()) % 10000 < round(fraction * 10000)


def in_split(clip_id: str, group: str, split: str | None, fraction: float) -> bool:
    return split is None or is_held_out(clip_id, group, fraction) == (split == "val")


def hash_key(clip_id: str) -> int:
    """The order `hash_sample` takes clips in: crc32 of the id."""
    return zlib.crc32(clip_id.encode())


def make_row(clip_id: str, audio: np.ndarray, rate: int, labels, fold: int, group: str,
             status: str, detail: str, source: str = "") -> dict:
    return {"clip_id": clip_id, "audio": audio, "sample_rate": rate, "labels": list(labels),
            "fold": int(fold), "group": group, "source": source, "status": status, "detail": detail}


def decode_row(data: bytes, clip_id: str, labels, fold: int, group: str, audio: AudioConfig,
               source: str = "") -> dict:
    d = decode_clip(data, audio, key=clip_id)
    clip = d.audio if d.audio is not None else np.zeros(audio.num_samples, np.float32)
    return make_row(clip_id, clip, audio.sample_rate, labels, fold, group, d.status, d.detail, source)


def read_or_skip(uri: str, clip_id: str, labels, fold: int, group: str, audio: AudioConfig,
                 source: str = "") -> dict:
    """Read and decode one file; a file that cannot be opened is an 'unreadable' row."""
    try:
        data = storage.read_bytes(uri)
    except OSError as e:
        return make_row(clip_id, np.zeros(audio.num_samples, np.float32), audio.sample_rate, labels, fold,
                        group, "unreadable", f"cannot open: {e}", source)
    return decode_row(data, clip_id, labels, fold, group, audio, source)


def object_column(lists) -> np.ndarray:
    """A (B,) object array of Python lists: Ray Data stores it as list<...>, where a 2-D
    string array would become a fixed-width tensor that breaks between batches."""
    col = np.empty(len(lists), dtype=object)
    for i, x in enumerate(lists):  # element-wise: numpy would otherwise build a 2-D array
        col[i] = list(x)
    return col


def stack(rows: list[dict]) -> dict:
    """list of rows -> a columnar numpy batch (audio stacked to (B, T))."""
    out = {k: np.array([r[k] for r in rows]) for k in rows[0] if k not in ("audio", "stems", "labels")}
    out["audio"] = np.stack([r["audio"] for r in rows])  # (B, T)
    if "stems" in rows[0]:
        out["stems"] = np.stack([r["stems"] for r in rows])  # (B, max_events, T)
    out["labels"] = object_column([r["labels"] for r in rows])
    return out
