"""`python -m benchmark perf` end to end at toy sizes: every section runs and writes its table.

Figures themselves are not asserted (speed lives in the benchmark, not in unit tests); the fast
paths' equality with the reference implementations is tested in test_fast_paths.py.
"""

import pytest

from benchmark.core.errors import UnknownNameError
from benchmark.perf.main import SECTIONS, run_perf

pytestmark = pytest.mark.slow  # end to end (Ray, MLflow, subprocesses): pytest -m 'not slow' skips it


#: every section but `cluster` (it starts a multi-node cluster: measured by hand for the README, and the same
#: cluster runs are what tests/cluster/test_cluster.py checks), in two halves that xdist runs side by side
HALVES = {
    "training": (
        ("trial", "graph", "tune", "tuned-fold"),
        ("## One bridge trial (cpu)", "## Graph encoder trial (cpu)", "## Ray Tune overhead",
         "## One tuned fold: `perfcv-tuned` on `perfcv-global`"),
    ),
    "evaluation": (
        ("cache", "encoding", "evaluation", "bootstrap", "scaling", "suite"),
        ("## Embedding cache", "## Text encoding throughput", "## Evaluation: ranking both directions",
         "## Bootstrap", "## How cost grows", "## Whole suite: `run --suite perfcv`"),
    ),
}  # fmt: skip


def test_the_halves_cover_every_section_but_cluster():
    assert sorted(s for sections, _ in HALVES.values() for s in sections) == sorted(set(SECTIONS) - {"cluster"})


@pytest.mark.parametrize("half", sorted(HALVES))
def test_perf_runs_every_section_and_writes_the_report(half, tiny_csv, tmp_path, ray_local, monkeypatch):
    import torch
    from suite_helpers import write_cv_suite

    from benchmark.tasks.specs import scoped_registry

    monkeypatch.setenv("BENCHMARK_TASKS_DIR", str(write_cv_suite(tmp_path / "tasks", tiny_csv, name="perfcv")))
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)  # perf pins threads (and this variable): undone after
    threads = torch.get_num_threads()
    out = tmp_path / "reports" / "perf.md"
    sections, headings = HALVES[half]
    scope = scoped_registry()  # this test's 'perfcv' folder is forgotten after it (the other half writes its own)
    scope.__enter__()
    try:
        text = run_perf(
            data=str(tiny_csv),
            repeats=1,
            epochs=2,
            out=str(out),
            sections=sections,
            tune_trials=2,
            max_pairs=700,
            compare_pairs=300,
            suite="perfcv",
            tuned_fold=("perfcv-untrained", "perfcv-tuned", "perfcv-global"),
            tuned_fold_folds=2,
            cores=1,  # one thread: beside other tests on a small machine, two would oversubscribe the cores
        )
    finally:
        torch.set_num_threads(threads)
        scope.__exit__(None, None, None)
    assert out.read_text() == text
    for heading in (*headings, "## Targets"):
        assert heading in text
    if half == "evaluation":
        assert "identical ranks in this run: True" in text
        assert "| 2 | 0 | 0.000 |" in text  # the second preparation encodes nothing
        assert (out.parent / "perf_scaling.png").stat().st_size > 1000
    else:
        assert "| 2/2 |" in text  # both Tune trials finished
        assert "| 2 | 4 | 0 |" in text  # tuned fold: 2 configurations per fold, 2 x 2 folds, none stopped early


def test_perf_refuses_unknown_sections(tmp_path):
    with pytest.raises(UnknownNameError, match="evaluaton"):
        run_perf(sections=("evaluaton",), out=str(tmp_path / "perf.md"))
