"""MLflow tracking: one experiment per suite, a parent run per task, child runs per trial and seed.

Only the driver writes to MLflow, in batches (one `log_batch` per chunk of up to 1000 metrics),
so concurrent trials never contend for the store and nothing is serialised one metric at a
time. Child runs carry the Tune trial id as a tag and are never logged twice (resume-safe).
"""

from __future__ import annotations

import difflib
import io
import json
import logging
import os
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from filelock import FileLock

from benchmark.core.errors import BenchmarkError
from benchmark.core.io import check_sqlite_file, unwritable
from benchmark.core.names import TAG_NOTE, metric_key

log = logging.getLogger(__name__)

MAX_METRICS, MAX_PARAMS = 1000, 100
#: the experiment tag MLflow 3's UI reads to open an experiment on its runs rather than on GenAI traces
EXPERIMENT_KIND_TAG, EXPERIMENT_KIND = "mlflow.experimentKind", "custom_model_development"


def default_tracking_uri() -> str:
    return os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{Path.cwd() / 'mlflow.db'}"


def git_commit() -> str | None:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=Path(__file__).resolve().parent, capture_output=True, text=True, timeout=5
        )
        return out.stdout.strip() or None if out.returncode == 0 else None
    except (OSError, subprocess.SubprocessError):
        return None


#: tracking URI schemes the suite accepts (MLflow's database and server stores)
TRACKING_SCHEMES = ("sqlite", "http", "https", "postgresql", "mysql", "mssql")
_ACCEPTED = (
    "accepted: sqlite:///relative/path.db, sqlite:////absolute/path.db, http(s)://host:port of an MLflow "
    "server, or a postgresql:// / mysql:// / mssql:// database"
)


def check_tracking_uri(uri: str) -> str:
    """A tracking URI the suite can use, or an error naming the mistake and the accepted forms (before any store
    is touched: MLflow answers typos with a KeyError or an SQLAlchemy traceback)."""

    parsed = urlparse(uri)
    scheme = parsed.scheme.split("+")[0].lower()
    if not parsed.scheme or len(parsed.scheme) == 1:  # a plain path (or a Windows drive letter)
        hint = f"; for a database at that path use sqlite:///{Path(uri).resolve()}" if uri else ""
        raise BenchmarkError(f"tracking URI {uri!r} is a plain path, not a URI{hint} ({_ACCEPTED})")
    if scheme == "file":
        raise BenchmarkError(
            f"tracking URI {uri!r}: MLflow's file store is not supported; use a database, e.g. "
            f"sqlite:///{Path(parsed.path).with_suffix('.db')} ({_ACCEPTED})"
        )
    if scheme not in TRACKING_SCHEMES:
        close = difflib.get_close_matches(scheme, TRACKING_SCHEMES, n=1, cutoff=0.6)
        hint = f" Did you mean {close[0]!r}?" if close else ""
        raise BenchmarkError(f"tracking URI {uri!r}: unknown scheme {parsed.scheme!r}.{hint} ({_ACCEPTED})")
    if scheme == "sqlite":
        if not uri.startswith("sqlite:///") or uri == "sqlite:///":
            raise BenchmarkError(
                f"tracking URI {uri!r}: a sqlite URI has three slashes before a relative path and "
                f"four before an absolute one, e.g. sqlite:///mlflow.db ({_ACCEPTED})"
            )
        db = Path(uri[len("sqlite:///") :])
        if db.is_dir():
            raise BenchmarkError(
                f"tracking URI {uri!r} names a folder; name the database file, e.g. "
                f"{uri.rstrip('/')}/mlflow.db ({_ACCEPTED})"
            )
        problem = unwritable(db) or unwritable(Path(f"{db}.lock"))  # MLflow's lock file goes beside the store
        if problem:
            raise BenchmarkError(f"tracking URI {uri!r}: {problem}; pass a --tracking-uri in a folder you can write")
    if scheme in ("http", "https") and not parsed.hostname:
        raise BenchmarkError(f"tracking URI {uri!r} names no host ({_ACCEPTED})")
    if scheme in ("postgresql", "mysql", "mssql"):
        _check_database_driver(uri)
    return uri


