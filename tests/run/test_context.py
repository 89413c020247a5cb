"""The run's state file is checked before it is trusted."""

import json

import pytest

from benchmark.core.errors import BenchmarkError
from benchmark.run.context import STATE_FILE, RunState
from benchmark.run.options import RunOptions


@pytest.mark.parametrize(
    ("content", "says"),
    [("", "empty or cut short"), ('{"run_uid": "abc", "sui', "empty or cut short"), ("{}", "no run_uid, suite"),
     ('{"suite": "quick"}', "no run_uid"), ("[1]", "no run_uid, suite")],
)  # fmt: skip
def test_a_damaged_state_file_is_named_with_what_to_do(tmp_path, content, says):
    (tmp_path / STATE_FILE).write_text(content)
    with pytest.raises(BenchmarkError) as info:
        RunState.open(tmp_path, RunOptions(suite="quick", output=str(tmp_path), resume=True))
    message = str(info.value)
    assert says in message and str(tmp_path / STATE_FILE) in message and "without --resume" in message


def test_a_new_run_writes_its_state_and_a_resume_reads_it_back(tmp_path):
    state = RunState.open(tmp_path, RunOptions(suite="quick", output=str(tmp_path)))
    state.setdefault("groups_done", {})["g"] = {"t": 1}
    state.save()
    again = RunState.open(tmp_path, RunOptions(suite="quick", output=str(tmp_path), resume=True))
    assert again.run_uid == state.run_uid and again["groups_done"] == {"g": {"t": 1}}
    assert json.loads((tmp_path / STATE_FILE).read_text())["suite"] == "quick"
