"""A folder of audio files (local or s3://) with its labels CSV, as a source of clip rows."""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Iterator

from sslsep import storage
from sslsep.config import AudioConfig, DataConfig
from sslsep.data import labels as labels_mod
from sslsep.data import rows as R


@dataclass
class FolderItem:
    uri: str
    clip_id: str
    labels: list[str]
    fold: int = -1
    group: str = ""


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
        if R.in_split(r, meta.group, split, val_fraction):
            items.append(FolderItem(uri, r, meta.labels, meta.fold, meta.group))
    if cfg.max_clips:
        items = items[:cfg.max_clips]
    return items, table.problems, table.classes


class FolderSource:
    """Items are files: a pass lists them (in a drawn order when shuffled), a task reads and
    decodes ~16 of them."""
    kind = "folder"
    items_per_block = 16

    def __init__(self, name: str, cfg: DataConfig):
        self.name, self.cfg = name, cfg

    def listed(self) -> tuple[int, list[tuple[str, str, str]]]:
        items, problems, _ = folder_items(self.cfg)
        return len(items), problems

    def _read(self, item: FolderItem, audio: AudioConfig) -> dict:
        return R.read_or_skip(item.uri, item.clip_id, item.labels, item.fold, item.group, audio, self.name)

    def rows(self, audio: AudioConfig, *, split=None, val_fraction=0.0, with_stems=False) -> Iterator[dict]:
        for item in folder_items(self.cfg, split, val_fraction)[0]:
            yield self._read(item, audio)

    def hash_sample(self, audio: AudioConfig, count: int, *, split=None, val_fraction=0.0,
                    only_ok=False) -> list[dict]:
        items = sorted(folder_items(self.cfg, split, val_fraction)[0], key=lambda it: R.hash_key(it.clip_id))
        rows = (self._read(item, audio) for item in items)
        return list(itertools.islice((r for r in rows if not only_ok or r["status"] == "ok"), count))

    def pass_items(self, split=None, val_fraction=0.0) -> list[dict]:
        return [vars(it) for it in folder_items(self.cfg, split, val_fraction)[0]]

    def item_rows(self, item: dict) -> int:
        return 1  # a file is one clip

    def read_item(self, item: dict, audio: AudioConfig, split=None, val_fraction=0.0,
                  with_stems=False) -> Iterator[dict]:
        yield self._read(FolderItem(**item), audio)
