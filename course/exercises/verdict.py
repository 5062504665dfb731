"""A verdict is data: the exercise, an overall status and the result of each rule.

It renders as a box in a notebook (icon and word first, so it reads without
colour) and carries a JSON copy in its own MIME type, which the instructors'
grader reads back from executed notebooks.

Message strings mark code with backticks: ``"use `exists()`"``. Rendering turns
them into ``<code>`` in HTML (:func:`rich`) and drops them in plain text
(:func:`plain`), so neither shows a literal backtick. The headline is the
diagnosis (the first failed rule's message); the details list each other
distinct problem once.

A rule line is the rule's label, which states what was checked ("the term travels as a bound
parameter", "no lazy loads"), behind a word: "ok" when it holds, "to do" when it does not (HTML
shows icons). Neither word is a negation, so no label reads as a double negative behind it, as
"NO  no known mistake raised" did; and plain ASCII needs no symbol font in a terminal.
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


#: the words before a rule's label in plain text (HTML shows icons): a requirement met, or still to meet
PASSED_MARK, FAILED_MARK = "ok", "to do"


def rule_line(rule: str, passed: bool, note: str = "") -> str:
    """One rule as a plain-text line: its word, its label, and what went wrong (if anything new)."""
    mark = PASSED_MARK if passed else FAILED_MARK
    return f"{mark:<{len(FAILED_MARK)}} {plain(rule)}{': ' + plain(note) if note else ''}"


def _without_group(rule: str, message: str) -> str:
    """A requirement's message without the requirement's name in front when the rule's label already
    carries it ("first page · the items" need not say "first page: " again)."""
    group, sep, _ = rule.partition(" · ")
    if sep and message.startswith(f"{group}: "):
        return message[len(group) + 2:]
    return message


def _segments(message: str) -> list[str]:
    """A message cut into sentences (after each ". " and "? " outside backtick-marked code), punctuation
    kept. Only whole sentences: a clause cut at ":" or ";" can change meaning without its other half."""
    out, start, code = [], 0, False
    for i, char in enumerate(message):
        if char == "`":
            code = not code
        elif not code and char in ".?" and message[i + 1 : i + 2] == " ":
            out.append(message[start : i + 1])
            start = i + 2
    out.append(message[start:])
    return [part for part in out if part.strip()]


def _said_key(segment: str) -> str:
    """How a segment compares with what was said: plain, lower case, numbers masked (the same sentence
    about page 2 instead of page 1 is the same sentence)."""
    text = plain(segment).strip()
    parts = text.split(": ")
    while len(parts) > 1 and len(parts[0]) < 40:  # "first page: 2 posts on a page of 5: " is where, not what
        parts.pop(0)
    return re.sub(r"\d+", "#", ": ".join(parts).rstrip(".:;?").lower())


def unsaid(message: str, said: list[str]) -> str:
    """``message`` without the sentences and clauses ``said`` already holds (numbers aside): "" when
    nothing new is left; when only part is new, that part, marked "(the rest as above)"."""
    known = {_said_key(part) for earlier in said for part in _segments(earlier)}
    parts = _segments(message)
    new = [part for part in parts if _said_key(part) not in known]
    if len(new) == len(parts):
        return message
    if not new:
        return ""
    return " ".join(new).rstrip(" .:;") + " (the rest as above)"


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
        passed, or when its problem is the headline's or an earlier rule's. A note does not repeat the
        requirement its rule's label names, nor a sentence said above (the same diagnosis for page 2)."""
        shown = distinct([self.message]) if self.message else []
        out = []
        for r in self.rules:
            note = ""
            if not r.passed and r.message and distinct([*shown, r.message]) != shown:
                note = unsaid(_without_group(r.rule, r.message), shown)
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
                lines.append(f"  {rule_line(r.rule, r.passed, note)}")
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
