"""results.json is declared and versioned: one builder, a reader that refuses what it cannot read."""

import json

import pytest

from benchmark.core.errors import BenchmarkError
from benchmark.run.result_schema import SCHEMA_VERSION, check_results, new_results, read_results, write_results


def test_written_results_read_back_with_their_version(tmp_path):
    results = new_results("quick", "abc123", "sqlite:///x.db", "benchmark-quick")
    results["tasks"]["t"] = {
        "description": "d",
        "primary_metric": "text_to_molecule/recall@1",
        "leaky": False,
        "trials": {"finished": 2, "failed": 0, "interrupted": 0, "planned": 2},
        "error": "every trial failed",
    }
    write_results(tmp_path / "results.json", results)
    back = read_results(tmp_path / "results.json")
    assert back == results and back["schema_version"] == SCHEMA_VERSION
    assert check_results(back) == results


@pytest.mark.parametrize(
    ("content", "says"),
    [
        ({"suite": "quick", "tasks": {}}, "no schema_version"),
        ({"schema_version": 99, "suite": "quick", "tasks": {}}, "version 99"),
        ("not json at all", "not JSON"),
        ([1, 2], "top level is list"),
    ],
)
def test_the_reader_refuses_files_it_cannot_read_with_one_clear_message(tmp_path, content, says):
    path = tmp_path / "results.json"
    path.write_text(content if isinstance(content, str) else json.dumps(content))
    with pytest.raises(BenchmarkError) as info:
        read_results(path)
    assert says in str(info.value) and str(path) in str(info.value)


def test_the_reader_names_a_missing_file(tmp_path):
    with pytest.raises(BenchmarkError, match="does not exist"):
        read_results(tmp_path / "nope.json")


def test_an_undeclared_key_or_a_wrong_type_is_named_by_its_path():
    results = new_results("quick", "abc123", "sqlite:///x.db", "benchmark-quick")
    with pytest.raises(BenchmarkError, match="surprise"):
        check_results({**results, "surprise": 1})
    with pytest.raises(BenchmarkError, match="run_uid"):
        check_results({**results, "run_uid": {"not": "a string"}})


def test_the_docs_name_the_schema_version_the_code_writes():
    import re
    from pathlib import Path

    from benchmark.run.result_schema import SCHEMA_VERSION

    docs = (Path(__file__).resolve().parents[2] / "docs" / "architecture.md").read_text()
    assert re.findall(r"`schema_version` \(now (\d+)\)", docs) == [str(SCHEMA_VERSION)]
