"""Friendly errors: one clear message that says what to do, never a deep traceback."""

from __future__ import annotations


class CourseError(Exception):
    """An error the learner can fix; its message says how.

    In Jupyter, IPython calls ``_render_traceback_`` instead of printing the
    traceback, so the learner sees only the explanation, not twenty frames of
    driver internals.
    """

    title = "The course could not do that"

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        self.message = message
        self.hint = hint
        super().__init__(message if hint is None else f"{message}\n\nWhat to do: {hint}")

    def _render_traceback_(self) -> list[str]:
        lines = [f"\N{WARNING SIGN}  {type(self).__name__}: {self.title}", ""]
        lines += self.message.splitlines()
        if self.hint:
            lines += ["", "What to do:"] + ["  " + line for line in self.hint.splitlines()]
        return lines


class ConfigurationError(CourseError):
    """``COURSE_DATABASE_URL`` (or another setting) is not usable as written."""

    title = "the database setting is not usable"


class DatabaseUnavailable(CourseError):
    """The configured database could not be reached or refused us."""

    title = "the database could not be reached"


class AnswerKindError(CourseError):
    """An exercise was given the wrong kind of answer."""

    title = "that is not the kind of answer this exercise takes"
