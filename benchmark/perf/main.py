"""`python -m benchmark perf`: measured speed, written to reports/perf.md (+ a scaling plot).

Every figure is measured by this command, in this run: medians over repeats, and each speed-up
against the straightforward implementation it replaces, timed in the same run (repeats of the
two are interleaved, so that drifts of a shared machine hit both). Sections:

- trial: one 100-epoch bridge trial, reference (dense head, autograd loss, AdamW for-loop) vs fast;
- tune: 16 trials through Ray Tune vs the same trial body run bare, one after another;
- cache: a second preparation of the same embeddings encodes nothing;
- encoding: texts/s of the transformers text path, length-sorted vs input-order batches;
- evaluation: both retrieval directions, two reference passes vs one blocked pass; 100k x 100k
  in a fresh process for its peak memory;
- bootstrap: 1,000 resamples over 100k queries, multinomial matrix vs multiplicity chunks;
- scaling: trial and evaluation time at 1k / 10k / 100k synthetic pairs (table + log-log plot);
- suite: a whole `run` of a suite (default: the default 5 x 5 repeated-CV suite) against its bare
  compute (seconds inside trials and fits, spread over the workers): the orchestration overhead.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import torch

from benchmark.core.device import pin_threads
from benchmark.core.errors import UnknownNameError
from benchmark.perf.common import Report, _chembl_setup, _machine
from benchmark.perf.encoding import section_cache, section_encoding
from benchmark.perf.evaluation import section_bootstrap, section_evaluation
from benchmark.perf.suite import section_cluster, section_suite, section_tuned_fold
from benchmark.perf.training import section_graph, section_scaling, section_trial
from benchmark.perf.tune import section_tune

SECTIONS = (
    "trial",
    "graph",
    "tune",
    "tuned-fold",
    "cache",
    "encoding",
    "evaluation",
    "bootstrap",
    "scaling",
    "suite",
    "cluster",
)


# ------------------------------------------------------------------------------------------ run
def run_perf(
    *,
    data: str | None = None,
    repeats: int = 3,
    epochs: int = 100,
    out: str = "reports/perf.md",
    sections: tuple[str, ...] = SECTIONS,
    tune_trials: int = 16,
    max_pairs: int = 100_000,
    compare_pairs: int = 10_000,
    device: str = "cpu",
    suite: str = "default",
    cluster_suite: str = "quick",
    tuned_fold: tuple[str, str, str] = ("untrained-heads", "tuned-linear", "random-global"),
    tuned_fold_folds: int = 5,
    cores: int | None = None,
) -> str:
    """Run the chosen sections and write the report. `tuned_fold`: (floor system, tuned system, task) of the
    tuned-fold section, read from the task folder, run on `tuned_fold_folds` folds of one repeat. `cores`: torch
    threads here and in the fresh processes, and the CPUs of the Tune section's Ray (default: the cores this
    process may use); the suite sections run `python -m benchmark run`, which sizes itself."""
    unknown = sorted(set(sections) - set(SECTIONS))
    if unknown:
        raise UnknownNameError("perf section", unknown[0], list(SECTIONS))
    out_path = Path(out)
    cores = pin_threads(cores)
    command = (
        "python -m benchmark " + " ".join(sys.argv[1:])
        if sys.argv[0].endswith(("benchmark", "__main__.py"))
        else "python -m benchmark perf"
    )
    report = Report()
    report.add(
        "# Performance",
        "",
        f"Machine: {_machine()}.",
        f"Command: `{command.strip()}`; "
        f"{time.strftime('%Y-%m-%d')}. Medians of interleaved repeats; the machine is a shared VM, so "
        "single figures drift by 10-20% between runs, ratios less.",
        "",
    )
    devices = [device] + (["cuda"] if device == "cpu" and torch.cuda.is_available() else [])
    setup = _chembl_setup(data) if {"trial", "graph", "tune"} & set(sections) else None
    if "trial" in sections:
        for dev in devices:
            section_trial(report, setup, repeats=repeats, epochs=epochs, device=dev)
    if "graph" in sections:
        section_graph(report, setup, repeats=repeats, epochs=epochs, device=device)
    if "tune" in sections:
        section_tune(report, setup, n_trials=tune_trials, epochs=epochs, eval_every=10, cores=cores)
    if "tuned-fold" in sections:
        floor, system, task = tuned_fold
        section_tuned_fold(report, system=system, task=task, floor=floor, data=data, folds=tuned_fold_folds)
    if "cache" in sections:
        section_cache(report, data)
    if "encoding" in sections:
        section_encoding(report, data, repeats=max(1, min(repeats, 2)))
    if "evaluation" in sections:
        section_evaluation(
            report, repeats=repeats, compare_n=min(compare_pairs, max_pairs), big_n=max_pairs, devices=devices
        )
    if "bootstrap" in sections:
        section_bootstrap(report, repeats=repeats, n=max_pairs)
    if "scaling" in sections:
        sizes = [n for n in (1_000, 10_000, 100_000) if n <= max_pairs] or [max_pairs]
        for dev in devices:
            section_scaling(report, sizes=sizes, epochs=epochs, device=dev, out_dir=out_path.parent)
    if "suite" in sections:
        section_suite(report, suite=suite, data=data, minutes=30)
    if "cluster" in sections:
        section_cluster(report, suite=cluster_suite, data=data)
    if not torch.cuda.is_available():
        report.add(
            "## GPU",
            "",
            "No GPU on this machine: no GPU figures. On a machine with CUDA the same command "
            "adds GPU rows (trial, 100k evaluation, scaling); Tune trials run on the GPU Ray assigns.",
            "",
        )
    if report.verdicts:
        report.add("## Targets", "", *report.verdicts, "")
    text = "\n".join(report.lines)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    out_path.write_text(text)
    return text
