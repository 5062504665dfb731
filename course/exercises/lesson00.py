"""Lesson 00 warm-up: your first checked query."""

from __future__ import annotations

from sqlalchemy import select

from ..schema import User
from .core import STATEMENT, Counterexample, Exercise, sql_reference
from .rules import BoundParameters, Columns, SameResult, StatementBudget


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
        Counterexample("wrong country", lambda: select(User.id, User.username).where(User.country == "DE").order_by(User.id), "missing"),
        Counterexample("reversed order", lambda: select(User.id, User.username).where(User.country == "NL").order_by(User.id.desc()), "wrong order"),
        Counterexample("no ORDER BY (right order by chance)", lambda: select(User.id, User.username).where(User.country == "NL"), "no ORDER BY"),
    ],
)
