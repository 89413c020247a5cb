"""The local Ray a run starts: SIGTERM reaches only the driver, and stopping Ray leaves no process behind."""

import json
import subprocess
import sys

import pytest

pytestmark = pytest.mark.slow  # starts Ray in a subprocess: pytest -m 'not slow' skips it

PROBE = """
import json, ray, psutil
from benchmark.cluster.ray_cluster import _ray_processes, _running, init_ray
init_ray(num_cpus=1)
ray.get(ray.remote(lambda: 1).remote())  # a worker has run
started = _ray_processes()
blocked = {}
for process in started:
    mask = next(line for line in open(f"/proc/{process.pid}/status") if line.startswith("SigBlk:"))
    blocked[process.name()] = bool(int(mask.split()[1], 16) >> 14 & 1)  # bit 15 - 1: SIGTERM
ray.shutdown()
print(json.dumps({"blocked": blocked, "left": [p.name() for p in started if _running(p)]}))
"""


def test_stopping_the_local_ray_leaves_no_process_behind():
    """Ray's processes have SIGTERM blocked (a scheduler's SIGTERM to the group must not kill them under the
    driver), so Ray's own stop would wait a second on each; they are killed at once instead, agents included."""
    done = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    seen = json.loads(done.stdout.strip().splitlines()[-1])
    assert {"raylet", "gcs_server"} <= set(seen["blocked"]) and all(seen["blocked"].values()), seen
    assert len(seen["blocked"]) >= 4  # the GCS, the raylet, its agents and at least one worker
    assert seen["left"] == [], seen
