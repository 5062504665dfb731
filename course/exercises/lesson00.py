"""Lesson 00 warm-up: your first checked query.

Misconceptions catalogued (one counterexample each): whole ``User`` objects where two columns
were asked; another country's value (the filter never asks for "NL"); the order reversed; no
ORDER BY (right order by chance); the value pasted into SQL text. ``ALTERNATIVES`` lists correct
answers of another form, which the tests require accepted.
"""

from __future__ import annotations

from sqlalchemy import select, text

from ..schema import User
from .core import STATEMENT, Counterexample, Exercise, sql_reference
from .rules import Attempt, BoundParameters, Columns, Probe, SameResult, StatementBudget


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
    return (
        "your filter never asks for \"NL\": compare the country with the Netherlands' code, "
        "User.country == \"NL\""
    )


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
        Probe(_asks_for_nl, name="the Netherlands asked for"),
        SameResult(ordered=True),
        StatementBudget(1),
        BoundParameters(["NL"]),
    ],
    hints=[
        "Start from select(User.id, User.username): name the two columns, not the whole User.",
        "Filter with .where(User.country == \"NL\") and sort with .order_by(User.id).",
    ],
    why="Selecting just the columns you need sends less data and gives you plain rows.",
    counterexamples=[
        Counterexample("whole entities", lambda: select(User).where(User.country == "NL").order_by(User.id), "whole User objects"),
        Counterexample("wrong country", lambda: select(User.id, User.username).where(User.country == "DE").order_by(User.id), "never asks for"),
        Counterexample("reversed order", lambda: select(User.id, User.username).where(User.country == "NL").order_by(User.id.desc()), "wrong order"),
        Counterexample("no ORDER BY (right order by chance)", lambda: select(User.id, User.username).where(User.country == "NL"), "no ORDER BY"),
        Counterexample(
            "the value pasted into SQL text",
            lambda: select(User.id, User.username).where(text("country = 'NL'")).order_by(User.id),
            "pasted into the SQL text",
        ),
    ],
)

ALTERNATIVES = {
    "00.q1": [
        ("filter_by()", lambda: select(User.id, User.username).filter_by(country="NL").order_by(User.id)),
        ("in_() of one value", lambda: select(User.id, User.username).where(User.country.in_(["NL"])).order_by(User.id)),
    ],
}
