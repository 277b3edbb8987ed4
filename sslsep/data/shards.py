"""Parquet shards (`sslsep data pack`, local or s3://) as a source of clip rows.

Items are shards: a pass lists them (footers give their rows), a task reads one shard in
record batches of SHARD_READ_ROWS, never a whole shard in Python lists. A hash sample reads
the clip_id (and group) columns and decodes only the row groups that hold its clips.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Iterator

import numpy as np

from sslsep import storage
from sslsep.config import AudioConfig, DataConfig
from sslsep.data import rows as R

SHARD_COLUMNS = ("clip_id", "audio_bytes", "labels")   # the minimum a shard must hold
SHARD_GLOB_EXT = (".parquet",)
SHARD_READ_ROWS = 64  # rows per record batch read from a shard


def shard_uris(uri: str) -> list[str]:
    if uri.endswith(".parquet"):
        return [uri]
    shards = storage.find(uri, SHARD_GLOB_EXT)
    if not shards:
        raise FileNotFoundError(f"{uri}: no .parquet shards")
    return shards


_CHECKED: dict[tuple[str, ...], list[int]] = {}  # shards checked in this process -> rows of each


def check_shards(uris: list[str]) -> int:
    """Read every shard's footer; a shard without the clip columns is an error naming it.
    Returns the shards' rows (from the same footers). Once per list of shards and process:
    the data stage, the validation set and the training stream all ask."""
    return sum(shard_rows(uris))


def shard_rows(uris: list[str]) -> list[int]:
    """The rows of each shard, from the footers `check_shards` reads (once per process)."""
    key = tuple(uris)
    if key not in _CHECKED:
        _CHECKED[key] = _check_footers(uris)
    return _CHECKED[key]


def _check_footers(uris: list[str]) -> list[int]:
    import pyarrow.parquet as pq

    def footer(u: str):
        fs, path = storage.pyarrow_fs(u)
        try:
            return pq.read_metadata(path, filesystem=fs)
        except Exception as e:
            raise ValueError(f"{u}: not a readable Parquet shard ({e})") from None

    rows = []
    with ThreadPoolExecutor(8) as pool:
        for u, meta in zip(uris, pool.map(footer, uris)):
            rows.append(meta.num_rows)
            s = meta.schema.to_arrow_schema()
            missing = [c for c in SHARD_COLUMNS if c not in s.names]
            if missing:
                raise ValueError(f"{u}: Parquet shard lacks column(s) {missing}; has {s.names}. "
                                 f"Write shards with `sslsep data pack`.")
            wrong = _wrong_shard_types(s)
            if wrong:
                raise ValueError(f"{u}: Parquet shard column(s) of the wrong type: {'; '.join(wrong)}. "
                                 f"Write shards with `sslsep data pack`.")
    return rows


def _wrong_shard_types(schema) -> list[str]:
    """Clip columns whose Arrow type the decoder cannot use (a string `labels` column would
    otherwise become a list of characters)."""
    import pyarrow.types as t

    def text(x):
        return t.is_string(x) or t.is_large_string(x)

    def text_list(x):
        return (t.is_list(x) or t.is_large_list(x)) and (text(x.value_type) or t.is_null(x.value_type))

    wanted = {"clip_id": ("string", text),
              "audio_bytes": ("binary", lambda x: t.is_binary(x) or t.is_large_binary(x)),
              "labels": ("list<string>", lambda x: t.is_null(x) or text_list(x)),
              "fold": ("integer", lambda x: t.is_null(x) or t.is_integer(x)),
              "group": ("string", lambda x: t.is_null(x) or text(x))}
    return [f"{c} is {schema.field(c).type}, expected {want}" for c, (want, ok) in wanted.items()
            if c in schema.names and not ok(schema.field(c).type)]


def _null(v) -> bool:
    return v is None or (isinstance(v, float) and v != v)


def shard_fields(batch: dict, i: int) -> tuple[str, list[str], int, str]:
    """Row i's (clip_id, labels, fold, group). Nulls in labels/fold/group get the defaults;
    a value of the wrong type is a ValueError naming the clip (never a list of characters)."""
    cid, labels = batch["clip_id"][i], batch["labels"][i]
    fold = batch["fold"][i] if "fold" in batch else None
    group = batch["group"][i] if "group" in batch else None
    if not isinstance(cid, str) or not cid:
        raise ValueError(f"shard row {i}: clip_id {cid!r} is not a clip name")
    if _null(labels):
        labels = []
    elif not isinstance(labels, (list, tuple, np.ndarray)):
        raise ValueError(f"clip {cid!r}: labels {labels!r} is not a list of class names")
    # Ray hands a nullable integer column over as float64 (nulls are NaN)
    if not _null(fold) and (isinstance(fold, bool) or not isinstance(fold, (int, np.integer, float))
                            or (isinstance(fold, float) and not fold.is_integer())):
        raise ValueError(f"clip {cid!r}: fold {fold!r} is not an integer")
    if not _null(group) and not isinstance(group, str):
        raise ValueError(f"clip {cid!r}: group {group!r} is not a string")
    return (cid, [str(x) for x in labels if not _null(x)], -1 if _null(fold) else int(fold),
            "" if _null(group) else group)


def shard_batch_rows(batch: dict, audio: AudioConfig, split: str | None = None,
                     val_fraction: float = 0.0, source: str = "") -> list[dict]:
    """A Parquet record batch (as a dict of columns) -> decoded clip rows of `split`."""
    out = []
    for i in range(len(batch["clip_id"])):
        cid, labels, fold, group = shard_fields(batch, i)
        if R.in_split(cid, group, split, val_fraction):
            out.append(R.decode_row(batch["audio_bytes"][i], cid, labels, fold, group, audio, source))
    return out


class ParquetSource:
    kind = "parquet"
    items_per_block = 1

    def __init__(self, name: str, cfg: DataConfig):
        self.name, self.cfg = name, cfg

    def uris(self) -> list[str]:
        return shard_uris(self.cfg.path)

    def listed(self) -> tuple[int, list]:
        rows = check_shards(self.uris())
        return (min(rows, self.cfg.max_clips) if self.cfg.max_clips else rows), []

    def _takes(self, uris: list[str]) -> list[int]:
        """Rows read of each shard: all (-1), or with data.max_clips the first N clips in sorted
        order (sorted shards, each with its share; 0 = skipped)."""
        if not self.cfg.max_clips:
            return [-1] * len(uris)
        takes, left = [], self.cfg.max_clips
        for n_rows in shard_rows(uris):
            takes.append(min(n_rows, left))
            left -= takes[-1]
        return takes

    def pass_items(self, split=None, val_fraction=0.0) -> list[dict]:
        uris = self.uris()
        check_shards(uris)
        return [{"uri": u, "take": t, "rows": t if t >= 0 else n}
                for u, t, n in zip(uris, self._takes(uris), shard_rows(uris)) if t != 0]

    @property
    def fixed_order(self) -> bool:
        """With data.max_clips the shards are read in sorted order (the first N clips)."""
        return bool(self.cfg.max_clips)

    def item_rows(self, item: dict) -> int:
        return int(item["rows"])  # from its footer, or data.max_clips's share of it

    def read_item(self, item: dict, audio: AudioConfig, split=None, val_fraction=0.0,
                  with_stems=False) -> Iterator[dict]:
        import pyarrow.parquet as pq

        fs, path = storage.pyarrow_fs(item["uri"])
        left = int(item["take"]) if item["take"] >= 0 else None
        for rb in pq.ParquetFile(path, filesystem=fs).iter_batches(batch_size=SHARD_READ_ROWS):
            if left is not None:
                rb = rb.slice(0, left)
                left -= rb.num_rows
            yield from shard_batch_rows(rb.to_pydict(), audio, split, val_fraction, self.name)
            if left is not None and left <= 0:
                return

    def rows(self, audio: AudioConfig, *, split=None, val_fraction=0.0, with_stems=False) -> Iterator[dict]:
        for item in self.pass_items(split, val_fraction):
            yield from self.read_item(item, audio, split, val_fraction)

    def hash_sample(self, audio: AudioConfig, count: int, *, split=None, val_fraction=0.0,
                    only_ok=False) -> list[dict]:
        """Shards in hash order of their names, their ids read until the pool holds 4x the clips
        wanted (at least 64 more): the cost follows `count`, not the corpus. The pool is then
        taken in hash order of the ids; a pool that runs short is grown from further shards."""
        import pyarrow.parquet as pq

        def take(row: dict) -> bool:
            return not only_ok or row["status"] == "ok"

        uris = self.uris()
        check_shards(uris)
        shard_order = sorted(range(len(uris)), key=lambda i: R.hash_key(uris[i].rsplit("/", 1)[-1]))
        files: dict[int, object] = {}
        candidates: list[tuple[int, int, int]] = []  # (hash, shard index, row index in shard)
        out: list[dict] = []
        pool, scanned, tried = max(4 * count, count + 64), 0, set()
        while True:
            while scanned < len(shard_order) and len(candidates) < pool:
                si = shard_order[scanned]
                scanned += 1
                fs, path = storage.pyarrow_fs(uris[si])
                f = files[si] = pq.ParquetFile(path, filesystem=fs)
                cols = ["clip_id"] + (["group"] if "group" in f.schema_arrow.names else [])
                row = 0
                for batch in f.iter_batches(batch_size=65536, columns=cols):
                    ids = batch.column("clip_id").to_pylist()
                    groups = batch.column("group").to_pylist() if "group" in cols else [None] * len(ids)
                    candidates += [(R.hash_key(c), si, row + i) for i, (c, g) in enumerate(zip(ids, groups))
                                   if isinstance(c, str) and R.in_split(c, g or "", split, val_fraction)]
                    row += len(ids)
            candidates.sort()
            out = self._decode_candidates([c for c in candidates if c not in tried], files, audio,
                                          count - len(out), take, tried) + out
            out.sort(key=lambda r: (R.hash_key(r["clip_id"]), r["clip_id"]))
            if len(out) >= count or scanned == len(shard_order):
                return out[:count]
            pool *= 4

    def _decode_candidates(self, candidates, files, audio: AudioConfig, count: int, take, tried: set) -> list[dict]:
        """Decode shard rows (hash, shard, row) in order, reading only their row groups, until
        `count` of them pass `take`; every candidate decoded is added to `tried`."""
        out: list[dict] = []
        starts = {si: np.cumsum([0] + [f.metadata.row_group(g).num_rows for g in range(f.num_row_groups)])
                  for si, f in files.items()}  # first row of each row group, per shard
        for start in range(0, len(candidates), max(count, 1)):
            by_group: dict[tuple[int, int], list[tuple[int, int]]] = {}
            for h, si, r in candidates[start:start + count]:
                tried.add((h, si, r))
                g = int(np.searchsorted(starts[si], r, side="right") - 1)
                by_group.setdefault((si, g), []).append((h, r - int(starts[si][g])))
            decoded = []
            for (si, g), rows in by_group.items():
                batch = files[si].read_row_group(g).to_pydict()
                for h, r in rows:
                    cid, labels, fold, group = shard_fields(batch, r)
                    decoded.append((h, cid, R.decode_row(batch["audio_bytes"][r], cid, labels, fold, group, audio,
                                                         self.name)))
            for _, _, row in sorted(decoded, key=lambda x: (x[0], x[1])):
                if take(row):
                    out.append(row)
                    if len(out) == count:
                        return out
        return out
