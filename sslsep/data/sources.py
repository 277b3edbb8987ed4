"""Clip sources: synthetic scenes, a folder of audio (+ labels CSV), Parquet shards, and a mix
of any of them (`data.sources`), behind one small interface:

    listed()                     how many clips, from metadata alone (+ label problems)
    rows(audio, split=...)       read: every clip, in process
    hash_sample(audio, n, ...)   the first n clips in hash order of their ids, reading only those
    pass_items(split=...)        one pass as work items (a file, a scene, a shard), JSON-able
    read_item(item, audio, ...)  the rows of one item (in a Ray task)

`open_source(data)` gives a DataConfig's source; the mix (`MixSource`) is one more source.
The public functions below take a DataConfig and yield the same rows two ways:
- `clip_dataset(cfg)`: a streaming ``ray.data.Dataset`` (decode runs in Ray tasks);
- `iter_clips(cfg)`: a plain in-process generator (debugging, world size 1, baselines).

A clip row is ``{clip_id, audio float32[T], sample_rate, labels list[str], fold, group,
source, status, detail}`` (sslsep.data.rows). Every input becomes exactly one row: skipped
inputs keep their row with ``status`` naming the reason and silent audio, so that clips in =
clips accounted for out, per source. Consumers keep rows with ``status in KEEP_STATUSES``
(see `usable`) and count the rest; `report_from_rows` turns the status columns into a report.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import math
from typing import Iterator, Protocol

import numpy as np

from sslsep import storage
from sslsep.audio import KEEP_STATUSES, DecodeReport  # noqa: F401  (KEEP_STATUSES: re-exported)
from sslsep.config import VAL_SEED_OFFSET, AudioConfig, DataConfig, source_entries
from sslsep.data import rows as R
from sslsep.data.folder import FolderItem, FolderSource, folder_items  # noqa: F401  (re-exported)
from sslsep.data.rows import decode_row, is_held_out, object_column  # noqa: F401  (re-exported)
from sslsep.data.shards import (SHARD_GLOB_EXT, ParquetSource, check_shards, shard_uris,  # noqa: F401
                                shard_batch_rows as _shard_batch_rows)

_stack = R.stack


class Source(Protocol):
    name: str
    kind: str
    items_per_block: int    # work items per Ray read task

    def listed(self) -> tuple[int, list[tuple[str, str, str]]]: ...
    def rows(self, audio: AudioConfig, *, split=None, val_fraction=0.0, with_stems=False) -> Iterator[dict]: ...
    def hash_sample(self, audio: AudioConfig, count: int, *, split=None, val_fraction=0.0,
                    only_ok=False) -> list[dict]: ...
    def pass_items(self, split=None, val_fraction=0.0) -> list[dict]: ...
    def read_item(self, item: dict, audio: AudioConfig, split=None, val_fraction=0.0,
                  with_stems=False) -> Iterator[dict]: ...
    def item_rows(self, item: dict) -> int | None: ...  # rows an item yields at most, if known


# --------------------------------------------------------------------------- synthetic

class SyntheticSource:
    """The embedded scenes (sslsep.data.synthetic): item i is scene i of `data.synth.seed`,
    made on demand. Scenes have no recording split: the 'val' side is the scenes of seed +
    VAL_SEED_OFFSET (what separation validates on), the other side the configured seed."""
    kind = "synthetic"
    items_per_block = 16

    def __init__(self, name: str, cfg: DataConfig):
        self.name, self.cfg = name, cfg

    def _seed(self, split) -> int:
        return self.cfg.synth.seed + (VAL_SEED_OFFSET if split == "val" else 0)

    def listed(self) -> tuple[int, list]:
        return self.cfg.synth.num_clips, []

    def _row(self, index: int, audio: AudioConfig, seed: int, with_stems: bool) -> dict:
        from sslsep.data.synthetic import generate_scene

        s = self.cfg.synth
        scene = generate_scene(int(index), seed=seed, sample_rate=audio.sample_rate,
                               num_samples=audio.num_samples, min_events=s.min_events,
                               max_events=s.max_events, gain_db=tuple(s.gain_db))
        row = R.make_row(scene.clip_id, scene.audio, audio.sample_rate, scene.labels, -1, scene.context,
                         "ok", "", self.name)
        if with_stems:
            stems = np.zeros((s.max_events, audio.num_samples), np.float32)  # (max_events, T), zero rows pad
            stems[:len(scene.stems)] = scene.stems
            row["stems"], row["num_events"] = stems, len(scene.stems)
        return row

    def rows(self, audio: AudioConfig, *, split=None, val_fraction=0.0, with_stems=False) -> Iterator[dict]:
        for i in range(self.cfg.synth.num_clips):
            yield self._row(i, audio, self._seed(split), with_stems)

    def hash_sample(self, audio: AudioConfig, count: int, *, split=None, val_fraction=0.0,
                    only_ok=False) -> list[dict]:
        from sslsep.data.synthetic import scene_id

        seed = self._seed(split)
        order = sorted(range(self.cfg.synth.num_clips), key=lambda i: R.hash_key(scene_id(seed, i)))
        return [self._row(i, audio, seed, False) for i in order[:count]]  # scenes are always "ok"

    def pass_items(self, split=None, val_fraction=0.0) -> list[dict]:
        return [{"index": i} for i in range(self.cfg.synth.num_clips)]

    def read_item(self, item: dict, audio: AudioConfig, split=None, val_fraction=0.0,
                  with_stems=False) -> Iterator[dict]:
        yield self._row(item["index"], audio, self._seed(split), with_stems)

    def item_rows(self, item: dict) -> int:
        return 1


# --------------------------------------------------------------------------- the mix

class MixSource:
    """Several sources as one. A pass over the mix takes `weight` x (one pass of the source's
    items) from each source: 1 = each item once, 2 = twice (two passes of that source, each in
    its own order), 0.5 = half of them (the other half in the next pass of the mix). Rows keep
    their source's name, and `epoch` is the pass over *their* source (views are seeded by it),
    so a clip seen twice in a pass of the mix gets different views. Within a pass the items of
    all sources are interleaved: in a drawn order when shuffled, else evenly by position.
    Clip ids become `<source>:<id>`, unique across sources that reuse file names."""
    kind = "mix"

    def __init__(self, children: list[tuple[object, float]]):
        self.children = children                      # [(Source, weight)]
        self.by_name = {c.name: c for c, _ in children}
        self.name = "+".join(self.by_name)
        self.items_per_block = min(c.items_per_block for c, _ in children)

    def _named(self, child, what: str, fn):
        """fn(); an error names the source it came from."""
        try:
            return fn()
        except (OSError, ValueError) as e:
            raise type(e)(f"source {child.name!r} ({what}): {e}") from e

    def _each(self, what: str, fn) -> list:
        return [self._named(child, what, lambda c=child: fn(c)) for child, _ in self.children]

    @functools.cached_property
    def _listings(self) -> list[tuple[int, list]]:
        """Each child's `listed()`, once per opened mix (a listing reads a folder or footers)."""
        return self._each("listing", lambda c: c.listed())

    def listed(self) -> tuple[int, list]:
        return sum(n for n, _ in self._listings), [p for _, ps in self._listings for p in ps]

    def listed_by_source(self) -> dict[str, int]:
        return {c.name: n for (c, _), (n, _) in zip(self.children, self._listings)}

    @staticmethod
    def _tag(row: dict) -> dict:
        row["clip_id"] = f"{row['source']}:{row['clip_id']}"
        return row

    def rows(self, audio: AudioConfig, *, split=None, val_fraction=0.0, with_stems=False) -> Iterator[dict]:
        for child, _ in self.children:  # every clip of every source once (weights shape the stream only)
            for row in child.rows(audio, split=split, val_fraction=val_fraction, with_stems=with_stems):
                yield self._tag(row)

    def shares(self, count: int) -> list[int]:
        """`count` split over the sources in proportion to their clips (at least 1 each)."""
        sizes = [n for n, _ in self._listings]
        total = max(1, sum(sizes))
        return [max(1, round(count * n / total)) for n in sizes]

    def hash_sample(self, audio: AudioConfig, count: int, *, split=None, val_fraction=0.0,
                    only_ok=False) -> list[dict]:
        """Each source's share (`shares`) of its own hash sample, merged in hash order."""
        got = []
        for (child, _), n in zip(self.children, self.shares(count)):
            got += self._named(child, "hash sample", lambda c=child, n=n: c.hash_sample(
                audio, n, split=split, val_fraction=val_fraction, only_ok=only_ok))
        got = [self._tag(r) for r in got]
        return sorted(got, key=lambda r: (R.hash_key(r["clip_id"]), r["clip_id"]))[:count]

    def pass_items(self, split=None, val_fraction=0.0) -> list[dict]:
        return [{"source": c.name, "item": it} for c, _ in self.children
                for it in c.pass_items(split, val_fraction)]

    def read_item(self, item: dict, audio: AudioConfig, split=None, val_fraction=0.0,
                  with_stems=False) -> Iterator[dict]:
        for row in self.by_name[item["source"]].read_item(item["item"], audio, split, val_fraction, with_stems):
            yield self._tag(row)

    def item_rows(self, item: dict) -> int | None:
        return self.by_name[item["source"]].item_rows(item["item"])

    def clips_per_pass(self) -> float:
        sizes = self.listed_by_source()
        return sum(sizes[c.name] * w for c, w in self.children)


