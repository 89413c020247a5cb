"""The console summary of a finished (or interrupted) run, read from its results."""

from __future__ import annotations

from benchmark.run.result_schema import RunResults


def format_summary(results: RunResults) -> str:
    lines = [f"{'task':<26}{'primary metric':<34}{'mean':>7}  {'95% CI':<17}{'n':>8}  chosen configuration", "-" * 120]
    for name, entry in results["tasks"].items():
        if "systems" in entry:
            lines += _cv_summary_lines(name, entry)
            continue
        if "final" not in entry:
            lines.append(f"{name:<26}(no final: {entry.get('error', 'interrupted')}; {_trial_counts(entry['trials'])})")
            continue
        key = entry["primary_metric"]
        mode, metric = key.split("/")
        value = entry["final"]["metrics"][mode][metric]
        n = f"{value['n']}" + (f"/{value['n_groups']}g" if "n_groups" in value else "")
        leak = " LEAKY" if entry["leaky"] else ""
        lines.append(
            f"{name + leak:<26}{key:<34}{value['value']:>7.3f}  [{value['ci_low']:.3f}, {value['ci_high']:.3f}]"
            f"{n:>9}  {entry['chosen']['short']}"
        )
        trials = entry["trials"]
        if trials.get("planned") and (trials["finished"] < trials["planned"] or trials.get("retried")):
            lines.append(f"{'':<26}({_trial_counts(trials)})")
    cut = _inputs_cut(results)
    if cut:
        lines.append(f"inputs longer than their encoder reads (cut): {cut}")
    return "\n".join(lines)


def _inputs_cut(results: RunResults) -> str:
    """'minilm 0 of 2,440; chemnet 13 of 1,879' over the run's tasks (the first count seen per encoder)."""
    seen: dict[str, dict[str, int]] = {}
    for entry in results["tasks"].values():
        found = dict(entry.get("dataset", {}).get("cut_by_encoder", {}))
        for encoder in entry.get("final", {}).get("encoders", {}).values():  # a holdout task's final encoders
            if encoder.get("truncated") is not None:
                found[encoder["name"]] = {"cut": encoder["truncated"]}
        for name, count in found.items():
            seen.setdefault(name, count)
    return "; ".join(
        f"{name} {c['cut']:,}" + (f" of {c['of']:,}" if c.get("of") else "") for name, c in sorted(seen.items())
    )


def _trial_counts(trials: dict) -> str:
    """'2 of 4 trials finished, 0 failed, 1 interrupted; stopped by the time budget' (results.json's counts)."""
    text = (
        f"{trials['finished']} of {trials.get('planned', '?')} trials finished, {trials['failed']} failed, "
        f"{trials.get('interrupted', 0)} interrupted"
    )
    text += f", {trials['retried']} retried after a lost worker or node" if trials.get("retried") else ""
    return text + ("; stopped by the time budget" if trials.get("stopped_by") else "")


def _cv_summary_lines(name: str, entry: dict) -> list[str]:
    key = entry["primary_metric"]
    comparison = entry["comparison"].get(key)
    letters = comparison["letters"] if comparison else {}
    order = [s["system"] for s in comparison["systems"]] if comparison else list(entry["systems"])
    p = entry["protocol"]
    lines = [
        f"{name:<26}{key:<34}repeated CV {p['folds']}x{p['repeats']}; "
        + (f"{comparison['test']} ({comparison['reason']})" if comparison else "no comparison")
    ]
    for system in order:
        summary = entry["systems"][system]["summary"][key]
        lines.append(
            f"  {system:<24}{'':<34}{summary['mean']:>7.3f}  [{summary['ci_low']:.3f}, {summary['ci_high']:.3f}]"
            f"{summary['n_folds']:>6} folds  group {letters.get(system, '-')}"
        )
    return lines
