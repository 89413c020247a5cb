"""Progress of long runs: the same numbers as plain lines (logs, pipes) and as rich's live table (terminals)."""

from __future__ import annotations

import io
import re

from benchmark.tuning.progress import PlainProgress, RichProgress, StudyBoard, format_duration, make_progress


def board(**counts) -> StudyBoard:
    b = StudyBoard("quick-tuned, 6 folds", planned=12, keys={"quick-scaffold-global": "text_to_molecule/recall@1"})
    b.started -= 60  # a minute into the study
    for name, value in counts.items():
        setattr(b, name, value)
    return b


def test_eta_is_the_pace_so_far_times_what_is_left():
    assert board().eta is None  # nothing ended yet: no pace to extrapolate
    b = board(done=3, failed=1, running=2)
    assert abs(b.eta - 60 / 4 * 8) < 1.0
    assert board(done=12).eta == 0
    assert [format_duration(s) for s in (5, 65, 3725, None)] == ["5s", "1m05s", "1h02m", "?"]


def test_plain_lines_carry_counts_elapsed_eta_and_best(capsys):
    b = board(done=3, failed=1, running=2, best={"quick-scaffold-global": 0.2143})
    PlainProgress().trials(b)
    line = capsys.readouterr().out.strip()
    assert line.startswith("[quick-tuned, 6 folds] trials: 3/12 done, 2 running, 1 failed")
    assert re.search(r"1m0[0-9]s elapsed, ETA 2m0[0-9]s", line), line
    assert line.endswith("best val: quick-scaffold-global text_to_molecule/recall@1 0.214")


def test_rich_table_on_a_terminal_shows_every_study():
    from rich.console import Console

    out = io.StringIO()
    progress = RichProgress(Console(file=out, force_terminal=True, width=160))
    progress.trials(board(done=3, failed=1, running=2, best={"quick-scaffold-global": 0.2143}))
    other = StudyBoard("untrained-heads, 6 folds", planned=6)
    progress.trials(other)
    progress("  fits: 2/14 done")
    progress.close()
    text = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", out.getvalue())
    for expected in (
        "study",
        "ETA",
        "best validation",
        "quick-tuned, 6 folds",
        "3/12",
        "untrained-heads, 6 folds",
        "0/6",
        "0.214",
        "fits: 2/14 done",
    ):
        assert expected in text, expected


def test_plain_when_not_a_terminal():
    assert type(make_progress(io.StringIO())) is PlainProgress