def open_source(data: DataConfig):
    """The source a DataConfig names: one of `data.path` (kind from `data.source`), or the mix
    of `data.sources`. A source that is missing or of no known kind is an error naming it."""
    entries = source_entries(data)
    opened = []
    for i, (name, weight, one) in enumerate(entries):
        where = f"data.sources[{i}] ({name})" if data.sources else "data.path"
        kind = _resolve_kind(one, where)
        opened.append(({"synthetic": SyntheticSource, "folder": FolderSource,
                        "parquet": ParquetSource}[kind](name, one), weight))
    return opened[0][0] if not data.sources else MixSource(opened)


def _resolve_kind(cfg: DataConfig, where: str) -> str:
    """'auto' -> synthetic | folder | parquet, from what `path` holds."""
    if cfg.source != "auto":
        if cfg.source != "synthetic" and not cfg.path:
            raise ValueError(f"{where}: kind {cfg.source} needs a path")
        return cfg.source
    if not cfg.path:
        return "synthetic"
    if cfg.path.endswith(".parquet"):
        return "parquet"
    fs, path = storage.get_fs(cfg.path)
    if not fs.exists(path):
        raise FileNotFoundError(f"{where} {cfg.path}: no such file or folder")
    return "parquet" if storage.find(cfg.path, SHARD_GLOB_EXT) else "folder"


