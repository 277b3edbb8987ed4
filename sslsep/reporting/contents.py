"""What a run directory holds, read for the report without ever failing on what is absent:
each artifact is read on its own, and one that is missing or unreadable becomes a line of
`missing` (what, and why) instead of an exception. Works on local paths and s3:// alike.

    RUN_DIR/config.yaml, run.json          the resolved config, how the run was started
    RUN_DIR/data_report.json               the data stage's accounting
    RUN_DIR/registry.json, metrics.jsonl   convergence states; separation metrics by step
    RUN_DIR/pretrain/<variant>[/seed-N]/   metrics.jsonl (losses, coincidence accuracy,
                                           throughput, monitor), monitor.json (its protocol),
                                           delivery.json (the stream's clips per pass, restarts)
    RUN_DIR/results.json, verdict.txt      the evaluation table and the verdict
    RUN_DIR/embeddings.npz                 the evaluated clips' frozen embeddings (maps)
"""

from __future__ import annotations

import dataclasses
import io
import json

import numpy as np

from sslsep import storage
from sslsep.config import ExperimentConfig, _yaml, from_dict


@dataclasses.dataclass
class RunContents:
    path: str
    config: ExperimentConfig | None = None
    run_info: dict | None = None
    data_report: dict | None = None
    registry: dict | None = None
    separation: list[dict] = dataclasses.field(default_factory=list)      # metrics lines, by step
    pretrain: dict[str, list[dict]] = dataclasses.field(default_factory=dict)  # variant -> lines
    monitor: dict[str, dict] = dataclasses.field(default_factory=dict)    # variant -> protocol
    delivery: dict[str, dict] = dataclasses.field(default_factory=dict)   # variant -> delivery.json
    results: dict | None = None
    verdict: str = ""
    embeddings: dict | None = None
    missing: list[str] = dataclasses.field(default_factory=list)

    def uri(self, *parts: str) -> str:
        return storage.join(self.path, *parts)


def _read(contents: RunContents, name: str, parse, what: str = ""):
    """parse(bytes) of RUN_DIR/name (one request: no existence check first), or None with a line
    in `missing`; with `what` empty, a file that is not there is optional and says nothing."""
    try:
        return parse(storage.read_bytes(contents.uri(name)))
    except FileNotFoundError:
        if what:
            contents.missing.append(f"{name}: not written ({what})")
    except Exception as e:  # a damaged or older-layout file: say so, show the rest
        contents.missing.append(f"{name}: unreadable ({type(e).__name__}: {e})")
    return None


def _lines(data: bytes) -> list[dict]:
    out = []
    for ln in data.decode().splitlines():
        try:
            out.append(json.loads(ln))
        except json.JSONDecodeError:
            pass  # a line cut by an interrupted write
    return out


def _npz(data: bytes) -> dict:
    with np.load(io.BytesIO(data), allow_pickle=False) as z:
        return {k: z[k] for k in z.files}


def read_run(path: str) -> RunContents:
    """Everything the report shows that RUN_DIR has; `missing` says what it lacks and why."""
    c = RunContents(path=path.rstrip("/"))
    if not storage.exists(c.path):
        raise FileNotFoundError(f"{path}: no such run directory")
    values = _read(c, "config.yaml", lambda b: _yaml(b.decode()) or {}, "every run writes it at start")
    if values is not None:
        try:
            c.config = from_dict(values, c.uri("config.yaml"))
        except Exception as e:  # an older layout: keys renamed or gone
            c.missing.append(f"config.yaml: not a config of this version ({e}); the listening panel needs it")
    c.run_info = _read(c, "run.json", json.loads, "every run writes it at start")
    c.data_report = _read(c, "data_report.json", json.loads, "the data stage did not finish")
    c.registry = _read(c, "registry.json", json.loads, "the separation stage did not finish, or the run "
                       "used separation.registry")
    root = _read(c, "metrics.jsonl", _lines, "no stage logged yet") or []
    c.separation = [m for m in root if m.get("stage") == "separation" and "step" in m]
    try:
        files = storage.find(c.uri("pretrain"), ["/metrics.jsonl"])  # pretrain/<variant>[/seed-N]/
    except FileNotFoundError:
        files = []
    except Exception as e:
        files = []
        c.missing.append(f"pretrain/: unreadable ({e})")
    for f in files:
        sub = storage.relpath(f, c.path)[:-len("/metrics.jsonl")]  # pretrain/<variant>[/seed-N]
        variant = sub[len("pretrain/"):]
        lines = [m for m in _read(c, f"{sub}/metrics.jsonl", _lines) or [] if m.get("stage") == "pretrain"]
        if lines:
            c.pretrain[variant] = lines
        monitor = _read(c, f"{sub}/monitor.json", json.loads)  # absent when the monitor never ran
        if monitor is not None:
            c.monitor[variant] = monitor
        delivery = _read(c, f"{sub}/delivery.json", json.loads)  # the first variant of a shared stream
        if delivery is not None:
            c.delivery[variant] = delivery
    alone = [m for m in root if m.get("stage") == "pretrain" and "variant" not in m and "step" in m]
    if not c.pretrain and alone:  # experiments/pretrain.py: one model, its lines in RUN_DIR/metrics.jsonl
        c.pretrain["model"] = alone
    if not c.pretrain:
        c.missing.append("pretrain/<variant>/metrics.jsonl: none written (the pretraining stage did not start)")
    c.results = _read(c, "results.json", json.loads, "the evaluation stage did not finish (or joint.evaluate "
                      "was false)")
    verdict = _read(c, "verdict.txt", lambda b: b.decode(), "written with results.json")
    c.verdict = (verdict or "").strip()
    c.embeddings = _read(c, "embeddings.npz", _npz, "written by the evaluation stage (runs evaluated before "
                         "it existed lack it: delete results.json and run the job again to re-evaluate)")
    return c
