"""Lesson 02 · Filtering: where(), and_/or_/not_, in_, ilike, NULLs, dates, ordering and limit.

References are raw SQL, independent of the learner-facing solutions. Where a
reference returns datetimes, it declares its column types (``text().columns()``)
so SQLite's stored text comes back as ``datetime`` like the ORM answer's.

Misconceptions catalogued (one counterexample each, in ``counterexamples``):

- q1: the flag forgotten (extra rows all inactive); the flag and-ed with one country only,
  ``or_(and_(User.is_active, NL), SE, PL)`` (inactive users of the others; which countries it
  binds to is read from the SQL); Python ``or`` between comparisons (one country left); Python
  ``and`` (it returns its second operand: is_active never reaches the SQL); values pasted into SQL
  text; ``or_()`` where both must hold (users from other countries); a country left out of the
  list; the codes in lower case; sorted by another column (named from the SQL).
- q2: plain ``like()`` / ``endswith()`` (case-insensitive only on SQLite: judged from the
  SQL, LIKE versus ILIKE / lower(); ``contains()`` too); two spellings instead of ignoring case; a pattern that
  is not anchored (other domains); a pattern without ``%`` (matches nothing); a pattern without
  the ``@`` (the same rows on this seed, so judged from the pattern it sent).
- q3: NULL logins forgotten; NOT of a comparison (still skips NULL); Python ``is None``
  (constant false); ``!= None`` (IS NOT NULL, the opposite test); ``or_()`` around all three;
  no phone as ``== ""`` or ``!= ""`` (a missing phone is NULL); ``<=`` the cutoff (judged from
  the SQL: no login at midnight in the seed); a cutoff a day early or late; ``>`` for ``<``.
- q4: an f-string in ``text()`` (the injection is the headline, before the wildcards); BETWEEN ending at midnight on 31 December, or ``<`` it; a range
  that keeps midnight on 1 January 2026 or drops midnight on 1 January 2025 (from the SQL); no
  LIMIT; oldest first; user text as a LIKE pattern without ``autoescape`` (``_`` is a wildcard).
- q5: ``desc()`` leaving NULLs to the backend; ``nulls_first()``; ``nulls_last().desc()`` (NULLS
  LAST DESC, a syntax error: explained by :mod:`course.exercises.explain`); the users who never
  logged in filtered out; no tie-breaker; ascending order; inactive users included; the code in
  lower case.

``ALTERNATIVES`` lists correct answers of another form; the tests require them accepted.
"""

from __future__ import annotations

import re
from datetime import date, datetime, timedelta
from typing import Any

from sqlalchemy import DateTime, Integer, String, and_, desc, func, not_, nulls_last, or_, select, text

from ..schema import User
from .core import STATEMENT, Counterexample, Exercise, sql_reference
from .rules import (
    Attempt,
    BoundParameters,
    Columns,
    EmptyStringForNull,
    LetterCase,
    Probe,
    SameResult,
    StatementBudget,
    compared_values,
    values_in,
)
from .userfacts import COUNTRY_CODES, order_by_keys, some, user_facts_probe


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


def _rows_extra(attempt: Attempt) -> list[Any]:
    want = {repr(v) for v in attempt.expected} if isinstance(attempt.expected, list) else set()
    got = attempt.value if isinstance(attempt.value, list) else []
    return [row for row in got if repr(row) not in want]


def _as_datetime(value: Any) -> datetime | None:
    """A compared value as a naive datetime (the columns have no time zone; an aware one gives
    None): SQLite receives datetimes as text, and learners pass dates and strings too."""
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value.strip())
        except ValueError:
            return None
    if isinstance(value, datetime):
        return value if value.tzinfo is None else None
    if isinstance(value, date):
        return datetime(value.year, value.month, value.day)
    return None


def _users(n: int) -> str:
    return f"{n} user{'' if n == 1 else 's'}"


def _when(row: Any) -> str:
    return f"user {row[0]}, {row[1]:%Y-%m-%d %H:%M}"


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


def _spans(cuts: list[int], end: int) -> list[tuple[int, int]]:
    """(start, end) of each disjunct, from where each starts (after " OR ") and where the list ends."""
    return [(c, n - 4) for c, n in zip(cuts, cuts[1:], strict=False)] + [(cuts[-1], end)]


