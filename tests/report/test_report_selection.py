"""What per-fold selection earned on test: the tuned system against the untuned defaults, fold by fold."""

import pandas as pd

from benchmark.report.cv import CVTask, selection_table


def _task(tuned: list[float], defaults: list[float]) -> CVTask:
    rows = [
        {"system": system, "fold": f"f{i}", "repeat": 0, "key": "text_to_molecule/recall@1", "value": v}
        for system, values in (("tuned-linear", tuned), ("paper-defaults", defaults))
        for i, v in enumerate(values)
    ]
    rows.append({"system": "tuned-linear", "fold": "f0", "repeat": 0, "key": "text_to_molecule/mrr", "value": 0.9})
    return CVTask(
        "t", "e", "r", "text_to_molecule/recall@1", "", pd.DataFrame(rows), None,
        importance={"tuned-linear": {"loss/temperature": {"mean": 0.5}}},
    )  # fmt: skip


def test_selection_counts_folds_ahead_tied_and_behind_on_the_primary_metric():
    header, rows = selection_table(_task([0.30, 0.20, 0.25, 0.10], [0.25, 0.20, 0.30, 0.20]))
    assert header[1] == "minus paper-defaults: mean per fold"
    assert rows == [["tuned-linear", "-0.025", "1", "1", "2", "4"]]


def test_no_row_without_the_reference_system():
    task = _task([0.3], [0.2])
    task.scores = task.scores[task.scores["system"] != "paper-defaults"]
    assert selection_table(task)[1] == []
