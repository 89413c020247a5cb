"""A multi-node Ray cluster on one machine, as separate raylets: for the cluster tests and `perf --sections cluster`.

`ray start --head` and `ray start --address` as the README tells users, with token authentication
on and each node in its own temp folder (as on separate hosts, and so that no local `ray.init()`
elsewhere finds it). Workers are added and lost one by one (SIGKILL to a raylet's process tree: no
goodbye to the head); a worker can be started in a private mount namespace whose view of a folder
is empty, which is what a local path of the driver's host means to another host.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request
from pathlib import Path

import psutil

from benchmark.cluster.ray_cluster import kill_processes

RAY = shutil.which("ray") or str(Path(sys.executable).parent / "ray")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def kill_tree(pid: int) -> None:
    """SIGKILL a process and everything under it (a daemon `ray start` left behind is reparented to PID 1)."""
    try:
        root = psutil.Process(pid)
        processes = root.children(recursive=True) + [root]
    except psutil.NoSuchProcess:
        return
    kill_processes(processes, timeout=10)


class RayCluster:
    """`ray start --head` plus workers added and killed one by one; every process found by its temp folder."""

    def __init__(self):
        self.token = secrets.token_hex(32)
        # every node and every client: token mode and the cluster's token (README, 'Running on a Ray cluster')
        self.env = {
            **os.environ,
            "RAY_AUTH_MODE": "token",
            "RAY_AUTH_TOKEN": self.token,
            # a lost node is noticed in about 3 s, not 30
            "RAY_health_check_period_ms": "1000",
            "RAY_health_check_failure_threshold": "3",
            "RAY_health_check_timeout_ms": "1000",
            "RAY_USAGE_STATS_ENABLED": "0",
        }
        self.port, self.dashboard_port = free_port(), free_port()
        self.address = f"127.0.0.1:{self.port}"
        self.dashboard = f"http://127.0.0.1:{self.dashboard_port}"
        self.temp_dirs: list[str] = []
        self.workers: dict[str, str] = {}  # node id -> temp folder

    def _temp(self, prefix: str) -> str:
        path = tempfile.mkdtemp(prefix=prefix, dir="/tmp")  # short: Ray's socket paths must stay under 108 bytes
        self.temp_dirs.append(path)
        return path

    def start_head(self) -> None:
        done = subprocess.run(
            [
                RAY,
                "start",
                "--head",
                f"--port={self.port}",
                "--num-cpus=1",
                "--include-dashboard=true",
                f"--dashboard-port={self.dashboard_port}",
                f"--temp-dir={self._temp('rh')}",
            ],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=180,
        )
        _check(done)

    def wait_for_job_agent(self, timeout: float = 90) -> None:
        """Until the head's job agent accepts a job: right after `ray start --head`, `ray job submit` can answer 500
        "No available agent to submit job" for a while (seen on a loaded machine)."""
        deadline = time.time() + timeout
        while True:
            done = subprocess.run(
                [RAY, "job", "submit", f"--address={self.dashboard}", "--no-wait", "--", "true"],
                env=self.env,
                capture_output=True,
                text=True,
                timeout=120,
            )
            if done.returncode == 0:
                return
            if "No available agent" not in done.stderr + done.stdout or time.time() > deadline:
                _check(done)
            time.sleep(2)

    def add_worker(self, *, hide: Path | None = None) -> str:
        """A worker node (1 CPU) in its own temp folder; with `hide`, that folder is empty to it (another host)."""
        temp = self._temp("rw")
        command = [RAY, "start", f"--address={self.address}", "--num-cpus=1", f"--temp-dir={temp}"]
        if hide is not None:  # a private mount namespace with an empty tmpfs over `hide`
            inner = " ".join(command)
            command = [
                "unshare",
                "--mount",
                "--propagation",
                "private",
                "sh",
                "-c",
                f"mount -t tmpfs none {hide} && exec {inner}",
            ]
        done = subprocess.run(command, env=self.env, capture_output=True, text=True, timeout=180)
        _check(done)
        node_id = self.node_of(temp)
        self.workers[node_id] = temp
        self.wait_alive(node_id)
        return node_id

    def raylet(self, temp: str):
        for proc in psutil.process_iter(["cmdline"]):
            cmd = proc.info["cmdline"] or []
            if cmd and cmd[0].endswith("raylet") and f"--temp_dir={temp}" in cmd:
                return proc
        return None

    def node_of(self, temp: str) -> str:
        proc = self.raylet(temp)
        if proc is None:
            raise RuntimeError(f"no raylet runs in {temp}")
        return next(a.split("=", 1)[1] for a in proc.info["cmdline"] if a.startswith("--node_id="))

    def state(self, resource: str, **filters: str) -> list[dict]:
        """Ray's state API (`nodes`, `actors`, ...) read from the dashboard over HTTP with the cluster's token: what
        `ray list` prints, without starting a Python process (2 s of CPU) per look."""
        query = [("limit", "1000"), ("detail", "false")]
        for key, value in filters.items():
            query += [("filter_keys", key), ("filter_predicates", "="), ("filter_values", value)]
        request = urllib.request.Request(
            f"{self.dashboard}/api/v0/{resource}?{urllib.parse.urlencode(query)}",
            headers={"Authorization": f"Bearer {self.token}"},
        )
        with urllib.request.urlopen(request, timeout=60) as response:
            answer = json.load(response)
        if not answer.get("result"):
            raise RuntimeError(f"Ray's state API ({resource}) answered: {answer.get('msg')}")
        return answer["data"]["result"]["result"]

    def nodes(self) -> list[dict]:
        return self.state("nodes")

    def head_node(self) -> str:
        return next(n["node_id"] for n in self.nodes() if n["is_head_node"])

    def wait_alive(self, node_id: str, alive: bool = True, timeout: float = 60) -> None:
        deadline = time.time() + timeout
        while time.time() < deadline:
            if any(n["node_id"] == node_id and (n["state"] == "ALIVE") == alive for n in self.nodes()):
                return
            time.sleep(0.5)
        raise RuntimeError(f"node {node_id} never became {'alive' if alive else 'dead'}")

    def alive_actors_on(self, node_id: str) -> int:
        """Trials (Ray Tune's actors) alive on a node."""
        actors = self.state("actors", state="ALIVE")
        return sum(a.get("node_id") == node_id and "ImplicitFunc" in (a.get("class_name") or "") for a in actors)

    def kill_worker(self, node_id: str) -> None:
        """A node lost: SIGKILL to its raylet and everything under it, no goodbye to the head."""
        proc = self.raylet(self.workers.pop(node_id))
        if proc is not None:
            kill_tree(proc.pid)

    def stop(self) -> None:
        for temp in list(self.workers.values()) + self.temp_dirs:
            proc = self.raylet(temp)
            if proc is not None:
                kill_tree(proc.pid)
        for proc in psutil.process_iter(["cmdline"]):  # head services (GCS, dashboard, monitor)
            if any(t in " ".join(proc.info["cmdline"] or []) for t in self.temp_dirs):
                kill_tree(proc.pid)
        for temp in self.temp_dirs:
            shutil.rmtree(temp, ignore_errors=True)


def _check(done: subprocess.CompletedProcess) -> None:
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(map(str, done.args[:3]))} failed:\n{done.stdout[-3000:]}{done.stderr[-3000:]}")
