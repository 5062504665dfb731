"""A verdict is data: the exercise, an overall status and the result of each rule.

It renders as a box in a notebook (icon and word first, so it reads without
colour) and carries a JSON copy in its own MIME type, which the instructors'
grader reads back from executed notebooks.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any

from ..display import box, esc, icon

CORRECT, INCORRECT, NOT_ATTEMPTED, ERROR = "correct", "incorrect", "not attempted", "error"
MIME = "application/vnd.course.verdict+json"

_HEADLINE = {
    CORRECT: ("ok", "Correct"),
    INCORRECT: ("bad", "Not yet"),
    NOT_ATTEMPTED: ("todo", "Not attempted yet"),
    ERROR: ("bad", "Not yet: your answer could not be checked"),
}


@dataclass
class RuleResult:
    """One thing the checker looked at: ``rule`` passed, or ``message`` says what differs."""

    rule: str
    passed: bool
    message: str = ""


@dataclass
class Verdict:
    exercise: str
    title: str
    status: str
    message: str = ""
    rules: list[RuleResult] = field(default_factory=list)

    @property
    def correct(self) -> bool:
        return self.status == CORRECT

    def failed_rules(self) -> list[RuleResult]:
        return [r for r in self.rules if not r.passed]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def __str__(self) -> str:
        kind, word = _HEADLINE[self.status]
        lines = [f"[{word}] {self.exercise} {self.title}"]
        if self.message:
            lines.append(f"  {self.message}")
        for r in self.rules:
            mark = "ok " if r.passed else "NO "
            lines.append(f"  {mark} {r.rule}{': ' + r.message if r.message and not r.passed else ''}")
        return "\n".join(lines)

    def _repr_html_(self) -> str:
        kind, word = _HEADLINE[self.status]
        items = "".join(
            f"<li>{icon('ok' if r.passed else 'bad', 12)}<b>{esc(r.rule)}</b>"
            f"{': ' + esc(r.message) if r.message and not r.passed else ''}</li>"
            for r in self.rules
        )
        body = (f"<div>{esc(self.message)}</div>" if self.message else "") + (
            f"<ul>{items}</ul>" if items and self.status != NOT_ATTEMPTED else ""
        )
        return box(kind, f"{word} · {self.exercise} {self.title}", body, css="course-verdict")

    def _repr_mimebundle_(self, include: Any = None, exclude: Any = None) -> dict[str, Any]:
        return {
            "text/plain": str(self),
            "text/html": self._repr_html_(),
            MIME: json.loads(json.dumps(self.to_dict(), default=str)),
        }