def _check_database_driver(uri: str) -> None:
    """A database URI whose Python driver is not installed is named before MLflow imports it mid-run."""
    import sqlalchemy  # mlflow's database layer: imported only for a database tracking URI

    try:
        sqlalchemy.create_engine(uri)  # imports the dialect's driver; connects to nothing
    except (ImportError, ModuleNotFoundError) as exc:
        driver = {"postgresql": "psycopg2-binary", "mysql": "mysqlclient (or pymysql with mysql+pymysql://)",
                  "mssql": "pyodbc"}[urlparse(uri).scheme.split("+")[0]]  # fmt: skip
        raise BenchmarkError(
            f"tracking URI {_redacted(uri)}: the database driver is not installed ({exc}); pip install {driver}, "
            "or use another --tracking-uri"
        ) from None
    except Exception as exc:  # noqa: BLE001 - a malformed URL, in SQLAlchemy's words
        raise BenchmarkError(f"tracking URI {_redacted(uri)} is not a usable database URL: {exc}") from None


def _redacted(uri: str) -> str:
    parsed = urlparse(uri)
    return uri.replace(f":{parsed.password}@", ":***@") if parsed.password else uri


def check_reachable(uri: str, timeout: float = 5.0) -> None:
    """Fail fast, before any training, when an http(s) tracking server does not answer or a sqlite store cannot be
    read."""
    parsed = urlparse(uri)
    if parsed.scheme == "sqlite":
        check_sqlite_file(
            Path(uri[len("sqlite:///") :]),
            "the MLflow store",
            "move it aside (what it held is lost to this suite) and run again, or pass another --tracking-uri",
        )
    if parsed.scheme not in ("http", "https"):
        return
    port = parsed.port or (443 if parsed.scheme == "https" else 80)
    try:
        with socket.create_connection((parsed.hostname, port), timeout=timeout):
            pass
    except OSError as exc:
        raise BenchmarkError(
            f"MLflow tracking server {uri} is unreachable ({exc}); start it (mlflow server --host 127.0.0.1 "
            "--port 5000) or pass another --tracking-uri"
        ) from None


#: a tracking server that stops answering gets bounded retries, seconds rather than MLflow's default minutes
#: (7 retries with backoff factor 2 and a 120 s timeout: about four minutes per request); these are MLflow's
#: own variables, so a value already in the environment wins
HTTP_RETRY_DEFAULTS = {
    "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "3",
    "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
    "MLFLOW_HTTP_REQUEST_TIMEOUT": "20",
}
#: what requests and MLflow say when a server does not answer
_UNREACHABLE = ("Max retries exceeded", "Connection refused", "Failed to establish", "Connection aborted",
                "RemoteDisconnected", "Read timed out", "ConnectionError", "Connection broken",
                "IncompleteRead")  # fmt: skip


def bound_http_retries() -> None:
    for key, value in HTTP_RETRY_DEFAULTS.items():
        os.environ.setdefault(key, value)


def tracking_lost(exc: BaseException, uri: str) -> str | None:
    """When `exc` (or what caused it) says that the http(s) tracking server at `uri` stopped answering, one line
    saying so; else None."""
    if urlparse(uri).scheme not in ("http", "https"):
        return None
    seen: BaseException | None = exc
    for _ in range(10):
        if seen is None:
            return None
        text = f"{type(seen).__name__}: {seen}"
        if any(marker in text for marker in _UNREACHABLE):
            retries = os.environ.get(
                "MLFLOW_HTTP_REQUEST_MAX_RETRIES", HTTP_RETRY_DEFAULTS["MLFLOW_HTTP_REQUEST_MAX_RETRIES"]
            )
            return (
                f"the MLflow tracking server {uri} stopped answering ({type(seen).__name__}, after {retries} retries; "
                "MLFLOW_HTTP_REQUEST_MAX_RETRIES / _BACKOFF_FACTOR / _TIMEOUT set how long to wait)"
            )
        seen = seen.__cause__ or seen.__context__
    return None


def flatten_metrics(metrics: dict[str, dict], prefix: str) -> dict[str, float]:
    """{'text_to_molecule': {'recall@1': {value, ci_low, ci_high, n}}} -> flat MLflow metrics."""
    out: dict[str, float] = {}
    for mode, by_metric in metrics.items():
        for name, entry in by_metric.items():
            key = metric_key(prefix, mode, name) if prefix else metric_key(mode, name)
            if isinstance(entry, dict):
                out[key] = entry["value"]
                for extra in ("ci_low", "ci_high", "n", "n_groups"):
                    if entry.get(extra) is not None:
                        out[f"{key}_{extra}"] = entry[extra]
            else:
                out[key] = entry
    return {k: float(v) for k, v in out.items() if v is not None and v == v}


