"""Labels CSVs for folders of audio, in the formats people already have.

Recognised by their header:
- AudioSet segments: ``YTID, start_seconds, end_seconds, positive_labels`` ('#' comment
  lines allowed); mids are mapped to names with ``class_labels_indices.csv``
  (index, mid, display_name). A file matches a row by its stem: ``YTID``, ``YYTID`` or
  ``YTID_<start>``.
- UrbanSound8K / ESC-50 style: a file column (path | slice_file_name | filename), a class
  column (class | category | label), optional fold and recording group (fsID | src_file).
- Generic: ``path, labels`` with labels joined by ';' (what `sslsep data synth` writes).

Rows are matched to files by relative path, else by file name. Rows whose file is absent
and classes unknown to the class index are reported by name, never dropped silently.
"""

from __future__ import annotations

import csv
import io
import os
import posixpath
from dataclasses import dataclass, field

from sslsep import storage


@dataclass
class ClipMeta:
    labels: list[str]
    fold: int = -1
    group: str = ""


@dataclass
class LabelTable:
    by_path: dict[str, ClipMeta]                       # relative path -> meta
    classes: list[str]                                  # sorted vocabulary seen in the CSV
    problems: list[tuple[str, str, str]] = field(default_factory=list)  # (name, status, detail)
    source: str = ""

    def lookup(self, rel: str) -> ClipMeta | None:
        return self.by_path.get(rel)


_FILE_COLS = ("path", "slice_file_name", "filename", "file", "fname")
_CLASS_COLS = ("class", "category", "label", "labels")
_GROUP_COLS = ("fsid", "src_file", "group", "recording")
DEFAULT_NAMES = ("metadata.csv", "labels.csv", "meta/esc50.csv", "metadata/UrbanSound8K.csv")


def _read_text(uri: str) -> str:
    try:
        return storage.read_bytes(uri).decode("utf-8-sig")
    except FileNotFoundError:
        raise FileNotFoundError(f"{uri}: labels CSV not found") from None


def read_class_index(uri: str) -> dict[str, str]:
    """AudioSet class_labels_indices.csv -> {mid: display_name}."""
    rows = list(csv.DictReader(io.StringIO(_read_text(uri))))
    if not rows or not {"mid", "display_name"} <= set(rows[0]):
        raise ValueError(f"{uri}: expected columns index,mid,display_name")
    return {r["mid"].strip(): r["display_name"].strip() for r in rows}


def _audioset_rows(text: str) -> list[list[str]]:
    lines = [ln for ln in text.splitlines() if ln.strip() and not ln.lstrip().startswith("#")]
    return list(csv.reader(lines, skipinitialspace=True))


def _looks_audioset(text: str) -> bool:
    for ln in text.splitlines():
        s = ln.strip()
        if s.startswith("#") and "YTID" in s:
            return True
        if s and not s.startswith("#"):
            return s.startswith("YTID")
    return False


def _match_files(rel_paths: list[str]) -> tuple[set[str], dict[str, str]]:
    by_name: dict[str, str] = {}
    for rel in rel_paths:
        by_name.setdefault(posixpath.basename(rel), rel)
    return set(rel_paths), by_name


def parse_labels(uri: str, rel_paths: list[str], class_index_uri: str = "") -> LabelTable:
    """Parse the CSV at `uri` for the files `rel_paths` (relative to the audio folder)."""
    text = _read_text(uri)
    rel_set, by_name = _match_files(rel_paths)
    table = LabelTable({}, [], source=uri)

    def place(file_key: str, meta: ClipMeta, row_no: int) -> None:
        rel = file_key if file_key in rel_set else by_name.get(posixpath.basename(file_key))
        if rel is None:
            table.problems.append((file_key, "missing_file", f"{uri} row {row_no}: no such audio file"))
            return
        table.by_path[rel] = meta

    if _looks_audioset(text):
        mids = read_class_index(class_index_uri) if class_index_uri else None
        by_stem: dict[str, str] = {}
        for rel in rel_paths:
            stem = posixpath.splitext(posixpath.basename(rel))[0]
            for key in (stem, stem[1:] if stem.startswith("Y") else None, stem[:11]):
                if key:
                    by_stem.setdefault(key, rel)
        for i, row in enumerate(_audioset_rows(text), start=1):
            if row and row[0] == "YTID":
                continue
            if len(row) < 4:
                table.problems.append((",".join(row), "bad_row", f"{uri} row {i}: expected 4 fields"))
                continue
            ytid, labels = row[0].strip(), [m.strip() for m in row[3].split(",") if m.strip()]
            if mids is not None:
                unknown = [m for m in labels if m not in mids]
                for m in unknown:
                    table.problems.append((ytid, "unknown_class", f"{uri} row {i}: {m} not in class index"))
                labels = [mids[m] for m in labels if m in mids]
            rel = by_stem.get(ytid)
            if rel is None:
                table.problems.append((ytid, "missing_file", f"{uri} row {i}: no audio file for this YTID"))
                continue
            table.by_path[rel] = ClipMeta(labels, -1, ytid)
    else:
        reader = csv.DictReader(io.StringIO(text))
        cols = {c.lower().strip(): c for c in (reader.fieldnames or [])}
        fcol = next((cols[c] for c in _FILE_COLS if c in cols), None)
        ccol = next((cols[c] for c in _CLASS_COLS if c in cols), None)
        gcol = next((cols[c] for c in _GROUP_COLS if c in cols), None)
        if fcol is None or ccol is None:
            raise ValueError(f"{uri}: need a file column ({'|'.join(_FILE_COLS)}) and a class column "
                             f"({'|'.join(_CLASS_COLS)}); found {reader.fieldnames}")
        fold_col = cols.get("fold")
        for i, row in enumerate(reader, start=2):
            labels = [s.strip() for s in (row[ccol] or "").split(";") if s.strip()]
            try:
                fold = int(row[fold_col]) if fold_col and row[fold_col] not in (None, "") else -1
            except ValueError:
                table.problems.append((row[fcol], "bad_row", f"{uri} row {i}: fold {row[fold_col]!r}"))
                continue
            group = (row[gcol] or "").strip() if gcol else ""
            place(row[fcol].strip(), ClipMeta(labels, fold, group), i)
    table.classes = sorted({c for m in table.by_path.values() for c in m.labels})
    return table


def find_labels_csv(folder: str, configured: str = "") -> str:
    """The configured CSV, else the first default name present in `folder`, else ''."""
    if configured:
        return configured
    for name in DEFAULT_NAMES:
        uri = storage.join(folder, name)
        if storage.exists(uri):
            return uri
    fs, path = storage.get_fs(folder)
    for p in sorted(fs.ls(path, detail=False)):
        if "segments" in os.path.basename(p).lower() and p.endswith(".csv"):
            return storage.join(folder, os.path.basename(p))
    return ""
