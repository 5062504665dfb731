"""Correct answers of another form, which a checker must accept.

An exercise lists them as ``exercise.alternatives`` (a relationship join where the reference
writes the ON clause, a dict where it uses a set, ...); ``tests/test_exercises.py`` proves that
each one is judged correct, on both backends.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple


class Alternative(NamedTuple):
    """A correct answer written differently from the reference (tested in CI)."""

    label: str
    answer: Callable[..., Any]
