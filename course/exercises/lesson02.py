"""Lesson 02 · Filtering: where(), and_/or_/not_, in_, ilike, NULLs, dates, ordering and limit.

References are raw SQL, independent of the learner-facing solutions. Where a
reference returns datetimes, it declares its column types (``text().columns()``)
so SQLite's stored text comes back as ``datetime`` like the ORM answer's.

Misconceptions catalogued (one counterexample each, in ``counterexamples``):

- q1: the flag forgotten (extra rows all inactive); Python ``or`` between comparisons
  (one country left); values pasted into SQL text; ``or_()`` where both must hold (users
  from other countries); a country left out of the list.
- q2: plain ``like()`` / ``endswith()`` (case-insensitive only on SQLite: judged from the
  SQL, LIKE versus ILIKE / lower(); ``contains()`` too); two spellings instead of ignoring case; a pattern that
  is not anchored (other domains); a pattern without ``%`` (matches nothing).
- q3: NULL logins forgotten; NOT of a comparison (still skips NULL); Python ``is None``
  (constant false); ``!= None`` (IS NOT NULL, the opposite test); ``or_()`` around all three.
- q4: an f-string in ``text()``; BETWEEN ending at midnight on 31 December; no LIMIT;
  oldest first; user text as a LIKE pattern without ``autoescape`` (``_`` is a wildcard).
- q5: ``desc()`` leaving NULLs to the backend; ``nulls_first()``; no tie-breaker;
  ascending order; inactive users included.

``ALTERNATIVES`` lists correct answers of another form; the tests require them accepted.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any

from sqlalchemy import DateTime, Integer, String, desc, func, not_, nulls_last, or_, select, text

from ..schema import User
from .core import STATEMENT, Counterexample, Exercise, sql_reference
from .rules import Attempt, BoundParameters, Columns, Probe, SameResult, StatementBudget
from .userfacts import some, user_facts_probe


def _typed_reference(query: str, **types: Any):
    """A raw-SQL reference whose columns are typed (datetimes read back as datetime)."""

    async def reference(conn, **params):
        result = await conn.execute(text(query).columns(**types), params)
        return [tuple(r) for r in result.all()]

    reference.__doc__ = query
    return reference


def _sql_of(attempt: Attempt) -> str:
    return "\n".join(s.sql for s in attempt.log.queries)


def _rows_missing(attempt: Attempt) -> list[Any]:
    got = {repr(v) for v in (attempt.value or [])} if isinstance(attempt.value, list) else set()
    want = attempt.expected if isinstance(attempt.expected, list) else []
    return [row for row in want if repr(row) not in got]


# ---------------------------------------------------------------- q1
COUNTRIES = ["NL", "SE", "PL"]


def _one_country_probe(attempt: Attempt) -> str | None:
    got, want = attempt.value, attempt.expected
    if not (isinstance(got, list) and isinstance(want, list) and got and got != want):
        return None
    got_countries = {r[-1] for r in got if isinstance(r, tuple)}
    want_countries = {r[-1] for r in want if isinstance(r, tuple)}
    if len(got_countries) == 1 and got_countries < want_countries:
        (only,) = got_countries
        return (
            f"only users from {only!r} came back. If you joined comparisons with Python's `or`, it "
            "kept just one of them (Python cannot turn `or` into SQL): use User.country.in_([...]) or or_()"
        )
    return None


def _q1_other_countries(attempt: Attempt) -> str | None:
    strays = sorted({r["country"] for r in some(attempt, "extra", lambda r: r["country"] not in COUNTRIES)})
    if strays:
        return (
            f"your result has users from other countries ({', '.join(strays[:3])}): a condition that "
            "should hold together with the others was joined with or_(). Both must be true: pass them "
            "to where() separated by a comma (AND)"
        )
    return None


def _q1_country_left_out(attempt: Attempt) -> str | None:
    got, want = attempt.value, attempt.expected
    if not (isinstance(got, list) and isinstance(want, list) and got):
        return None
    have = {r[-1] for r in got if isinstance(r, tuple)}
    lost = sorted({r[-1] for r in want if isinstance(r, tuple)} - have)
    if lost and have:
        return f"no user from {', '.join(map(repr, lost))} came back: is that country in your list?"
    return None


def _q1_inactive(attempt: Attempt) -> str | None:
    extra = (attempt.extra.get("user_facts") or {}).get("extra") or []
    inactive = some(attempt, "extra", lambda r: not r["is_active"])
    if extra and len(inactive) == len(extra):
        return (
            f"{len(inactive)} extra rows, every one an inactive user: the is_active condition is "
            "missing. Add User.is_active to where()"
        )
    return None


def _q1_solution():
    return (
        select(User.id, User.username, User.country)
        .where(User.is_active, User.country.in_(["NL", "SE", "PL"]))
        .order_by(User.id)
    )


def _q1_python_or():
    # Python's `or` cannot be overloaded: it keeps one comparison and drops the others
    return (
        select(User.id, User.username, User.country)
        .where(User.is_active, (User.country == "NL") or (User.country == "SE") or (User.country == "PL"))
        .order_by(User.id)
    )


q1 = Exercise(
    id="02.q1",
    title="Active users from three countries",
    kind=STATEMENT,
    solution_answer=_q1_solution,
    expected=sql_reference(
        "SELECT id, username, country FROM users "
        "WHERE is_active AND country IN ('NL', 'SE', 'PL') ORDER BY id"
    ),
    probe=user_facts_probe(),
    rules=[
        Probe(test=_one_country_probe, name="every country asked for"),
        Probe(test=_q1_other_countries, name="only the three countries"),
        Probe(test=_q1_country_left_out, name="all three countries"),
        Probe(test=_q1_inactive, name="only active users"),
        Columns(["id", "username", "country"]),
        SameResult(ordered=True),
        StatementBudget(1),
        BoundParameters(COUNTRIES),
    ],
    hints=[
        "Two conditions, both required: pass both to .where(...), separated by a comma (that is AND).",
        "For 'one of these values' use User.country.in_([...]); for the flag, User.is_active on its own.",
        'select(User.id, User.username, User.country).where(User.is_active, User.country.in_(["NL", "SE", '
        '"PL"])).order_by(User.id)',
    ],
    why="in_() sends the list as bound parameters, one per value; a comma in where() is AND.",
    counterexamples=[
        Counterexample(
            "forgot is_active",
            lambda: select(User.id, User.username, User.country)
            .where(User.country.in_(COUNTRIES))
            .order_by(User.id),
            "every one an inactive user",
        ),
        Counterexample("python or", _q1_python_or, "python's `or`"),
        Counterexample(
            "countries pasted into text()",
            lambda: select(User.id, User.username, User.country)
            .where(User.is_active, text("country IN ('NL', 'SE', 'PL')"))
            .order_by(User.id),
            "pasted into the SQL text",
        ),
        Counterexample(
            "or_ instead of and",
            lambda: select(User.id, User.username, User.country)
            .where(or_(User.is_active, User.country.in_(COUNTRIES)))
            .order_by(User.id),
            "joined with or_()",
        ),
        Counterexample(
            "a country left out of the list",
            lambda: select(User.id, User.username, User.country)
            .where(User.is_active, User.country.in_(["NL", "SE"]))
            .order_by(User.id),
            "no user from 'PL' came back",
        ),
    ],
)


# ---------------------------------------------------------------- q2
_CASE_INSENSITIVE = re.compile(r"\bILIKE\b|\blower\s*\(|\bupper\s*\(", re.IGNORECASE)


def _patterns(attempt: Attempt) -> list[str]:
    """The strings the answer sent as bound parameters: its LIKE patterns, as the learner wrote them."""
    found: list[str] = []
    for statement in attempt.log.queries:
        params = statement.params
        values = params.values() if isinstance(params, dict) else (params or ())
        found += [v for v in values if isinstance(v, str)]
    return found


def _case_insensitive_probe(attempt: Attempt) -> str | None:
    sql = _sql_of(attempt)
    patterns = _patterns(attempt)
    if re.search(r"\blower\s*\(", sql, re.I) and not re.search(r"\bILIKE\b|\blower\s*\(\s*(\?|\$|%\(|:)", sql, re.I):
        upper = [p for p in patterns if p != p.lower()]
        if upper:
            return (
                f"you lower-cased the email but not the pattern: lower(email) has no capitals, so "
                f"{upper[0]!r} matches nothing on PostgreSQL (SQLite's LIKE ignores case and hides it). "
                "Write the pattern in lower case ('%@example.com'), or use .ilike() and keep yours"
            )
    if re.search(r"\bupper\s*\(", sql, re.I) and not re.search(r"\bupper\s*\(\s*(\?|\$|%\(|:)", sql, re.I):
        lower = [p for p in patterns if p != p.upper()]
        if lower:
            return (
                f"you upper-cased the email but not the pattern: upper(email) has no small letters, so "
                f"{lower[0]!r} matches nothing on PostgreSQL (SQLite's LIKE ignores case and hides it). "
                "Write the pattern in capitals, or use .ilike()"
            )
    if _CASE_INSENSITIVE.search(sql):
        return None
    if len(re.findall(r"\bLIKE\b", sql, re.IGNORECASE)) > 1 and re.search(r"\bOR\b", sql, re.IGNORECASE):
        return (
            "you listed spellings one by one: every spelling you did not list (EXAMPLE.COM, eXample.com, "
            "...) is missed on PostgreSQL, whose LIKE is case-sensitive. Ask for case-insensitive "
            "matching instead: one .ilike() (or .iendswith())"
        )
    got, want = attempt.value, attempt.expected
    counts = ""
    if isinstance(got, list) and isinstance(want, list) and len(got) != len(want):
        counts = f" (here {len(got)} of the {len(want)} addresses)"
    yours = f" with {patterns[0]!r}" if patterns else ""
    return (
        f"your statement sends plain LIKE{yours}, which is case-sensitive on PostgreSQL: it finds only "
        f"addresses in exactly the letter case you wrote{counts}. It only looks right on SQLite, whose "
        "LIKE ignores ASCII case. Ask for case-insensitive matching on every backend: .ilike() "
        "(or .iendswith())"
    )


def _q2_pattern(attempt: Attempt) -> str | None:
    got, want = attempt.value, attempt.expected
    if not (isinstance(got, list) and isinstance(want, list)):
        return None
    leading = re.search(r"'%'\s*\|\|", _sql_of(attempt)) or any(p.startswith("%") for p in _patterns(attempt))
    if want and got == [] and not leading:
        return (
            "no address matched: a LIKE pattern must match the whole value, so a pattern without % "
            "only finds an address equal to it. Put % in front: '%@EXAMPLE.COM'"
        )
    wrong = [r[1] for r in got if isinstance(r, tuple) and len(r) == 2 and isinstance(r[1], str)
             and not r[1].lower().endswith("@example.com")]
    if wrong:
        return (
            f"{len(wrong)} addresses that do not end with @example.com came back (e.g. {wrong[0]!r}): a % "
            "after the domain lets anything follow it. End the pattern with the domain: '%@EXAMPLE.COM'"
        )
    return None


def _emails(condition):
    """A q2-shaped statement with ``condition`` as its filter (for the counterexamples)."""
    return select(User.id, User.email).where(condition).order_by(User.id)


def _q2_solution():
    return select(User.id, User.email).where(User.email.ilike("%@EXAMPLE.COM")).order_by(User.id)


q2 = Exercise(
    id="02.q2",
    title="Emails at EXAMPLE.COM, in any letter case",
    kind=STATEMENT,
    solution_answer=_q2_solution,
    expected=sql_reference(
        "SELECT id, email FROM users WHERE lower(email) LIKE '%@example.com' ORDER BY id"
    ),
    rules=[
        Probe(test=_case_insensitive_probe, name="case-insensitive on every backend"),
        Probe(test=_q2_pattern, name="the pattern matches the domain, at the end"),
        Columns(["id", "email"]),
        SameResult(ordered=True),
        StatementBudget(1),
    ],
    hints=[
        "LIKE patterns: % matches any run of characters. The address must end with @EXAMPLE.COM.",
        "Plain .like() is case-sensitive on PostgreSQL. Which operator ignores case on every backend?",
        'select(User.id, User.email).where(User.email.ilike("%@EXAMPLE.COM")).order_by(User.id)',
    ],
    why="ilike() says what you mean on every backend: ILIKE on PostgreSQL, lower() LIKE lower() on SQLite.",
    counterexamples=[
        Counterexample(
            "plain like, capitals",
            lambda: _emails(User.email.like("%@EXAMPLE.COM")),
            "plain LIKE with '%@EXAMPLE.COM', which is case-sensitive on PostgreSQL",
        ),
        Counterexample(
            "two spellings with like",
            lambda: select(User.id, User.email)
            .where(or_(User.email.like("%@example.com"), User.email.like("%@Example.com")))
            .order_by(User.id),
            "listed spellings one by one",
        ),
        Counterexample(
            "pattern too wide",
            lambda: _emails(User.email.ilike("%EXAMPLE%")),
            "do not end with @example.com",
        ),
        Counterexample(
            "forgot the wildcard",
            lambda: _emails(User.email.ilike("@EXAMPLE.COM")),
            "must match the whole value",
        ),
        Counterexample(
            # right rows on SQLite (its LIKE ignores ASCII case): judged by the SQL it emitted
            "endswith(), case-sensitive on PostgreSQL",
            lambda: _emails(User.email.endswith("@example.com")),
            "case-sensitive on PostgreSQL",
        ),
        Counterexample(
            # the same with contains(): 306 rows on SQLite, 285 on PostgreSQL
            "contains(), case-sensitive on PostgreSQL",
            lambda: _emails(User.email.contains("@example.com")),
            "in exactly the letter case you wrote",
        ),
        Counterexample(
            # lower(email) never has capitals: nothing matches on PostgreSQL, everything on SQLite
            "lower() of the column, an upper-case pattern",
            lambda: _emails(func.lower(User.email).endswith("@EXAMPLE.COM")),
            "lower-cased the email but not the pattern",
        ),
    ],
)


# ---------------------------------------------------------------- q3
CUTOFF = datetime(2025, 10, 1)
_CONSTANT_FALSE = re.compile(r"WHERE\s+(0\s*=\s*1|false|1\s*!=\s*1)\b", re.IGNORECASE)


def _never_logged_in_probe(attempt: Attempt) -> str | None:
    missing = _rows_missing(attempt)
    if missing and all(isinstance(r, tuple) and len(r) == 2 and r[1] is None for r in missing):
        return (
            f"the {len(missing)} users who never logged in (last_login IS NULL) are missing: a "
            "comparison with NULL (<, >=, NOT ...) is never true. Add them with "
            "or_(User.last_login.is_(None), ...)"
        )
    return None


def _constant_false_probe(attempt: Attempt) -> str | None:
    if _CONSTANT_FALSE.search(_sql_of(attempt)):
        return (
            "your WHERE clause is the constant false, so no row can match: a Python `is None`, "
            "`not` or `and` was evaluated by Python, not turned into SQL. Use .is_(None), ~ / not_(), and_()"
        )
    return None


def _q3_has_phone(attempt: Attempt) -> str | None:
    if re.search(r"phone IS NOT NULL", _sql_of(attempt), re.IGNORECASE):
        return (
            "your statement asks for phone IS NOT NULL: users who have a phone. 'No phone' is "
            "User.phone.is_(None)"
        )
    with_phone = some(attempt, "extra", lambda r: r["phone"] is not None)
    if with_phone:
        return (
            f"{len(with_phone)} of your users have a phone: 'no phone' must hold for every row. Keep "
            "User.phone.is_(None) as its own condition, next to the or_() (a comma means AND)"
        )
    return None


def _q3_solution():
    return (
        select(User.id, User.last_login)
        .where(
            User.phone.is_(None),
            or_(User.last_login.is_(None), User.last_login < datetime(2025, 10, 1)),
        )
        .order_by(User.id)
    )


q3 = Exercise(
    id="02.q3",
    title="Dormant users without a phone",
    kind=STATEMENT,
    solution_answer=_q3_solution,
    expected=_typed_reference(
        "SELECT id, last_login FROM users WHERE phone IS NULL "
        "AND (last_login IS NULL OR last_login < '2025-10-01') ORDER BY id",
        id=Integer, last_login=DateTime,
    ),
    probe=user_facts_probe(),
    rules=[
        Probe(test=_constant_false_probe, name="a WHERE clause made of SQL"),
        Probe(test=_q3_has_phone, name="only users without a phone"),
        Probe(test=_never_logged_in_probe, name="never-logged-in users included"),
        Columns(["id", "last_login"]),
        SameResult(ordered=True),
        StatementBudget(1),
    ],
    hints=[
        "Two parts: no phone (phone IS NULL), and not seen since the cutoff. What is NULL < a date?",
        "A user who never logged in has last_login NULL, and a comparison with NULL is never true: "
        "combine two cases with or_().",
        "where(User.phone.is_(None), or_(User.last_login.is_(None), User.last_login < datetime(2025, 10, 1)))",
    ],
    why="SQL has three truth values: NULL < x and NOT (NULL >= x) are both unknown, so NULL rows need IS NULL.",
    counterexamples=[
        Counterexample(
            "forgot the NULL logins",
            lambda: select(User.id, User.last_login)
            .where(User.phone.is_(None), User.last_login < CUTOFF)
            .order_by(User.id),
            "never logged in",
        ),
        Counterexample(
            "NOT of a comparison",
            lambda: select(User.id, User.last_login)
            .where(User.phone.is_(None), not_(User.last_login >= CUTOFF))
            .order_by(User.id),
            "never logged in",
        ),
        Counterexample(
            "python `is None` (ruff's E711 fix)",
            lambda: select(User.id, User.last_login)
            .where(User.phone is None, or_(User.last_login.is_(None), User.last_login < CUTOFF))
            .order_by(User.id),
            "constant false",
        ),
        Counterexample(
            "!= None: phone present",
            lambda: select(User.id, User.last_login)
            .where(User.phone != None, or_(User.last_login.is_(None), User.last_login < CUTOFF))  # noqa: E711 - a wrong answer on purpose
            .order_by(User.id),
            "phone IS NOT NULL",
        ),
        Counterexample(
            "or_() around all three conditions",
            lambda: select(User.id, User.last_login)
            .where(or_(User.phone.is_(None), User.last_login.is_(None), User.last_login < CUTOFF))
            .order_by(User.id),
            "have a phone",
        ),
    ],
)


# ---------------------------------------------------------------- q4
TERM = "brian"
LAST_DAY = datetime(2025, 12, 31)


def _last_day_probe(attempt: Attempt) -> str | None:
    lost = [
        r for r in _rows_missing(attempt)
        if isinstance(r, tuple) and isinstance(r[-1], datetime) and r[-1] >= LAST_DAY
    ]
    if lost and re.search(r"\bBETWEEN\b|<=", _sql_of(attempt), re.IGNORECASE):
        return (
            f"{len(lost)} user(s) who signed up on 31 December are missing: BETWEEN ... AND "
            "datetime(2025, 12, 31) ends at midnight that morning. Use a half-open range: "
            ">= datetime(2025, 1, 1) and < datetime(2026, 1, 1)"
        )
    return None


def _q4_wildcards(attempt: Attempt) -> str | None:
    sql = _sql_of(attempt)
    if re.search(r"\bI?LIKE\b", sql, re.IGNORECASE) and not re.search(r"\bESCAPE\b", sql, re.IGNORECASE):
        return (
            "the search text goes into LIKE as a pattern: a _ or % the admin types is a wildcard, not "
            "a character (searching al_ finds every alan_). Escape it: "
            "User.username.startswith(term, autoescape=True)"
        )
    return None


def _q4_anywhere(attempt: Attempt) -> str | None:
    """contains() puts % on both sides: right rows only while no 2025 username has the text inside."""
    sql = _sql_of(attempt)
    if re.search(r"'%'\s*\|\|\s*(lower\s*\()?\s*(\?|\$\d+|%\(|:)", sql) or any(
        p.startswith("%") and TERM in p for p in _patterns(attempt)
    ):
        return (
            "your pattern starts with %, so it matches the search text anywhere in the username "
            "(contains() does that: 'obrian' would match 'brian'). The search box asks for usernames "
            "that start with it: User.username.startswith(term, autoescape=True)"
        )
    return None


def _q4_limit(attempt: Attempt) -> str | None:
    got = attempt.value
    if isinstance(got, list) and len(got) > 5 and not re.search(r"\bLIMIT\b|\bFETCH\b", _sql_of(attempt), re.I):
        return f"{len(got)} rows came back and the box shows at most 5: add .limit(5) after the order_by()"
    return None


def _q4_oldest_first(attempt: Attempt) -> str | None:
    order = _order_by_clause(attempt)
    if "created_at" in order and not re.search(r"created_at\s+DESC", order, re.IGNORECASE):
        return "your ORDER BY sorts created_at ascending, oldest first: newest first is User.created_at.desc()"
    return None


def _q4_solution(term="brian"):
    return (
        select(User.id, User.username, User.created_at)
        .where(
            User.username.startswith(term, autoescape=True),
            User.created_at >= datetime(2025, 1, 1),
            User.created_at < datetime(2026, 1, 1),
        )
        .order_by(User.created_at.desc(), User.id)  # id breaks ties
        .limit(5)
    )


def _q4_fstring():
    term = TERM
    return (
        select(User.id, User.username, User.created_at)
        .where(
            text(f"username LIKE '{term}%'"),
            User.created_at >= datetime(2025, 1, 1),
            User.created_at < datetime(2026, 1, 1),
        )
        .order_by(User.created_at.desc())
        .limit(5)
    )


q4 = Exercise(
    id="02.q4",
    title="A search box: newest 2025 sign-ups named like the search",
    kind=STATEMENT,
    solution_answer=_q4_solution,
    expected=_typed_reference(
        "SELECT id, username, created_at FROM users WHERE username LIKE 'brian%' "
        "AND created_at >= '2025-01-01' AND created_at < '2026-01-01' "
        "ORDER BY created_at DESC, id LIMIT 5",
        id=Integer, username=String, created_at=DateTime,
    ),
    rules=[
        Probe(test=_q4_anywhere, name="names that start with the search"),
        Probe(test=_q4_wildcards, name="the search text matched literally"),
        Probe(test=_last_day_probe, name="the whole last day"),
        Probe(test=_q4_limit, name="at most five rows"),
        Probe(test=_q4_oldest_first, name="newest first"),
        Columns(["id", "username", "created_at"]),
        SameResult(ordered=True),
        StatementBudget(1),
        BoundParameters([TERM, f"{TERM}%"]),
    ],
    hints=[
        "Three conditions: the username starts with the search text, and created_at falls in 2025. Then "
        "sort newest first and keep five.",
        "Use User.username.startswith(term, autoescape=True) (the text travels as a bound parameter, its "
        "_ and % escaped), a half-open range "
        "created_at >= 1 Jan 2025 and < 1 Jan 2026, .order_by(User.created_at.desc(), User.id) (id breaks ties) and .limit(5).",
        "BETWEEN ... AND datetime(2025, 12, 31) stops at midnight on 31 December: it misses that day.",
    ],
    why=(
        "startswith(autoescape=True) binds the search text and escapes its wildcards; a half-open date "
        "range (>= start, < next start) has no gap."
    ),
    counterexamples=[
        Counterexample("f-string in text()", _q4_fstring, "pasted into the SQL text"),
        Counterexample(
            "between ... 31 December",
            lambda: select(User.id, User.username, User.created_at)
            .where(
                User.username.startswith(TERM, autoescape=True),
                User.created_at.between(datetime(2025, 1, 1), datetime(2025, 12, 31)),
            )
            .order_by(User.created_at.desc())
            .limit(5),
            "signed up on 31 December",
        ),
        Counterexample(
            "no limit",
            lambda: select(User.id, User.username, User.created_at)
            .where(
                User.username.startswith(TERM, autoescape=True),
                User.created_at >= datetime(2025, 1, 1),
                User.created_at < datetime(2026, 1, 1),
            )
            .order_by(User.created_at.desc()),
            "add .limit(5)",
        ),
        Counterexample(
            "oldest first",
            lambda: select(User.id, User.username, User.created_at)
            .where(
                User.username.startswith(TERM, autoescape=True),
                User.created_at >= datetime(2025, 1, 1),
                User.created_at < datetime(2026, 1, 1),
            )
            .order_by(User.created_at)
            .limit(5),
            "oldest first",
        ),
        Counterexample(
            "the search text as a pattern (no autoescape)",
            lambda: select(User.id, User.username, User.created_at)
            .where(
                User.username.startswith(TERM),
                User.created_at >= datetime(2025, 1, 1),
                User.created_at < datetime(2026, 1, 1),
            )
            .order_by(User.created_at.desc(), User.id)
            .limit(5),
            "wildcard",
        ),
        Counterexample(
            # the same five rows here: no 2025 username has "brian" inside but not at the start
            "contains() instead of startswith()",
            lambda: select(User.id, User.username, User.created_at)
            .where(
                User.username.contains(TERM, autoescape=True),
                User.created_at >= datetime(2025, 1, 1),
                User.created_at < datetime(2026, 1, 1),
            )
            .order_by(User.created_at.desc(), User.id)
            .limit(5),
            "anywhere in the username",
        ),
    ],
)


# ---------------------------------------------------------------- q5
def _order_by_clause(attempt: Attempt) -> str:
    sql = _sql_of(attempt)
    match = re.search(r"\bORDER BY\b(.*?)(\bLIMIT\b|\bOFFSET\b|\bFETCH\b|$)", sql, re.IGNORECASE | re.DOTALL)
    return match.group(1) if match else ""


def _nulls_placed_probe(attempt: Attempt) -> str | None:
    order = _order_by_clause(attempt)
    if re.search(r"NULLS\s+FIRST", order, re.IGNORECASE):
        return "your ORDER BY puts the users who never logged in first; they belong last: .nulls_last()"
    if re.search(r"NULLS\s+LAST|IS\s+NULL|IS\s+NOT\s+NULL|coalesce\s*\(|\bCASE\b", order, re.IGNORECASE):
        return None
    return (
        "your ORDER BY leaves the NULL last_login rows to the backend's default: SQLite sorts NULLs "
        "as the smallest value (last in DESC), PostgreSQL as the largest (first in DESC). Say where "
        "they go: User.last_login.desc().nulls_last()"
    )


def _tie_breaker_probe(attempt: Attempt) -> str | None:
    order = _order_by_clause(attempt)
    if re.search(r"\busers\.id\b|(^|[\s,(])id\b", order):
        return None
    return (
        "rows that tie on last_login (the users who never logged in) have no defined order: add a "
        "tie-breaker, User.id, as the last ORDER BY key"
    )


def _q5_ascending(attempt: Attempt) -> str | None:
    order = _order_by_clause(attempt)
    if "last_login" in order and not re.search(r"last_login\s+DESC", order, re.IGNORECASE):
        return "your ORDER BY sorts last_login ascending, oldest login first: most recent first is .desc()"
    return None


def _q5_inactive(attempt: Attempt) -> str | None:
    inactive = some(attempt, "extra", lambda r: not r["is_active"])
    extra = (attempt.extra.get("user_facts") or {}).get("extra") or []
    if extra and len(inactive) == len(extra):
        return f"{len(extra)} extra row(s), all inactive users: add User.is_active to where()"
    return None


def _q5_solution():
    return (
        select(User.id, User.last_login)
        .where(User.country == "SE", User.is_active)
        .order_by(User.last_login.desc().nulls_last(), User.id)
    )


q5 = Exercise(
    id="02.q5",
    title="Most recently seen first, never-seen last, on every backend",
    kind=STATEMENT,
    solution_answer=_q5_solution,
    expected=_typed_reference(
        "SELECT id, last_login FROM users WHERE country = 'SE' AND is_active "
        "ORDER BY CASE WHEN last_login IS NULL THEN 1 ELSE 0 END, last_login DESC, id",
        id=Integer, last_login=DateTime,
    ),
    rules=[
        Probe(test=_q5_ascending, name="most recent first"),
        Probe(test=_q5_inactive, name="only active users"),
        Probe(test=_nulls_placed_probe, name="NULLs placed explicitly"),
        Probe(test=_tie_breaker_probe, name="a tie-breaker"),
        Columns(["id", "last_login"]),
        SameResult(ordered=True),
        StatementBudget(1),
    ],
    hints=[
        "Filter: country SE and active. Sort: last_login, newest first. Where do NULLs go by default?",
        "SQLite and PostgreSQL disagree on where NULLs sort. .desc().nulls_last() states it for both.",
        "The users who never logged in all tie (NULL): add User.id as a second ORDER BY key.",
    ],
    why="NULL placement is backend-specific by default; nulls_last() plus a unique tie-breaker is portable.",
    probe=user_facts_probe(),
    counterexamples=[
        Counterexample(
            "desc() only",
            lambda: select(User.id, User.last_login)
            .where(User.country == "SE", User.is_active)
            .order_by(User.last_login.desc(), User.id),
            "backend's default",
        ),
        Counterexample(
            "nulls_first()",
            lambda: select(User.id, User.last_login)
            .where(User.country == "SE", User.is_active)
            .order_by(User.last_login.desc().nulls_first(), User.id),
            "never logged in first",
        ),
        Counterexample(
            "no tie-breaker",
            lambda: select(User.id, User.last_login)
            .where(User.country == "SE", User.is_active)
            .order_by(User.last_login.desc().nulls_last()),
            "tie-breaker",
        ),
        Counterexample(
            "oldest first",
            lambda: select(User.id, User.last_login)
            .where(User.country == "SE", User.is_active)
            .order_by(User.last_login.asc().nulls_last(), User.id),
            "oldest login first",
        ),
        Counterexample(
            "inactive users too",
            lambda: select(User.id, User.last_login)
            .where(User.country == "SE")
            .order_by(User.last_login.desc().nulls_last(), User.id),
            "all inactive users",
        ),
    ],
)


# ---------------------------------------------------------------- correct answers of another form
ALTERNATIVES = {
    "02.q1": [
        ("or_() of three comparisons", lambda: select(User.id, User.username, User.country)
         .where(User.is_active, or_(*(User.country == c for c in COUNTRIES))).order_by(User.id)),
        ("chained where() and is_(True)", lambda: select(User.id, User.username, User.country)
         .where(User.is_active.is_(True)).where(User.country.in_(COUNTRIES)).order_by(User.id)),
    ],
    "02.q2": [
        ("iendswith()", lambda: select(User.id, User.email)
         .where(User.email.iendswith("@EXAMPLE.COM")).order_by(User.id)),
        ("lower() LIKE a lower-case pattern", lambda: select(User.id, User.email)
         .where(func.lower(User.email).like("%@example.com")).order_by(User.id)),
    ],
    "02.q3": [
        ("| between the two cases", lambda: select(User.id, User.last_login)
         .where(User.phone.is_(None), User.last_login.is_(None) | (User.last_login < CUTOFF)).order_by(User.id)),
        ("== None (SQLAlchemy renders IS NULL)", lambda: select(User.id, User.last_login)
         .where(User.phone == None, or_(User.last_login == None, User.last_login < CUTOFF))  # noqa: E711 - renders IS NULL
         .order_by(User.id)),
    ],
    "02.q4": [
        ("like() with the text escaped by hand", lambda: select(User.id, User.username, User.created_at)
         .where(
             User.username.like(TERM.replace("/", "//").replace("%", "/%").replace("_", "/_") + "%", escape="/"),
             User.created_at >= datetime(2025, 1, 1),
             User.created_at < datetime(2026, 1, 1),
         )
         .order_by(User.created_at.desc(), User.id).limit(5)),
    ],
    "02.q5": [
        ("IS NULL as the first sort key", lambda: select(User.id, User.last_login)
         .where(User.country == "SE", User.is_active)
         .order_by(User.last_login.is_(None), User.last_login.desc(), User.id)),
        ("nulls_last(desc(...)) as functions", lambda: select(User.id, User.last_login)
         .where(User.country == "SE", User.is_active)
         .order_by(nulls_last(desc(User.last_login)), User.id)),
    ],
}
