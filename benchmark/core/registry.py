"""A named registry that refuses duplicates and answers unknown names with close matches."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import Generic, TypeVar

from benchmark.core.errors import BenchmarkError, UnknownNameError

T = TypeVar("T")


class DuplicateNameError(BenchmarkError):
    """Two entries claim the same name."""


class Registry(Generic[T]):
    """Maps names to entries (factories, specs).

    `kind` is used in messages ("unknown encoder 'ecf4'. Did you mean 'ecfp4'?").
    """

    def __init__(self, kind: str):
        self.kind = kind
        self._entries: dict[str, T] = {}
        self._origins: dict[str, str] = {}

    def register(self, name: str, entry: T, *, origin: str = "benchmark") -> T:
        if not name or name != name.strip():
            raise BenchmarkError(f"{self.kind} names must be non-empty without surrounding spaces, got {name!r}")
        if name in self._entries:
            raise DuplicateNameError(
                f"{self.kind} {name!r} is registered twice: by {self._origins[name]} and by {origin}. "
                "Rename one of them (a plugin's name: uninstall or rename the plugin)."
            )
        self._entries[name] = entry
        self._origins[name] = origin
        return entry

    @contextlib.contextmanager
    def scoped(self) -> Iterator[None]:
        """Entries registered inside the block are forgotten after it (a long-lived process, such as a test session,
        that loads several folders defining the same names)."""
        entries, origins = dict(self._entries), dict(self._origins)
        try:
            yield
        finally:
            self._entries, self._origins = entries, origins

    def decorator(self, name: str) -> Callable[[T], T]:
        def wrap(entry: T) -> T:
            return self.register(name, entry)

        return wrap

    def get(self, name: str) -> T:
        try:
            return self._entries[name]
        except KeyError:
            raise UnknownNameError(self.kind, name, self._entries) from None

    def origin(self, name: str) -> str:
        self.get(name)
        return self._origins[name]

    def names(self) -> list[str]:
        return sorted(self._entries)

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def __len__(self) -> int:
        return len(self._entries)