def _or_lists(sql: str, start: int, end: int) -> list[list[tuple[int, int]]]:
    """The OR lists in ``sql[start:end]``: one for its top level and one inside each pair of
    parentheses, each the (start, end) of its disjuncts (a part without OR is a list of one)."""
    found, levels, quoted = [], [[start]], False
    for i in range(start, end):
        char = sql[i]
        if char == "'":
            quoted = not quoted
        elif quoted:
            continue
        elif char == "(":
            levels.append([i + 1])
        elif char == ")" and len(levels) > 1:
            found.append(_spans(levels.pop(), i))
        elif re.match(r"\sOR\s", sql[i:i + 4], re.IGNORECASE):
            levels[-1].append(i + 4)
    return [*found, _spans(levels[0], end)]


def _active_binds_to(attempt: Attempt) -> list[str]:
    """The countries an is_active inside an OR applies to, read from the SQL: ``is_active AND
    country = 'NL' OR country = 'SE' OR ...`` gives ['NL']; [] when no OR splits it from them."""
    for statement in attempt.log.queries:
        sql = statement.sql
        where = re.search(r"\bWHERE\b", sql)
        if not where:
            continue
        stop = re.search(r"\b(?:ORDER BY|GROUP BY|LIMIT|OFFSET)\b", sql[where.end():])
        end = where.end() + stop.start() if stop else len(sql)
        for disjuncts in _or_lists(sql, where.end(), end):
            for a, b in disjuncts if len(disjuncts) > 1 else ():
                if "is_active" in sql[a:b]:
                    bound = {v for v in values_in(statement, a, b) if v in COUNTRIES}
                    if bound and bound != set(COUNTRIES):
                        return sorted(bound, key=_country_order)
    return []


def _country_order(country: str) -> tuple[int, str]:
    """The task's order (NL, SE, PL), then any other country alphabetically."""
    return (COUNTRIES.index(country) if country in COUNTRIES else len(COUNTRIES), country)


def _country_test(countries: list[str]) -> str:
    if len(countries) == 1:
        return f"country = {countries[0]!r}"
    return f"country IN ({', '.join(map(repr, countries))})"


def _q1_inactive(attempt: Attempt) -> str | None:
    extra = (attempt.extra.get("user_facts") or {}).get("extra") or []
    inactive = some(attempt, "extra", lambda r: not r["is_active"])
    if not (extra and len(inactive) == len(extra)):
        return None
    if "is_active" not in _sql_of(attempt).split("WHERE", 1)[-1]:
        return (
            f"{len(inactive)} extra rows, every one an inactive user: your WHERE never tests is_active. "
            "Add User.is_active to where(), separated from the country test by a comma (or inside "
            "and_()). If you did write it, joined with Python's `and` (`User.is_active and ...`), Python "
            "kept only the second condition (it cannot turn `and` into SQL)"
        )
    where = _sql_of(attempt).split("WHERE", 1)[-1]
    if re.search(r"is_active\s+IS\s+NOT\s+NULL", where, re.I) and not re.search(r"is_active\s*(=|IS\s+(1|true))", where, re.I):
        return (
            f"{len(inactive)} extra rows, every one an inactive user: your WHERE tests `is_active IS NOT NULL`, "
            "which is true for every user (is_active is true or false, never NULL). Test the flag itself: "
            "`.where(User.is_active, ...)` (or `User.is_active.is_(True)`)"
        )
    # is_active is there, but inside an OR: (is_active AND NL) OR SE OR PL
    n = len(inactive)
    strays = " and ".join(map(repr, sorted({str(r["country"]) for r in inactive}, key=_country_order)))
    came_back = f"{n} inactive user{'s' if n > 1 else ''} from {strays} came back"
    bound = _active_binds_to(attempt)
    if bound:
        head = (
            f"the is_active condition applies only to {' and '.join(map(repr, bound))}: {came_back}. Your "
            f"filter reads (is_active AND {_country_test(bound)}) OR the other countries: AND binds "
            "tighter than OR (and `&` tighter than `|`)"
        )
    else:
        head = (
            f"the is_active condition does not apply to every country: {came_back} although your WHERE "
            "tests is_active"
        )
    return (
        f"{head}. Put the OR of the countries inside the AND, `.where(User.is_active, or_(...))`, or use "
        "`User.country.in_([\"NL\", \"SE\", \"PL\"])`"
    )


