"""Helpers for the hands-on async SQLAlchemy 2.x course.

The public API is small:

- ``db = await course.start("06")``: a fresh, seeded database for this notebook.
- ``with course.sql() as log:``: capture (and, in a notebook, show) every SQL
  statement the block emits.
- ``course.frame(result)``: a pandas DataFrame of a result or list of rows.
- ``with course.expect(SomeError):``: show a failure on purpose, as an explained box.
- ``course.progress()``: which exercises you have done, and the next one (``"06"``: one lesson).
- ``course.versions()``: what is running (Python, SQLAlchemy, drivers).

Heavy libraries (pandas, matplotlib, ipywidgets) load only when used.
"""

from __future__ import annotations

from .database import CourseDB, current, start
from .errors import AnswerKindError, ConfigurationError, CourseError, DatabaseUnavailable
from .expect import ExpectationFailed, expect
from .frames import frame
from .recorder import SqlLog, Statement
from .recorder import record as sql

__version__ = "0.1.0"

__all__ = [
    "AnswerKindError",
    "ConfigurationError",
    "CourseDB",
    "CourseError",
    "DatabaseUnavailable",
    "ExpectationFailed",
    "SqlLog",
    "Statement",
    "current",
    "expect",
    "frame",
    "progress",
    "sql",
    "start",
    "versions",
]


def progress(lesson: str | None = None):
    """Your progress: every exercise (correct, not yet, not attempted), the next one to do and a
    chart; ``course.progress("06")`` shows one lesson. Read from the record ``check()`` keeps."""
    from .exercises.progress import overview  # the one upward import (tests/test_layout.py)

    return overview(lesson)


def versions() -> dict[str, str]:
    """Versions of what the course runs on, for lesson 00 and bug reports."""
    import platform
    from importlib.metadata import PackageNotFoundError, version

    out = {"python": platform.python_version()}
    for dist in ("sqlalchemy", "greenlet", "aiosqlite", "asyncpg"):
        try:
            out[dist] = version(dist)
        except PackageNotFoundError:
            out[dist] = "not installed"
    return out
