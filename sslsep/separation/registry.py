"""The separator registry: `RUN_DIR/registry.json` lists the convergence states of a run.

    {"run": ..., "separators": [{"name": "step-000500", "step": 500,
                                 "path": "separators/step-000500.pt", "metrics": {...}}, ...]}

Paths are relative to the registry's folder, so a run directory can be moved or copied to
S3 whole. Later stages pick separators by name or step with `select`.
"""

from __future__ import annotations

import json
import os
import posixpath

from sslsep import storage


def state_name(step: int) -> str:
    return f"step-{step:06d}"


def _folder(registry_uri: str) -> str:
    uri = str(registry_uri)
    return posixpath.dirname(uri) if storage.is_remote(uri) else os.path.dirname(os.path.abspath(uri))


def read_registry(uri: str) -> dict:
    """Read a registry and check that every checkpoint it names exists."""
    try:
        reg = json.loads(storage.read_bytes(uri))
    except FileNotFoundError:
        raise FileNotFoundError(f"{uri}: separator registry not found") from None
    except json.JSONDecodeError as e:
        raise ValueError(f"{uri}: not a valid registry ({e})") from None
    entries = reg.get("separators")
    if not isinstance(entries, list):
        raise ValueError(f"{uri}: registry has no 'separators' list")
    folder = _folder(uri)
    for i, e in enumerate(entries):
        if not isinstance(e, dict) or not {"name", "step", "path"} <= set(e):
            raise ValueError(f"{uri}: separator entry {i} needs name, step and path; got {e!r}")
        e["uri"] = storage.join(folder, e["path"])
        if not storage.exists(e["uri"]):
            raise FileNotFoundError(f"{uri}: separator {e['name']!r} points at missing checkpoint {e['uri']}")
    return reg


def register(run_dir: str, entry: dict, run: str = "") -> dict:
    """Add or replace (same name) one convergence state; written atomically."""
    uri = storage.join(run_dir, "registry.json")
    reg = json.loads(storage.read_bytes(uri)) if storage.exists(uri) else {"run": run, "separators": []}
    reg["separators"] = sorted([e for e in reg["separators"] if e["name"] != entry["name"]] + [entry],
                               key=lambda e: e["step"])
    storage.write_bytes(uri, (json.dumps(reg, indent=1) + "\n").encode())
    return reg


def select(reg: dict, wanted: list[str | int] | None = None) -> list[dict]:
    """Entries by name ('step-000500') or step (500); None or [] = all of them."""
    if not wanted:
        return list(reg["separators"])
    out = []
    for w in wanted:
        hit = [e for e in reg["separators"] if e["name"] == w or (isinstance(w, int) and e["step"] == w)
               or (isinstance(w, str) and w.isdigit() and e["step"] == int(w))]
        if not hit:
            known = ", ".join(e["name"] for e in reg["separators"])
            raise KeyError(f"no separator {w!r} in the registry (known: {known})")
        out.append(hit[0])
    return out

