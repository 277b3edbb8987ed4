"""`sslsep data pack SRC DST`: a folder of audio -> Parquet shards, local or s3://.

Shards keep each file's original encoded bytes (so a clip decodes bit-identically to its
source file) next to its metadata. Every file is decoded once while packing: broken ones
are left out and named in the summary and in DST/_manifest.json; silent ones are packed
and flagged.

Shard columns: clip_id, audio_bytes, format, labels, fold, group, status,
source_rate, source_channels, source_frames.
"""

from __future__ import annotations

import io
import json
import posixpath
from concurrent.futures import ThreadPoolExecutor

import pyarrow as pa
import pyarrow.parquet as pq
from tqdm import tqdm

from sslsep import storage
from sslsep.audio import DecodeReport, decode_clip
from sslsep.config import AudioConfig, DataConfig
from sslsep.data.sources import FolderItem, folder_items

SCHEMA = pa.schema([
    ("clip_id", pa.string()), ("audio_bytes", pa.binary()), ("format", pa.string()),
    ("labels", pa.list_(pa.string())), ("fold", pa.int32()), ("group", pa.string()),
    ("status", pa.string()), ("source_rate", pa.int32()), ("source_channels", pa.int32()),
    ("source_frames", pa.int64()),
])

ROW_GROUP_CLIPS = 64
MANIFEST = "_manifest.json"  # the packing report; a leading "_" so that Parquet readers skip it


def _inspect(item: FolderItem, audio: AudioConfig) -> tuple[dict | None, str, str]:
    """-> (shard record or None, status, detail)."""
    try:
        data = storage.read_bytes(item.uri)
    except OSError as e:
        return None, "unreadable", f"cannot open: {e}"
    d = decode_clip(data, audio, key=item.clip_id)
    if d.skipped:
        return None, d.status, d.detail
    rec = {"clip_id": item.clip_id, "audio_bytes": data,
           "format": posixpath.splitext(item.uri)[1].lstrip(".").lower(),
           "labels": item.labels, "fold": item.fold, "group": item.group, "status": d.status,
           "source_rate": d.source_rate, "source_channels": d.source_channels,
           "source_frames": d.source_frames}
    return rec, d.status, d.detail


def _write_shard(dst: str, index: int, records: list[dict]) -> str:
    table = pa.Table.from_pylist(records, schema=SCHEMA)
    buf = io.BytesIO()
    # row groups of a few dozen clips: a reader that wants some clips reads their groups only
    pq.write_table(table, buf, compression="zstd", row_group_size=ROW_GROUP_CLIPS)
    uri = storage.join(dst, f"shard-{index:05d}.parquet")
    storage.write_bytes(uri, buf.getvalue())
    return uri


def pack_folder(data: DataConfig, dst: str, audio: AudioConfig, *, workers: int = 4,
                progress: bool = True) -> DecodeReport:
    """Pack the folder `data.path` into shards of `data.shard_clips` clips under `dst`."""
    items, problems, classes = folder_items(data)
    storage.makedirs(dst)
    report = DecodeReport()
    for problem in problems:
        report.add_label_problem(*problem)
    bar = tqdm(total=len(items), desc="pack", unit="clip", mininterval=0.5, disable=not progress)
    shard: list[dict] = []
    shards: list[str] = []
    with ThreadPoolExecutor(workers) as pool:
        # map keeps input order, so shards are the same whatever the thread timing;
        # chunks bound how many encoded files are held in memory at once
        chunk = max(64, 4 * workers)
        results = (r for start in range(0, len(items), chunk)
                   for r in pool.map(lambda i: _inspect(i, audio), items[start:start + chunk]))
        for item, (rec, status, detail) in zip(items, results):
            report.add(item.clip_id, status, detail)
            if rec is not None:
                shard.append(rec)
                if len(shard) == data.shard_clips:
                    shards.append(_write_shard(dst, len(shards), shard))
                    shard = []
            bar.set_postfix_str(f"{len(report.skipped)} skipped", refresh=False)
            bar.update(1)
    if shard:
        shards.append(_write_shard(dst, len(shards), shard))
    bar.close()
    manifest = {"source": data.path, "num_shards": len(shards), "clips": report.kept,
                "classes": classes, "shards": [storage.relpath(s, dst) for s in shards],
                "report": report.to_dict()}
    # "_manifest.json": readers of Parquet folders (pyarrow.dataset, pandas, polars, Spark) skip names
    # that start with "_" or ".", so DST opens as a dataset with every reader
    storage.write_bytes(storage.join(dst, MANIFEST), json.dumps(manifest, indent=1).encode())
    return report