def resolve_source(cfg: DataConfig) -> str:
    """synthetic | folder | parquet | mix: the kind of the configured source."""
    return open_source(cfg).kind


def leaves(source) -> list[tuple[object, float]]:
    """The (source, weight) pairs a source is made of: the mix's children, or itself."""
    return source.children if isinstance(source, MixSource) else [(source, 1.0)]


# --------------------------------------------------------------------------- public API

def iter_clips(cfg: DataConfig, audio: AudioConfig, *, with_stems: bool = False,
               split: str | None = None, val_fraction: float = 0.0) -> Iterator[dict]:
    """In-process generator over the configured source: the same rows as `clip_dataset` (one
    pass, each clip of every source once). `split` selects one side of `is_held_out` for real
    data (synthetic scenes: 'val' is the validation seed's scenes)."""
    yield from open_source(cfg).rows(audio, split=split, val_fraction=val_fraction, with_stems=with_stems)


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
    order pairs clips of different recordings, which validation mixtures need. A mix takes
    from each source in proportion to its clips."""
    return open_source(cfg).hash_sample(audio, count, split=split, val_fraction=val_fraction, only_ok=only_ok)


def listed_clips(cfg: DataConfig) -> tuple[int, list[tuple[str, str, str]]]:
    """How many clips a source holds, from metadata alone (listing, labels, shard footers),
    and the label problems of a folder."""
    return open_source(cfg).listed()


def plan_passes(source, passes: int, shuffle_seed: int | None, split=None, val_fraction=0.0,
                starts: list[int] | None = None) -> list[tuple[str, int, dict]]:
    """The stream's work items over `passes` passes of `source`: (source name, epoch, item), the
    epoch being the pass over that item's own source (`MixSource`). Each source's items are
    listed once; every pass draws its own order (`shuffle_seed`) or keeps the listed one.
    `starts`, if given, receives the index at which each pass begins, then the plan's length."""
    kids = leaves(source)
    lists = [c.pass_items(split, val_fraction) for c, _ in kids]
    out: list[tuple[str, int, dict]] = []
    starts = [] if starts is None else starts
    for e in range(passes):
        starts.append(len(out))
        chunk: list[tuple[float, str, int, dict]] = []  # (position in the pass, source, epoch, item)
        for (child, weight), items in zip(kids, lists):
            n = len(items)
            lo, hi = math.floor(e * weight * n), math.floor((e + 1) * weight * n)  # this pass's share
            fixed = shuffle_seed is None or getattr(child, "fixed_order", False)
            for k, j in enumerate(range(lo, hi)):
                p, i = divmod(j, n)  # pass p of the child, item i of that pass
                order = (np.arange(n) if fixed else
                         _order(n, shuffle_seed, p, child.name if isinstance(source, MixSource) else None))
                chunk.append(((k + 0.5) / max(1, hi - lo), child.name, p, items[order[i]]))
        if shuffle_seed is not None and len(kids) > 1:
            rng = np.random.default_rng([shuffle_seed, e, 1])
            chunk = [chunk[i] for i in rng.permutation(len(chunk))]
        else:
            chunk.sort(key=lambda c: c[0])  # stable: sources interleaved evenly, each in its order
        out += [(s, p, it) for _, s, p, it in chunk]
    starts.append(len(out))
    return out


