"""What a long run shows while it runs: per study, trials done / running / failed, elapsed, ETA, best validation.

On a terminal a rich live panel keeps one row per study (group or system, with its folds) above the
run's ordinary lines; elsewhere (CI logs, `ray job logs`, a pipe) every update is one plain line
that carries the same numbers, so a log read later says as much as the screen did.
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass, field


def format_duration(seconds: float | None) -> str:
    if seconds is None or seconds != seconds:
        return "?"
    seconds = int(round(seconds))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}h{minutes:02d}m" if hours else f"{minutes}m{secs:02d}s" if minutes else f"{secs}s"


@dataclass
class StudyBoard:
    """Counts of one study (one Tune experiment: a holdout group, or one system over all its folds)."""

    label: str
    planned: int
    started: float = field(default_factory=time.monotonic)
    done: int = 0
    running: int = 0
    failed: int = 0
    best: dict[str, float] = field(default_factory=dict)  # task -> best validation value of its primary metric
    keys: dict[str, str] = field(default_factory=dict)  # task -> primary metric

    @property
    def elapsed(self) -> float:
        return time.monotonic() - self.started

    @property
    def eta(self) -> float | None:
        """Remaining trials at the pace so far (finished and failed ones count as done)."""
        ended = self.done + self.failed
        if not ended:
            return None
        return self.elapsed / ended * max(self.planned - ended, 0)

    def best_text(self) -> str:
        return ", ".join(f"{task} {self.keys.get(task, '')} {value:.3f}" for task, value in self.best.items()) or "-"

    def line(self) -> str:
        return (
            f"  [{self.label}] trials: {self.done}/{self.planned} done, {self.running} running, {self.failed} failed; "
            f"{format_duration(self.elapsed)} elapsed, ETA {format_duration(self.eta)}; best val: {self.best_text()}"
        )


class PlainProgress:
    """One line per update (not a terminal)."""

    def __call__(self, line: str) -> None:
        print(line, flush=True)

    def trials(self, board: StudyBoard) -> None:
        self(board.line())

    def close(self) -> None:
        pass


class RichProgress(PlainProgress):
    """A live table of studies on a terminal; ordinary lines scroll above it."""

    def __init__(self, console=None):
        from rich.console import Console  # rich: imported only for terminal output
        from rich.live import Live  # rich: imported only for terminal output

        self.console = console or Console()
        self.boards: dict[str, StudyBoard] = {}
        self.started = time.monotonic()
        self.live = Live(self._table(), console=self.console, refresh_per_second=2, transient=False)
        self.live.start()

    def __call__(self, line: str) -> None:
        self.live.console.print(line, highlight=False, markup=False)

    def trials(self, board: StudyBoard) -> None:
        self.boards[board.label] = board
        self.live.update(self._table(), refresh=True)

    def _table(self):
        from rich.table import Table  # rich: imported only for terminal output

        table = Table(
            title=f"run: {format_duration(time.monotonic() - self.started)} elapsed", title_justify="left", expand=False
        )
        for column in ("study", "done", "running", "failed", "elapsed", "ETA", "best validation"):
            table.add_column(column, justify="right" if column in ("done", "running", "failed") else "left")
        for board in self.boards.values():
            table.add_row(
                board.label,
                f"{board.done}/{board.planned}",
                str(board.running),
                f"[red]{board.failed}[/red]" if board.failed else "0",
                format_duration(board.elapsed),
                format_duration(board.eta),
                board.best_text(),
            )
        return table

    def close(self) -> None:
        self.live.stop()


def make_progress(stream=None) -> PlainProgress:
    """Rich on a terminal, plain lines otherwise."""
    stream = stream or sys.stdout
    return RichProgress() if stream.isatty() else PlainProgress()
