"""A Ray cluster of several nodes on this machine, started as users start one: `ray start
--head`, then `ray start --address ...` per worker node with its own CPU count, custom
resources, ports and temp dir, token authentication throughout. Each node runs `--block` in
a process group of its own, so a test can kill one node (its raylet and every worker it
started) with one signal, and stopping the cluster never touches another Ray on the machine
(`ray stop` would)."""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil

from conftest import _free_port

RAY = str(Path(sys.executable).with_name("ray"))
OBJECT_STORE = str(300 * 2**20)  # per node: three nodes share this machine's /dev/shm


class LocalCluster:
    def __init__(self, tmp: Path):
        self.tmp = tmp
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_")}
        self.env.update(RAY_AUTH_MODE="token", RAY_AUTH_TOKEN=secrets.token_hex(16))
        self.nodes: dict[str, subprocess.Popen] = {}
        self.gcs = self.dashboard = ""
        # short: Ray's socket paths under it must stay within AF_UNIX's 107 bytes
        self.ray_tmp = tempfile.mkdtemp(prefix="rn-")

    def _ports(self) -> list[str]:
        return [f"--node-manager-port={_free_port()}", f"--object-manager-port={_free_port()}",
                f"--metrics-export-port={_free_port()}", f"--dashboard-agent-listen-port={_free_port()}",
                f"--dashboard-agent-grpc-port={_free_port()}", f"--runtime-env-agent-port={_free_port()}",
                f"--object-store-memory={OBJECT_STORE}"]

    def _start(self, name: str, args: list[str]) -> None:
        log = open(self.tmp / f"{name}.log", "w")
        self.nodes[name] = subprocess.Popen([RAY, "start", "--block", *args, *self._ports()], env=self.env,
                                            stdout=log, stderr=subprocess.STDOUT, start_new_session=True)

    def start_head(self, num_cpus: float, timeout: float = 120) -> str:
        """The head (GCS, dashboard, job server); returns the job server's address."""
        port, dash = _free_port(), _free_port()
        self.gcs, self.dashboard = f"127.0.0.1:{port}", f"http://127.0.0.1:{dash}"
        self._start("head", ["--head", f"--num-cpus={num_cpus}", f"--port={port}", f"--dashboard-port={dash}",
                             "--dashboard-host=127.0.0.1", "--include-dashboard=true",
                             f"--ray-client-server-port={_free_port()}", f"--temp-dir={self.ray_tmp}/head"])
        self._wait(lambda: self.ray("job", "list", "--address", self.dashboard).returncode == 0 and self.alive(),
                   "head", timeout)
        return self.dashboard

    def add_node(self, name: str, num_cpus: float, resources: dict | None = None, timeout: float = 120,
                 num_gpus: int = 0) -> None:
        """A worker node joining the head (`num_gpus`: logical GPUs); returns once the cluster
        lists it alive."""
        before = len(self.nodes)  # alive, each of them
        # a temp dir of its own: nodes that share one would garbage-collect each other's runtime
        # environments (the job's working_dir, the driver's cwd) as real machines never do
        args = [f"--address={self.gcs}", f"--num-cpus={num_cpus}", f"--num-gpus={num_gpus}",
                f"--temp-dir={self.ray_tmp}/{name}"]
        if resources:
            args.append(f"--resources={json.dumps(resources)}")
        self._start(name, args)
        self._wait(lambda: len(self.alive()) >= before + 1, name, timeout)

    def kill(self, name: str) -> None:
        """SIGKILL a node's process group: its raylet, object store and workers, at once."""
        proc = self.nodes.pop(name)
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(30)

    def ray(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
        return subprocess.run([RAY, *args], env=self.env, capture_output=True, text=True, timeout=timeout)

    def listed(self) -> list[dict]:
        """Every node the cluster has known, dead ones too, as `ray list nodes` reports them
        (node_id, state, resources_total, ...)."""
        res = self.ray("list", "nodes", "--address", self.dashboard, "--format", "json", "--limit", "100", "--detail")
        if res.returncode != 0 or not res.stdout.lstrip().startswith("["):  # "No resource in the cluster"
            return []
        return json.loads(res.stdout)

    def alive(self) -> list[dict]:
        return [n for n in self.listed() if n.get("state") == "ALIVE"]

    def actors(self) -> list[dict]:
        res = self.ray("list", "actors", "--address", self.dashboard, "--format", "json", "--limit", "1000",
                       "--detail")
        return json.loads(res.stdout) if res.returncode == 0 and res.stdout.lstrip().startswith("[") else []

    def _wait(self, ready, name: str, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while not ready():
            proc = self.nodes[name]
            if proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"ray node {name} did not start: {(self.tmp / f'{name}.log').read_text()[-3000:]}")
            time.sleep(1)

    def stop(self) -> None:
        """Worker nodes first, then the head (`ray start --block` is slow over SIGTERM: SIGKILL)."""
        for name in [n for n in self.nodes if n != "head"] + (["head"] if "head" in self.nodes else []):
            proc = self.nodes.pop(name)
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(30)
        # a job's driver runs in a session of its own, from the working dir unpacked under our
        # temp dir: it outlives the nodes unless killed here (a test that timed out, say)
        for p in psutil.process_iter():
            try:
                if p.cwd().startswith(self.ray_tmp):
                    p.kill()
            except (psutil.Error, OSError):
                pass
        shutil.rmtree(self.ray_tmp, ignore_errors=True)
