"""Where the suite's YAML (tasks/, search_spaces/) is read from.

The folders at the repository's top level are the source users edit; a wheel or `pip install .`
ships copies inside the package (`benchmark/bundled/tasks`, `benchmark/bundled/search_spaces`,
mapped in pyproject.toml), so an installed suite runs from any directory. An environment
variable points at another folder.
"""

from __future__ import annotations

import os
from pathlib import Path

SOURCE_ROOT = Path(__file__).resolve().parents[2]


def resource_dir(name: str, env: str) -> Path:
    """The folder `name` ("tasks" or "search_spaces"): $env, else the installed copy, else the checkout's."""
    if os.environ.get(env):
        return Path(os.environ[env])
    installed = Path(__file__).resolve().parent / name
    return installed if installed.is_dir() else SOURCE_ROOT / name