def _q1_sorted_by(attempt: Attempt) -> str | None:
    """The right rows sorted by something else: name the learner's sort keys and the one asked for."""
    if attempt.extra.get("top_level_order_by") is False:
        return "your statement has no ORDER BY, so no order is promised: add .order_by(User.id)"
    got, want = attempt.value, attempt.expected
    if not (isinstance(got, list) and isinstance(want, list)) or got == want:
        return None
    if sorted(map(repr, got)) != sorted(map(repr, want)):
        return None
    keys = order_by_keys(attempt.log.queries[0].sql) if attempt.log.queries else []
    if not keys:
        return None  # SameResult says: no ORDER BY
    return (
        f"the right rows, but sorted by {', '.join(keys)}; the task asks for them by id, smallest first: "
        ".order_by(User.id)"
    )


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
        LetterCase(COUNTRIES, stored=COUNTRY_CODES),
        Probe(test=_one_country_probe, name="every country asked for"),
        Probe(test=_q1_other_countries, name="only the three countries"),
        Probe(test=_q1_country_left_out, name="all three countries"),
        Probe(test=_q1_inactive, name="only active users"),
        Columns(["id", "username", "country"]),
        Probe(test=_q1_sorted_by, name="sorted by id"),
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
            "is_not(None) instead of the flag",
            lambda: select(User.id, User.username, User.country)
            .where(User.is_active.is_not(None), User.country.in_(["NL", "SE", "PL"]))
            .order_by(User.id),
            "which is true for every user (is_active is true or false, never NULL)",
        ),
        Counterexample(
            "forgot is_active",
            lambda: select(User.id, User.username, User.country)
            .where(User.country.in_(COUNTRIES))
            .order_by(User.id),
            "every one an inactive user",
        ),
        Counterexample("python or", _q1_python_or, "python's `or`"),
        Counterexample(
            # Python's `and` returns its second operand (a column is truthy): is_active never reaches SQL
            "python and",
            lambda: select(User.id, User.username, User.country)
            .where(User.is_active and User.country.in_(COUNTRIES))
            .order_by(User.id),
            "joined with python's `and`",
        ),
        Counterexample(
            "sorted by country, then id",
            lambda: select(User.id, User.username, User.country)
            .where(User.is_active, User.country.in_(COUNTRIES))
            .order_by(User.country, User.id),
            "sorted by users.country, users.id; the task asks for them by id",
        ),
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
        Counterexample(
            # the learner trial's answer: the and_() holds the first country only
            "is_active and-ed with the first country only",
            lambda: select(User.id, User.username, User.country)
            .where(or_(and_(User.is_active, User.country == "NL"), User.country == "SE", User.country == "PL"))
            .order_by(User.id),
            "the is_active condition applies only to 'NL': 6 inactive users from 'SE' and 'PL' came back",
        ),
        Counterexample(
            "& and | without parentheses",
            lambda: select(User.id, User.username, User.country)
            .where(User.is_active & (User.country == "NL") | (User.country == "SE") | (User.country == "PL"))
            .order_by(User.id),
            "and binds tighter than or",
        ),
        Counterexample(
            "country codes in lower case",
            lambda: select(User.id, User.username, User.country)
            .where(User.is_active, User.country.in_(["nl", "se", "pl"]))
            .order_by(User.id),
            "'nl' is not 'NL': comparing strings is case-sensitive",
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
    # judged from the pattern: this seed has no address at a domain that merely ends in example.com
    # only LIKE patterns (a %, or the operand of LIKE / endswith()): an equality on the domain is fine
    likes = re.search(r"\bI?LIKE\b", _sql_of(attempt), re.I)
    no_at = [p for p in _patterns(attempt) if "example.com" in p.lower() and "@example.com" not in p.lower()
             and ("%" in p or likes)]
    if no_at:
        return (
            f"your pattern {no_at[0]!r} has no @ before the domain, so it also matches addresses at other "
            "domains that end in example.com (ann@notexample.com, bob@mail.example.com); this sample data "
            "happens to have none. Put the @ in the pattern: '%@EXAMPLE.COM'"
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
    why=("Case-insensitive on every backend: ilike() says so in one word (ILIKE on PostgreSQL, lower() LIKE "
         "lower() on SQLite), and lower() on both sides does the same by hand."),
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
            # the same rows on this seed: judged from the pattern it sent
            "no @ before the domain",
            lambda: _emails(User.email.ilike("%EXAMPLE.COM")),
            "has no @ before the domain",
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
            "your WHERE clause is the constant false, so no row can match: Python answered one of your "
            "tests itself instead of handing it to SQLAlchemy. `User.phone is None` is always False (the "
            "column attribute is an object, never None), and Python can answer a `not` or an `and` the "
            "same way. Write `User.phone.is_(None)` (or `User.phone == None`), `~` / `not_()` for not, and "
            "a comma or `and_()` for and"
        )
    return None


def _q3_has_phone(attempt: Attempt) -> str | None:
    if ("!=", "") in compared_values(attempt, "phone"):
        return None  # phone != '': EmptyStringForNull says why it keeps the users with a phone
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


def _dated(rows: list[Any]) -> list[tuple[Any, datetime]]:
    """The (id, last_login) rows with a login (naive, as the column stores it)."""
    return [
        r for r in rows
        if isinstance(r, tuple) and len(r) == 2 and isinstance(r[1], datetime) and r[1].tzinfo is None
    ]


def _q3_cutoff(attempt: Attempt) -> str | None:
    """The date test: its boundary (strictly before midnight on 1 October) and its direction."""
    for op, value in compared_values(attempt, "last_login"):
        if op == "<=" and _as_datetime(value) == CUTOFF:  # no login at exactly midnight in the seed: read the SQL
            return (
                "your filter keeps last_login <= 1 October 2025 00:00: a user who logged in at exactly "
                "midnight on 1 October has been seen since the cutoff, yet would count as dormant. 'Not "
                "since 1 October' is strictly before it: `User.last_login < datetime(2025, 10, 1)`"
            )
    missing, extra = _dated(_rows_missing(attempt)), _dated(_rows_extra(attempt))
    if len(extra) != len(_rows_extra(attempt)) or not (missing or extra):
        return None
    near = timedelta(days=7)
    stops = [d for op, v in compared_values(attempt, "last_login") if op in ("<", "<=") and (d := _as_datetime(v))]
    yours = f" ({stops[0]:%Y-%m-%d %H:%M})" if stops else ""
    if not extra and all(CUTOFF - near <= r[1] < CUTOFF for r in missing):
        midnight = (
            f" (datetime({stops[0].year}, {stops[0].month}, {stops[0].day}) is midnight at the start of that day)"
            if stops and stops[0].time() == datetime.min.time() else ""
        )
        return (
            f"your cutoff is too early{yours}: {_users(len(missing))} who last logged in just before 1 October "
            f"2025 {'is' if len(missing) == 1 else 'are'} missing (e.g. {_when(missing[0])}), and they are "
            f"dormant{midnight}. Compare with midnight on 1 October, strictly: "
            "`User.last_login < datetime(2025, 10, 1)`"
        )
    if not missing and all(CUTOFF <= r[1] < CUTOFF + near for r in extra):
        return (
            f"your cutoff is too late{yours}: {_users(len(extra))} who logged in on or just after 1 October "
            f"2025 came back (e.g. {_when(extra[0])}), and they have been seen since. Keep only logins "
            "strictly before midnight on 1 October: `User.last_login < datetime(2025, 10, 1)`"
        )
    if extra and all(r[1] >= CUTOFF for r in extra):
        backwards = (
            f", and {_users(len(missing))} who are dormant {'is' if len(missing) == 1 else 'are'} missing: is "
            "your comparison the wrong way round?"
            if missing else ": is your date test missing?"
        )
        return (
            f"{len(extra)} of your users logged in on or after 1 October 2025 (e.g. {_when(extra[0])}), so "
            f"they are not dormant{backwards} Dormant means "
            "`or_(User.last_login.is_(None), User.last_login < datetime(2025, 10, 1))`"
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
        EmptyStringForNull("phone", "User.phone", missing=True, what="users"),
        Probe(test=_q3_has_phone, name="only users without a phone"),
        Probe(test=_never_logged_in_probe, name="never-logged-in users included"),
        Probe(test=_q3_cutoff, name="not seen since 1 October 2025"),
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
        Counterexample(
            "no phone as the empty string",
            lambda: select(User.id, User.last_login)
            .where(User.phone == "", or_(User.last_login.is_(None), User.last_login < CUTOFF))
            .order_by(User.id),
            "a missing phone is NULL, not the empty string",
        ),
        Counterexample(
            "!= '': the users who have a phone",
            lambda: select(User.id, User.last_login)
            .where(User.phone != "", or_(User.last_login.is_(None), User.last_login < CUTOFF))
            .order_by(User.id),
            "NULL != '' is not true either",
        ),
        Counterexample(
            # the same rows here (no login at exactly midnight): judged from the SQL
            "<= the cutoff",
            lambda: select(User.id, User.last_login)
            .where(User.phone.is_(None), or_(User.last_login.is_(None), User.last_login <= CUTOFF))
            .order_by(User.id),
            "strictly before it",
        ),
        Counterexample(
            "<= 30 September (midnight at its start)",
            lambda: select(User.id, User.last_login)
            .where(User.phone.is_(None), or_(User.last_login.is_(None), User.last_login <= datetime(2025, 9, 30)))
            .order_by(User.id),
            "your cutoff is too early (2025-09-30 00:00): 1 user who last logged in just before 1 October",
        ),
        Counterexample(
            "< 2 October",
            lambda: select(User.id, User.last_login)
            .where(User.phone.is_(None), or_(User.last_login.is_(None), User.last_login < datetime(2025, 10, 2)))
            .order_by(User.id),
            "your cutoff is too late",
        ),
        Counterexample(
            "> instead of <",
            lambda: select(User.id, User.last_login)
            .where(User.phone.is_(None), or_(User.last_login.is_(None), User.last_login > CUTOFF))
            .order_by(User.id),
            "the wrong way round",
        ),
    ],
)


