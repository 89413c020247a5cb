"""How the trials of one Tune study ended: finished, failed, interrupted, cut by the time budget."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class StudyOutcome:
    """How the trials of one Tune study ended (counts that results.json, the summary, Optuna and MLflow share)."""

    finished: int = 0
    failed: int = 0
    interrupted: list[str] = field(default_factory=list)  # trial ids left running by an interrupt (resume reruns them)
    planned: int = 0
    budget_reached: bool = False  # the time budget ended the study before every planned trial started
    retried: int = 0  # attempts that failed and were tried again (a lost node, a killed worker)

    def as_dict(self) -> dict:
        return {
            "finished": self.finished,
            "failed": self.failed,
            "interrupted": len(self.interrupted),
            "planned": self.planned,
            **({"stopped_by": "time budget"} if self.budget_reached else {}),
            **({"retried": self.retried} if self.retried else {}),
        }

    def retries(self) -> str:
        """', 2 retried after a lost worker or node' when any attempt was tried again, else ''."""
        return f", {self.retried} retried after a lost worker or node" if self.retried else ""


#: ids of trials Tune reported complete (callbacks' on_trial_complete) in this process: a trial that a scheduler
#: stopped early is finished, one that Tune stopped at a Ctrl-C is not, though both end TERMINATED
COMPLETED_TRIALS: set[str] = set()


def study_outcome(grid, planned: int, time_budget_s: float | None, interrupted: bool = False) -> StudyOutcome:
    """Counts from the trials' statuses: ERROR failed; TERMINATED finished, unless the study was interrupted
    and the trial neither returned (`done`) nor was reported complete (Tune stops running trials at a Ctrl-C;
    its saved state lists them running, and a resumed study runs them again); anything else interrupted."""
    outcome = StudyOutcome(planned=planned)
    for trial in grid._experiment_analysis.trials:
        completed = (trial.last_result or {}).get("done") or trial.trial_id in COMPLETED_TRIALS
        if trial.status == "TERMINATED" and (completed or not interrupted):
            outcome.finished += 1
        elif trial.status == "ERROR":
            outcome.failed += 1
        else:
            outcome.interrupted.append(trial.trial_id)
        outcome.retried += int(getattr(trial.run_metadata, "num_failures", 0) or 0) - (trial.status == "ERROR")
    started = outcome.finished + outcome.failed + len(outcome.interrupted)
    outcome.budget_reached = bool(time_budget_s) and not interrupted and started < planned
    return outcome
