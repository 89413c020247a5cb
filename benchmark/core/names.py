"""Names that several modules share: MLflow tags, stages and metric keys, defined once.

The runner writes them, the tracking layer searches by them and the report reads them back;
each module imports them from here instead of re-spelling a string.
"""

from __future__ import annotations

# --- MLflow tags -------------------------------------------------------------------------
TAG_RUN_UID = "run_uid"
TAG_STAGE = "stage"
TAG_TASK = "task"
TAG_SYSTEM = "system"
TAG_FOLD = "fold"
#: a fit run: the digest of what made it (system, space, budget, seed): equal digests on equal folds are reusable
TAG_SYSTEM_DIGEST = "system_digest"
#: a fit run read back from another run of the same store instead of refitted: that run's id
TAG_REUSED_FROM = "reused_from"
TAG_REPEAT = "repeat"
TAG_TRIAL_ID = "trial_id"
TAG_STATUS = "status"
TAG_PRIMARY = "primary_metric"
TAG_SPLIT = "split"  # a task's split (random, scaffold, ...): with TAG_RETRIEVAL it names the task in few letters
TAG_RETRIEVAL = "retrieval"  # global or grouped
TAG_PROTOCOL = "protocol"
TAG_TEXT_FIELD = "text_field"
TAG_LEAKY = "leaky"
TAG_SPLIT_CHECKSUM = "split_checksum"
TAG_FOLDS_CHECKSUM = "folds_checksum"
TAG_ENCODERS = "encoders"
TAG_CHOSEN_CONFIG = "chosen_config"
TAG_FINAL_SEEDS = "final_seeds"
TAG_NOTE = "mlflow.note.content"  # a run's (or experiment's) description in the MLflow UI
#: why a task's grouped metrics carry no interval (too few groups for a cluster bootstrap)
TAG_INTERVAL_NOTE = "interval_note"
TAG_NODE_ID = "ray.node_id"  # the Ray node a trial or fit ran on
TAG_HOST = "ray.host"  # that node's host name
TAG_NODE_IP = "ray.node_ip"
TAG_STOPPED_EARLY = "stopped_early"  # a trial that successive halving stopped at a rung (never selected)
TAG_SUPERSEDED = "superseded"  # a trial a kill lost from Ray Tune's saved state: the resumed search replaced it
TAG_ATTEMPTS = "attempts"  # 2 or more: retried after a lost node or a killed worker
OPTUNA_TUNE_TRIAL = "tune_trial_id"  # user attribute of an Optuna trial: the Ray Tune trial it configured
OPTUNA_INTERRUPTED = "interrupted"  # user attribute of an Optuna trial a stop failed (a resume trains it again)
OPTUNA_RERUN_OF = "rerun_of"  # user attribute: the number of the interrupted trial whose rerun this one records
#: keys of cluster.where_am_i() -> their MLflow tags
LOCATION_TAGS = {"node_id": TAG_NODE_ID, "host": TAG_HOST, "node_ip": TAG_NODE_IP}

# --- values of TAG_STAGE -----------------------------------------------------------------
STAGE_TASK = "task"  # one parent run per task
STAGE_TRIAL = "trial"  # a tuning trial (validation metrics only)
STAGE_FINAL = "final"  # holdout: a final seed evaluated once on test
STAGE_SYSTEM = "system"  # repeated CV: one system's across-fold summary
STAGE_FIT = "fit"  # repeated CV: one system fitted on one fold, tested once

# --- protocols ---------------------------------------------------------------------------
HOLDOUT = "holdout"
REPEATED_CV = "repeated_cv"

# --- metric keys -------------------------------------------------------------------------
TEST_PREFIX = "test"
BASELINE_PREFIX = "baseline.test"
CV_PREFIX = "cv"
CV_SUFFIXES = ("mean", "ci_low", "ci_high", "n_folds")

# --- what the saved MLflow views show (tracking/views.py) --------------------------------
# The same short, rounded columns on every row a view lists: the primary metric (named by the row's
# TAG_PRIMARY tag), its 95% CI and n. The UI orders metric columns by name, so these names read
# "mean | mean_lo95 | mean_up95 | n" left to right. The full-precision values stay under test.* and cv.*.
DISPLAY_VALUE = "mean"
DISPLAY_LOW = "mean_lo95"
DISPLAY_HIGH = "mean_up95"
DISPLAY_N = "n"
DISPLAY_DIGITS = 3
TAG_GROUP = "group"  # repeated CV: the system's letter (systems sharing one do not differ significantly)
TAG_BEST = "best"  # a task parent: the system (or chosen configuration) whose values it displays
TAG_RANKING = "ranking"  # a task parent: every system, best first, with its mean and letter
TAG_TASK_RUN = "task_run_id"  # repeated CV: a system run's task parent (system runs are top level in the UI)

# --- artifacts ---------------------------------------------------------------------------
COMPARISON_ARTIFACT = "comparison.json"


def metric_key(*parts: str) -> str:
    """MLflow keys allow letters, digits, '_', '-', '.', ' ', '/': recall@1 -> recall_at_1."""
    return ".".join(parts).replace("@", "_at_")


def display_metrics(value: float, low: float, high: float, n: int) -> dict[str, float]:
    """The short display columns of a view row, rounded to DISPLAY_DIGITS."""
    return {
        DISPLAY_VALUE: round(float(value), DISPLAY_DIGITS),
        DISPLAY_LOW: round(float(low), DISPLAY_DIGITS),
        DISPLAY_HIGH: round(float(high), DISPLAY_DIGITS),
        DISPLAY_N: int(n),
    }


def fold_name(repeat: int, fold: int) -> str:
    """'r0f3': repeat 0, fold 3 (the tag value and the key of per-fold results)."""
    return f"r{repeat}f{fold}"


def parse_fold_name(name: str) -> tuple[int, int]:
    """'r0f3' -> (0, 3)."""
    repeat, fold = name[1:].split("f")
    return int(repeat), int(fold)
