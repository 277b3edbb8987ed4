"""Clip sources: synthetic scenes, a folder of audio (+ labels CSV), Parquet shards.

Each source is available two ways that yield the same rows:
- `clip_dataset(cfg)`: a streaming ``ray.data.Dataset`` (decode runs in Ray tasks);
- `iter_clips(cfg)`: a plain in-process generator (debugging, world size 1, baselines).

A clip row is ``{clip_id, audio float32[T], sample_rate, labels list[str], fold, group,
status, detail}``. Every input becomes exactly one row: skipped inputs keep their row with
``status`` naming the reason and silent audio, so that clips in = clips accounted for
out. Consumers keep rows with ``status in KEEP_STATUSES`` (see `usable`) and count the
rest; `DecodeReport.from_rows` turns the status columns into a report.
"""

from __future__ import annotations

import itertools
import math
import zlib
from dataclasses import dataclass
from typing import Iterator

import numpy as np

from sslsep import storage
from sslsep.audio import KEEP_STATUSES, DecodeReport, decode_clip
from sslsep.config import AudioConfig, DataConfig
from sslsep.data import labels as labels_mod

SHARD_COLUMNS = ("clip_id", "audio_bytes", "labels")   # the minimum a shard must hold
SHARD_GLOB_EXT = (".parquet",)


@dataclass
class FolderItem:
    uri: str
    clip_id: str
    labels: list[str]
    fold: int = -1
    group: str = ""


def is_held_out(clip_id: str, group: str, fraction: float) -> bool:
    """Deterministic train/validation split by recording group (e.g. UrbanSound8K's fsID),
    or by clip when there is no group: all clips of one recording land on one side."""
    key = group or clip_id
    return zlib.crc32(key.encode()) % 10000 < round(fraction * 10000)


def _in_split(clip_id: str, group: str, split: str | None, fraction: float) -> bool:
    return split is None or is_held_out(clip_id, group, fraction) == (split == "val")


def resolve_source(cfg: DataConfig) -> str:
    """'auto' -> synthetic | folder | parquet, from what `path` holds."""
    if cfg.source != "auto":
        if cfg.source != "synthetic" and not cfg.path:
            raise ValueError(f"data.source={cfg.source} needs data.path")
        return cfg.source
    if not cfg.path:
        return "synthetic"
    if cfg.path.endswith(".parquet"):
        return "parquet"
    fs, path = storage.get_fs(cfg.path)
    if not fs.exists(path):
        raise FileNotFoundError(f"data.path {cfg.path}: no such file or folder")
    return "parquet" if storage.find(cfg.path, SHARD_GLOB_EXT) else "folder"


# --------------------------------------------------------------------------- rows

def _row(clip_id: str, audio: np.ndarray, rate: int, labels, fold: int, group: str,
         status: str, detail: str) -> dict:
    return {"clip_id": clip_id, "audio": audio, "sample_rate": rate, "labels": list(labels),
            "fold": int(fold), "group": group, "status": status, "detail": detail}


def decode_row(data: bytes, clip_id: str, labels, fold: int, group: str, audio: AudioConfig) -> dict:
    d = decode_clip(data, audio, key=clip_id)
    clip = d.audio if d.audio is not None else np.zeros(audio.num_samples, np.float32)
    return _row(clip_id, clip, audio.sample_rate, labels, fold, group, d.status, d.detail)


def _read_or_skip(item: FolderItem, audio: AudioConfig) -> dict:
    try:
        data = storage.read_bytes(item.uri)
    except OSError as e:
        return _row(item.clip_id, np.zeros(audio.num_samples, np.float32), audio.sample_rate,
                    item.labels, item.fold, item.group, "unreadable", f"cannot open: {e}")
    return decode_row(data, item.clip_id, item.labels, item.fold, item.group, audio)


def _stack(rows: list[dict]) -> dict:
    """list of rows -> a columnar numpy batch (audio stacked to (B, T))."""
    out = {k: np.array([r[k] for r in rows]) for k in rows[0] if k not in ("audio", "stems", "labels")}
    out["audio"] = np.stack([r["audio"] for r in rows])  # (B, T)
    if "stems" in rows[0]:
        out["stems"] = np.stack([r["stems"] for r in rows])  # (B, max_events, T)
    out["labels"] = object_column([r["labels"] for r in rows])
    return out


