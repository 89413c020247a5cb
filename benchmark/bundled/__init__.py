"""Where the suite's YAML (tasks/, search_spaces/) is read from.

The folders at the repository's top level are the source users edit; a wheel or `pip install .`
ships copies inside the package (`benchmark/bundled/tasks`, `benchmark/bundled/search_spaces`,
mapped in pyproject.toml), so an installed suite runs from any directory. A user's folders (an
environment variable, or a flag that sets it) add to the bundled one: their names join the bundled
names, and a name defined in two places is an error naming both files.
"""

from __future__ import annotations

import os
from pathlib import Path

SOURCE_ROOT = Path(__file__).resolve().parents[2]


def bundled_dir(name: str) -> Path:
    """The bundled folder `name` ("tasks" or "search_spaces"): the installed copy, else the checkout's."""
    installed = Path(__file__).resolve().parent / name
    return installed if installed.is_dir() else SOURCE_ROOT / name


def user_dirs(env: str) -> list[Path]:
    """The user's folders in $env (several separated by the path separator, ':' on POSIX), in order."""
    return [Path(part).expanduser() for part in os.environ.get(env, "").split(os.pathsep) if part.strip()]


def resource_dirs(name: str, env: str) -> list[Path]:
    """The bundled folder, then the user's: where `name`'s YAML is read from."""
    return [bundled_dir(name), *user_dirs(env)]
