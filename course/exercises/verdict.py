"""A verdict is data: the exercise, an overall status and the result of each rule.

It renders as a box in a notebook (icon and word first, so it reads without
colour) and carries a JSON copy in its own MIME type, which the instructors'
grader reads back from executed notebooks.

Message strings mark code with backticks: ``"use `exists()`"``. Rendering turns
them into ``<code>`` in HTML (:func:`rich`) and drops them in plain text
(:func:`plain`), so neither shows a literal backtick. The headline is the
diagnosis (the first failed rule's message); the details list each other
distinct problem once.
"""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass, field
from typing import Any

from ..display import box, esc, icon

CORRECT, INCORRECT, NOT_ATTEMPTED, ERROR = "correct", "incorrect", "not attempted", "error"
MIME = "application/vnd.course.verdict+json"

_HEADLINE = {
    CORRECT: ("ok", "Correct"),
    INCORRECT: ("bad", "Not yet"),
    NOT_ATTEMPTED: ("todo", "Not attempted yet"),
    # an error is usually the learner's (the message says which, and when it is the checker's)
    ERROR: ("bad", "Not yet"),
}

_CODE = re.compile(r"`([^`\n]+)`")


def plain(text: Any) -> str:
    """A message as plain text: backtick-marked code loses its backticks (and so does a stray one)."""
    return _CODE.sub(r"\1", str(text)).replace("`", "")


def rich(text: Any) -> str:
    """A message as HTML: escaped, backtick-marked code as ``<code>``, no backtick left on screen."""
    return _CODE.sub(r"<code>\1</code>", esc(text)).replace("`", "")


def _tail(message: str) -> str:
    """A message without its "where" prefix ("called with page=2: ", "feed: "), to spot repeats."""
    head, sep, rest = message.partition(": ")
    return rest if sep and len(head) < 40 and rest else message


def distinct(messages: list[str]) -> list[str]:
    """Each problem once, in order: a message an earlier one already says (bar its "where"
    prefix, or as part of a longer message) is dropped."""
    seen: list[str] = []
    out = []
    for m in messages:
        key = plain(_tail(m)).strip().rstrip(".").lower()
        if m and not any(key in earlier for earlier in seen):
            seen.append(key)
            out.append(m)
    return out


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

    def details(self) -> list[tuple[RuleResult, str]]:
        """Each rule with the message to show beside it: a failed rule's problem, once; "" when
        passed, or when its problem is the headline's or an earlier rule's."""
        shown = distinct([self.message]) if self.message else []
        out = []
        for r in self.rules:
            note = ""
            if not r.passed and r.message and distinct([*shown, r.message]) != shown:
                note = r.message
                shown.append(r.message)
            out.append((r, note))
        return out

    def __str__(self) -> str:
        kind, word = _HEADLINE[self.status]
        lines = [f"[{word}] {plain(self.exercise)} {plain(self.title)}"]
        if self.message:
            lines.append(f"  {plain(self.message)}")
        if self.status != NOT_ATTEMPTED:
            for r, note in self.details():
                mark = "ok " if r.passed else "NO "
                lines.append(f"  {mark} {plain(r.rule)}{': ' + plain(note) if note else ''}")
        return "\n".join(lines)

    def _repr_html_(self) -> str:
        kind, word = _HEADLINE[self.status]
        items = "".join(
            f"<li>{icon('ok' if r.passed else 'bad', 12)}<b>{rich(r.rule)}</b>{': ' + rich(note) if note else ''}</li>"
            for r, note in self.details()
        )
        body = (f'<div class="course-diagnosis">{rich(self.message)}</div>' if self.message else "") + (
            f"<ul>{items}</ul>" if items and self.status != NOT_ATTEMPTED else ""
        )
        return box(kind, f"{word} · {plain(self.exercise)} {plain(self.title)}", body, css="course-verdict")

    def _repr_mimebundle_(self, include: Any = None, exclude: Any = None) -> dict[str, Any]:
        return {
            "text/plain": str(self),
            "text/html": self._repr_html_(),
            MIME: json.loads(json.dumps(self.to_dict(), default=str)),
        }