def object_column(lists) -> np.ndarray:
    """A (B,) object array of Python lists: Ray Data stores it as list<...>, where a 2-D
    string array would become a fixed-width tensor that breaks between batches."""
    col = np.empty(len(lists), dtype=object)
    for i, x in enumerate(lists):  # element-wise: numpy would otherwise build a 2-D array
        col[i] = list(x)
    return col


def _empty_batch(audio: AudioConfig) -> dict:  # (no epoch: callers add it)
    return {"clip_id": np.array([], dtype=object), "audio": np.zeros((0, audio.num_samples), np.float32),
            "sample_rate": np.array([], np.int64), "labels": np.array([], dtype=object),
            "fold": np.array([], np.int64), "group": np.array([], dtype=object),
            "status": np.array([], dtype=object), "detail": np.array([], dtype=object)}


# --------------------------------------------------------------------------- folder

def folder_items(cfg: DataConfig, split: str | None = None, val_fraction: float = 0.0
                 ) -> tuple[list[FolderItem], list[tuple[str, str, str]], list[str]]:
    """List the audio of a folder with its labels -> (items, problems, classes).
    `split` ('train' | 'val') keeps one side of the `is_held_out` split."""
    files = storage.find(cfg.path, cfg.extensions)
    if not files:
        raise FileNotFoundError(f"{cfg.path}: no audio files with extensions {cfg.extensions}")
    rel = [storage.relpath(f, cfg.path) for f in files]
    csv_uri = labels_mod.find_labels_csv(cfg.path, cfg.labels_csv)
    table = (labels_mod.parse_labels(csv_uri, rel, cfg.class_index_csv) if csv_uri
             else labels_mod.LabelTable({}, []))
    items = []
    for uri, r in zip(files, rel):
        meta = table.lookup(r) or labels_mod.ClipMeta([])
        if _in_split(r, meta.group, split, val_fraction):
            items.append(FolderItem(uri, r, meta.labels, meta.fold, meta.group))
    if cfg.max_clips:
        items = items[:cfg.max_clips]
    return items, table.problems, table.classes


# --------------------------------------------------------------------------- parquet

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
    from concurrent.futures import ThreadPoolExecutor

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


def _shard_fields(batch: dict, i: int) -> tuple[str, list[str], int, str]:
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


def _shard_batch_rows(batch: dict, audio: AudioConfig, split: str | None = None,
                      val_fraction: float = 0.0) -> list[dict]:
    rows = []
    for i in range(len(batch["clip_id"])):
        cid, labels, fold, group = _shard_fields(batch, i)
        if _in_split(cid, group, split, val_fraction):
            rows.append(decode_row(batch["audio_bytes"][i], cid, labels, fold, group, audio))
    return rows


# --------------------------------------------------------------------------- synthetic

def _synth_row(index: int, cfg: DataConfig, audio: AudioConfig, with_stems: bool) -> dict:
    from sslsep.data.synthetic import generate_scene

    s = cfg.synth
    scene = generate_scene(int(index), seed=s.seed, sample_rate=audio.sample_rate,
                           num_samples=audio.num_samples, min_events=s.min_events,
                           max_events=s.max_events, gain_db=tuple(s.gain_db))
    row = _row(scene.clip_id, scene.audio, audio.sample_rate, scene.labels, -1, scene.context, "ok", "")
    if with_stems:
        stems = np.zeros((s.max_events, audio.num_samples), np.float32)  # (max_events, T), zero rows pad
        stems[:len(scene.stems)] = scene.stems
        row["stems"], row["num_events"] = stems, len(scene.stems)
    return row


# --------------------------------------------------------------------------- public API

