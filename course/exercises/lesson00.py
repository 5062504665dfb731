"""Lesson 00 warm-up: your first checked query.

Misconceptions catalogued (one counterexample each): whole ``User`` objects where two columns
were asked; another country's value (the filter never asks for "NL"); "nl" in lower case (string
comparison is case-sensitive); the order reversed; no ORDER BY (right order by chance); the value
pasted into SQL text. ``ALTERNATIVES`` lists correct
answers of another form, which the tests require accepted.
"""

from __future__ import annotations

from sqlalchemy import func, select, text

from ..schema import User
from .core import STATEMENT, Counterexample, Exercise, sql_reference
from .rules import Attempt, BoundParameters, Columns, LetterCase, Probe, SameResult, StatementBudget
from .userfacts import COUNTRY_CODES, order_by_keys
from .verdict import RuleResult


def _asks_for_nl(attempt: Attempt) -> str | None:
    """A filter that never mentions "NL" (bound or pasted) asked about another country."""
    statements = list(attempt.log.queries)
    if not statements or attempt.value == attempt.expected:
        return None
    for s in statements:
        params = s.params
        values = list(params.values()) if isinstance(params, dict) else list(params or ())
        if "NL" in values or "'NL'" in s.sql:
            return None
        if any(isinstance(v, str) and v.lower() == "nl" for v in values) or "'nl'" in s.sql.lower():
            return None  # "nl", "Nl": LetterCase names it
    return (
        "your filter never asks for \"NL\": compare the country with the Netherlands' code, "
        "User.country == \"NL\""
    )


def _q1_sorted_by(attempt: Attempt) -> str | None:
    """Right rows sorted by something else: name the order asked for, and the learner's."""
    if attempt.extra.get("top_level_order_by") is False:
        return "your statement has no ORDER BY, so no order is promised: add .order_by(User.id)"
    got, want = attempt.value, attempt.expected
    if not (isinstance(got, list) and isinstance(want, list)) or got == want or sorted(map(repr, got)) != sorted(
        map(repr, want)
    ):
        return None
    reads = [s.sql for s in attempt.log.queries]
    keys = order_by_keys(reads[0]) if reads else []
    if not keys:
        return None  # SameResult says: no ORDER BY
    return (
        f"your rows are sorted by {', '.join(keys)}; the task asks for them by id, smallest first: "
        ".order_by(User.id)"
    )


class _NoValueInSql(BoundParameters):
    """The value written into the SQL text: in a text() literal or an f-string, the fix is the same."""

    def judge(self, attempt: Attempt) -> RuleResult:
        result = super().judge(attempt)
        if not result.passed:
            result.message = (
                "\"NL\" is written into the SQL text itself (text(\"country = 'NL'\") or an f-string): "
                "let SQLAlchemy send it as a bound parameter instead, .where(User.country == \"NL\")"
            )
        return result


def _q1_solution():
    return select(User.id, User.username).where(User.country == "NL").order_by(User.id)


q1 = Exercise(
    id="00.q1",
    title="Users from the Netherlands",
    kind=STATEMENT,
    solution_answer=_q1_solution,
    expected=sql_reference("SELECT id, username FROM users WHERE country = 'NL' ORDER BY id"),
    rules=[
        Columns(["id", "username"]),
        LetterCase(["NL"], stored=COUNTRY_CODES),
        Probe(_asks_for_nl, name="the Netherlands asked for"),
        Probe(_q1_sorted_by, name="sorted by id"),
        SameResult(ordered=True),
        StatementBudget(1),
        _NoValueInSql(["NL"]),
    ],
    hints=[
        "Start from select(User.id, User.username): name the two columns, not the whole User.",
        "Filter with .where(User.country == \"NL\") and sort with .order_by(User.id).",
    ],
    why="Selecting just the columns you need sends less data and gives you plain rows.",
    counterexamples=[
        Counterexample("whole entities", lambda: select(User).where(User.country == "NL").order_by(User.id), "whole User objects"),
        Counterexample("wrong country", lambda: select(User.id, User.username).where(User.country == "DE").order_by(User.id), "never asks for"),
        Counterexample(
            "the code in lower case",
            lambda: select(User.id, User.username).where(User.country == "nl").order_by(User.id),
            "'nl' is not 'NL': comparing strings is case-sensitive",
        ),
        Counterexample("reversed order", lambda: select(User.id, User.username).where(User.country == "NL").order_by(User.id.desc()), "sorted by users.id desc"),
        Counterexample("no ORDER BY (right order by chance)", lambda: select(User.id, User.username).where(User.country == "NL"), "no ORDER BY"),
        Counterexample(
            "the value pasted into SQL text",
            lambda: select(User.id, User.username).where(text("country = 'NL'")).order_by(User.id),
            "written into the sql text itself",
        ),
        Counterexample(
            "sorted by username",
            lambda: select(User.id, User.username).where(User.country == "NL").order_by(User.username),
            "sorted by users.username; the task asks for them by id",
        ),
    ],
)

ALTERNATIVES = {
    "00.q1": [
        ("filter_by()", lambda: select(User.id, User.username).filter_by(country="NL").order_by(User.id)),
        ("in_() of one value", lambda: select(User.id, User.username).where(User.country.in_(["NL"])).order_by(User.id)),
        # "nl" sent, but compared with lower(country): right, and no letter-case mistake
        ("lower() on both sides", lambda: select(User.id, User.username)
         .where(func.lower(User.country) == "nl").order_by(User.id)),
    ],
}
