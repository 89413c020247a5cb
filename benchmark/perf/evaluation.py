"""Perf sections for evaluation: ranking both directions, bootstrap resampling."""

from __future__ import annotations

import multiprocessing
import time
from collections.abc import Callable

import numpy as np
import torch

from benchmark.evaluation.bootstrap import resample_statistics
from benchmark.evaluation.metrics import (
    per_query_values,
    positive_matrix,
    rank_both_directions,
    rank_of_best_positive,
    summarize,
)
from benchmark.perf.common import Report, _fmt, _median, interleaved, peak_rss_mb


# ----------------------------------------------------------------------------------- evaluation
def synthetic_embeddings(n: int, d: int = 256, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Unit text and molecule vectors where pair i is related (noisy copies): ranks are not trivial."""
    g = torch.Generator().manual_seed(seed)
    texts = torch.nn.functional.normalize(torch.randn(n, d, generator=g), dim=1)
    mols = torch.nn.functional.normalize(texts + 0.8 * torch.randn(n, d, generator=g), dim=1)
    return texts, mols


def reference_ranks(texts: torch.Tensor, mols: torch.Tensor, pairs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    n_t, n_m = len(texts), len(mols)
    return (
        rank_of_best_positive(texts, mols, positive_matrix(pairs, pairs, n_t, n_m)),
        rank_of_best_positive(mols, texts, positive_matrix(pairs, pairs, n_m, n_t)),
    )


def _evaluation_child(n: int, device: str, threads: int, queue) -> None:
    torch.set_num_threads(threads)
    texts, mols = synthetic_embeddings(n)
    texts, mols = texts.to(device), mols.to(device)
    before = peak_rss_mb()
    if device.startswith("cuda"):
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    started = time.perf_counter()
    text_ranks, _ = rank_both_directions(texts, mols, np.arange(n), np.arange(n))
    seconds = time.perf_counter() - started
    peak = peak_rss_mb()
    gpu_peak = torch.cuda.max_memory_allocated() / 2**20 if device.startswith("cuda") else None
    queue.put((seconds, before, peak, gpu_peak, float((text_ranks <= 1).mean())))


def evaluation_in_fresh_process(n: int, device: str = "cpu") -> tuple[float, float, float, float | None, float]:
    """(seconds, peak RSS MB before ranking, peak RSS MB of the process, peak GPU MB, recall@1), with this
    process's torch threads."""
    context = multiprocessing.get_context("spawn")
    queue = context.Queue()
    process = context.Process(target=_evaluation_child, args=(n, device, torch.get_num_threads(), queue))
    process.start()
    while True:
        try:
            result = queue.get(timeout=1.0)
            break
        except Exception:  # queue.Empty: is the child still there?
            if not process.is_alive():
                raise RuntimeError(f"the evaluation process for n = {n} died (exit code {process.exitcode})") from None
    process.join()
    return result


def section_evaluation(report: Report, *, repeats: int, compare_n: int, big_n: int, devices: list[str]) -> None:
    texts, mols = synthetic_embeddings(compare_n)
    pairs = np.arange(compare_n)
    check = [None, None]

    def reference() -> float:
        started = time.perf_counter()
        check[0] = reference_ranks(texts, mols, pairs)
        return time.perf_counter() - started

    def one_pass() -> float:
        started = time.perf_counter()
        check[1] = rank_both_directions(texts, mols, pairs, pairs)
        return time.perf_counter() - started

    times = interleaved({"reference": reference, "one pass": one_pass}, repeats)
    same = all(np.array_equal(a, b) for a, b in zip(check[0], check[1], strict=True))
    report.add(
        "## Evaluation: ranking both directions",
        "",
        f"Synthetic unit vectors, d = 256, one positive per query; every query ranked against the whole "
        f"gallery in both directions (mid-ranks). {repeats} interleaved repeats at n = {compare_n:,}.",
        "",
        "| implementation | median s | min s | max s |",
        "|---|---|---|---|",
        f"| reference: per direction, 4,096-query chunks x whole gallery, dense positive masks | "
        f"{_fmt(times['reference'])} |",
        f"| one pass: 1,024 x 2,048 blocks of S = T M^T, both directions, float-buffer counting | "
        f"{_fmt(times['one pass'])} |",
        "",
        f"Speed-up at {compare_n:,}: **{_median(times['reference']) / _median(times['one pass']):.2f}x**; "
        f"identical ranks in this run: {same}.",
        "",
    )
    for device in devices:
        seconds, before, peak, gpu_peak, recall = evaluation_in_fresh_process(big_n, device)
        gpu = f", peak GPU memory {gpu_peak:.0f} MB" if gpu_peak is not None else ""
        report.add(
            f"{big_n:,} x {big_n:,} on {device} in a fresh process: **{seconds:.1f} s**; peak resident memory "
            f"{peak:.0f} MB for the whole process ({before:.0f} MB before ranking: Python, torch and the two "
            f"embedding matrices){gpu}; recall@1 {recall:.4f}.",
            "",
        )
        if device == "cpu" and big_n >= 100_000:
            report.target(f"100k x 100k both directions <= 90 s (measured {seconds:.1f} s)", seconds <= 90)
            report.target(f"peak memory <= 2 GB (measured {peak:.0f} MB)", peak <= 2048)


# ------------------------------------------------------------------------------------ bootstrap
def multinomial_means(values: np.ndarray, n_boot: int, seed: int) -> np.ndarray:
    """The straightforward bootstrap this package used before: one (n_boot x n) multinomial matrix."""
    rng = np.random.default_rng(seed)
    n = len(values)
    counts = rng.multinomial(n, np.full(n, 1.0 / n), size=n_boot)
    return counts @ values / n


def section_bootstrap(report: Report, *, repeats: int, n: int) -> None:
    ranks = np.random.default_rng(0).integers(1, 2000, n) / 2.0
    hits = (ranks <= 10).astype(np.float64)

    def timed(fn) -> Callable[[], float]:
        def run() -> float:
            started = time.perf_counter()
            fn()
            return time.perf_counter() - started

        return run

    times = interleaved(
        {
            "multinomial": timed(lambda: multinomial_means(hits, 1000, 0)),
            "chunks": timed(lambda: resample_statistics({"hit": hits}, n_boot=1000, seed=0)),
            "all": timed(lambda: summarize(per_query_values(ranks, False), None, n_boot=1000, seed=0)),
        },
        repeats,
    )
    report.add(
        "## Bootstrap",
        "",
        f"1,000 resamples over {n:,} per-query values, {repeats} interleaved repeats.",
        "",
        "| implementation | median s | min s | max s |",
        "|---|---|---|---|",
        f"| reference: (1000 x n) multinomial matrix @ values (one metric) | {_fmt(times['multinomial'])} |",
        f"| multiplicity chunks (one metric) | {_fmt(times['chunks'])} |",
        f"| multiplicity chunks, every metric of a run (recall@1/5/10, MRR, mean rank, median rank) | "
        f"{_fmt(times['all'])} |",
        "",
        f"Speed-up (one metric): **{_median(times['multinomial']) / _median(times['chunks']):.2f}x**.",
        "",
    )
    report.target(
        f"1,000 resamples over {n:,} queries <= 2 s (measured {_median(times['chunks']):.2f} s for one metric, "
        f"{_median(times['all']):.2f} s for all)",
        _median(times["chunks"]) <= 2.0,
    )