# ---------------------------------------------------------------- q4
TERM = "brian"
FIRST_DAY, LAST_DAY, NEXT_YEAR = datetime(2025, 1, 1), datetime(2025, 12, 31), datetime(2026, 1, 1)


def _q4_ends(attempt: Attempt) -> list[tuple[str, datetime]]:
    """The upper bounds the answer puts on created_at: [("<" or "<=", datetime), ...]."""
    return [
        (op, when) for op, value in compared_values(attempt, "created_at")
        if op in ("<", "<=") and (when := _as_datetime(value)) is not None
    ]


def _last_day_probe(attempt: Attempt) -> str | None:
    lost = [
        r for r in _rows_missing(attempt)
        if isinstance(r, tuple) and isinstance(r[-1], datetime) and r[-1].tzinfo is None and r[-1] >= LAST_DAY
    ]
    if not lost:
        return None
    fix = "Use a half-open range: >= datetime(2025, 1, 1) and < datetime(2026, 1, 1)"
    early = [(op, when) for op, when in _q4_ends(attempt) if when < NEXT_YEAR]
    if early and early[0][1] == LAST_DAY and early[0][0] == "<":
        return (
            f"{len(lost)} user(s) who signed up on 31 December are missing: your range stops before "
            f"datetime(2025, 12, 31), which is midnight that morning, so the whole day is left out. {fix}"
        )
    if early and early[0][1] != LAST_DAY:
        return (
            f"{len(lost)} user(s) who signed up on 31 December are missing: your range ends at "
            f"{early[0][1]:%Y-%m-%d %H:%M}, before the year does. {fix}"
        )
    if early or re.search(r"\bBETWEEN\b|<=", _sql_of(attempt), re.IGNORECASE):
        return (
            f"{len(lost)} user(s) who signed up on 31 December are missing: BETWEEN ... AND "
            "datetime(2025, 12, 31) (or <= it) ends at midnight that morning. " + fix
        )
    return None