def iter_clips(cfg: DataConfig, audio: AudioConfig, *, with_stems: bool = False,
               split: str | None = None, val_fraction: float = 0.0) -> Iterator[dict]:
    """In-process generator over the configured source: the same rows as `clip_dataset`.
    `split` selects one side of `is_held_out` for real data (synthetic data has no split:
    validation scenes come from another seed)."""
    kind = resolve_source(cfg)
    if kind == "synthetic":
        for i in range(cfg.synth.num_clips):
            yield _synth_row(i, cfg, audio, with_stems)
    elif kind == "folder":
        items, _, _ = folder_items(cfg, split, val_fraction)
        for item in items:
            yield _read_or_skip(item, audio)
    else:
        import pyarrow.parquet as pq

        uris = shard_uris(cfg.path)
        check_shards(uris)
        left = cfg.max_clips or None
        for u in uris:
            fs, path = storage.pyarrow_fs(u)
            # record batches (within row groups), never a whole shard in Python lists
            for batch in pq.ParquetFile(path, filesystem=fs).iter_batches(batch_size=SHARD_READ_ROWS):
                for row in _shard_batch_rows(batch.to_pydict(), audio, split, val_fraction):
                    yield row
                    if left is not None:
                        left -= 1
                        if left == 0:
                            return


def held_out_rows(cfg: DataConfig, audio: AudioConfig, val_fraction: float, count: int) -> list[dict]:
    """The first `count` usable ("ok") held-out clips of a real source (`is_held_out`) in hash
    order: the separator's validation clips (`hash_sample`)."""
    return hash_sample(cfg, audio, count, split="val", val_fraction=val_fraction, only_ok=True)


def hash_sample(cfg: DataConfig, audio: AudioConfig, count: int, *, split: str | None = None,
                val_fraction: float = 0.0, only_ok: bool = False) -> list[dict]:
    """The first `count` clips (with `only_ok`, usable ones) of a source's `split`, in hash
    order of their clip ids (crc32): chosen from metadata (the file listing and labels; for
    shards the clip_id and group columns alone), and only the candidates it takes are read and
    decoded (for shards, the row groups that hold them). The cost is independent of the corpus
    size but for the listing; the same clips whatever the order of files or shards; and hash
    order pairs clips of different recordings, which validation mixtures need."""
    def key(cid: str) -> int:
        return zlib.crc32(cid.encode())

    def take(row: dict) -> bool:
        return not only_ok or row["status"] == "ok"

    out: list[dict] = []
    kind = resolve_source(cfg)
    if kind == "synthetic":  # scene ids follow from their index: scenes made on demand
        from sslsep.data.synthetic import scene_id

        order = sorted(range(cfg.synth.num_clips), key=lambda i: key(scene_id(cfg.synth.seed, i)))
        rows = (_synth_row(i, cfg, audio, False) for i in order)
        return list(itertools.islice((r for r in rows if take(r)), count))
    if kind == "folder":
        items = sorted(folder_items(cfg, split, val_fraction)[0], key=lambda it: key(it.clip_id))
        for item in items:
            row = _read_or_skip(item, audio)
            if take(row):
                out.append(row)
                if len(out) == count:
                    break
        return out
    import pyarrow.parquet as pq

    uris = shard_uris(cfg.path)
    check_shards(uris)
    # Shards in hash order of their names, their ids read until the pool holds 4x the clips
    # wanted (at least 64 more): the cost follows `count`, not the corpus. The pool is then
    # taken in hash order of the ids; a pool that runs short is grown from further shards.
    shard_order = sorted(range(len(uris)), key=lambda i: key(uris[i].rsplit("/", 1)[-1]))
    files: dict[int, object] = {}
    candidates: list[tuple[int, int, int]] = []  # (hash, shard index, row index in shard)
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
                candidates += [(key(c), si, row + i) for i, (c, g) in enumerate(zip(ids, groups))
                               if isinstance(c, str) and _in_split(c, g or "", split, val_fraction)]
                row += len(ids)
        candidates.sort()
        out = _decode_candidates([c for c in candidates if c not in tried], files, audio, count - len(out),
                                 take, tried) + out
        out.sort(key=lambda r: (key(r["clip_id"]), r["clip_id"]))
        if len(out) >= count or scanned == len(shard_order):
            return out[:count]
        pool *= 4


