"""Layer 7: what is benchmarked. Tasks (dataset, split, protocol, retrieval, metric), systems (a search space
and a budget) and suites, read from the YAML in tasks/ and validated.
"""

from benchmark.tasks.specs import (
    METRICS,
    SUITES,
    SYSTEMS,
    TASKS,
    SuiteSpec,
    SystemSpec,
    TaskSpec,
    get_suite,
    get_system,
    get_task,
    register_task,
)

__all__ = [
    "METRICS",
    "SUITES",
    "SYSTEMS",
    "TASKS",
    "SuiteSpec",
    "SystemSpec",
    "TaskSpec",
    "get_suite",
    "get_system",
    "get_task",
    "register_task",
]