def _q4_half_open(attempt: Attempt) -> str | None:
    """The year's two boundaries, read from the SQL: no sign-up in the seed falls on either midnight."""
    for op, when in _q4_ends(attempt):
        if op == "<=" and when == NEXT_YEAR:
            return (
                "your range includes midnight on 1 January 2026 (BETWEEN and <= keep their end): a user who "
                "signed up at that instant did not sign up in 2025. End the range with "
                "`User.created_at < datetime(2026, 1, 1)`"
            )
    for op, value in compared_values(attempt, "created_at"):
        if op == ">" and _as_datetime(value) == FIRST_DAY:
            return (
                "your range leaves out midnight on 1 January 2025 (> is strict): a user who signed up at that "
                "instant did sign up in 2025. Start the range with `User.created_at >= datetime(2025, 1, 1)`"
            )
    return None


def _q4_pasted(attempt: Attempt) -> str | None:
    """The search text written into the SQL text (an f-string in text()): injection comes first."""
    pasted = re.compile(rf"'[^']*{re.escape(TERM)}[^']*'", re.IGNORECASE)
    if any(pasted.search(s.sql) for s in attempt.log.queries):
        return (
            "the search text was pasted into the SQL text (an f-string in `text()`): whatever the admin types "
            "becomes part of the SQL, so a quote in it ends the string and the rest runs as SQL (SQL "
            "injection). Let SQLAlchemy send it as a bound parameter, with its wildcards escaped: "
            "`User.username.startswith(term, autoescape=True)`"
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
        Probe(test=_q4_pasted, name="the search text sent as a bound parameter"),
        Probe(test=_q4_anywhere, name="names that start with the search"),
        Probe(test=_q4_wildcards, name="the search text matched literally"),
        Probe(test=_last_day_probe, name="the whole last day"),
        Probe(test=_q4_half_open, name="2025 and nothing else"),
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
        Counterexample("f-string in text()", _q4_fstring, "the search text was pasted into the SQL text"),
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
            "< 31 December",
            lambda: select(User.id, User.username, User.created_at)
            .where(
                User.username.startswith(TERM, autoescape=True),
                User.created_at >= datetime(2025, 1, 1),
                User.created_at < datetime(2025, 12, 31),
            )
            .order_by(User.created_at.desc(), User.id)
            .limit(5),
            "signed up on 31 December are missing: your range stops before",
        ),
        Counterexample(
            # the same rows here (no sign-up at midnight on New Year): judged from the SQL
            "between 1 January 2025 and 1 January 2026",
            lambda: select(User.id, User.username, User.created_at)
            .where(
                User.username.startswith(TERM, autoescape=True),
                User.created_at.between(datetime(2025, 1, 1), datetime(2026, 1, 1)),
            )
            .order_by(User.created_at.desc(), User.id)
            .limit(5),
            "includes midnight on 1 January 2026",
        ),
        Counterexample(
            "> 1 January 2025",
            lambda: select(User.id, User.username, User.created_at)
            .where(
                User.username.startswith(TERM, autoescape=True),
                User.created_at > datetime(2025, 1, 1),
                User.created_at < datetime(2026, 1, 1),
            )
            .order_by(User.created_at.desc(), User.id)
            .limit(5),
            "> is strict",
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


def _q5_never_seen_kept(attempt: Attempt) -> str | None:
    """The users who never logged in filtered out (``last_login IS NOT NULL``): the task sorts them last."""
    missing = _rows_missing(attempt)
    if not missing or _rows_extra(attempt) or not all(isinstance(r, tuple) and r[-1] is None for r in missing):
        return None
    where = _sql_of(attempt).split("WHERE", 1)[-1]
    how = " (last_login IS NOT NULL)" if re.search(r"last_login\s+IS\s+NOT\s+NULL", where, re.I) else ""
    return (
        f"the {_users(len(missing))} who never logged in {'is' if len(missing) == 1 else 'are'} missing: your "
        f"WHERE filters them out{how}. The task keeps them, at the end: drop that condition and say where the "
        "NULLs go, `.order_by(User.last_login.desc().nulls_last(), User.id)`"
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
        LetterCase(["SE"], stored=COUNTRY_CODES),
        Probe(test=_q5_ascending, name="most recent first"),
        Probe(test=_q5_inactive, name="only active users"),
        Probe(test=_q5_never_seen_kept, name="users who never logged in kept"),
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
        Counterexample(
            # the learner trial's answer: two mistakes; the users it drops come first
            "never-seen users filtered out",
            lambda: select(User.id, User.last_login)
            .where(User.country == "SE", User.is_active, User.last_login.is_not(None))
            .order_by(User.last_login.desc(), User.id),
            "who never logged in are missing: your where filters them out (last_login is not null)",
        ),
        Counterexample(
            # the direction and the NULLs placement chained the wrong way round: a syntax error
            "nulls_last().desc()",
            lambda: select(User.id, User.last_login)
            .where(User.country == "SE", User.is_active)
            .order_by(User.last_login.nulls_last().desc(), User.id),
            "the direction comes first",
        ),
        Counterexample(
            "the code in lower case",
            lambda: select(User.id, User.last_login)
            .where(User.country == "se", User.is_active)
            .order_by(User.last_login.desc().nulls_last(), User.id),
            "'se' is not 'SE'",
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
        ("NULL or the empty string", lambda: select(User.id, User.last_login)
         .where(or_(User.phone.is_(None), User.phone == ""), or_(User.last_login.is_(None), User.last_login < CUTOFF))
         .order_by(User.id)),
        ("not_() of >= (renders <)", lambda: select(User.id, User.last_login)
         .where(User.phone.is_(None), or_(User.last_login.is_(None), not_(User.last_login >= CUTOFF)))
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
