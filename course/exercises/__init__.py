"""Checked exercises, one module per lesson: ``from course.exercises import lesson02 as ex``.

Each module defines ``q1``, ``q2``, ... as :class:`Exercise` objects; in a
notebook, ``await ex.q1.check(answer)``, ``ex.q1.hint()``, ``ex.q1.solution()``.
"""

from __future__ import annotations

import importlib
import pkgutil
from types import ModuleType

from .core import DB_FN, FUNCTIONS, SESSION_FN, STATEMENT, Counterexample, Exercise, normalize, sql_reference
from .verdict import CORRECT, ERROR, INCORRECT, NOT_ATTEMPTED, RuleResult, Verdict

__all__ = [
    "CORRECT", "DB_FN", "ERROR", "FUNCTIONS", "INCORRECT", "NOT_ATTEMPTED", "SESSION_FN", "STATEMENT",
    "Counterexample", "Exercise", "RuleResult", "Verdict", "all_exercises", "lesson_modules",
    "normalize", "sql_reference",
]


def lesson_modules() -> dict[str, ModuleType]:
    """``{"00": module, "02": module, ...}`` for every lesson that has exercises."""
    out = {}
    for info in pkgutil.iter_modules(__path__):
        if info.name.startswith("lesson"):
            out[info.name.removeprefix("lesson")] = importlib.import_module(f"{__name__}.{info.name}")
    return dict(sorted(out.items()))


def exercises_of(module: ModuleType) -> list[Exercise]:
    return [v for k, v in sorted(vars(module).items()) if isinstance(v, Exercise)]


def all_exercises() -> dict[str, Exercise]:
    """Every exercise of every lesson, by id ("02.q1")."""
    return {ex.id: ex for module in lesson_modules().values() for ex in exercises_of(module)}