@dataclasses.dataclass
class StreamPlan:
    """A training stream's work items, numbered: item `seq` of `items` is (source, epoch, item);
    it yields at most `bases[seq + 1] - bases[seq]` rows, named by the keys from `bases[seq]`
    on (sslsep.data.delivery). Pass p of the source (or mix) is items [pass_items[p],
    pass_items[p + 1]). A pure function of the config and seed: every attempt of a run plans
    the same items and keys."""
    items: list[tuple[str, int, dict]]
    pass_items: list[int]
    bases: np.ndarray  # (n_items + 1,) int64

    @property
    def pass_starts(self) -> list[int]:
        """The key at which each pass begins, then the plan's number of keys."""
        return self.bases[self.pass_items].tolist()


def stream_plan(cfg: DataConfig, *, shuffle_seed: int | None = None, epochs: int = 1, clips_needed: int = 0,
                split: str | None = None, val_fraction: float = 0.0) -> StreamPlan:
    """`epochs` passes over the configured source or, with `clips_needed`, enough passes for
    that many clips plus a spare one (skipped clips, uneven shards), counted from the listing or
    footers the source reads anyway."""
    if epochs < 1:
        raise ValueError(f"epochs must be at least 1, got {epochs}")
    source = open_source(cfg)
    if clips_needed:
        per_pass = source.clips_per_pass() if isinstance(source, MixSource) else source.listed()[0]
        epochs = math.ceil(clips_needed / max(1.0, per_pass)) + 1
    starts: list[int] = []
    items = plan_passes(source, epochs, shuffle_seed, split, val_fraction, starts)
    if not items:
        raise ValueError(f"{source.name}: no clips to stream")
    mix = isinstance(source, MixSource)
    rows = [source.item_rows({"source": s, "item": it} if mix else it) for s, _, it in items]
    return StreamPlan(items, starts, np.r_[0, np.cumsum(rows, dtype=np.int64)])


_ORDERS: dict[tuple, np.ndarray] = {}


def _order(n: int, seed: int, epoch: int, name: str | None) -> np.ndarray:
    """The drawn order of one pass of a source (the same for a source alone and in a mix of
    one: `name` None), cached for the few passes a plan asks for."""
    key = (n, seed, epoch, name)
    if key not in _ORDERS:
        if len(_ORDERS) > 64:
            _ORDERS.clear()
        entropy = [seed, epoch] if name is None else [seed, epoch, R.hash_key(name)]
        _ORDERS[key] = np.random.default_rng(entropy).permutation(n)
    return _ORDERS[key]


