"""Ctrl-C during a run: the first stops launching work and ends the run honestly; the second exits at once.

The first Ctrl-C lets running trials and fits stop, records what was interrupted as interrupted (never as
finished, never selected), writes the run state and results so far, and ends the run with exit status 130
and the `--resume` command to run. A second Ctrl-C raises `KeyboardInterrupt` at once; every file the run
writes is replaced atomically, so state is never half written.

While a Ray Tune study runs, Tune catches the first SIGINT itself: it stops its loop, saves its experiment
state and leaves the running trials RUNNING, so that a resumed study runs them again. `StopSignal` cannot
see that signal; it recognises it afterwards from the trials' statuses (`study_outcome`), and while a study
runs it treats any SIGINT that reaches its own handler as the second one (Tune hands the handler back after
its first).
"""

from __future__ import annotations

import contextlib
import logging
import re
import signal
import threading
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from benchmark.core.errors import BenchmarkError
from benchmark.core.io import free_space
from benchmark.tuning.outcome import StudyOutcome, study_outcome
from benchmark.tuning.trainable import trial_seconds

if TYPE_CHECKING:  # for annotations only: the context module imports this one
    from benchmark.run.context import ComputeLedger

log = logging.getLogger(__name__)


#: exit status of an interrupted run (128 + SIGINT, as shells report it); a SIGTERM's is 128 + 15
INTERRUPTED_EXIT = 130
#: the signals that stop a run gracefully: Ctrl-C, and a scheduler's or `timeout`'s stop
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


class Interrupted(BenchmarkError):
    """The run stopped at a user's Ctrl-C (or a SIGTERM); the message says what was done and how to resume."""

    def __init__(self, message: str, signum: int = signal.SIGINT):
        super().__init__(message)
        self.exit_code = 128 + int(signum)


def ignore_stop_signals() -> None:
    """From now on SIGINT and SIGTERM do nothing (main thread only): once a signal has stopped the run, it is
    leaving, and another KeyboardInterrupt inside its cleanup or Ray's shutdown (an atexit hook) would only print a
    traceback and end the process by SIGINT instead of its exit status."""
    if threading.current_thread() is threading.main_thread():
        for signum in STOP_SIGNALS:
            signal.signal(signum, signal.SIG_IGN)


class StopSignal:
    """Whether the user asked the run to stop (a first Ctrl-C or SIGTERM), shared by the stages of one run."""

    def __init__(self):
        self._event = threading.Event()
        self._in_study = False
        self._leaving = False  # the second signal came: stop signals stay ignored until the process ends
        self.signum: int = signal.SIGINT  # the signal that asked (for the exit status)
        self.failure: str | None = None  # a state save that failed (a full disk): why the run stops

    def fail(self, reason: str) -> None:
        """A save of the run's state failed: stop as at a first Ctrl-C (inside a study, Tune's own stop, which
        keeps its last saved state), and say why instead of 'interrupted'."""
        if self.failure is not None:
            return
        self.failure = reason
        log.error("%s; the run stops, keeping the state it saved last", reason)
        if self._in_study and not self._event.is_set() and _tune_owns_sigint(self._handler):
            signal.raise_signal(signal.SIGINT)  # Tune's handler (inside its fit): it stops the study as at a Ctrl-C
        self._event.set()

    @property
    def requested(self) -> bool:
        return self._event.is_set()

    def request(self) -> None:
        self._event.set()

    def _handler(self, signum, frame) -> None:
        if self._in_study and signum == signal.SIGTERM and not self._event.is_set():
            # inside tuner.fit() Tune owns SIGINT and stops the study cleanly on it: a first SIGTERM becomes that
            self.signum = signum
            signal.raise_signal(signal.SIGINT)
            return
        if self._event.is_set() or self._in_study:
            self._leaving = True
            ignore_stop_signals()  # a third, while the run unwinds (or Ray shuts down), must not interrupt that
            raise KeyboardInterrupt  # the second signal: at once
        self.signum = signum
        self._event.set()
        log.warning(
            "%s: no new work starts; the running work finishes, then the run stops with a --resume "
            "hint (%s again to exit at once)",
            *_names(signum),
        )

    @contextlib.contextmanager
    def installed(self):
        """Own SIGINT and SIGTERM for the block (main thread only; elsewhere signals cannot be handled)."""
        if threading.current_thread() is not threading.main_thread():
            yield self
            return
        previous = {signum: signal.signal(signum, self._handler) for signum in STOP_SIGNALS}
        try:
            yield self
        finally:
            for signum, handler in previous.items():
                signal.signal(signum, signal.SIG_IGN if self._leaving else handler)

    def reclaim(self) -> None:
        """Take SIGINT and SIGTERM back after `ray.init()`: Ray's core worker installs a C-level SIGTERM handler
        that aborts the driver (exit 134, a stack dump, nothing saved)."""
        if threading.current_thread() is threading.main_thread():
            for signum in STOP_SIGNALS:
                signal.signal(signum, self._handler)

    @contextlib.contextmanager
    def study(self):
        """Around `tuner.fit()`: a SIGINT reaching this handler now is one after Tune's own, and Tune's own
        (which it announces in a warning of logger `ray.tune.tune`) is the run's first Ctrl-C."""
        tune_log = logging.getLogger("ray.tune.tune")
        saved = tune_log.level, tune_log.propagate
        watcher = _TuneStopWatcher(self)
        tune_log.setLevel(logging.WARNING)
        tune_log.propagate = False  # Tune's own message names Tuner.restore; the run prints the --resume command
        tune_log.addHandler(watcher)
        saves = _SaveFailureWatcher(self)
        for name in SAVE_LOGGERS:
            logging.getLogger(name).addFilter(saves)
        self._in_study = True
        try:
            yield
        finally:
            self._in_study = False
            for name in SAVE_LOGGERS:
                logging.getLogger(name).removeFilter(saves)
            if threading.current_thread() is threading.main_thread() and not self._leaving:
                signal.signal(signal.SIGINT, self._handler)  # Tune leaves its handler installed after a study
            tune_log.removeHandler(watcher)
            tune_log.setLevel(saved[0])
            tune_log.propagate = saved[1]


