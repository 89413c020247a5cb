"""A failed save of Ray Tune's state (Tune logs it and goes on) stops the run, saying where and how much is free."""

from __future__ import annotations

import logging

from benchmark.run.interrupts import StopSignal, describe_save_failure


def test_a_failed_state_copy_logged_by_ray_stops_the_run_with_the_folder_and_free_space(tmp_path):
    stop = StopSignal()
    with stop.study():
        logging.getLogger("ray.tune.execution.experiment_state").error(
            f"Saving experiment state to storage at '{tmp_path}' failed with exception: "
            "OSError: [Errno 28] No space left on device"
        )
        logging.getLogger("ray.tune.execution.experiment_state").warning("unrelated: the loop is slow")
    assert stop.requested and stop.failure is not None
    assert str(tmp_path) in stop.failure and "No space left on device" in stop.failure and "GB free" in stop.failure
    quiet = StopSignal()
    with quiet.study():
        logging.getLogger("ray.train._internal.syncer").warning("Last sync still in progress, skipping sync up")
    assert not quiet.requested  # only failures stop the run


def test_a_syncer_traceback_becomes_one_line():
    text = (
        "Last sync command failed with the following error:\nTraceback (most recent call last):\n  File x\n"
        "OSError: [Errno 28] Error writing bytes to file. Detail: [errno 28] No space left on device"
    )
    line = describe_save_failure(text)
    assert line.startswith("Ray Tune could not save its experiment state to its storage (OSError: [Errno 28]")
    assert "\n" not in line
