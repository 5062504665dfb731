"""What the users rows an answer got wrong have in common (lessons 00-03).

A checker that only says "12 extra rows" leaves the learner to guess. Most wrong filters on
``users`` leave a trace in the rows: every extra row is an inactive user (a forgotten
``is_active``), every missing row has no phone (``is_(None)`` the wrong way round), ... A
probe reads those columns for the ids that differ, inside the check's transaction, and the
rules below name the condition the rows share.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from typing import Any

from sqlalchemy import bindparam, text
from sqlalchemy.ext.asyncio import AsyncConnection

from .rules import Attempt, outside_quotes, top_level_order_by, word_at

FACTS = "user_facts"
#: how the seed writes ``users.country``, for :class:`~course.exercises.rules.LetterCase`
COUNTRY_CODES = "country codes in capitals, as ISO 3166 writes them"


def _ids(rows: Any, position: int) -> list[int]:
    if not isinstance(rows, list):
        return []
    out = []
    for row in rows:
        value = row[position] if isinstance(row, tuple) and len(row) > position else row
        if isinstance(value, int) and not isinstance(value, bool):
            out.append(value)
    return out


def differing_ids(attempt: Attempt, position: int = 0) -> tuple[list[int], list[int]]:
    """(extra, missing): user ids the answer returned and should not have, and the reverse."""
    got, want = _ids(attempt.value, position), _ids(attempt.expected, position)
    got_set, want_set = set(got), set(want)
    return [i for i in got if i not in want_set], [i for i in want if i not in got_set]


def user_facts_probe(position: int = 0) -> Callable[..., Any]:
    """A probe storing, for each extra and missing user id, its is_active, phone and country."""

    async def probe(conn: AsyncConnection, attempt: Attempt, **call: Any) -> None:
        extra, missing = differing_ids(attempt, position)
        ids = sorted(set(extra) | set(missing))[:2000]
        facts: dict[int, dict[str, Any]] = {}
        if ids:
            rows = await conn.execute(
                text("SELECT id, is_active, phone, country, last_login FROM users WHERE id IN :ids")
                .bindparams(bindparam("ids", expanding=True)),
                {"ids": ids},
            )
            for r in rows.all():
                facts[r[0]] = {"is_active": bool(r[1]), "phone": r[2], "country": r[3], "last_login": r[4]}
        attempt.extra[FACTS] = {"extra": extra, "missing": missing, "facts": facts}

    return probe


def shared(attempt: Attempt, side: str, test: Callable[[dict[str, Any]], bool]) -> int:
    """How many of the ``side`` ("extra" / "missing") rows pass ``test``; 0 unless all of them do."""
    found = attempt.extra.get(FACTS) or {}
    ids: Sequence[int] = found.get(side) or []
    facts = found.get("facts") or {}
    rows = [facts[i] for i in ids if i in facts]
    if rows and len(rows) == len(ids) and all(test(r) for r in rows):
        return len(rows)
    return 0


def some(attempt: Attempt, side: str, test: Callable[[dict[str, Any]], bool]) -> list[dict[str, Any]]:
    """The ``side`` rows that pass ``test``."""
    found = attempt.extra.get(FACTS) or {}
    facts = found.get("facts") or {}
    return [facts[i] for i in (found.get(side) or []) if i in facts and test(facts[i])]


def order_by_keys(sql: str) -> list[str]:
    """The outermost query's ORDER BY keys (lower case), read from the SQL it sent.

    Where the seeded data happens to have no tie, the rows come back in the right order with or
    without a tie-breaker: the keys themselves say whether the learner asked for one. A window's
    ``OVER (ORDER BY ...)``, a subquery's or a CTE's ORDER BY is not the result's order.
    """
    start = top_level_order_by(sql)
    if start < 0:
        return []
    low = sql.lower()
    keys, depth, current = [], 0, ""
    for char in low[start:]:
        if char == "(":
            depth += 1
        elif char == ")":
            depth -= 1
        if depth == 0 and char == ",":
            keys.append(current.strip())
            current = ""
            continue
        current += char
    tail = re.split(r"\b(?:limit|offset|fetch|for update)\b", current)[0]
    keys.append(tail.strip())
    return [k for k in keys if k]


def orders_by(sql: str, column: str) -> bool:
    """Whether one of the outermost ORDER BY keys is ``column`` (``posts.id``, or a bare ``id``)."""
    table, _, name = column.lower().rpartition(".")
    pattern = re.compile(rf"^(?:{re.escape(table)}\.)?{re.escape(name)}(?:\s+(?:asc|desc))?(?:\s+nulls\s+\w+)?$"
                         if table else rf"^(?:\w+\.)?{re.escape(name)}(?:\s+(?:asc|desc))?(?:\s+nulls\s+\w+)?$")
    return any(pattern.match(k) for k in order_by_keys(sql))


def select_list(sql: str) -> str:
    """The outermost query's column list: between its SELECT and its FROM, outside any
    parentheses and quotes (a CTE's body before it, a scalar subquery inside it stay whole)."""
    upper = sql.upper()
    start = -1
    for i, char, depth in outside_quotes(upper):
        if depth or char in "()":
            continue
        if start < 0 and word_at(upper, i, "SELECT"):
            start = i + len("SELECT")
        elif start >= 0 and word_at(upper, i, "FROM"):
            return sql[start:i]
    return sql[start:] if start >= 0 else ""


def has_scalar_subquery(sql: str) -> bool:
    """Whether the outermost query selects a subquery as a column: ``(SELECT ...)`` in its list."""
    return re.search(r"\(\s*SELECT\b", select_list(sql), re.I) is not None


def mixed_keyset_directions(statements: Sequence[Any], column: str, cursor: str) -> str | None:
    """A row-value cursor, ``(column, id) < (...)``, under an ORDER BY whose two keys go opposite ways
    (read from the SQL): the comparison walks both columns one way, the order does not. ``cursor`` is
    how the fix names the cursor's values (``after``, ``cursor``)."""
    row_value = re.compile(rf"\(\s*posts\.{column}\s*,\s*posts\.id\s*\)\s*(<=|>=|<|>)", re.I)
    for statement in statements:
        compared = row_value.search(statement.sql)
        keys = order_by_keys(statement.sql)
        if not compared or len(keys) < 2:
            continue
        directions = {}
        for key in keys[:2]:
            name = column if column in key else "id" if re.search(r"(^|\.)id\b", key) else ""
            if name:
                directions[name] = "descending" if re.search(r"\bdesc\b", key) else "ascending"
        if len(directions) == 2 and len(set(directions.values())) == 2:
            op = compared.group(1)
            return (
                f"your ORDER BY sorts {column} {directions[column]} but id {directions['id']}, while the "
                f"row-value comparison ({column}, id) {op} (...) compares in order, {column} first and id only "
                f"among posts with the same {column}, both in one direction "
                f"({'smaller' if op.startswith('<') else 'larger'}). So the ORDER BY must sort id the same way "
                f"as {column}: `.order_by(Post.{column}.desc(), Post.id.desc())` with "
                f"`tuple_(Post.{column}, Post.id) < tuple_(*{cursor})`"
            )
    return None
