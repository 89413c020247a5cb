"""Starting or joining Ray, and what a multi-node cluster needs checked before anything launches.

A cluster fails in ways a single machine never shows, and Ray reports them late or vaguely: a
client without the cluster's token gets "Failed to connect" after retrying for a minute; a Ray
Tune storage folder that the other hosts cannot see fails each trial as it starts. Both are
checked here first, with the fix in the message. Trials also say where they ran (`where_am_i`),
so every trial's node and host end up in MLflow.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import socket
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import psutil

from benchmark.core.errors import BenchmarkError

log = logging.getLogger(__name__)
#: a local Ray starts no idle Python workers ahead of time: Tune's trial actors start their own, so in a run
#: without Ray tasks (holdout) the prestarted ones only cost ~1.5 s of CPU; tasks (CV fits) start workers on demand
NO_PRESTART = {"enable_worker_prestart": False, "prestart_worker_first_driver": False}
#: README section a cluster error points to
README_SECTION = "README.md, 'Running on a Ray cluster'"


def init_ray(address: str | None = None, *, num_cpus: int | None = None, num_gpus: float | None = None) -> None:
    """Local Ray sized to the machine (quiet), or join a cluster with `address` / RAY_ADDRESS."""
    import ray  # ray: heavy, imported only when a study or cluster is used

    if ray.is_initialized():
        return
    os.environ.setdefault("RAY_DEDUP_LOGS", "1")
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
    os.environ.setdefault("TUNE_DISABLE_AUTO_CALLBACK_LOGGERS", "1")
    # save experiment state often, so that a killed run repeats as little as possible on --resume
    os.environ.setdefault("TUNE_GLOBAL_CHECKPOINT_S", "2")
    address = address or os.environ.get("RAY_ADDRESS")
    kwargs: dict[str, Any] = dict(
        include_dashboard=False, log_to_driver=False, logging_level=logging.ERROR, configure_logging=True
    )
    if address:
        check_can_join(address)
    try:
        if address:
            ray.init(address=address, **kwargs)
        else:
            with _sigterm_blocked_in_children():
                ray.init(num_cpus=num_cpus or os.cpu_count(), num_gpus=num_gpus, _system_config=NO_PRESTART, **kwargs)
            _stop_without_grace()
    except Exception as exc:
        raise BenchmarkError(
            f"cannot start or join Ray ({'address ' + address if address else 'local'}): {exc}"
        ) from exc


@contextlib.contextmanager
def _sigterm_blocked_in_children():
    """Start a local Ray with SIGTERM blocked in the processes it spawns (a signal mask is inherited; Ray blocks
    SIGINT in them the same way). A SIGTERM to the driver's process group (a scheduler's or `timeout`'s stop) then
    reaches the driver, which stops the run cleanly, instead of killing the GCS and raylet under it; they still
    end with the driver (Ray's fate sharing)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM})
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)


def _stop_without_grace() -> None:
    """Make `ray.shutdown` of the local Ray started here stop its processes at once.

    Ray stops each of its processes with SIGTERM and waits up to a second for it; ours have SIGTERM blocked (above),
    so every run ended with about 8 s of waiting after its results were printed. SIGKILL is what Ray sends after
    that wait anyway. Killed at once, the raylet's agents would wait on the dead GCS for a minute, so every process
    this Ray started (its raylet's workers and agents included) is killed with it. Ray has no public switch for
    this: the running node object is patched, and if Ray's internals change the stop is only slower, never skipped.
    """
    from ray._private import worker as ray_worker  # ray: heavy, imported only when a study or cluster is used

    node = getattr(ray_worker, "_global_node", None)
    kill_all = getattr(node, "kill_all_processes", None)
    if kill_all is None:
        return

    def kill_at_once(*args, **kwargs):
        started = _ray_processes()
        result = kill_all(*args, **{**kwargs, "allow_graceful": False})
        kill_processes(started, timeout=5)
        return result

    node.kill_all_processes = kill_at_once


def _running(process: psutil.Process) -> bool:
    """Still running: a killed orphan stays a zombie where no init process reaps it (as in many containers)."""
    try:
        return process.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def kill_processes(processes: list[psutil.Process], timeout: float) -> None:
    """SIGKILL each process, then wait (up to `timeout` s) until each is gone or a zombie."""
    for process in processes:
        with contextlib.suppress(psutil.Error):
            process.kill()
    deadline = time.monotonic() + timeout
    while any(_running(process) for process in processes) and time.monotonic() < deadline:
        time.sleep(0.05)


def _ray_processes() -> list[psutil.Process]:
    """This process's descendants that Ray started: GCS, raylet, its workers (`ray::...`) and agents, monitors."""
    found = []
    for process in psutil.Process().children(recursive=True):
        with contextlib.suppress(psutil.Error):
            command = process.cmdline()
            if command and (command[0].startswith("ray::") or any("/ray/" in part for part in command[:3])):
                found.append(process)
    return found