def clip_dataset(cfg: DataConfig, audio: AudioConfig, *, with_stems: bool = False,
                 split: str | None = None, val_fraction: float = 0.0, shuffle_seed: int | None = None,
                 parallelism: int = -1, epochs: int = 1, clips_needed: int = 0,
                 plan: StreamPlan | None = None, resume=None):
    """The configured source as a streaming ray.data.Dataset of clip rows (see `iter_clips`)
    with an `epoch` column: `epochs` passes over the source in one stream (a trainer reads
    them without the pipeline restarting between epochs; views are seeded by epoch), or with
    `clips_needed`, enough passes for that many clips plus a spare one (skipped clips, uneven
    shards), counted from the listing or footers the source reads anyway.
    `shuffle_seed` orders files (folders), scenes (synthetic) or shards at random and anew each
    epoch, cheaply: folders list a recording's clips side by side, and training pairs must not
    come from one recording. Planning costs a list of names (files, scenes, shards) whatever
    the corpus size, and each item is read by one task (shards in record batches).
    Rows carry `key`, their place in the `plan` (by default `stream_plan` of the same
    arguments; sslsep.data.delivery). `resume` (a
    `sslsep.data.delivery.Ranges` of clip keys already trained on) leaves those clips out: items
    whole in it are not read, and the delivered rows of the others are dropped after reading."""
    import ray.data

    from sslsep.data import pacing
    from sslsep.data.delivery import Ranges, remaining_items
    # a Dataset copies the driver's DataContext when it is made: every Dataset that starts here
    # (and what Ray Train's ingest derives from it) yields rows in order, or not, by one key,
    # and holds at most `data.stream_memory_mb` ahead of its consumer
    context = ray.data.DataContext.get_current()
    pacing.register(context, cfg.loop_period_ms / 1000)  # no busy loop while the consumer catches up
    options = context.execution_options
    options.preserve_order = cfg.preserve_order
    if cfg.stream_memory_mb:  # how far producers may run ahead (Ray Train's ingest copies this too)
        options.resource_limits = options.resource_limits.copy(object_store_memory=cfg.stream_memory_mb * 2**20)
    source = open_source(cfg)
    if with_stems and any(c.kind != "synthetic" for c, _ in leaves(source)):
        raise ValueError("with_stems: only the synthetic scenes have stems")
    plan = plan or stream_plan(cfg, shuffle_seed=shuffle_seed, epochs=epochs, clips_needed=clips_needed,
                               split=split, val_fraction=val_fraction)
    keep, skip = remaining_items(plan.bases, resume if resume is not None else Ranges())
    if not keep:
        raise ValueError(f"{source.name}: every clip of the stream was delivered already")
    mix = isinstance(source, MixSource)
    # one JSON column per item: every kind of source in one schema (a mix's items name their source)
    items = []
    for seq in keep:
        s, e, it = plan.items[seq]
        items.append({"epoch": e, "base": int(plan.bases[seq]), "item": json.dumps({"source": s, "item": it} if mix
                                                                                   else it),
                      "skip": json.dumps(skip.get(seq, []))})
    per_block = source.items_per_block
    blocks = parallelism if parallelism > 0 else max(1, min(len(items) // per_block, 2000))
    ds = ray.data.from_items(items, override_num_blocks=blocks)

    def read(batch: dict):
        """Work items -> decoded rows with their epoch, at most 64 rows a batch (a generator)."""
        buf: list[dict] = []
        yielded = False
        for epoch, base, item, skip in zip(batch["epoch"], batch["base"], batch["item"], batch["skip"]):
            done = {r for a, b in json.loads(skip) for r in range(a, b)}  # rows of a partly delivered item
            for i, row in enumerate(source.read_item(json.loads(item), audio, split, val_fraction, with_stems)):
                if i in done:
                    continue
                buf.append({**row, "epoch": int(epoch), "key": int(base) + i})
                if len(buf) == 64:
                    yield R.stack(buf)
                    buf, yielded = [], True
        if buf or not yielded:
            yield R.stack(buf) if buf else _empty_batch(audio)

    return ds.map_batches(read, batch_size=per_block, batch_format="numpy", num_cpus=cfg.cpus_per_task)


def _empty_batch(audio: AudioConfig) -> dict:
    """A batch of no rows (a task whose items held none of the split), with every column."""
    return {"clip_id": np.array([], dtype=object), "audio": np.zeros((0, audio.num_samples), np.float32),
            "sample_rate": np.array([], np.int64), "labels": np.array([], dtype=object),
            "fold": np.array([], np.int64), "group": np.array([], dtype=object),
            "source": np.array([], dtype=object), "status": np.array([], dtype=object),
            "detail": np.array([], dtype=object), "epoch": np.zeros(0, np.int64),
            "key": np.zeros(0, np.int64)}


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