def _decode_candidates(candidates, files, audio: AudioConfig, count: int, take, tried: set) -> list[dict]:
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
                cid, labels, fold, group = _shard_fields(batch, r)
                decoded.append((h, cid, decode_row(batch["audio_bytes"][r], cid, labels, fold, group, audio)))
        for _, _, row in sorted(decoded, key=lambda x: (x[0], x[1])):
            if take(row):
                out.append(row)
                if len(out) == count:
                    return out
    return out


def listed_clips(cfg: DataConfig) -> tuple[int, list[tuple[str, str, str]]]:
    """How many clips a source holds, from metadata alone (listing, labels, shard footers),
    and the label problems of a folder."""
    kind = resolve_source(cfg)
    if kind == "synthetic":
        return cfg.synth.num_clips, []
    if kind == "folder":
        items, problems, _ = folder_items(cfg)
        return len(items), problems
    rows = check_shards(shard_uris(cfg.path))
    return (min(rows, cfg.max_clips) if cfg.max_clips else rows), []


def clip_dataset(cfg: DataConfig, audio: AudioConfig, *, with_stems: bool = False,
                 split: str | None = None, val_fraction: float = 0.0, shuffle_seed: int | None = None,
                 parallelism: int = -1, epochs: int = 1, clips_needed: int = 0):
    """The configured source as a streaming ray.data.Dataset of clip rows (see `iter_clips`)
    with an `epoch` column: `epochs` passes over the source in one stream (a trainer reads
    them without the pipeline restarting between epochs; views are seeded by epoch), or with
    `clips_needed`, enough passes for that many clips plus a spare one (skipped clips, uneven
    shards), counted from the listing or footers the source reads anyway.
    `shuffle_seed` orders files (folders), scenes (synthetic) or blocks (shards) at random
    and anew each epoch, cheaply: folders list a recording's clips side by side, and training
    pairs must not come from one recording."""
    import ray.data

    if epochs < 1:
        raise ValueError(f"epochs must be at least 1, got {epochs}")
    # a Dataset copies the driver's DataContext when it is made: every Dataset that starts here
    # (and what Ray Train's ingest derives from it) yields rows in order, or not, by one key,
    # and holds at most `data.stream_memory_mb` ahead of its consumer
    options = ray.data.DataContext.get_current().execution_options
    options.preserve_order = cfg.preserve_order
    if cfg.stream_memory_mb:  # how far producers may run ahead (Ray Train's ingest copies this too)
        options.resource_limits = options.resource_limits.copy(object_store_memory=cfg.stream_memory_mb * 2**20)
    kind = resolve_source(cfg)

    def passes(n: int) -> int:
        return math.ceil(clips_needed / max(1, n)) + 1 if clips_needed else epochs

    def order(n: int, epoch: int) -> np.ndarray:
        if shuffle_seed is None:
            return np.arange(n)
        return np.random.default_rng([shuffle_seed, epoch]).permutation(n)

    if kind == "synthetic":
        # (epoch, scene index) pairs in memory (16 bytes a clip): no read tasks, which would each hold a CPU
        n = cfg.synth.num_clips
        pairs = np.concatenate([np.stack([np.full(n, e), order(n, e)], axis=1) for e in range(passes(n))])  # (E*n, 2)
        blocks = parallelism if parallelism > 0 else max(1, min(len(pairs) // 64, 2000))
        ds = ray.data.from_numpy(np.array_split(pairs, blocks))

        def synth(batch: dict) -> dict:
            out = _stack([_synth_row(int(i), cfg, audio, with_stems) for i in batch["data"][:, 1]])
            return {**out, "epoch": batch["data"][:, 0].astype(np.int64)}

        return ds.map_batches(synth, batch_size=16, batch_format="numpy",
                              num_cpus=cfg.cpus_per_task)
    if kind == "folder":
        items, _, _ = folder_items(cfg, split, val_fraction)
        rows = [{**vars(items[i]), "epoch": e} for e in range(passes(len(items))) for i in order(len(items), e)]
        # blocks of ~16 files: enough tasks to keep every core busy, few enough to be cheap
        blocks = parallelism if parallelism > 0 else max(1, min(len(rows) // 16, 2000))
        ds = ray.data.from_items(rows, override_num_blocks=blocks)

        def decode_files(batch: dict) -> dict:
            n = len(batch["uri"])
            out = _stack([_read_or_skip(FolderItem(batch["uri"][i], batch["clip_id"][i],
                                                   list(batch["labels"][i]), int(batch["fold"][i]),
                                                   batch["group"][i]), audio) for i in range(n)])
            return {**out, "epoch": batch["epoch"].astype(np.int64)}

        return ds.map_batches(decode_files, batch_size=16, batch_format="numpy",
                              num_cpus=cfg.cpus_per_task)
    import pyarrow.parquet as pq

    uris = shard_uris(cfg.path)
    rows = check_shards(uris)
    fs, _ = storage.pyarrow_fs(uris[0])
    paths = [storage.get_fs(u)[1] for u in uris]
    # One item per (epoch, shard), the shards in an order drawn here, anew each epoch, and each
    # shard read by one task in record batches: planning costs a list of names whatever the
    # corpus size (Ray's read_parquet planned over every file, and its randomize_block_order
    # read every shard before handing on the first block: docs/benchmarks.md, start-up).
    # With data.max_clips, the first N clips in sorted order: sorted shards, each with its share.
    take = [None] * len(paths)
    if cfg.max_clips:
        left = cfg.max_clips
        for i, n_rows in enumerate(shard_rows(uris)):
            take[i], left = min(n_rows, left), left - min(n_rows, left)
    n = passes(min(rows, cfg.max_clips) if cfg.max_clips else rows)
    items = [{"path": paths[i], "epoch": e, "take": -1 if take[i] is None else take[i]}
             for e in range(n) for i in (range(len(paths)) if cfg.max_clips else order(len(paths), e))
             if take[i] != 0]
    blocks = parallelism if parallelism > 0 else max(1, min(len(items), 2000))
    ds = ray.data.from_items(items, override_num_blocks=blocks)

    def read_shards(batch: dict):
        """(epoch, shard) items -> decoded rows, SHARD_READ_ROWS at a time (a generator)."""
        yielded = False
        for path, epoch, limit in zip(batch["path"], batch["epoch"], batch["take"]):
            left = int(limit) if limit >= 0 else None
            for rb in pq.ParquetFile(path, filesystem=fs).iter_batches(batch_size=SHARD_READ_ROWS):
                if left is not None:
                    rb = rb.slice(0, left)
                    left -= rb.num_rows
                got = _shard_batch_rows(rb.to_pydict(), audio, split, val_fraction)
                if got:
                    yielded = True
                    yield {**_stack(got), "epoch": np.full(len(got), epoch, np.int64)}
                if left is not None and left <= 0:
                    break
        if not yielded:
            yield {**_empty_batch(audio), "epoch": np.zeros(0, np.int64)}

    return ds.map_batches(read_shards, batch_size=1, batch_format="numpy", num_cpus=cfg.cpus_per_task)


def usable(ds, num_cpus: float = 0.5):
    """Keep the rows a model can train on (ok and silent); skipped rows are counted elsewhere.
    `num_cpus` should match the decode step's (`data.cpus_per_task`) so that Ray fuses the
    two: a separate 1-CPU step would never schedule beside a trainer and an actor pool."""
    from ray.data.expressions import col

    return ds.filter(expr=col("status").is_in(list(KEEP_STATUSES)), num_cpus=num_cpus)


def report_from_rows(rows, problems=()) -> DecodeReport:
    """Rows (dicts with clip_id/status/detail) + label problems -> a DecodeReport."""
    report = DecodeReport()
    for r in rows:
        report.add(r["clip_id"], r["status"], r.get("detail", ""))
    for problem in problems:
        report.add_label_problem(*problem)
    return report


def dataset_report(ds, problems=()) -> DecodeReport:
    """Run the dataset once for its status columns (decodes everything; for checks)."""
    cols = ds.select_columns(["clip_id", "status", "detail"])
    return report_from_rows(cols.iter_rows(), problems)

