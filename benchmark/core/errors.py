"""User-facing errors.

Every mistake a user can make (a bad file, an unknown name, an unreachable service)
raises a `BenchmarkError` whose message names the thing and says what to do. The CLI
prints these without a traceback; anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class BenchmarkError(Exception):
    """A problem with the user's input or environment, explained in the message."""


class DataError(BenchmarkError):
    """A dataset file or table cannot be used as given."""


class ConfigError(BenchmarkError):
    """A configuration value is invalid."""


class DownloadError(BenchmarkError):
    """A remote service could not be reached or answered badly."""


class EncoderError(BenchmarkError):
    """An encoder failed or returned something unusable."""


class WriteFailed(BenchmarkError, OSError):
    """A file could not be written (a full disk, a vanished folder): the message names it and the free space.
    Also an OSError, so best-effort writers (the embedding cache) can pass it over."""


class UnknownNameError(BenchmarkError, KeyError):
    """A name that is not registered; the message offers the closest matches."""

    def __init__(self, kind: str, name: str, known: Iterable[str]):
        known = sorted(known)
        close = difflib.get_close_matches(name, known, n=3, cutoff=0.5)
        hint = f" Did you mean {', '.join(repr(c) for c in close)}?" if close else ""
        message = f"unknown {kind} {name!r}.{hint} Known {kind}s: {', '.join(known)}."
        super().__init__(message)
        self.kind, self.name, self.close_matches = kind, name, close

    def __str__(self) -> str:  # KeyError would quote the message
        return self.args[0]


class TrackingLost(BenchmarkError):
    """The MLflow tracking server stopped answering mid-run (after bounded retries); the run's state is saved."""
