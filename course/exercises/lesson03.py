"""Lesson 03 exercises: columns, aggregation, existence checks and keyset pagination.

Misconceptions catalogued (one counterexample each): q1 whole entities, inactive users
included, the NULL test the wrong way round, the phone condition forgotten (or Python's
``is not None``, dropped as True), a phone tested as ``== ""``, the code in lower case, a value
pasted into SQL (``!= ""`` gives the right rows, NULL never passes it, and is accepted);
q2 and q3 also the status capitalised ("Paid"), and q2 the count not labelled; q2 no HAVING, a join counted per order, an aggregate in WHERE, every user counted,
users with any order; q3 count then compare, the count returned, rows loaded and tested in
Python (also ``User.orders`` loaded lazily, where selectinload() would not help), any order
instead of a paid one, the Result returned, the first paid Order returned; q4 >= instead of >, no
fetch-one-extra, OFFSET in disguise, no ORDER BY, a second query to count; q5 keyset on
created_at alone (< and <=), no tie-breaker, <= on the id, a cursor on the last page, a
row-value ``<`` under an ORDER BY whose two columns go opposite ways.
``ALTERNATIVES`` lists correct answers of another form (the tests require them accepted).

References are written independently of the solutions: raw SQL, and for the
pages a plain Python slice of every matching id (no keyset logic to share a
bug with).
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any

from sqlalchemy import DateTime, Integer, and_, distinct, exists, func, or_, select, text, tuple_
from sqlalchemy import inspect as sa_inspect
from sqlalchemy.ext.asyncio import AsyncConnection

from ..recorder import Statement
from ..schema import Order, Post, User
from .core import SESSION_FN, STATEMENT, Counterexample, Exercise, normalize, sql_reference
from .rules import (
    Attempt,
    BoundParameters,
    Columns,
    EmptyStringForNull,
    LetterCase,
    NoLazyLoads,
    Probe,
    SameResult,
    StatementBudget,
)
from .userfacts import (
    COUNTRY_CODES,
    FACTS,
    mixed_keyset_directions,
    order_by_keys,
    orders_by,
    select_list,
    shared,
    user_facts_probe,
)
from .verdict import RuleResult


def _cursor_text(value: Any) -> str:
    """A cursor or flag as the learner would print it (no datetime.datetime(...) repr cut in half)."""
    if isinstance(value, tuple) and len(value) == 2 and isinstance(value[0], datetime):
        return f"({value[0]:%Y-%m-%d %H:%M:%S}, {value[1]!r})"
    return repr(value)


class _SamePage(SameResult):
    """A (page ids, next) answer compared part by part, in words: which ids, which flag or cursor."""

    def __init__(self, second: str) -> None:
        super().__init__()
        self.second = second

    def judge(self, attempt: Attempt) -> RuleResult:
        result = super().judge(attempt)
        got, want = _page_parts(attempt.value), _page_parts(attempt.expected)
        if result.passed or want is None:
            return result
        if got is None:
            result.message = (
                f"return a pair, (list of post ids, {self.second}); yours is a {type(attempt.value).__name__}"
            )
        elif got[0] != want[0]:
            result.message = f"the page should hold posts {want[0]}; yours holds {got[0]}"
        else:
            result.message = (
                f"the right posts, but {self.second} should be {_cursor_text(want[1])}, not {_cursor_text(got[1])}"
            )
        return result


class _SameBool(SameResult):
    """A yes/no answer: no "too high" for a count returned where True or False was asked."""

    def judge(self, attempt: Attempt) -> RuleResult:
        result = super().judge(attempt)
        if not result.passed and not isinstance(attempt.value, bool):
            result.message = "not judged: return True or False first (see above)"
        elif not result.passed:
            result.message = f"your function says {attempt.value} for this user; the answer is {attempt.expected}"
        return result

# --------------------------------------------------------------------------- shared probes


def _queries(attempt: Attempt) -> list[Statement]:
    return list(attempt.log.queries)


_OFFSET = re.compile(r"\bOFFSET\s+(\?|\$(\d+)(?:::\w+(?:\s+\w+)*)?|(\d+))", re.I)


def _offset_skipped(statement: Statement) -> int:
    """Rows an OFFSET in this statement skips (0 without one).

    SQLite's dialect writes ``LIMIT ? OFFSET ?`` even when you gave only a limit
    (the offset is then bound as 0), so the text alone says nothing: read the value.
    """
    found = 0
    for match in _OFFSET.finditer(statement.sql):
        placeholder, number, literal = match.group(1), match.group(2), match.group(3)
        value: Any = None
        params = statement.params
        if literal is not None:
            value = int(literal)
        elif isinstance(params, (list, tuple)):
            index = int(number) - 1 if number is not None else statement.sql[: match.start(1)].count("?")
            if placeholder and 0 <= index < len(params):
                value = params[index]
        if isinstance(value, int) and value > 0:
            found = max(found, value)
    return found


def _no_offset(attempt: Attempt) -> str | None:
    skipped = max((_offset_skipped(s) for s in _queries(attempt)), default=0)
    if skipped:
        return (
            f"your query skips {skipped} rows with OFFSET: the database reads every one of them and "
            "throws them away. Filter past the cursor instead (WHERE id > after_id): the index jumps there"
        )
    return None


def _selects_from(attempt: Attempt, table: str) -> list[Statement]:
    return [s for s in _queries(attempt) if s.verb in ("SELECT", "WITH") and f"FROM {table}" in s.sql]


# --------------------------------------------------------------------------- q1


def _q1_inactive(attempt: Attempt) -> str | None:
    n = shared(attempt, "extra", lambda r: not r["is_active"])
    if n:
        return f"{n} extra rows, every one an inactive user: add User.is_active to where()"
    return None


def _q1_phone_test(attempt: Attempt) -> str | None:
    found = attempt.extra.get(FACTS) or {}
    facts = found.get("facts") or {}
    extra = found.get("extra") or []
    if not (extra and all(i in facts and facts[i]["phone"] is None for i in extra)):
        return None
    if re.search(r"phone IS NULL", " ".join(s.sql for s in _queries(attempt)), re.IGNORECASE):
        return (
            f"{len(extra)} of your rows are users without a phone: is_(None) means IS NULL, no phone. "
            "Users who have one are .is_not(None)"
        )
    return (
        f"{len(extra)} of your rows are users without a phone: the phone condition is missing. "
        "Add User.phone.is_not(None) (if you wrote `User.phone is not None`, Python answered it "
        "itself: True, a condition SQLAlchemy leaves out of the WHERE)"
    )


def _q1_solution():
    return (
        select(User.id, User.email, User.display_name)
        .where(User.country == "DE", User.is_active, User.phone.is_not(None))
        .order_by(User.id)
    )


q1 = Exercise(
    id="03.q1",
    title="Three columns, not whole users",
    kind=STATEMENT,
    solution_answer=_q1_solution,
    expected=sql_reference(
        "SELECT id, email, display_name FROM users "
        "WHERE country = 'DE' AND is_active AND phone IS NOT NULL ORDER BY id"
    ),
    probe=user_facts_probe(),
    rules=[
        Columns(["id", "email", "display_name"]),
        LetterCase(["DE"], stored=COUNTRY_CODES),
        EmptyStringForNull("phone", "User.phone", missing=False, what="users"),
        Probe(_q1_inactive, name="only active users"),
        Probe(_q1_phone_test, name="only users with a phone"),
        SameResult(ordered=True),
        StatementBudget(1),
        BoundParameters(["DE"]),
    ],
    hints=[
        "Pass the three columns to select(), not the User class: select(User.id, User.email, User.display_name).",
        "Three conditions in one .where(...): the country, User.is_active, and a phone that is not NULL.",
        "A NULL test is .is_not(None) (SQL: IS NOT NULL); finish with .order_by(User.id).",
    ],
    why="Rows of three columns are all the page needs: less data on the wire, no objects to build or track.",
    counterexamples=[
        Counterexample(
            "an entity query where columns were asked",
            lambda: select(User)
            .where(User.country == "DE", User.is_active, User.phone.is_not(None))
            .order_by(User.id),
            "whole User objects",
        ),
        Counterexample(
            "inactive users included",
            lambda: select(User.id, User.email, User.display_name)
            .where(User.country == "DE", User.phone.is_not(None))
            .order_by(User.id),
            "every one an inactive user",
        ),
        Counterexample(
            "the NULL test the wrong way round",
            lambda: select(User.id, User.email, User.display_name)
            .where(User.country == "DE", User.is_active, User.phone.is_(None))
            .order_by(User.id),
            "is_(None) means IS NULL",
        ),
        Counterexample(
            "the phone condition forgotten",
            lambda: select(User.id, User.email, User.display_name)
            .where(User.country == "DE", User.is_active)
            .order_by(User.id),
            "the phone condition is missing",
        ),
        Counterexample(
            "the country pasted into the SQL",
            lambda: select(User.id, User.email, User.display_name)
            .where(text("country = 'DE'"), User.is_active, User.phone.is_not(None))
            .order_by(User.id),
            "pasted into the SQL text",
        ),
        Counterexample(
            # ruff's E711 fix of `!= None`: Python answers `is not None` itself (True)
            "python `is not None`",
            lambda: select(User.id, User.email, User.display_name)
            .where(User.country == "DE", User.is_active, User.phone is not None)
            .order_by(User.id),
            "Python answered it itself",
        ),
        Counterexample(
            "a phone tested as the empty string",
            lambda: select(User.id, User.email, User.display_name)
            .where(User.country == "DE", User.is_active, User.phone == "")
            .order_by(User.id),
            "a missing phone is NULL, not the empty string",
        ),
        Counterexample(
            "the code in lower case",
            lambda: select(User.id, User.email, User.display_name)
            .where(User.country == "de", User.is_active, User.phone.is_not(None))
            .order_by(User.id),
            "'de' is not 'DE'",
        ),
    ],
)


# --------------------------------------------------------------------------- q2

Q2_MIN_BUYERS = 25


#: how the seed writes ``orders.status``, for LetterCase
ORDER_STATUSES = "order statuses in lower case"


class _BuyersColumns(Columns):
    """The count selected without its label: name the label, not just the column lists."""

    def judge(self, attempt: Attempt) -> RuleResult:
        result = super().judge(attempt)
        got = list(attempt.columns or [])
        if not result.passed and len(got) == 2 and got[0] == "country" and got[1] != "buyers":
            result.message = (
                f"your count comes back as a column named {got[1]!r}: the task asks for it as buyers. "
                "Label it: `func.count(User.id).label(\"buyers\")`"
            )
        return result


def _q2_solution():
    buyers = func.count(User.id).label("buyers")
    return (
        select(User.country, buyers)
        .where(User.orders.any(Order.status == "paid"))  # EXISTS: each user once, however many orders
        .group_by(User.country)
        .having(buyers >= 25)
        .order_by(buyers.desc(), User.country)
    )


def _pairs(value: Any) -> dict[Any, Any] | None:
    if not isinstance(value, list) or not all(isinstance(r, tuple) and len(r) == 2 for r in value):
        return None
    return dict(value)


def _q2_counts(attempt: Attempt) -> str | None:
    got, want = _pairs(attempt.value), _pairs(attempt.expected)
    if got is None or want is None:
        return None
    too_high = [(c, n, want[c]) for c, n in got.items() if c in want and isinstance(n, int) and n > want[c]]
    if not too_high:
        return None
    country, n, right = too_high[0]
    statements = _queries(attempt)
    sql = " ".join(s.sql for s in statements).upper()
    if "JOIN" in sql and "DISTINCT" not in sql:
        return (
            f"the counts are too high ({country}: {n}, but {right} users): after the join each user "
            "appears once per paid order, so count(User.id) counts orders. Ask per user instead: "
            "where(User.orders.any(Order.status == \"paid\")) (or count distinct users after the join)"
        )
    if not any("paid" in _param_values(s) for s in statements) and "'PAID'" not in sql:
        if "EXISTS" in sql or "JOIN" in sql or " IN (" in sql:
            return (
                f"the counts are too high ({country}: {n}, but {right}): you counted users with any "
                "order; only a paid order makes a buyer: User.orders.any(Order.status == \"paid\")"
            )
        return (
            f"the counts are too high ({country}: {n}, but {right}): you counted every user of the "
            "country, buyers or not. Keep only users with a paid order: "
            "where(User.orders.any(Order.status == \"paid\"))"
        )
    return f"the counts are too high ({country}: {n}, but {right} users with a paid order)"


def _param_values(statement: Statement) -> list[Any]:
    params = statement.params
    if isinstance(params, dict):
        return list(params.values())
    if isinstance(params, (list, tuple)):
        return list(params)
    return []


def _q2_having(attempt: Attempt) -> str | None:
    got = _pairs(attempt.value)
    if got is None:
        return None
    small = [c for c, n in got.items() if isinstance(n, int) and n < Q2_MIN_BUYERS]
    if small:
        return (
            f"countries with fewer than {Q2_MIN_BUYERS} buyers are in your result (e.g. {small[0]}): "
            "filter the groups with .having(...) after group_by()"
        )
    return None


def _q2_at_least(attempt: Attempt) -> str | None:
    """The boundary: no country has exactly 25 buyers in the seed, so read the HAVING itself."""
    for statement in _queries(attempt):
        match = re.search(r"\bHAVING\b(.*?)(\bORDER BY\b|\bLIMIT\b|$)", statement.sql, re.I | re.S)
        if not match:
            continue
        having = match.group(1)
        values = _param_values(statement)
        at_25 = Q2_MIN_BUYERS in values or re.search(rf"(?<![\w.]){Q2_MIN_BUYERS}(?![\w.])", having)
        if at_25 and re.search(r">(?!=)", having) and ">=" not in having:
            return (
                f"your HAVING keeps countries with more than {Q2_MIN_BUYERS} buyers (> {Q2_MIN_BUYERS}): "
                f"a country with exactly {Q2_MIN_BUYERS} is a big market too. Use >= {Q2_MIN_BUYERS}"
            )
    return None


def _q2_tie_breaker(attempt: Attempt) -> str | None:
    """No two countries tie here, so the rows cannot show a missing tie-breaker: the ORDER BY does."""
    reads = [s.sql for s in _queries(attempt) if s.verb in ("SELECT", "WITH")]
    if not reads or "ORDER BY" not in reads[0].upper() or orders_by(reads[0], "users.country"):
        return None
    return (
        "your ORDER BY has no tie-breaker: two countries with the same number of buyers would come back "
        "in any order (right here only because none tie). Add the country as the second key: "
        ".order_by(buyers.desc(), User.country)"
    )


q2 = Exercise(
    id="03.q2",
    title="Buyers per country, big markets only",
    kind=STATEMENT,
    solution_answer=_q2_solution,
    # independent of the solution's EXISTS: a join, counted distinct
    expected=sql_reference(
        "SELECT u.country, count(DISTINCT u.id) AS buyers "
        "FROM users u JOIN orders o ON o.user_id = u.id "
        "WHERE o.status = 'paid' "
        "GROUP BY u.country HAVING count(DISTINCT u.id) >= 25 "
        "ORDER BY buyers DESC, u.country"
    ),
    rules=[
        _BuyersColumns(["country", "buyers"]),
        LetterCase(["paid"], stored=ORDER_STATUSES),
        Probe(_q2_counts, name="counts users, not orders"),
        Probe(_q2_having, name="groups filtered with HAVING"),
        Probe(_q2_at_least, name="at least 25 buyers"),
        Probe(_q2_tie_breaker, name="ties broken by country"),
        SameResult(ordered=True),
        StatementBudget(1),
        BoundParameters(["paid"]),
    ],
    hints=[
        "Keep the users who have a paid order: .where(User.orders.any(Order.status == \"paid\")) (an "
        "EXISTS, as in this lesson), then group_by(User.country) and count them.",
        "buyers = func.count(User.id).label(\"buyers\"): each user is one row, however many orders they "
        "have. WHERE filters rows before grouping; HAVING filters the groups: .having(buyers >= 25).",
        "Then .order_by(buyers.desc(), User.country).",
    ],
    why=(
        "Each buyer counted once however many paid orders they have: EXISTS (any()) keeps each user once, "
        "count(distinct) counts each once; WHERE filters rows, HAVING filters groups."
    ),
    counterexamples=[
        Counterexample(
            "missing HAVING",
            lambda: select(User.country, func.count(User.id).label("buyers"))
            .where(User.orders.any(Order.status == "paid"))
            .group_by(User.country)
            .order_by(func.count(User.id).desc(), User.country),
            ".having(",
        ),
        Counterexample(
            "a count on a join that inflates",
            lambda: select(User.country, func.count(User.id).label("buyers"))
            .join(Order, Order.user_id == User.id)
            .where(Order.status == "paid")
            .group_by(User.country)
            .having(func.count(User.id) >= 25)
            .order_by(func.count(User.id).desc(), User.country),
            "count distinct users",
        ),
        Counterexample(
            "the aggregate in WHERE",
            lambda: select(User.country, func.count(distinct(User.id)).label("buyers"))
            .join(Order, Order.user_id == User.id)
            .where(Order.status == "paid", func.count(distinct(User.id)) >= 25)
            .group_by(User.country),
            "aggregate",
        ),
        Counterexample(
            "every user, not just buyers",
            lambda: select(User.country, func.count(User.id).label("buyers"))
            .group_by(User.country)
            .having(func.count(User.id) >= 25)
            .order_by(func.count(User.id).desc(), User.country),
            "buyers or not",
        ),
        Counterexample(
            "any order, not a paid one",
            lambda: select(User.country, func.count(User.id).label("buyers"))
            .where(User.orders.any())
            .group_by(User.country)
            .having(func.count(User.id) >= 25)
            .order_by(func.count(User.id).desc(), User.country),
            "users with any order",
        ),
        Counterexample(
            "> 25 instead of >= 25",
            lambda: select(User.country, func.count(User.id).label("buyers"))
            .where(User.orders.any(Order.status == "paid"))
            .group_by(User.country)
            .having(func.count(User.id) > 25)
            .order_by(func.count(User.id).desc(), User.country),
            "more than 25 buyers (> 25)",
        ),
        Counterexample(
            "no country tie-breaker",
            lambda: select(User.country, func.count(User.id).label("buyers"))
            .where(User.orders.any(Order.status == "paid"))
            .group_by(User.country)
            .having(func.count(User.id) >= 25)
            .order_by(func.count(User.id).desc()),
            "no tie-breaker",
        ),
        Counterexample(
            "the count not labelled",
            lambda: select(User.country, func.count(User.id))
            .where(User.orders.any(Order.status == "paid"))
            .group_by(User.country)
            .having(func.count(User.id) >= 25)
            .order_by(func.count(User.id).desc(), User.country),
            "label it",
        ),
        Counterexample(
            "the status capitalised",
            lambda: select(User.country, func.count(User.id).label("buyers"))
            .where(User.orders.any(Order.status == "Paid"))
            .group_by(User.country)
            .having(func.count(User.id) >= 25)
            .order_by(func.count(User.id).desc(), User.country),
            "'Paid' is not 'paid'",
        ),
    ],
)


# --------------------------------------------------------------------------- q3


async def _q3_solution(session, user_id):
    return await session.scalar(
        select(exists().where(Order.user_id == user_id, Order.status == "paid"))
    )


class _Entity:
    """An ORM object the answer returned, kept as what it is (normalize() would give its id, an int)."""

    def __init__(self, model: str, identity: Any) -> None:
        self.model, self.identity = model, identity

    def __repr__(self) -> str:
        return f"an {self.model} object (id {self.identity})" if self.model[:1] in "AEIOU" else (
            f"a {self.model} object (id {self.identity})"
        )


async def _q3_observe(session: Any, returned: Any, user_id: int) -> Any:
    value = normalize(returned)
    state = sa_inspect(returned, raiseerr=False) if not isinstance(returned, (list, tuple)) else None
    if getattr(state, "mapper", None) is not None and hasattr(state, "identity"):
        return _Entity(type(returned).__name__, value)
    return value


def _q3_is_bool(attempt: Attempt) -> str | None:
    value = attempt.value
    if isinstance(value, bool):
        return None
    if isinstance(value, list):
        return (
            f"your function returned {value!r}, a list of rows: take the single value with "
            "await session.scalar(...), which gives True or False"
        )
    if isinstance(value, _Entity):
        return (
            f"return a bool (True or False), not {value!r}: ask whether such a row exists, "
            "`select(exists().where(...))`, or compare what you found with None (`order is not None`)"
        )
    return f"return a bool (True or False), not {value!r} ({type(value).__name__})"


def _q3_paid(attempt: Attempt) -> str | None:
    statements = _queries(attempt)
    reads = [s for s in statements if re.search(r"\bFROM orders\b", s.sql)]
    if not reads or any(re.search(r"\borders\.status\b", select_list(s.sql)) for s in reads):
        return None  # no order read yet, or the status fetched: Python may test it (_q3_stops_early: why not)
    if any(isinstance(v, str) and v.lower() == "paid" for s in statements for v in _param_values(s)):
        return None  # "paid" in some letter case: LetterCase judges "Paid"
    if statements and not any("paid" in _param_values(s) or "'paid'" in s.sql for s in statements):
        return (
            "your query never mentions the status: it asks whether the user has any order at all. "
            "Add Order.status == \"paid\" to the condition"
        )
    return None


def _q3_stops_early(attempt: Attempt) -> str | None:
    queries = _queries(attempt)
    if any("count(" in s.sql.lower() for s in queries):
        return (
            "your query counts every matching order just to answer yes or no; "
            "select(exists().where(...)) lets the database stop at the first match"
        )
    fetched = sum(s.rows or 0 for s in queries)
    if fetched > 1:
        return (
            f"your function fetched {fetched} rows to answer yes or no; ask the database with "
            "select(exists().where(...)) and get one True or False back"
        )
    return None


async def _q3_expected(conn: AsyncConnection, user_id: int) -> bool:
    n = (
        await conn.execute(
            text("SELECT count(*) FROM orders WHERE user_id = :u AND status = 'paid'"), {"u": user_id}
        )
    ).scalar_one()
    return n > 0


async def _q3_count(session, user_id):
    n = await session.scalar(
        select(func.count()).select_from(Order).where(Order.user_id == user_id, Order.status == "paid")
    )
    return n > 0


async def _q3_count_returned(session, user_id):
    return await session.scalar(
        select(func.count(Order.id)).where(Order.user_id == user_id, Order.status == "paid")
    )


async def _q3_load_rows(session, user_id):
    orders = (await session.scalars(select(Order).where(Order.user_id == user_id))).all()
    return any(o.status == "paid" for o in orders)


async def _q3_first_order(session, user_id):
    # the learner trial's answer: the order itself (or None), not True or False
    return await session.scalar(select(Order).where(Order.user_id == user_id, Order.status == "paid").limit(1))


async def _q3_orders_through_user(session, user_id):
    # the learner trial's answer: every order loaded (lazily, through awaitable_attrs), tested in Python
    user = await session.get(User, user_id)
    if user is None:
        return False
    orders = await user.awaitable_attrs.orders
    return any(o.status == "paid" for o in orders)


async def _q3_any_status(session, user_id):
    return await session.scalar(select(exists().where(Order.user_id == user_id)))


async def _q3_capitalised(session, user_id):
    return await session.scalar(select(exists().where(Order.user_id == user_id, Order.status == "Paid")))


async def _q3_result(session, user_id):
    return await session.execute(select(exists().where(Order.user_id == user_id, Order.status == "paid")))


class _NoLoadingToAnswerYesNo(NoLazyLoads):
    """A lazy load of ``User.orders`` to test them in Python: loading them up front would not help."""

    def judge(self, attempt: Attempt) -> RuleResult:
        result = super().judge(attempt)
        if result.passed or "User.orders" not in attempt.lazy_attributes:
            return result
        fetched = sum(s.rows or 0 for s in _queries(attempt) if re.search(r"\bFROM orders\b", s.sql))
        queries = len(_queries(attempt))
        result.message = (
            f"you loaded {f'all {fetched} of ' if fetched > 1 else ''}the user's orders "
            f"(`User.orders`, loaded lazily) to answer yes or no in Python, {queries} "
            f"{'query' if queries == 1 else 'queries'} in all; loading them up front with "
            "`selectinload(User.orders)` would still fetch every order. Ask the database in one query that "
            "stops at the first match: `select(exists().where(Order.user_id == user_id, Order.status == "
            "\"paid\"))`"
        )
        return result


q3 = Exercise(
    id="03.q3",
    title="Has this user paid for anything?",
    kind=SESSION_FN,
    solution_answer=_q3_solution,
    expected=_q3_expected,
    # 155 has nine paid orders, 5 has orders but none paid, 9999 does not exist
    calls=({"user_id": 155}, {"user_id": 5}, {"user_id": 9999}),
    observe=_q3_observe,
    rules=[
        _NoLoadingToAnswerYesNo(),
        Probe(_q3_is_bool, name="returns a bool"),
        LetterCase(["paid"], stored=ORDER_STATUSES),
        Probe(_q3_paid, name="a paid order, not any order"),
        Probe(_q3_stops_early, name="stops at the first match"),
        _SameBool(),
        StatementBudget(1),
        BoundParameters(["paid"]),
    ],
    hints=[
        "You want a yes or no, not the orders: select(exists().where(...)) asks exactly that.",
        "Two conditions inside exists().where(...): Order.user_id == user_id and Order.status == \"paid\".",
        "await session.scalar(select(exists().where(...))) returns the single True or False.",
    ],
    why=("A yes-or-no question may stop at the first match (EXISTS, or LIMIT 1); a count has to find "
         "them all."),
    counterexamples=[
        Counterexample("count, then compare", _q3_count, "counts every matching order"),
        Counterexample("the count itself", _q3_count_returned, "a bool"),
        Counterexample("load the orders, test in Python", _q3_load_rows, "fetched"),
        Counterexample("any order, not a paid one", _q3_any_status, "any order at all"),
        Counterexample("the Result, not its value", _q3_result, "session.scalar"),
        Counterexample("the status capitalised", _q3_capitalised, "'Paid' is not 'paid'"),
        Counterexample("the count itself, no 'too high'", _q3_count_returned, "not judged: return true or false first"),
        Counterexample("the first paid order, not a bool", _q3_first_order, "not an Order object (id 96)"),
        Counterexample(
            "user.orders loaded and tested in Python", _q3_orders_through_user,
            "selectinload(User.orders) would still fetch every order",
        ),
    ],
)


# --------------------------------------------------------------------------- q4


async def _q4_solution(session, after_id, limit):
    if limit < 1:  # limit=0 would answer has_more=True forever (list_users_page)
        raise ValueError(f"limit must be at least 1, got {limit}")
    stmt = select(Post.id).where(Post.status == "published").order_by(Post.id).limit(limit + 1)
    if after_id is not None:
        stmt = stmt.where(Post.id > after_id)
    ids = list((await session.scalars(stmt)).all())
    return ids[:limit], len(ids) > limit


async def _q4_expected(conn: AsyncConnection, after_id: int | None, limit: int) -> tuple[list[int], bool]:
    ids = (await conn.execute(text("SELECT id FROM posts WHERE status = 'published' ORDER BY id"))).scalars().all()
    rest = [i for i in ids if after_id is None or i > after_id]
    return rest[:limit], len(rest) > limit


def _page_parts(value: Any) -> tuple[list[Any], Any] | None:
    if isinstance(value, tuple) and len(value) == 2 and isinstance(value[0], list):
        return value[0], value[1]
    return None


def _q4_order(attempt: Attempt) -> str | None:
    selects = _selects_from(attempt, "posts")
    if selects and not any("ORDER BY" in s.sql for s in selects):
        return (
            "your query has no ORDER BY: LIMIT then takes whichever rows the database meets first, "
            "and the cursor means nothing. Order by Post.id"
        )
    return None


def _q4_starts_after(attempt: Attempt, after_id: int | None) -> str | None:
    got = _page_parts(attempt.value)
    if got is None or after_id is None:
        return None
    ids = got[0]
    if after_id in ids:
        return (
            f"the page repeats post {after_id}, the cursor itself: the client already has it. "
            "Use Post.id > after_id, not >="
        )
    return None


def _q4_has_more(attempt: Attempt) -> str | None:
    got, want = _page_parts(attempt.value), _page_parts(attempt.expected)
    if got is None or want is None or got[0] != want[0] or got[1] == want[1]:
        return None
    if want[1]:
        return "has_more is False but more posts follow: fetch limit + 1 rows and check whether the extra one came back"
    return (
        f"has_more is {got[1]!r} on the last page, which is exactly full: the client would ask for an empty "
        "page. Fetch limit + 1 rows: has_more is whether the extra one came back"
    )


def _q4_published(attempt: Attempt) -> str | None:
    selects = _selects_from(attempt, "posts")
    if selects and not any("published" in _param_values(s) or "'published'" in s.sql for s in selects):
        return (
            "your query never filters on the status, so drafts and archived posts are in your pages: "
            "add Post.status == \"published\" to the where()"
        )
    return None


async def _q4_probe(conn: AsyncConnection, attempt: Attempt, **call: Any) -> None:
    attempt.extra["call"] = dict(call)  # the cursor this call used, for the "starts after" rule


async def _q4_gte(session, after_id, limit):
    stmt = select(Post.id).where(Post.status == "published").order_by(Post.id).limit(limit + 1)
    if after_id is not None:
        stmt = stmt.where(Post.id >= after_id)
    ids = list((await session.scalars(stmt)).all())
    return ids[:limit], len(ids) > limit


async def _q4_no_extra(session, after_id, limit):
    stmt = select(Post.id).where(Post.status == "published").order_by(Post.id).limit(limit)
    if after_id is not None:
        stmt = stmt.where(Post.id > after_id)
    ids = list((await session.scalars(stmt)).all())
    return ids, len(ids) == limit


async def _q4_offset(session, after_id, limit):
    published = Post.status == "published"
    skip = 0
    if after_id is not None:
        skip = await session.scalar(select(func.count()).select_from(Post).where(published, Post.id <= after_id))
    stmt = select(Post.id).where(published).order_by(Post.id).offset(skip).limit(limit + 1)
    ids = list((await session.scalars(stmt)).all())
    return ids[:limit], len(ids) > limit


async def _q4_unordered(session, after_id, limit):
    stmt = select(Post.id).where(Post.status == "published").limit(limit + 1)
    if after_id is not None:
        stmt = stmt.where(Post.id > after_id)
    ids = list((await session.scalars(stmt)).all())
    return ids[:limit], len(ids) > limit


async def _q4_every_status(session, after_id, limit):
    stmt = select(Post.id).order_by(Post.id).limit(limit + 1)
    if after_id is not None:
        stmt = stmt.where(Post.id > after_id)
    ids = list((await session.scalars(stmt)).all())
    return ids[:limit], len(ids) > limit


async def _q4_count_for_more(session, after_id, limit):
    published = Post.status == "published"
    after = Post.id > after_id if after_id is not None else Post.id > 0
    stmt = select(Post.id).where(published, after).order_by(Post.id).limit(limit)
    ids = list((await session.scalars(stmt)).all())
    total = await session.scalar(select(func.count()).select_from(Post).where(published, after))
    return ids, total > limit


q4 = Exercise(
    id="03.q4",
    title="A keyset page of published posts",
    kind=SESSION_FN,
    solution_answer=_q4_solution,
    expected=_q4_expected,
    probe=_q4_probe,
    calls=(
        {"after_id": None, "limit": 5},  # the first page
        {"after_id": 12, "limit": 5},  # a middle page (12 is a published post)
        {"after_id": 4996, "limit": 5},  # the last page, three posts
        {"after_id": 4993, "limit": 5},  # the last page, exactly five posts
    ),
    rules=[
        Probe(_no_offset, name="a keyset, not OFFSET"),
        Probe(_q4_order, name="a deterministic order"),
        Probe(lambda a: _q4_starts_after(a, a.extra.get("call", {}).get("after_id")), name="starts after the cursor"),
        Probe(_q4_published, name="published posts only"),
        Probe(_q4_has_more, name="has_more right on the boundary"),
        _SamePage("has_more"),
        StatementBudget(1),
    ],
    hints=[
        "Order by Post.id and keep only the rows after the cursor: .where(Post.id > after_id) when there is one.",
        "Ask for one row more than the page: .limit(limit + 1). If it came back, there is a next page.",
        "ids = list((await session.scalars(stmt)).all()); return ids[:limit], len(ids) > limit",
    ],
    why="A keyset page costs the same on page 1 and page 1,000, and one extra row answers has_more without a count.",
    counterexamples=[
        Counterexample("off by one: >= instead of >", _q4_gte, "use post.id > after_id"),
        Counterexample("no fetch-one-extra", _q4_no_extra, "fetch limit + 1"),
        Counterexample("an OFFSET in disguise", _q4_offset, "offset"),
        Counterexample("no ORDER BY", _q4_unordered, "no order by"),
        Counterexample("a second query to count", _q4_count_for_more, "statements"),
        Counterexample("every status, not only published", _q4_every_status, "drafts and archived posts"),
    ],
)


# --------------------------------------------------------------------------- q5

#: The five posts the lesson (and this checker) stamps with one shared second: the
#: 8th to 12th newest of the seed, all set to the 10th's created_at. In id DESC order.
TIED_POSTS = (3958, 3062, 2152, 1480, 1126)
TIED_AT = datetime(2025, 12, 31, 20, 23, 46)
#: The 5th oldest post of the seed: exactly four posts are older.
_OLD_CURSOR = (datetime(2024, 2, 10, 19, 26, 38), 4518)


async def make_ties(conn: AsyncConnection) -> None:
    """Give TIED_POSTS one shared created_at (idempotent; the check's transaction is rolled back)."""
    posts = Post.__table__
    await conn.execute(posts.update().where(posts.c.id.in_(TIED_POSTS)).values(created_at=TIED_AT))


async def _q5_solution(session, after, limit):
    if limit < 1:  # an empty page has no last post to make a cursor from
        raise ValueError(f"limit must be at least 1, got {limit}")
    stmt = select(Post.id, Post.created_at).order_by(Post.created_at.desc(), Post.id.desc()).limit(limit + 1)
    if after is not None:
        stmt = stmt.where(tuple_(Post.created_at, Post.id) < tuple_(*after))
    rows = (await session.execute(stmt)).all()
    page = rows[:limit]
    next_after = (page[-1].created_at, page[-1].id) if len(rows) > limit else None
    return [r.id for r in page], next_after


async def _feed_order(conn: AsyncConnection) -> list[tuple[datetime, int]]:
    rows = (
        await conn.execute(text("SELECT created_at, id FROM posts").columns(created_at=DateTime, id=Integer))
    ).all()
    return sorted(((r.created_at, r.id) for r in rows), reverse=True)


async def _q5_expected(conn: AsyncConnection, after: tuple[datetime, int] | None, limit: int) -> Any:
    await make_ties(conn)
    order = await _feed_order(conn)
    rest = [key for key in order if after is None or key < tuple(after)]
    page = rest[:limit]
    next_after = page[-1] if len(rest) > limit else None
    return [i for _, i in page], next_after


async def _q5_probe(conn: AsyncConnection, attempt: Attempt, after: Any, limit: int) -> None:
    if after is None:
        return
    order = await _feed_order(conn)
    attempt.extra["before_cursor"] = {key[1] for key in order if key >= tuple(after)}
    attempt.extra["tied"] = {i for at, i in order if at == after[0]}


def _q5_unique_order(attempt: Attempt) -> str | None:
    for s in _selects_from(attempt, "posts"):
        order_by = s.sql.split("ORDER BY", 1)[1] if "ORDER BY" in s.sql else ""
        if "created_at" in order_by and "posts.id" not in order_by:
            return (
                "ORDER BY created_at alone is not unique: posts that share a timestamp come back in any "
                "order, so pages can repeat or skip them. Add Post.id.desc() as a tiebreaker"
            )
    return None


def _q5_newest_first(attempt: Attempt) -> str | None:
    for s in _selects_from(attempt, "posts"):
        keys = order_by_keys(s.sql)
        if keys and "created_at" in keys[0] and "desc" not in keys[0]:
            return (
                "your feed is sorted oldest first: newest first is .order_by(Post.created_at.desc(), "
                "Post.id.desc()), and 'after the cursor' then means smaller: tuple_(...) < tuple_(*after)"
            )
    return None


def _q5_same_directions(attempt: Attempt) -> str | None:
    """A row-value cursor under an ORDER BY whose two keys go opposite ways."""
    return mixed_keyset_directions(_selects_from(attempt, "posts"), "created_at", "after")


def _q5_repeats(attempt: Attempt) -> str | None:
    got = _page_parts(attempt.value)
    seen = attempt.extra.get("before_cursor") or set()
    if got is None or not seen:
        return None
    again = [i for i in got[0] if i in seen]
    if again:
        return (
            f"post(s) {again[:3]} were already on an earlier page (at or before the cursor): compare the "
            "pair strictly, tuple_(Post.created_at, Post.id) < tuple_(*after), not <= or created_at alone"
        )
    return None


def _q5_skips(attempt: Attempt) -> str | None:
    got, want = _page_parts(attempt.value), _page_parts(attempt.expected)
    if got is None or want is None:
        return None
    skipped = [i for i in want[0] if i not in got[0] and i in (attempt.extra.get("tied") or set())]
    if skipped:
        return (
            f"post(s) {skipped[:3]} were skipped: they share the cursor's created_at. Comparing created_at "
            "alone drops them; compare (created_at, id) as a pair"
        )
    return None


def _q5_next(attempt: Attempt) -> str | None:
    got, want = _page_parts(attempt.value), _page_parts(attempt.expected)
    if got is None or want is None or got[0] != want[0] or got[1] == want[1]:
        return None
    if want[1] is None:
        return (
            f"the next cursor is {got[1]!r} on the last page: return None when no posts follow "
            "(fetch limit + 1 rows to find out)"
        )
    return f"the next cursor should be (created_at, id) of the page's last post, {want[1]!r}, not {got[1]!r}"


async def _q5_created_at_lt(session, after, limit):
    stmt = select(Post.id, Post.created_at).order_by(Post.created_at.desc(), Post.id.desc()).limit(limit + 1)
    if after is not None:
        stmt = stmt.where(Post.created_at < after[0])
    rows = (await session.execute(stmt)).all()
    page = rows[:limit]
    return [r.id for r in page], ((page[-1].created_at, page[-1].id) if len(rows) > limit else None)


async def _q5_created_at_le(session, after, limit):
    stmt = select(Post.id, Post.created_at).order_by(Post.created_at.desc(), Post.id.desc()).limit(limit + 1)
    if after is not None:
        stmt = stmt.where(Post.created_at <= after[0])
    rows = (await session.execute(stmt)).all()
    page = rows[:limit]
    return [r.id for r in page], ((page[-1].created_at, page[-1].id) if len(rows) > limit else None)


async def _q5_no_tiebreak(session, after, limit):
    stmt = select(Post.id, Post.created_at).order_by(Post.created_at.desc()).limit(limit + 1)
    if after is not None:
        stmt = stmt.where(tuple_(Post.created_at, Post.id) < tuple_(*after))
    rows = (await session.execute(stmt)).all()
    page = rows[:limit]
    return [r.id for r in page], ((page[-1].created_at, page[-1].id) if len(rows) > limit else None)


async def _q5_expanded_le(session, after, limit):
    stmt = select(Post.id, Post.created_at).order_by(Post.created_at.desc(), Post.id.desc()).limit(limit + 1)
    if after is not None:
        at, pk = after
        stmt = stmt.where(or_(Post.created_at < at, and_(Post.created_at == at, Post.id <= pk)))
    rows = (await session.execute(stmt)).all()
    page = rows[:limit]
    return [r.id for r in page], ((page[-1].created_at, page[-1].id) if len(rows) > limit else None)


async def _q5_id_ascending(session, after, limit):
    # the learner trial's answer: a row-value < under created_at DESC, id ASC
    stmt = select(Post.id, Post.created_at).order_by(Post.created_at.desc(), Post.id).limit(limit + 1)
    if after is not None:
        stmt = stmt.where(tuple_(Post.created_at, Post.id) < tuple_(*after))
    rows = (await session.execute(stmt)).all()
    page = rows[:limit]
    return [r.id for r in page], ((page[-1].created_at, page[-1].id) if len(rows) > limit else None)


async def _q5_always_next(session, after, limit):
    stmt = select(Post.id, Post.created_at).order_by(Post.created_at.desc(), Post.id.desc()).limit(limit)
    if after is not None:
        stmt = stmt.where(tuple_(Post.created_at, Post.id) < tuple_(*after))
    page = (await session.execute(stmt)).all()
    return [r.id for r in page], ((page[-1].created_at, page[-1].id) if page else None)


async def _q5_oldest_first(session, after, limit):
    stmt = select(Post.id, Post.created_at).order_by(Post.created_at, Post.id).limit(limit + 1)
    if after is not None:
        stmt = stmt.where(tuple_(Post.created_at, Post.id) > tuple_(*after))
    rows = (await session.execute(stmt)).all()
    page = rows[:limit]
    return [r.id for r in page], ((page[-1].created_at, page[-1].id) if len(rows) > limit else None)


q5 = Exercise(
    id="03.q5",
    title="A newest-first feed that survives ties",
    kind=SESSION_FN,
    solution_answer=_q5_solution,
    expected=_q5_expected,
    probe=_q5_probe,
    calls=(
        {"after": None, "limit": 10},  # ends inside the tie group
        {"after": (TIED_AT, 2152), "limit": 10},  # starts inside it
        {"after": _OLD_CURSOR, "limit": 4},  # the last page, exactly four posts
    ),
    rules=[
        Probe(_no_offset, name="a keyset, not OFFSET"),
        Probe(_q5_same_directions, name="the order and the cursor go the same way"),
        Probe(_q5_newest_first, name="newest first"),
        Probe(_q5_unique_order, name="a unique order"),
        Probe(_q5_repeats, name="no post twice"),
        Probe(_q5_skips, name="no post skipped"),
        Probe(_q5_next, name="the next cursor"),
        _SamePage("the next cursor"),
        StatementBudget(1),
    ],
    hints=[
        "Order by Post.created_at.desc(), then Post.id.desc(): the id makes the order unique when timestamps tie.",
        "The cursor is the last row's (created_at, id). Continue strictly after it: "
        "tuple_(Post.created_at, Post.id) < tuple_(*after) (both DESC, so 'after' means smaller).",
        "Fetch limit + 1 rows; if the extra one came back, the next cursor is (created_at, id) of row limit, else None.",
    ],
    why="A unique sort key and a strict pair comparison give every post exactly once, ties or not.",
    counterexamples=[
        Counterexample("keyset on created_at alone (<)", _q5_created_at_lt, "skipped"),
        Counterexample("keyset on created_at alone (<=)", _q5_created_at_le, "already on an earlier page"),
        Counterexample("no tiebreaker in ORDER BY", _q5_no_tiebreak, "tiebreaker"),
        Counterexample(
            "id ascending under a row-value <", _q5_id_ascending,
            "sorts created_at descending but id ascending, while the row-value comparison",
        ),
        Counterexample("expanded form with <= on id", _q5_expanded_le, "already on an earlier page"),
        Counterexample("a next cursor on the last page", _q5_always_next, "return none"),
        Counterexample("oldest first", _q5_oldest_first, "sorted oldest first"),
        Counterexample("oldest first: the page in words", _q5_oldest_first, "the page should hold posts ["),
    ],
)


# --------------------------------------------------------------------------- other correct forms


async def _q3_scalar_one(session, user_id):
    paid = exists().where(Order.user_id == user_id, Order.status == "paid")
    return (await session.execute(select(paid))).scalar_one()


async def _q3_query_exists(session, user_id):
    paid = select(Order.id).where(Order.user_id == user_id, Order.status == "paid")
    return await session.scalar(select(paid.exists()))


async def _q3_first_id_is_not_none(session, user_id):
    # stops at the first match too (LIMIT 1), and compares what it found with None
    found = await session.scalar(select(Order.id).where(Order.user_id == user_id, Order.status == "paid").limit(1))
    return found is not None


async def _q4_expanded(session, after_id, limit):
    stmt = select(Post.id).where(Post.status == "published", Post.id > (after_id or 0))
    ids = list((await session.scalars(stmt.order_by(Post.id).limit(limit + 1))).all())
    return ids[:limit], len(ids) > limit


async def _q5_expanded(session, after, limit):
    stmt = select(Post.id, Post.created_at).order_by(Post.created_at.desc(), Post.id.desc()).limit(limit + 1)
    if after is not None:
        at, pk = after
        stmt = stmt.where(or_(Post.created_at < at, and_(Post.created_at == at, Post.id < pk)))
    rows = (await session.execute(stmt)).all()
    page = rows[:limit]
    return [r.id for r in page], ((page[-1].created_at, page[-1].id) if len(rows) > limit else None)


def _q2_buyers(count: Any, condition: Any) -> Any:
    buyers = count.label("buyers")
    return (
        select(User.country, buyers).where(condition).group_by(User.country)
        .having(buyers >= 25).order_by(buyers.desc(), User.country)
    )


ALTERNATIVES = {
    "03.q1": [
        ("chained where() and != None", lambda: select(User.id, User.email, User.display_name)
         .where(User.country == "DE").where(User.is_active, User.phone != None)  # noqa: E711 - renders IS NOT NULL
         .order_by(User.id)),
        # NULL != '' is never true, so only users with a (non-empty) phone remain: right, if by a detour
        ("!= '' (NULL never passes a comparison)", lambda: select(User.id, User.email, User.display_name)
         .where(User.country == "DE", User.is_active, User.phone != "")
         .order_by(User.id)),
    ],
    "03.q2": [
        ("exists() correlated by hand", lambda: _q2_buyers(
            func.count(User.id), exists().where(Order.user_id == User.id, Order.status == "paid"))),
        ("count(*) instead of count(id)", lambda: _q2_buyers(
            func.count(), User.orders.any(Order.status == "paid"))),
        ("in_() a subquery of buyers", lambda: _q2_buyers(
            func.count(User.id), User.id.in_(select(Order.user_id).where(Order.status == "paid")))),
        ("a join, counted distinct", lambda: select(User.country, func.count(distinct(User.id)).label("buyers"))
         .join(Order, Order.user_id == User.id).where(Order.status == "paid").group_by(User.country)
         .having(func.count(distinct(User.id)) >= 25)
         .order_by(func.count(distinct(User.id)).desc(), User.country)),
    ],
    "03.q3": [
        ("exists() from the select", _q3_query_exists),
        ("execute(...).scalar_one()", _q3_scalar_one),
        ("the first id with LIMIT 1, is not None", _q3_first_id_is_not_none),
    ],
    "03.q4": [("a cursor of 0 for the first page", _q4_expanded)],
    "03.q5": [("the expanded or_/and_ form", _q5_expanded)],
}
