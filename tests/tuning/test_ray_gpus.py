"""Fractional GPUs per trial, proven without a GPU: Ray started with one logical GPU."""

import os
import signal
import time
import uuid
from pathlib import Path

import pytest

from benchmark.tuning.search import StudySettings
from benchmark.tuning.space import SearchSpace
from benchmark.tuning.trainable import trial_device
from benchmark.tuning.tuner import make_tuner

pytestmark = pytest.mark.slow  # end to end (Ray, MLflow, subprocesses): pytest -m 'not slow' skips it


def probe(config):
    """Wait (up to a minute) until four trials have started, so the overlap measured does not hang on how fast
    workers start on a loaded machine; with fewer slots the wait runs out and the overlap found is smaller."""
    import ray
    from ray import tune

    started = time.time()
    barrier = Path(os.environ["PROBE_BARRIER"])
    (barrier / uuid.uuid4().hex).touch()
    while len(list(barrier.iterdir())) < 4 and time.time() - started < 60:
        time.sleep(0.2)
    time.sleep(0.5)  # the others see the fourth file too before anyone ends
    tune.report(
        {
            "objective": 0.0,
            "gpu_ids": [str(g) for g in ray.get_gpu_ids()],
            "device": trial_device(),
            "start": started,
            "end": time.time(),
        }
    )


@pytest.fixture
def ray_one_logical_gpu(tmp_path):
    import ray

    ray.shutdown()
    tests = str(Path(__file__).resolve().parent)  # workers import `probe` from this module
    barrier = tmp_path / "barrier"
    barrier.mkdir()
    ray.init(
        num_cpus=4,
        num_gpus=1,
        include_dashboard=False,
        log_to_driver=False,
        configure_logging=False,
        runtime_env={"env_vars": {"PYTHONPATH": tests, "PROBE_BARRIER": str(barrier)}},
    )
    yield
    ray.shutdown()


def test_four_trials_share_one_gpu_at_a_quarter_each(ray_one_logical_gpu, tmp_path):
    space = SearchSpace(name="probe", parameters={"loss/temperature": {"type": "float", "low": 0.05, "high": 0.1}})
    settings = StudySettings(
        name="gpu-probe", storage_path=tmp_path, num_samples=8, gpus_per_trial=0.25, cpus_per_trial=1
    )
    grid = make_tuner(probe, settings, space, callbacks=[]).fit()
    results = [r.metrics for r in grid]
    assert len(results) == 8 and all(r["gpu_ids"] == ["0"] for r in results)
    assert all(r["device"] == "cpu" for r in results)  # a logical GPU without CUDA: the trainable falls back
    events = sorted([(r["start"], 1) for r in results] + [(r["end"], -1) for r in results])
    running = peak = 0
    for _, step in events:
        running += step
        peak = max(peak, running)
    assert peak == 4


def suicidal(config):
    """A trial whose worker process is killed outright (as by the OOM killer) for one parameter value."""
    from ray import tune

    if config["loss"]["temperature"] > 0.08:
        os.kill(os.getpid(), signal.SIGKILL)
    tune.report({"objective": 1.0})


def test_a_killed_trial_is_retried_then_recorded_and_the_study_goes_on(ray_one_logical_gpu, tmp_path):
    space = SearchSpace(name="kill", parameters={"loss/temperature": {"type": "categorical", "choices": [0.05, 0.1]}})
    settings = StudySettings(name="kill-probe", storage_path=tmp_path, num_samples=6, max_failures=1)
    grid = make_tuner(suicidal, settings, space, callbacks=[]).fit()
    failed = [r for r in grid if r.error is not None]
    finished = [r for r in grid if r.error is None]
    assert len(grid) == 6 and failed and finished
    # only the killing value fails; Ray may leave `config` empty for a trial that died before reporting
    assert all(r.config["loss"]["temperature"] < 0.08 and r.metrics["objective"] == 1.0 for r in finished)
    assert all(r.config["loss"]["temperature"] > 0.08 for r in failed if r.config is not None)


def reports_slowly(config):
    """Ten reports 0.3 s apart; the first attempt of the first trial writes its worker's PID for the test to kill."""
    from ray import tune

    marker = Path(os.environ["PROBE_BARRIER"]) / "pid"
    if not marker.exists():
        marker.write_text(str(os.getpid()))
    for step in range(10):
        time.sleep(0.3)
        tune.report({"objective": 1.0, "step": step})


def test_a_trial_worker_killed_by_its_pid_is_retried_and_counted(ray_one_logical_gpu, tmp_path):
    import threading

    from benchmark.tuning.outcome import study_outcome

    marker = Path(os.environ.get("PROBE_BARRIER", tmp_path / "barrier")) / "pid"

    def kill_when_reporting():
        deadline = time.time() + 120
        while not marker.exists() and time.time() < deadline:
            time.sleep(0.1)
        time.sleep(1.2)  # a few reports in
        os.kill(int(marker.read_text()), signal.SIGKILL)

    killer = threading.Thread(target=kill_when_reporting, daemon=True)
    killer.start()
    space = SearchSpace(name="killed", parameters={"loss/temperature": {"type": "categorical", "choices": [0.05]}})
    settings = StudySettings(name="killed", storage_path=tmp_path, num_samples=3, max_failures=2, max_concurrent=2)
    grid = make_tuner(reports_slowly, settings, space, callbacks=[]).fit()
    killer.join(timeout=5)
    outcome = study_outcome(grid, 3, None)
    assert (outcome.finished, outcome.failed, outcome.retried) == (3, 0, 1)
    assert all(r.metrics["step"] == 9 for r in grid)  # every configuration ran to its end, the killed one again