class _TuneStopWatcher(logging.Handler):
    """Notes Tune's 'Stop signal received' (its SIGINT handler) as the run's first Ctrl-C; passes on the rest."""

    def __init__(self, stop: StopSignal):
        super().__init__(logging.WARNING)
        self.stop = stop

    def emit(self, record: logging.LogRecord) -> None:
        message = record.getMessage()
        if message.startswith("Stop signal received"):
            if self.stop.failure is None:
                first, again = _names(self.stop.signum)
                log.warning(
                    "%s: the study stops (its state is saved); then the run stops with a --resume hint "
                    "(%s again to exit at once)",
                    first,
                    again,
                )
            self.stop.request()
        elif record.levelno >= logging.ERROR and "Trials did not complete" not in message:
            log.error("Ray Tune: %s", message)


def _tune_owns_sigint(ours) -> bool:
    """Whether SIGINT now goes to a handler other than the run's and Python's own (Tune's, inside its fit)."""
    if threading.current_thread() is not threading.main_thread():
        return False
    handler = signal.getsignal(signal.SIGINT)
    return callable(handler) and handler != ours and handler is not signal.default_int_handler


def _names(signum: int) -> tuple[str, str]:
    """What stopped the run, and what stops it at once: 'Ctrl-C' twice, or 'SIGTERM' and 'a signal'."""
    if signum == signal.SIGINT:
        return "Ctrl-C", "Ctrl-C"
    return signal.Signals(signum).name, "Ctrl-C or SIGTERM"


#: the loggers that report a failed save of Ray Tune's experiment state (its copy to storage) and of its signatures
SAVE_LOGGERS = ("ray.tune.execution.experiment_state", "ray.train._internal.syncer", "benchmark.tuning.state")


class _SaveFailureWatcher(logging.Filter):
    """A failed save of the study's state (Tune logs it with a traceback and goes on) stops the run, saying where
    and why in one line; the logged traceback itself is held back (a filter on the loggers that report it)."""

    def __init__(self, stop: StopSignal):
        super().__init__()
        self.stop = stop

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno < logging.WARNING:
            return True
        message = record.getMessage()
        if not any(mark in message for mark in ("failed", "could not save")):
            return True
        detail = message
        if record.exc_info and record.exc_info[1] is not None:
            detail = f"{message} {type(record.exc_info[1]).__name__}: {record.exc_info[1]}"
        self.stop.fail(describe_save_failure(detail))
        return False


def describe_save_failure(text: str) -> str:
    """One line from a logged save failure: the folder, the error, the free space there."""
    folder = re.search(r"(?:at|to) '([^']+)'", text)
    error = re.findall(r"(?:OSError|IOError|PermissionError|FileNotFoundError|\[Errno \d+\])[^\n]*", text)
    where = folder.group(1) if folder else "its storage"
    reason = error[-1].strip() if error else text.strip().splitlines()[-1][:200]
    space = f"; {free_space(Path(where))} free there" if folder and "://" not in where else ""
    return f"Ray Tune could not save its experiment state to {where} ({reason}){space}"


def fit_study(
    tuner,
    callback,
    planned: int,
    time_budget_s: float | None,
    *,
    stop: StopSignal,
    compute: ComputeLedger,
    progress: Callable[[str], None],
) -> tuple[object, StudyOutcome]:
    """Run one Tune study under the run's stop signal; (result grid, how its trials ended), said when early. Adds
    the trials' bare seconds to `compute`."""
    with stop.study():
        try:
            grid = tuner.fit()
        finally:
            callback.flush()  # trial runs still queued for MLflow
    compute.trial_seconds += trial_seconds(grid)
    study = study_outcome(grid, planned, time_budget_s, stop.requested)
    report_outcome(study, time_budget_s, stop=stop, progress=progress)
    return grid, study


def report_outcome(
    outcome: StudyOutcome, time_budget_s: float | None, *, stop: StopSignal, progress: Callable[[str], None]
) -> None:
    """Say how a study ended when it ended early (a Ctrl-C, the time budget), and remember a Ctrl-C that Tune
    caught (in `stop`)."""
    if outcome.interrupted:
        stop.request()
        progress(
            f"  interrupted: {outcome.finished} trials finished, {outcome.failed} failed, "
            f"{len(outcome.interrupted)} interrupted (run again on --resume)"
        )
    elif outcome.budget_reached:
        progress(
            f"  time budget of {time_budget_s:g}s reached: {outcome.finished + outcome.failed} of "
            f"{outcome.planned} trials run ({outcome.finished} finished, {outcome.failed} failed)"
        )


class StopRequested(Exception):
    """Raised by a stage that stopped at a Ctrl-C: `partial` holds the results.json entries it has, `where`
    says what was under way."""

    def __init__(self, where: str, partial: dict | None = None):
        super().__init__(where)
        self.where, self.partial = where, partial or {}
