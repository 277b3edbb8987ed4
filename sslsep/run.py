"""The run contract shared by every experiment script.

    --config FILE.yaml   --set dotted.key=value (repeatable)   --out RUN_DIR   --data PATH_OR_URI
    [--registry REGISTRY.json]   (scripts whose stages use separators: sets separation.registry)

The run directory (local or s3://) receives the resolved ``config.yaml``, ``run.json``
(git commit, package versions, command line), ``metrics.jsonl`` (one JSON object per
report) and the stage's artifacts. Without --out, the run is ``runs/<name>-<stage>-<hash>``
where the hash is of the resolved config: rerunning the same config lands in the same
directory, which is what lets a stage resume.
"""

from __future__ import annotations

import argparse
import json
import os
import math
import platform
import subprocess
import sys
import time
from importlib import metadata
from pathlib import Path

from sslsep import storage
from sslsep.events import EventLog
from sslsep.config import ConfigError, ExperimentConfig, dump_yaml, load_config, replace, run_name

PACKAGES = ("sslsep", "ray", "torch", "torchaudio", "numpy", "pyarrow", "optuna", "soundfile", "s3fs")


def add_run_args(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    parser.add_argument("--config", help="YAML config (see experiments/configs/)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override one config key, e.g. --set audio.sample_rate=22050 (repeatable)")
    parser.add_argument("--out", help="run directory, local or s3:// (default: runs/<name>-<stage>-<hash>)")
    parser.add_argument("--data", action="append", metavar="PATH_OR_URI",
                        help="folder of audio or Parquet shards, local or s3://; replaces data.path. Repeatable: "
                             "several corpora in one stream (data.sources, weight 1 each)")
    return parser


def add_registry_arg(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """`--registry RUN_DIR/registry.json`: the separators a views stage uses."""
    parser.add_argument("--registry", help="separator registry.json, local or s3:// (sets separation.registry, "
                                           "after --config and --set)")
    return parser


def config_from_args(args: argparse.Namespace) -> ExperimentConfig:
    """The resolved config of the run arguments: --config <- --set <- --data <- --registry
    (the path is a value: set as it is, never parsed)."""
    cfg = load_config(args.config, args.overrides, args.data)
    if getattr(args, "registry", None):
        cfg = replace(cfg, {"separation.registry": args.registry}, origin="--registry")
    return cfg


def package_versions() -> dict[str, str]:
    out = {}
    for name in PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = "not installed"
    return out


def git_commit() -> str:
    here = Path(__file__).resolve().parent
    try:
        res = subprocess.run(["git", "rev-parse", "HEAD"], cwd=here, capture_output=True, text=True, timeout=5)
        dirty = subprocess.run(["git", "status", "--porcelain"], cwd=here, capture_output=True, text=True,
                               timeout=5).stdout.strip()
        return res.stdout.strip() + ("+dirty" if dirty else "") if res.returncode == 0 else "unknown"
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"


def _jsonable(value):
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if hasattr(value, "item"):
        return _jsonable(value.item())
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    return value


class RunDir:
    """A run's directory: config, metadata, metrics and artifacts."""

    def __init__(self, path: str):
        self.path = str(path)
        storage.makedirs(self.path)
        self._metrics_uri = self.uri("metrics.jsonl")
        self._remote_lines: list[str] | None = None
        self.events = EventLog(self.path)  # TensorBoard scalars of every metrics line

    @property
    def name(self) -> str:
        return self.path.rstrip("/").replace("\\", "/").rsplit("/", 1)[-1]

    def uri(self, *parts: str) -> str:
        return storage.join(self.path, *parts)

    def write_text(self, name: str, text: str) -> str:
        uri = self.uri(name)
        storage.write_bytes(uri, text.encode())
        return uri

    def write_json(self, name: str, obj) -> str:
        return self.write_text(name, json.dumps(_jsonable(obj), indent=1, sort_keys=False) + "\n")

    def read_json(self, name: str):
        return json.loads(storage.read_bytes(self.uri(name)))

    def exists(self, name: str) -> bool:
        return storage.exists(self.uri(name))

    def log_metrics(self, metrics: dict) -> None:
        """Append one JSON object to metrics.jsonl (S3 has no append: rewrite the object) and its
        numbers to the directory's TensorBoard event file (`sslsep.events`)."""
        line = json.dumps(_jsonable({"time": round(time.time(), 3), **metrics}), sort_keys=False)
        if not storage.is_remote(self.path):
            with open(self._metrics_uri, "a") as f:
                f.write(line + "\n")
        else:
            if self._remote_lines is None:
                old = storage.read_bytes(self._metrics_uri).decode() if storage.exists(self._metrics_uri) else ""
                self._remote_lines = old.splitlines()
            self._remote_lines.append(line)
            storage.write_bytes(self._metrics_uri, ("\n".join(self._remote_lines) + "\n").encode())
        self.events.log(_jsonable(metrics))  # after metrics.jsonl, the record of the run

    def metrics(self) -> list[dict]:
        if not storage.exists(self._metrics_uri):
            return []
        return [json.loads(ln) for ln in storage.read_bytes(self._metrics_uri).decode().splitlines() if ln]


def start_run(args: argparse.Namespace, stage: str) -> tuple[ExperimentConfig, RunDir]:
    """Resolve the config from the run arguments and prepare the run directory."""
    cfg = config_from_args(args)
    out = args.out or storage.join("runs", run_name(cfg, stage))
    run = RunDir(out)
    run.write_text("config.yaml", dump_yaml(cfg))
    run.write_json("run.json", {"stage": stage, "argv": sys.argv, "git_commit": git_commit(),
                                "packages": package_versions(), "python": platform.python_version(),
                                "machine": platform.platform()})
    return cfg, run


def main_guard(fn) -> int:
    """Turn configuration and input errors into one clear line and exit code 2."""
    try:
        fn()
        return 0
    except (ConfigError, FileNotFoundError, ValueError) as e:
        where = ""
        if isinstance(e, FileNotFoundError) and not e.filename and e.__traceback__ is not None:
            import traceback

            last = traceback.extract_tb(e.__traceback__)[-1]  # no file named: say where
            where = f" [{type(e).__name__} at {os.path.basename(last.filename)}:{last.lineno} in {last.name}]"
        print(f"error: {e}{where}", file=sys.stderr)
        return 2