def check_can_join(address: str) -> None:
    """Ask the cluster's GCS directly (half a second) so that a token mismatch is named as such.

    Without this, `ray.init` retries for a minute and says only "Failed to connect".
    """
    import ray  # ray: heavy, imported only when a study or cluster is used
    from ray._private.services import (
        canonicalize_bootstrap_address,  # ray: heavy, imported only when a study or cluster is used
    )

    if address.startswith("ray://"):  # Ray Client: ray.init reports its own errors
        return
    try:
        gcs = canonicalize_bootstrap_address(address)
    except Exception:  # noqa: BLE001 - "auto" with nothing running and the like: ray.init says it best
        return
    if not gcs:
        return
    _check_listening(address, gcs)
    try:
        ray._raylet.GcsClient(address=gcs)
    except ray.exceptions.AuthenticationError as exc:
        mode = os.environ.get("RAY_AUTH_MODE", "disabled")
        raise BenchmarkError(
            f"cannot join the Ray cluster at {address}: authentication failed (the cluster uses token authentication "
            f"and this process has no valid token; RAY_AUTH_MODE is {mode!r}). Set RAY_AUTH_MODE=token and give this "
            f"machine the cluster's token: copy the head's ~/.ray/auth_token here, or set RAY_AUTH_TOKEN (or "
            f"RAY_AUTH_TOKEN_PATH); every node and every client needs both. See {README_SECTION}. Ray said: "
            f"{str(exc).splitlines()[0][:200]}"
        ) from None
    except Exception as exc:  # noqa: BLE001 - unreachable and the like: ray.init retries and reports it
        log.debug("GCS probe of %s failed: %s", address, exc)


def _check_listening(address: str, gcs: str, timeout: float = 5.0) -> None:
    """Nothing listening at the address: say so within seconds (`ray.init` waits about a minute per attempt, and
    the run looks hung meanwhile)."""
    host, _, port = gcs.rpartition(":")
    try:
        with socket.create_connection((host.strip("[]") or "127.0.0.1", int(port)), timeout=timeout):
            pass
    except (OSError, ValueError) as exc:
        raise BenchmarkError(
            f"no Ray cluster answers at {address} ({exc}); start one there (ray start --head --port=...) or leave out "
            "--address (and RAY_ADDRESS) to run on a local Ray"
        ) from None


def check_resources(cpus_per_trial: float, gpus_per_trial: float) -> None:
    """Refuse, before anything launches, a trial size that no node of the cluster can hold."""
    import ray  # ray: heavy, imported only when a study or cluster is used

    total = ray.cluster_resources()
    for name, wanted in (("CPU", cpus_per_trial), ("GPU", gpus_per_trial)):
        if wanted and total.get(name, 0) < wanted:
            raise BenchmarkError(
                f"each trial asks for {wanted} {name} but the Ray cluster has {total.get(name, 0):g}; "
                f"lower --{name.lower()}s-per-trial or add nodes with {name}s"
            )


def fitting_trials(cpus_per_trial: float, gpus_per_trial: float) -> int:
    """How many trials of this size the cluster holds at once."""
    import ray  # ray: heavy, imported only when a study or cluster is used

    total = ray.cluster_resources()
    fits = [int(total.get("CPU", 1) // cpus_per_trial)] if cpus_per_trial else []
    if gpus_per_trial:
        fits.append(int(round(total.get("GPU", 0) / gpus_per_trial, 6)))
    return max(1, min(fits) if fits else 1)


def where_am_i() -> dict[str, str]:
    """The Ray node id, host name and node IP of the calling process (a trial or a fit)."""
    import ray  # ray: heavy, imported only when a study or cluster is used

    where = {"host": socket.gethostname()}
    if ray.is_initialized():
        context = ray.get_runtime_context()
        where["node_id"] = context.get_node_id()
        where["node_ip"] = ray.util.get_node_ip_address()
    return where


def is_uri(storage: str) -> bool:
    """A storage location Ray Tune reaches through pyarrow (s3://, gs://, ...), not a local path."""
    return "://" in storage and not storage.startswith("file://")


def _sees(path: str, marker: str) -> bool:
    return (Path(path) / marker).is_file()


def check_storage_shared(storage: str, *, flag: str = "--storage") -> None:
    """Refuse, before any trial launches, a Ray Tune storage folder that some node cannot see.

    Every node that may run a trial must read and write Ray Tune's storage; a local folder of the
    driver's host is invisible to nodes on other hosts (Ray would fail each of their trials as it
    starts). A marker file written here is looked for by a task pinned to every alive node.
    """
    import ray  # ray: heavy, imported only when a study or cluster is used
    from ray.util.scheduling_strategies import (
        NodeAffinitySchedulingStrategy,  # ray: heavy, imported only when a study or cluster is used
    )

    if is_uri(storage):
        return
    nodes = [n for n in ray.nodes() if n.get("Alive")]
    if len(nodes) < 2:
        return
    folder = Path(storage.removeprefix("file://"))
    folder.mkdir(parents=True, exist_ok=True)
    marker = f".visible-{uuid.uuid4().hex}"
    (folder / marker).write_text(socket.gethostname())
    try:
        probe = ray.remote(num_cpus=0, max_retries=0)(_sees)
        refs = {
            n["NodeID"]: probe.options(
                scheduling_strategy=NodeAffinitySchedulingStrategy(n["NodeID"], soft=False)
            ).remote(str(folder), marker)
            for n in nodes
        }
        blind = []
        for node in nodes:
            try:
                seen = ray.get(refs[node["NodeID"]], timeout=120)
            except Exception as exc:  # noqa: BLE001 - a node that cannot even answer is reported as blind
                log.debug("storage probe on %s failed: %s", node["NodeID"], exc)
                seen = False
            if not seen:
                blind.append(
                    f"{node.get('NodeManagerHostname', '?')} ({node.get('NodeManagerAddress', '?')}, "
                    f"node {node['NodeID'][:12]})"
                )
    finally:
        (folder / marker).unlink(missing_ok=True)
    if blind:
        raise BenchmarkError(
            f"Ray Tune's storage {str(folder)!r} is a local folder that {len(blind)} of the cluster's {len(nodes)} "
            "nodes "
            f"cannot see: {'; '.join(blind)}. Nodes on other hosts must share it: pass {flag} with a folder "
            "mounted at the same path on every node (NFS, a shared volume) or a URI Ray Tune understands "
            f"(s3://bucket/path, gs://bucket/path); or put --output on such shared storage. Nothing was launched. "
            f"See {README_SECTION}."
        )
