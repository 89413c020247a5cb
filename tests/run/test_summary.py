"""The console summary says how many inputs an encoder cut (longer than it reads), per encoder."""

from benchmark.run.summary import format_summary


def test_the_summary_counts_inputs_cut_per_encoder_once():
    cut = {"minilm": {"cut": 3, "of": 2440}, "chemnet": {"cut": 13, "of": 1879}}
    results = {
        "tasks": {
            "a": {"error": "interrupted", "trials": {"finished": 0, "planned": 2, "failed": 0},
                  "dataset": {"cut_by_encoder": cut}},
            "b": {"error": "interrupted", "trials": {"finished": 0, "planned": 2, "failed": 0},
                  "dataset": {"cut_by_encoder": {"minilm": {"cut": 99, "of": 1}}}},
        }
    }  # fmt: skip
    text = format_summary(results)
    assert (
        text.splitlines()[-1] == "inputs longer than their encoder reads (cut): chemnet 13 of 1,879; minilm 3 of 2,440"
    )


def test_no_cut_line_when_no_encoder_has_a_limit():
    results = {"tasks": {"a": {"error": "x", "trials": {"finished": 0, "planned": 1, "failed": 0}, "dataset": {}}}}
    assert "cut" not in format_summary(results)
