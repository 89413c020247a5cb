"""The MLflow UI as a user sees it: a real `mlflow server` on 127.0.0.1 and headless Chromium opening a saved view.

`open_view` returns the rendered page as text (tags stripped, cells separated by '|') and a screenshot. Screenshots
go to $BENCHMARK_TEST_ARTIFACTS when it is set (CI keeps them), else beside the test's temporary files.
"""

from __future__ import annotations

import html
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
#: headless, with no calls out (this machine's network is closed: background requests only fail, many at a time)
HEADLESS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
            "--disable-background-networking", "--disable-component-update", "--disable-sync"]  # fmt: skip


#: a tracking server as the tests need it: MLflow 3 also starts a job runner and seven `huey` consumers (GenAI jobs)
#: per server, eight Python processes (about 15 s of CPU) that no test uses
SERVER_ENV = {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_healthy(port: int, server: subprocess.Popen, log: Path) -> None:
    deadline = time.time() + 120
    while True:
        try:
            if urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2).status == 200:
                return
        except OSError:
            assert time.time() < deadline and server.poll() is None, log.read_text()[-2000:]
            time.sleep(0.5)


def open_views(store: str, experiment_id: str, views: list[str], folder: Path) -> dict[str, tuple[str, Path]]:
    from benchmark.tracking.views import view_url

    """Each saved view rendered by Chromium from one real tracking server: view -> (page text, screenshot)."""
    port = _free_port()
    log = folder / "server.log"
    server = subprocess.Popen(
        [sys.executable, "-m", "mlflow", "server", "--backend-store-uri", store, "--host", "127.0.0.1"]
        + ["--port", str(port), "--workers", "1"],
        stdout=subprocess.DEVNULL,
        stderr=open(log, "w"),
        start_new_session=True,
        env=SERVER_ENV,
    )
    artifacts = Path(os.environ.get("BENCHMARK_TEST_ARTIFACTS", folder))
    artifacts.mkdir(parents=True, exist_ok=True)
    out = {}
    try:
        _wait_healthy(port, server, log)
        for view in views:
            shot = artifacts / f"mlflow_ui_{view}.png"
            url = f"http://127.0.0.1:{port}/{view_url(experiment_id, view)}"
            done = subprocess.run(
                [
                    CHROMIUM,
                    *HEADLESS,
                    f"--user-data-dir={folder / ('profile-' + view)}",
                    "--window-size=2200,900",
                    "--virtual-time-budget=20000",
                    f"--screenshot={shot}",
                    "--dump-dom",
                    url,
                ],
                capture_output=True,
                text=True,
                timeout=180,
            )
            page = re.sub(r"<script.*?</script>|<style.*?</style>", "", done.stdout, flags=re.S)
            text = html.unescape(re.sub(r"\s*\|[\s|]*", "|", re.sub(r"<[^>]+>", "|", page)))
            assert shot.exists() and shot.stat().st_size > 20_000, done.stderr[-2000:]
            out[view] = (text, shot)
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=30)
    return out


def shown(value: float) -> str:
    """A metric as the runs table prints it (JavaScript's number formatting: 0.0 -> 0, 6.0 -> 6)."""
    return str(int(value)) if float(value).is_integer() else repr(float(value))


def columns(text: str) -> list[str]:
    """The runs table's metric and tag column headers, in the order the UI shows them."""
    return text.split("|Duration|", 1)[1].split("|Hide ", 1)[0].split("|")


def row_cells(text: str, run) -> str:
    """The cells of `run` under those headers, as the page shows them ('|'-joined)."""
    values = [  # MLflow shows '-' where a run has no such metric or tag (an interval too few groups could not give)
        shown(run.data.metrics[c]) if c in run.data.metrics else run.data.tags.get(c, "-") for c in columns(text)
    ]
    return "|" + "|".join(values) + "|"
