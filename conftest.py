"""Test-suite settings shared by the unit tests and nbval over the notebooks.

- ``COURSE_STRICT=1``: an incorrect exercise verdict raises, so a notebook whose
  reference answer stopped passing fails nbval (kernels inherit the variable).
- SQLite files go to a folder private to this run.
- Tests marked ``postgresql`` or ``sqlite`` are *selected* by the active backend
  (deselected, not skipped, on the other one), so a skip always means a problem.
"""

from __future__ import annotations

import os
import tempfile

import pytest

os.environ.setdefault("COURSE_STRICT", "1")
os.environ.setdefault("MPLBACKEND", "Agg")


def pytest_configure(config: pytest.Config) -> None:
    if "COURSE_DATA_DIR" not in os.environ:
        os.environ["COURSE_DATA_DIR"] = tempfile.mkdtemp(prefix="course-test-")


def active_backend() -> str:
    return "postgresql" if os.environ.get("COURSE_DATABASE_URL") else "sqlite"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    backend = active_backend()
    other = "sqlite" if backend == "postgresql" else "postgresql"
    keep, drop = [], []
    for item in items:
        (drop if item.get_closest_marker(other) else keep).append(item)
    if drop:
        config.hook.pytest_deselected(items=drop)
        items[:] = keep