def _retry_locked(call, *, attempts: int = 8, delay: float = 0.25):
    """Another process writing the same sqlite store holds its lock for a moment: wait and retry."""
    for attempt in range(attempts):
        try:
            return call()
        except Exception as exc:
            if "database is locked" not in str(exc) or attempt == attempts - 1:
                raise
            time.sleep(delay * 2**attempt)


class Tracker:
    """A thin, picklable wrapper around MlflowClient (the client is created lazily)."""

    def __init__(
        self,
        tracking_uri: str,
        experiment: str,
        artifact_root: str | os.PathLike | None = None,
        description: str | None = None,
    ):
        self.tracking_uri = tracking_uri
        self.experiment = experiment
        self.description = description
        if artifact_root is None and urlparse(tracking_uri).scheme == "sqlite":
            # beside the database, as an absolute path: Tune changes trials' working directories
            artifact_root = Path(tracking_uri[len("sqlite:///") :]).parent / "mlartifacts"
        self.artifact_root = str(Path(artifact_root).resolve()) if artifact_root else None
        self._client = None
        self._experiment_id: str | None = None

    def __getstate__(self):
        state = dict(self.__dict__)
        state["_client"] = None
        return state

    @property
    def client(self):
        if self._client is None:
            from mlflow.tracking import MlflowClient  # mlflow: heavy, imported only when the store is read or written

            if urlparse(self.tracking_uri).scheme == "sqlite":
                # a new sqlite store is created by schema migrations when the client is built; two processes doing
                # that at once corrupt the version table, so building it is serialised with a lock beside the file

                db = Path(self.tracking_uri[len("sqlite:///") :])
                db.parent.mkdir(parents=True, exist_ok=True)
                with FileLock(str(db) + ".lock", timeout=300):
                    client = MlflowClient(tracking_uri=self.tracking_uri)
                    _retry_locked(lambda: client.search_experiments(max_results=1))
            else:
                bound_http_retries()
                client = MlflowClient(tracking_uri=self.tracking_uri)
            self._client = client
        return self._client

    @property
    def experiment_id(self) -> str:
        if self._experiment_id is None:
            found = self.client.get_experiment_by_name(self.experiment)
            if found is not None:
                self._experiment_id = found.experiment_id
            else:
                location = (
                    Path(self.artifact_root).as_uri()
                    if self.artifact_root and urlparse(self.tracking_uri).scheme in ("sqlite", "file", "")
                    else None
                )
                try:
                    self._experiment_id = self.client.create_experiment(self.experiment, artifact_location=location)
                except Exception:  # created concurrently by another process
                    self._experiment_id = self.client.get_experiment_by_name(self.experiment).experiment_id
            self._describe_experiment(found)
        return self._experiment_id

    def _describe_experiment(self, found) -> None:
        """MLflow 3 opens an experiment without a kind on its GenAI overview (traces, tokens): mark the suite's
        experiments as model development so the UI opens on their runs, and give them the suite's description."""
        tags = dict(found.tags) if found is not None else {}
        wanted = {EXPERIMENT_KIND_TAG: EXPERIMENT_KIND}
        if self.description:
            wanted[TAG_NOTE] = self.description
        for key, value in wanted.items():
            if tags.get(key) != value:
                _retry_locked(lambda k=key, v=value: self.client.set_experiment_tag(self._experiment_id, k, v))

    def _search(self, tags: dict[str, str], *, running: bool = False, max_results: int = 50000) -> list:
        """MLflow `Run`s of this experiment with these tags (only RUNNING ones with `running`)."""
        clauses = [f"tags.`{k}` = '{v}'" for k, v in tags.items()] + (
            ["attributes.status = 'RUNNING'"] if running else []
        )
        return _retry_locked(
            lambda: self.client.search_runs(
                [self.experiment_id], filter_string=" and ".join(clauses), max_results=max_results
            )
        )

    def find_run(self, **tags: str) -> str | None:
        runs = self._search(tags, max_results=1)
        return runs[0].info.run_id if runs else None

    def open_runs(self, **tags: str) -> list[str]:
        """Ids of the runs with these tags that are still RUNNING."""
        return [r.info.run_id for r in self._search(tags, running=True, max_results=5000)]

    def runs(self, **tags: str) -> list:
        """The runs with these tags (any status), as MLflow `Run`s."""
        return self._search(tags)

    def delete_open_runs(self, **tags: str) -> int:
        """Delete the runs with these tags still RUNNING: writes cut off when their process was killed (they
        are logged again whole, never twice). Returns how many."""
        ids = self.open_runs(**tags)
        for run_id in ids:
            _retry_locked(lambda r=run_id: self.client.delete_run(r))
        return len(ids)

    def start_run(self, name: str, tags: dict[str, Any], parent_id: str | None = None) -> str:
        tags = {k: str(v) for k, v in tags.items() if v is not None}
        if parent_id:
            tags["mlflow.parentRunId"] = parent_id
        run = _retry_locked(lambda: self.client.create_run(self.experiment_id, tags=tags, run_name=name))
        return run.info.run_id

    def log(
        self,
        run_id: str,
        *,
        params: dict[str, Any] | None = None,
        metrics: dict[str, float] | None = None,
        steps: dict[str, list[tuple[int, float]]] | None = None,
        tags: dict[str, Any] | None = None,
    ) -> None:
        """Everything in as few `log_batch` calls as MLflow allows."""
        from mlflow.entities import (  # mlflow: heavy, imported only when the store is read or written
            Metric,
            Param,
            RunTag,
        )

        now = int(time.time() * 1000)
        entries = [Metric(k, float(v), now, 0) for k, v in (metrics or {}).items()]
        for key, series in (steps or {}).items():
            entries += [Metric(key, float(v), now, int(s)) for s, v in series]
        param_list = [Param(k, str(v)[:6000]) for k, v in (params or {}).items()]
        tag_list = [RunTag(k, str(v)) for k, v in (tags or {}).items()]
        while param_list or tag_list:
            params_now, tags_now = param_list[:MAX_PARAMS], tag_list[:MAX_PARAMS]
            _retry_locked(lambda: self.client.log_batch(run_id, params=params_now, tags=tags_now))
            param_list, tag_list = param_list[MAX_PARAMS:], tag_list[MAX_PARAMS:]
        for start in range(0, len(entries), MAX_METRICS):
            chunk = entries[start : start + MAX_METRICS]
            _retry_locked(lambda: self.client.log_batch(run_id, metrics=chunk))

    def log_dataset(self, run_id: str, dataset, name: str, context: str = "benchmark") -> None:
        """The run's dataset as an MLflow input (the runs table's Dataset column): name, digest = the dataset
        fingerprint, source = the file it was read from, profile = its counts."""

        from mlflow.entities import (  # mlflow: heavy, imported only when the store is read or written
            Dataset,
            DatasetInput,
            InputTag,
        )

        summary = dataset.summary()
        profile = {k: summary[k] for k in ("n_pairs", "n_molecules", "n_groups", "n_input_rows", "dropped")}
        entry = Dataset(
            name=name,
            digest=dataset.fingerprint,
            source_type="local",
            source=json.dumps({"uri": str(summary["source"])}),
            profile=json.dumps(profile),
        )
        _retry_locked(
            lambda: self.client.log_inputs(run_id, [DatasetInput(entry, [InputTag("mlflow.data.context", context)])])
        )

    def end(self, run_id: str, status: str = "FINISHED") -> None:
        _retry_locked(lambda: self.client.set_terminated(run_id, status=status))

    def log_text(self, run_id: str, text: str, artifact_file: str) -> None:
        self.client.log_text(run_id, text, artifact_file)

    def log_file(self, run_id: str, path: str | os.PathLike, artifact_path: str | None = None) -> None:
        self.client.log_artifact(run_id, str(path), artifact_path)

    def log_bytes(self, run_id: str, data: bytes, name: str, artifact_path: str | None = None) -> None:
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / name
            path.write_bytes(data)
            self.log_file(run_id, path, artifact_path)


def parquet_bytes(frame) -> bytes:
    buffer = io.BytesIO()
    frame.to_parquet(buffer, index=False)
    return buffer.getvalue()
