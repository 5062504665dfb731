"""What a checker can judge. Each exercise declares only the rules that matter for it.

A rule looks at an :class:`Attempt` (what the answer returned, the SQL it
emitted, what it raised) and returns a :class:`RuleResult` whose message names
the problem in the learner's terms.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from types import CodeType
from typing import Any

from ..recorder import SqlLog
from ..schema import Base
from .verdict import RuleResult


@dataclass
class Attempt:
    """Everything the checker observed while running one answer."""

    value: Any = None  # the answer's result, normalised for comparison
    expected: Any = None  # the reference result, same shape
    columns: list[str] | None = None  # result keys, for statement answers
    log: SqlLog = field(default_factory=SqlLog)
    error: BaseException | None = None
    lazy_loads: int = 0
    lazy_attributes: list[str] = field(default_factory=list)  # relationships loaded lazily: "Comment.author"
    lazy_collections: dict[str, bool] = field(default_factory=dict)  # name -> is a collection
    session_usable: bool = True
    extra: dict[str, Any] = field(default_factory=dict)  # what exercise-specific probes found
    warnings: list[str] = field(default_factory=list)  # SQLAlchemy warnings the answer raised


def _fmt(value: Any) -> str:
    text = repr(value)
    return text if len(text) < 90 else text[:87] + "..."


def _examples(items: Sequence[Any], n: int = 3) -> str:
    shown = ", ".join(_fmt(i) for i in list(items)[:n])
    return shown + (" ..." if len(items) > n else "")


def normal(value: Any) -> Any:
    """Numbers compare across backends: Decimal and float become rounded floats."""
    if isinstance(value, bool):
        return value
    if isinstance(value, (Decimal, float)):
        return round(float(value), 4)
    if isinstance(value, (list, tuple)):
        return type(value)(normal(v) for v in value)
    return value


class Rule:
    name = "rule"

    def judge(self, attempt: Attempt) -> RuleResult:  # pragma: no cover - interface
        raise NotImplementedError


@dataclass
class SameResult(Rule):
    """The answer returns the expected rows (or value); ``ordered`` when the order was asked for."""

    ordered: bool = False
    what: str = "rows"
    name: str = "the right result"

    def judge(self, attempt: Attempt) -> RuleResult:
        if attempt.error is not None and attempt.lazy_loads:
            # the answer stopped at a lazy load (MissingGreenlet): there is no result to compare
            return RuleResult(self.name, False, "not judged: your answer stopped at a lazy load (see above)")
        if attempt.extra.get("explained"):  # the answer raised; the headline says what it means
            return RuleResult(self.name, False, "not compared: your function raised (see above)")
        raised = getattr(attempt.value, "error", None)
        if isinstance(raised, BaseException):  # an exercise that keeps what the answer raised as its result
            first = (str(raised).strip().splitlines() or [""])[0][:160]
            return RuleResult(self.name, False, f"your function raised {type(raised).__name__}: {first}")
        got, want = normal(attempt.value), normal(attempt.expected)
        if got is None and want is not None and attempt.extra.get("returned_none"):
            return RuleResult(self.name, False, (
                "your function returned None: did you forget `return`? (It ran to the end; the checker "
                "needs the value it computes)"
            ))
        if isinstance(want, list) and isinstance(got, tuple):  # a tuple where a list was asked: same values
            got = list(got)
        if isinstance(want, list) and isinstance(got, list):  # rows as lists or tuples compare by value
            got, want = _rows(got), _rows(want)
        if not isinstance(want, list):
            if got == want:
                return RuleResult(self.name, True)
            hint = ""
            if isinstance(got, (int, float)) and isinstance(want, (int, float)) and not isinstance(got, bool):
                hint = " (too high)" if got > want else " (too low)"
            return RuleResult(self.name, False, f"your answer gives {_fmt(got)}, which is not right{hint}")
        if not isinstance(got, list):
            return RuleResult(self.name, False, f"expected a list of {self.what}, got {_fmt(got)}")
        unordered = (
            self.ordered and len(want) > 1 and attempt.extra.get("top_level_order_by") is False
            and not sorts_in_python(attempt)
        )
        if got == want:
            if unordered:
                return RuleResult(self.name, False, (
                    f"the right {self.what} in the right order, but only by chance: your statement has no "
                    "ORDER BY, so the database may return them in any order (and will, once the table or "
                    "the plan changes). Say the order: .order_by(...)"
                ))
            return RuleResult(self.name, True)
        g, w = Counter(map(repr, got)), Counter(map(repr, want))
        if g == w:
            if self.ordered:
                missing = ": your statement has no ORDER BY" if unordered else ""
                if not unordered and len(got) > 2 and list(map(repr, got)) == list(map(repr, reversed(want))):
                    return RuleResult(self.name, False, (
                        f"the right {self.what}, in exactly the reverse order: your ORDER BY runs the other "
                        "way. Drop the `.desc()` (or add it) on the sort column"
                    ))
                return RuleResult(self.name, False, (
                    f"the right {self.what}, in the wrong order{missing}: check `.order_by(...)` (the "
                    "columns, their direction with `.desc()`, and a tie-breaker such as the id)"
                ))
            return RuleResult(self.name, True)
        lacking, surplus = w - g, g - w  # once: per item it was quadratic (30 s for 5,000 rows)
        missing = [x for x in want if lacking[repr(x)]]
        extra = [x for x in got if surplus[repr(x)]]
        shape_want = {len(x) for x in want if isinstance(x, tuple)}
        shape_got = {len(x) for x in got if isinstance(x, tuple)}
        if shape_want and shape_got and shape_want != shape_got:
            return RuleResult(
                self.name, False,
                f"each row should have {min(shape_want)} column(s), yours have {min(shape_got)}",
            )
        try:
            cause = _likely_cause(got, want, missing, extra, attempt, self.ordered, self.what)
        except Exception:  # a shape the analysis did not foresee: the concrete difference still stands
            cause = ""
        parts = []
        if missing:
            parts.append(f"{_count(sum(lacking.values()), 'missing ' + self.what)} (e.g. {_examples(missing)})")
        if extra:
            parts.append(f"{_count(sum(surplus.values()), 'extra ' + self.what)} (e.g. {_examples(extra)})")
        dupes = [k for k, n in g.items() if n > 1 and w.get(k, 0) < n]
        if dupes and not missing and not cause:
            parts.append("some rows appear more than once: a join that multiplies rows?")
        detail = "; ".join(parts)
        return RuleResult(self.name, False, f"{cause}. What differs: {detail}" if cause else detail)


def _rows(items: list[Any]) -> list[Any]:
    return [tuple(x) if isinstance(x, list) else x for x in items]


def _column_name(attempt: Attempt, index: int, width: int) -> str:
    columns = attempt.columns or attempt.extra.get("expected_columns") or []
    if len(columns) == width and not str(columns[index]).startswith(("_no_label", "anon_")):
        return f"`{columns[index]}`"
    return f"column {index + 1}"


def _likely_cause(
    got: list[Any], want: list[Any], missing: list[Any], extra: list[Any], attempt: Attempt, ordered: bool, what: str
) -> str:
    """What the missing or extra rows have in common, said as the likely mistake ("" if nothing)."""
    sql = " ".join(s.sql.upper() for s in attempt.log if s.verb in ("SELECT", "WITH"))
    # NOT IN over a subquery that yields a NULL is never true: no row at all
    # (only when it can: a probe that ran the subquery knows, else the column's schema decides)
    if not got and want and re.search(r"\bNOT\s+IN\b", sql) and attempt.extra.get(
        "not_in_null", _not_in_column_may_be_null(sql)
    ):
        said = (
            "your NOT IN subquery returns a NULL, and then" if attempt.extra.get("not_in_null")
            else "when the subquery returns a NULL,"
        )
        return (
            f"no rows at all, and your statement uses NOT IN: {said} "
            "`x NOT IN (...)` is never true (NULL in NOT IN). Filter the NULLs out of the subquery "
            "(`.where(col.is_not(None))`) or use `~exists()`"
        )
    # every extra row is a copy of an expected one: a join multiplied them
    if extra and not missing:
        wanted = set(map(repr, want))
        if all(repr(x) in wanted for x in extra):
            return (
                f"{len(extra)} of your {what} are copies of expected ones (each appears more than once): "
                "duplicated by a join. Count distinct (`func.count(distinct(...))`), or test with "
                "`exists()` instead of joining"
            )
    # the same value on every row, where the expected values vary: an uncorrelated subquery
    for mine_rows, their_rows, which in ((got, want, "row"), (extra, missing, "row that differs")):
        if len(mine_rows) < 3 or len(mine_rows) != len(their_rows):
            continue
        for index, width in _positions(mine_rows, their_rows):
            mine = {repr(_at(x, index)) for x in mine_rows}
            theirs = {repr(_at(x, index)) for x in their_rows}
            if len(mine) == 1 and len(theirs) > 1:
                where = f" in {_column_name(attempt, index, width)}" if width else ""
                same = f"the same value ({_fmt(_at(mine_rows[0], index))}) on every {which}{where}, where the expected values differ"
                if _running_count(sql):
                    return (
                        f"{same}: your count() window has an ORDER BY, and that makes it a running count (the "
                        "rows from the partition's start up to the current row and the rows tied with it), not "
                        "the partition's total. "
                        "Count the whole partition: `.over(partition_by=...)` without order_by"
                    )
                if _selects_a_subquery(sql):
                    return (
                        f"{same}: is your subquery uncorrelated? A scalar subquery that does not refer to the "
                        "outer row (no WHERE comparing its table's key with the outer row's, such as "
                        "`Comment.post_id == Post.id`) gives one value for every row"
                    )
                return f"{same}: one value computed once for all of them, where each row needs its own"
    # ordered results shifted: a page or an offset off by some rows
    if ordered and got and len(got) == len(want):
        n = len(want)
        for k in range(1, n):
            if got[: n - k] == want[k:] or got[k:] == want[: n - k]:
                late = got[: n - k] == want[k:]  # yours start k rows further on
                if re.search(r"\bOFFSET\b", sql, re.I):
                    why = ("off by one page or one row: page n starts at offset (n - 1) * size, and a cursor "
                           "compares with < (or >), not <= (or >=)")
                else:
                    why = ("a boundary of your filter is off: check whether each end of the range (or a "
                           "cursor's comparison) should include its value (<= / >=) or not (< / >)")
                return (
                    f"your {what} are the expected ones shifted by {k} (starting {k} too "
                    f"{'late' if late else 'early'}): {why}"
                )
    # the same rows (same first column) but other columns wrong
    same_shape = missing and len(got) == len(want) and all(isinstance(x, tuple) and len(x) > 1 for x in got + want)
    if same_shape and Counter(repr(x[0]) for x in got) == Counter(repr(x[0]) for x in want):
            keyed = {repr(x[0]): x for x in want}
            for row in got:
                expected = keyed.get(repr(row[0]))
                if expected is not None and expected != row:
                    if sorted(map(repr, row)) == sorted(map(repr, expected)):
                        return "the right rows and values, but the columns are in another order: select them in the order asked"
                    index = next(i for i, (a, b) in enumerate(zip(row, expected, strict=False)) if a != b)
                    return (
                        f"the right rows (the same {_column_name(attempt, 0, len(row))}), but "
                        f"{_column_name(attempt, index, len(row))} differs: e.g. yours {_fmt(row[index])}, "
                        f"expected {_fmt(expected[index])}"
                    )
    # what the missing (or extra) rows share: NULL in one column
    for rows, side in ((missing, "missing"), (extra, "extra")):
        if not rows:
            continue
        for index, width in _positions(rows, rows):
            nulls = sum(1 for x in rows if _at(x, index) is None)
            if nulls and nulls * 2 >= len(rows):
                where = f" {_column_name(attempt, index, width)}" if width else ""
                if side == "missing":
                    return (
                        f"{nulls} of the {len(rows)} missing {what} have{where} NULL: a comparison with NULL "
                        "(=, <>, NOT IN) is never true, so those rows drop out. Say what NULL should do: "
                        "`.is_(None)`, `or_(col.is_(None), ...)`, `coalesce()`"
                    )
                if re.search(r"\b(LEFT|FULL)\s+(OUTER\s+)?JOIN\b", sql):
                    return (
                        f"{nulls} of the {len(rows)} extra {what} have{where} NULL: rows with no match, kept "
                        "by your outer join (or a NULL your filter lets through)"
                    )
                column = str(attempt.columns[index]).upper() if attempt.columns and width == len(attempt.columns) else ""
                tested = column and re.search(rf"\bWHERE\b.*\b{re.escape(column)}\b", sql, re.S)
                if tested:  # only when the WHERE tests that column: else the NULLs are a coincidence
                    return (
                        f"{nulls} of the {len(rows)} extra {what} have{where} NULL: your WHERE lets those NULLs "
                        "through (an `or_()` or `IS NULL` test that covers more than it should)"
                    )
    return ""


def _parenthesized(sql: str, start: int) -> str:
    """The text inside the parenthesis that opens at ``sql[start]`` (to the end if it never closes)."""
    depth = 0
    for i in range(start, len(sql)):
        depth += {"(": 1, ")": -1}.get(sql[i], 0)
        if depth == 0:
            return sql[start + 1 : i]
    return sql[start + 1 :]


def _running_count(sql: str) -> bool:
    """Whether a ``count(...) OVER (... ORDER BY ...)`` window is in ``sql``: a running count."""
    for found in re.finditer(r"\bCOUNT\s*\(", sql, re.I):
        args = _parenthesized(sql, found.end() - 1)
        after = sql[found.end() + len(args) + 1 :]
        over = re.match(r"\s*(?:FILTER\s*\([^()]*\)\s*)?OVER\s*\(", after, re.I)
        if over and re.search(r"\bORDER\s+BY\b", _parenthesized(after, over.end() - 1), re.I):
            return True
    return False


def outside_quotes(upper: str) -> Iterator[tuple[int, str, int]]:
    """Each character of SQL text outside its quoted strings, as (index, character, depth): how many
    parentheses are open at it (a closing one still counts its own). The one walk the SQL readers
    below share, to find the outermost query's parts."""
    depth, quoted = 0, False
    for i, char in enumerate(upper):
        if char == "'":
            quoted = not quoted
        elif not quoted:
            yield i, char, depth
            depth += {"(": 1, ")": -1}.get(char, 0)


def word_at(upper: str, i: int, word: str) -> bool:
    """Whether ``word`` stands at ``upper[i]`` as a whole word."""
    end = i + len(word)
    return (
        upper.startswith(word, i)
        and (i == 0 or not (upper[i - 1].isalnum() or upper[i - 1] == "_"))
        and not (upper[end : end + 1].isalnum() or upper[end : end + 1] == "_")
    )


def _selects_a_subquery(sql: str) -> bool:
    """Whether a SELECT list in ``sql`` (the outer query's, or a derived table's or CTE's) holds a
    scalar subquery: ``(SELECT ...)`` between a SELECT and its FROM. A derived table in FROM, a
    subquery in WHERE (IN, EXISTS) is no column, and does not count."""
    upper = sql.upper()
    opened: dict[int, int] = {}  # depth -> where that depth's SELECT list starts

    def holds(start: int, end: int) -> bool:
        return re.search(r"\(\s*SELECT\b", upper[start:end]) is not None

    for i, char, depth in outside_quotes(upper):
        if char == "(":
            continue
        if char == ")":
            if depth in opened and holds(opened.pop(depth), i):
                return True
        elif word_at(upper, i, "SELECT"):
            opened[depth] = i + len("SELECT")
        elif depth in opened and word_at(upper, i, "FROM") and holds(opened.pop(depth), i):
            return True
    return any(holds(start, len(upper)) for start in opened.values())


_NOT_IN_COLUMN = re.compile(r"\bNOT\s+IN\s*\(\s*SELECT\s+(?:DISTINCT\s+)?(\w+)\.(\w+)\s+FROM\s+(\w+)(?:\s+AS\s+(\w+))?", re.I)


def _not_in_column_may_be_null(sql: str) -> bool:
    """Whether the column a ``NOT IN (SELECT t.col FROM t ...)`` subquery selects can hold NULL.

    False only for a NOT NULL column of the course's schema read straight from its table (no join
    in the subquery, where an outer join could make up a NULL); True when the SQL says too little.
    """
    found = _NOT_IN_COLUMN.search(sql)
    if not found:
        return True
    alias, name, table, table_alias = (g.lower() if g else g for g in found.groups())
    if alias not in (table, table_alias) or re.search(r"\bJOIN\b", sql[found.end():].split(")")[0], re.I):
        return True
    column = Base.metadata.tables[table].c.get(name) if table in Base.metadata.tables else None
    return column is None or bool(column.nullable)


def _count(n: int, noun: str) -> str:
    """``1 missing row``, ``2 missing rows``: the noun (a plural, "rows") made singular for one.
    A note in parentheses after it stays: ``1 extra tag name (read from ...)``."""
    head, sep, tail = noun.partition(" (")
    if n == 1 and head.endswith("s"):
        head = head[:-1]
    return f"{n} {head}{sep}{tail}"


def _positions(a: list[Any], b: list[Any]) -> list[tuple[int, int]]:
    """(index, row width) of each column shared by two lists of rows; [(0, 0)] for plain values."""
    first = a[0] if a else None
    if isinstance(first, tuple):
        return [(i, len(first)) for i in range(len(first))]
    return [(0, 0)]


def _at(row: Any, index: int) -> Any:
    return row[index] if isinstance(row, tuple) else row


def top_level_order_by(sql: str) -> int:
    """Where the outermost query's ORDER BY keys start in ``sql``, or -1: ORDER BY outside any
    parentheses and quotes (a window's ``OVER (ORDER BY ...)``, a subquery's or a CTE's does not
    order the result)."""
    start = -1
    upper = sql.upper()
    for i, char, depth in outside_quotes(upper):
        if depth == 0 and char not in "()" and upper.startswith("ORDER BY", i) and (i == 0 or not upper[i - 1].isalnum()):
            start = i + len("ORDER BY")
    return start


def has_top_level_order_by(sql: str) -> bool:
    """Whether the outermost query sorts its result (see :func:`top_level_order_by`)."""
    return top_level_order_by(sql) >= 0


def note_result_order(attempt: Attempt) -> None:
    """For a function answer (call it from the exercise's probe): whether the last SELECT it sent
    sorts its result, in ``attempt.extra["top_level_order_by"]``, which :class:`SameResult` reads
    (statement answers get it from the checker): an order the learner did not ask for is luck."""
    reads = [s for s in attempt.log.queries if s.verb in ("SELECT", "WITH")]
    if reads:
        attempt.extra["top_level_order_by"] = has_top_level_order_by(reads[-1].sql)


_PYTHON_SORT = re.compile(r"\bsorted\(|\.sort\(")


def sorts_in_python(attempt: Attempt) -> bool:
    """The answer's source (``attempt.extra["source"]``, where the exercise keeps it) sorts in Python:
    then an unsorted SELECT is no mistake of order."""
    return bool(_PYTHON_SORT.search(attempt.extra.get("source") or ""))


@dataclass
class Columns(Rule):
    """The result has exactly these columns (rows, not whole entities)."""

    names: Sequence[str] = ()
    name: str = "the right columns"

    def judge(self, attempt: Attempt) -> RuleResult:
        got = [c for c in (attempt.columns or [])]
        if got == list(self.names):
            return RuleResult(self.name, True)
        if len(got) == 1 and got[0][:1].isupper():
            return RuleResult(
                self.name, False,
                f"you selected whole {got[0]} objects; select only the columns {', '.join(self.names)}",
            )
        return RuleResult(self.name, False, _column_difference(got, list(self.names)))


#: names SQLAlchemy gives an expression without a label: its function's or column's name, numbered on a repeat
_GENERATED_NAME = re.compile(r"^(?!_no_label)\w+_\d+$|^(count|sum|max|min|avg|coalesce|lower|upper)$")


def _column_difference(got: list[str], want: list[str]) -> str:
    """Which columns are misnamed, missing, extra or out of order, and the fix (``.label()``)."""
    entities = [w for w in want if w[:1].isupper()]
    if entities and not any(g in entities for g in got):
        return (f"the task wants whole {entities[0]} objects, not columns: `select({entities[0]})` "
                f"(expected columns {want}, got {got})")
    if sorted(got) == sorted(want):
        return f"the right columns in another order: you selected {got}; select them as {want}"
    if len(got) == len(want):
        renamed = [(g, w) for g, w in zip(got, want, strict=True) if g != w]
        if len(renamed) == 1 or all(g not in want for g, _ in renamed):
            first_got, first_want = renamed[0]
            why = (f" ({first_got!r} is the name SQLAlchemy gives an expression you did not label: its "
                   "function's or column's name, numbered when it repeats)"
                   if _GENERATED_NAME.match(first_got) else "")
            more = f", and {len(renamed) - 1} more" if len(renamed) > 1 else ""
            return (f"the column {first_got!r} should be named {first_want!r}{more}{why}: name it with "
                    f"`.label(\"{first_want}\")` on that expression (expected columns {want}, got {got})")
    parts = []
    missing = [w for w in want if w not in got]
    extra = [g for g in got if g not in want]
    if missing:
        parts.append(f"missing {', '.join(repr(m) for m in missing)}")
    if extra:
        parts.append(f"not asked for: {', '.join(repr(e) for e in extra)}")
    detail = "; ".join(parts)
    return f"expected columns {want}, got {got}" + (f" ({detail})" if detail else "")


@dataclass
class StatementBudget(Rule):
    """At most ``limit`` queries (transaction control not counted): catches an N+1."""

    limit: int = 1
    name: str = "statement budget"

    def judge(self, attempt: Attempt) -> RuleResult:
        n = len(attempt.log.queries)
        if n <= self.limit:
            return RuleResult(f"{self.name} ({n} of {self.limit})", True)
        return RuleResult(
            f"{self.name} ({n} of {self.limit})", False,
            f"your answer took {n} statements; {self.limit} should be enough.{self._why(attempt.log)}",
        )

    def _why(self, log: SqlLog) -> str:
        """Name the pattern behind a SELECT repeated: once per key (an N+1) or batches too small;
        otherwise name the statements, so the learner sees which one is extra."""
        selects = [s for s in log.queries if s.verb in ("SELECT", "WITH")]
        if not selects:
            return self._listed(log)
        sql, repeats = Counter(s.sql for s in selects).most_common(1)[0]
        if repeats < 3:
            return self._listed(log)
        widest = max(_parameter_count(s.params) for s in selects if s.sql == sql)
        if widest <= 2:
            return f" That looks like an N+1: the same SELECT ran {repeats} times, once per row, each for a single key."
        return (
            f" The same SELECT ran {repeats} times with {widest} parameters each: batches that small cost a"
            " round trip each; fewer, larger ones (or one query) would do."
        )


    @staticmethod
    def _listed(log: SqlLog) -> str:
        """The statements in order, shortened, and a SELECT that re-reads a row the answer just wrote."""
        queries = log.queries
        if not 2 <= len(queries) <= 6:
            return ""
        shown = "; ".join(f"{i}. `{_short_sql(q.sql)}`" for i, q in enumerate(queries, 1))
        note = ""
        written = {(q.verb, _table_of(q.sql)) for q in queries if q.verb == "INSERT"}  # a new row, a new key
        for later, q in enumerate(queries):
            if q.verb == "SELECT" and any(
                _table_of(q.sql) == table and any(w.verb == verb and _table_of(w.sql) == table for w in queries[:later])
                for verb, table in written
            ):
                note = (f" Statement {later + 1} reads back from {_table_of(q.sql)} what your answer had just written"
                        " (a `refresh()`, a `get()` or a query after the write): after the flush the object"
                        " already holds the values you set and its new primary key, so that read is the"
                        " extra statement")
                break
        return f"{note + '.' if note else ''} It sent: {shown}."


_FROM_TABLE = re.compile(r"\b(?:FROM|INTO|UPDATE)\s+\"?(\w+)", re.I)


def _table_of(sql: str) -> str:
    found = _FROM_TABLE.search(sql)
    return found.group(1) if found else ""


def _short_sql(sql: str, width: int = 70) -> str:
    flat = " ".join(sql.split())
    return flat if len(flat) <= width else flat[: width - 1].rstrip() + "…"


def _parameter_count(params: Any) -> int:
    if params is None:
        return 0
    return len(params) if isinstance(params, (dict, list, tuple)) else 1


@dataclass
class NoLazyLoads(Rule):
    """Nothing was loaded lazily: no relationship, no deferred or expired column (in async code a
    lazy load fails or costs a round trip)."""

    name: str = "no lazy loads"

    def judge(self, attempt: Attempt) -> RuleResult:
        if attempt.lazy_loads:
            return RuleResult(self.name, False, lazy_load_message(attempt))
        return RuleResult(self.name, True)


def lazy_load_message(attempt: Attempt) -> str:
    """Which relationship loaded lazily and the loader option that loads it up front."""
    names = attempt.lazy_attributes
    if not names:
        return (
            f"{attempt.lazy_loads} attribute(s) were loaded lazily, one query each; load them up"
            " front: a relationship with selectinload() or joinedload(), a deferred column with"
            " undefer(), and read attributes before a commit expires them"
        )
    options = ", ".join(
        f"selectinload({n})" if attempt.lazy_collections.get(n) else f"joinedload({n})" for n in names
    )
    which = ", ".join(f"`{n}`" for n in names)
    return (
        f"{which} {'was' if len(names) == 1 else 'were'} loaded lazily ({attempt.lazy_loads} attribute(s) "
        f"loaded lazily, a query each; in async code that is a MissingGreenlet error): load "
        f"{'it' if len(names) == 1 else 'them'} up front with `.options({options})`"
        " (selectinload() for a collection, joinedload() for a many-to-one)"
    )


@dataclass
class BoundParameters(Rule):
    """The given values travel as bound parameters, never pasted into the SQL text."""

    values: Sequence[Any] = ()
    name: str = "values sent as bound parameters"

    def judge(self, attempt: Attempt) -> RuleResult:
        pasted = []
        for value in self.values:
            if isinstance(value, str):
                pattern = re.compile(re.escape(f"'{value}'") + "|" + re.escape(f'"{value}"'))
            else:
                pattern = re.compile(rf"(?<![\w.$]){re.escape(str(value))}(?![\w.])")
            if any(pattern.search(s.sql) for s in attempt.log):
                pasted.append(value)
        if pasted:
            return RuleResult(
                self.name, False,
                f"the value(s) {_examples(pasted)} were pasted into the SQL text (an f-string, "
                "literal_column() or literal()); pass them as bound parameters: compare columns with ==, "
                "or use text() with :name and a dict",
            )
        return RuleResult(self.name, True)


@dataclass
class BulkPath(Rule):
    """Rows go in as a batch: at most ``max_inserts`` INSERT statements for the whole input."""

    max_inserts: int = 1
    name: str = "a bulk path"

    def judge(self, attempt: Attempt) -> RuleResult:
        inserts = attempt.log.count("INSERT")
        if inserts <= self.max_inserts:
            return RuleResult(self.name, True)
        return RuleResult(
            self.name, False,
            f"{inserts} INSERT statements for one batch: that is a row-by-row path. Pass the list "
            "of dicts to one execute(insert(Model), rows) call",
        )


@dataclass
class SessionUsable(Rule):
    """After the answer, the session still works (no failed transaction left behind)."""

    name: str = "session usable afterwards"

    def judge(self, attempt: Attempt) -> RuleResult:
        if attempt.session_usable:
            return RuleResult(self.name, True)
        return RuleResult(
            self.name, False,
            "the session was left in a failed transaction; roll back (or use a savepoint with "
            "begin_nested()) when a statement fails",
        )


@dataclass
class Probe(Rule):
    """An exercise-specific test: ``test(attempt)`` returns None when fine, else the message."""

    test: Callable[[Attempt], str | None] = lambda a: None
    name: str = "behaviour"

    def judge(self, attempt: Attempt) -> RuleResult:
        message = self.test(attempt)
        return RuleResult(self.name, message is None, message or "")


@dataclass
class LeavesTransactionToCaller(Rule):
    """A session function neither commits nor rolls back: the caller owns the transaction.

    Answers run in a session joined to the checker's transaction through a SAVEPOINT
    (``join_transaction_mode="create_savepoint"``), so a commit shows up as the RELEASE of
    that first savepoint, and a rollback as ROLLBACK TO it.
    """

    name: str = "the caller's transaction left to the caller"

    def judge(self, attempt: Attempt) -> RuleResult:
        statements = list(attempt.log)
        first = next((s for s in statements if s.verb == "SAVEPOINT"), None)
        if first is not None:
            savepoint = first.sql.split()[1]
            for s in statements:
                words = s.sql.split()
                if s.verb == "RELEASE" and words[-1] == savepoint:
                    return RuleResult(self.name, False, (
                        "your function committed the session: it runs inside the caller's unit of work (a "
                        "request, a test), and the caller decides when to commit. Flush instead (await "
                        "session.flush())"
                    ))
                if s.verb == "ROLLBACK" and words[-1] == savepoint:
                    return RuleResult(self.name, False, (
                        "the caller's whole transaction was rolled back (by session.rollback(), or by a failed "
                        "flush outside a savepoint): everything the caller did before your function ran is lost "
                        "too. Undo only your own part: put what may fail in `async with "
                        "session.begin_nested():` and catch the error around that block"
                    ))
        return RuleResult(self.name, True)


AsyncProbe = Callable[[Any, Attempt], Awaitable[None]]


# ------------------------------------------------------------ what the statement compares, read from its SQL

_MISSING = object()
_VALUE = r"(\?|\$\d+|%\(\w+\)s|:\w+|'(?:[^']|'')*'|-?\d+(?:\.\d+)?)"
_CAST = r"(?:::\w+(?:\s+WITH(?:OUT)?\s+TIME\s+ZONE)?)?"  # PostgreSQL's $1::TIMESTAMP WITHOUT TIME ZONE
_OPERATORS = {"<=": "<=", ">=": ">=", "<>": "!=", "!=": "!=", "=": "=", "<": "<", ">": ">"}


def _value_of(token: str, statement: Any, position: int) -> Any:
    """The value a placeholder or literal of ``statement.sql`` (found at ``position``) stands for."""
    params = statement.params
    if token == "?":  # SQLite: positional, counted from the start
        index = statement.sql[:position].count("?")
        return params[index] if isinstance(params, (list, tuple)) and index < len(params) else _MISSING
    if token.startswith("$"):  # asyncpg: numbered
        index = int(token[1:]) - 1
        return params[index] if isinstance(params, (list, tuple)) and 0 <= index < len(params) else _MISSING
    if token.startswith(("%(", ":")):  # named
        name = token[2:-2] if token.startswith("%(") else token[1:]
        return params.get(name, _MISSING) if isinstance(params, dict) else _MISSING
    if token.startswith("'"):
        return token[1:-1].replace("''", "'")
    return float(token) if "." in token else int(token)


def values_in(statement: Any, start: int = 0, end: int | None = None) -> list[Any]:
    """The values ``statement.sql[start:end]`` refers to: bound parameters and quoted literals, in order."""
    found = []
    for match in re.finditer(_VALUE, statement.sql[:end] if end is not None else statement.sql):
        if match.start() < start or match.group(1)[0].isdigit() or match.group(1)[0] == "-":
            continue  # numbers are part of the text (1 = 1, LIMIT 5), not values asked for
        value = _value_of(match.group(1), statement, match.start(1))
        if value is not _MISSING:
            found.append(value)
    return found


def compared_values(attempt: Attempt, column: str) -> list[tuple[str, Any]]:
    """How the answer's SQL compares ``column`` with a value: ``[(operator, value), ...]``.

    ``col <= ?`` gives ``("<=", the bound value)`` (``<>`` is reported as ``!=``) and
    ``col BETWEEN ? AND ?`` gives ``(">=", low)`` and ``("<=", high)``. Values are as the driver
    received them: on SQLite a datetime arrives as its text (``'2025-10-01 00:00:00.000000'``).
    SQLAlchemy writes the column on the left (``5 < User.id`` renders ``users.id > ?``) and turns
    ``not_(col >= x)`` into ``col < x``, so the operator is the one the statement applies.
    """
    name = rf"(?<![\w.])(?:\w+\.)?{re.escape(column)}\b"
    found: list[tuple[str, Any]] = []
    for statement in attempt.log.queries:
        sql = statement.sql
        for match in re.finditer(rf"{name}\s*(<=|>=|<>|!=|=|<|>)\s*{_VALUE}", sql, re.I):
            value = _value_of(match.group(2), statement, match.start(2))
            if value is not _MISSING:
                found.append((_OPERATORS[match.group(1)], value))
        for match in re.finditer(rf"{name}\s+(NOT\s+)?BETWEEN\s+{_VALUE}{_CAST}\s+AND\s+{_VALUE}", sql, re.I):
            if match.group(1):
                continue
            low = _value_of(match.group(2), statement, match.start(2))
            high = _value_of(match.group(3), statement, match.start(3))
            found += [(op, v) for op, v in ((">=", low), ("<=", high)) if v is not _MISSING]
    return found


def sent_strings(attempt: Attempt) -> list[str]:
    """Every string the answer's queries sent: bound parameters and quoted literals in the SQL."""
    found: list[str] = []
    for statement in attempt.log.queries:
        params = statement.params
        values = params.values() if isinstance(params, dict) else params if isinstance(params, (list, tuple)) else ()
        found += [v for v in values if isinstance(v, str)]
        found += [m.replace("''", "'") for m in re.findall(r"'((?:[^']|'')*)'", statement.sql)]
    return found


def names_used(function: Any) -> set[str]:
    """The names a function's code refers to (globals, attributes, imported modules) and its one-word
    string constants (``"postgresql"``; not a docstring or a sentence), its nested functions and
    comprehensions included; empty for anything without code. For what the result cannot show: how
    the answer picked a construct, whether it sorted."""
    todo = [getattr(function, "__code__", None)]
    namespace = getattr(function, "__globals__", {})
    found: set[str] = set()
    seen: set[int] = set()
    while todo:
        code = todo.pop()
        if not isinstance(code, CodeType) or id(code) in seen:
            continue
        seen.add(id(code))
        found.update(code.co_names)
        # a helper of the learner's that the function calls (defined in another cell): read it too
        for name in code.co_names:
            helper = namespace.get(name)
            if getattr(helper, "__module__", None) == getattr(function, "__module__", object()):
                todo.append(getattr(helper, "__code__", None))
        for const in code.co_consts:
            if isinstance(const, str) and const and not any(c.isspace() for c in const):
                found.add(const)
            elif isinstance(const, CodeType):
                todo.append(const)
    return found


def _same_result(attempt: Attempt) -> bool:
    got, want = normal(attempt.value), normal(attempt.expected)
    if isinstance(got, list) and isinstance(want, list):
        return _rows(got) == _rows(want)
    return bool(got == want)


@dataclass
class LetterCase(Rule):
    """The values asked for are written in the letter case the database stores.

    ``=`` and ``IN`` compare strings case-sensitively on SQLite and on PostgreSQL, so ``'nl'``
    matches no row stored as ``'NL'``. Judged only when the rows differ (SQLite's LIKE ignores
    ASCII case, and an answer that lower-cases both sides is right) and only when the stored
    spelling was not sent as well.
    """

    values: Sequence[str] = ()
    stored: str = ""  # how the seed writes them, e.g. "country codes in capitals"
    name: str = "values in the letter case the database stores"

    def judge(self, attempt: Attempt) -> RuleResult:
        if _same_result(attempt):
            return RuleResult(self.name, True)
        sent = sent_strings(attempt)
        for value in self.values:
            if value in sent:
                continue
            other = next((s for s in sent if s != value and s.lower() == value.lower()), None)
            if other is not None:
                how = f" (the seed stores {self.stored})" if self.stored else ""
                return RuleResult(self.name, False, (
                    f"{other!r} is not {value!r}: comparing strings is case-sensitive (= and IN, on SQLite "
                    f"and on PostgreSQL), so your filter matches none of the rows stored as {value!r}{how}. "
                    f"Write the value as it is stored: {value!r}"
                ))
        return RuleResult(self.name, True)


@dataclass
class EmptyStringForNull(Rule):
    """A missing value tested as the empty string: ``col = ''`` or ``col != ''`` where the task is
    about NULL (``missing=True``: rows without a value, IS NULL; ``False``: rows with one, IS NOT NULL).

    ``col != ''`` for rows that have a value returns the right rows (NULL != '' is not true), so it
    passes; so does any answer whose rows are right (``or_(col.is_(None), col == '')``).
    """

    column: str = "phone"
    attribute: str = "User.phone"
    missing: bool = True
    what: str = "rows"
    name: str = "a missing value is NULL, not ''"

    def judge(self, attempt: Attempt) -> RuleResult:
        if _same_result(attempt):
            return RuleResult(self.name, True)
        operators = {op for op, value in compared_values(attempt, self.column) if value == ""}
        none = ", and it matches no row" if attempt.value == [] else ""
        col, attr = self.column, self.attribute
        if "=" in operators and self.missing:
            return RuleResult(self.name, False, (
                f"your filter tests {col} = '', the empty string{none}: a missing {col} is NULL, not the "
                f"empty string ({self.what} without a {col} have no value at all). Test for NULL: `{attr}.is_(None)` "
                f"(or `{attr} == None`), which SQLAlchemy sends as IS NULL"
            ))
        if "!=" in operators and self.missing:
            return RuleResult(self.name, False, (
                f"your filter tests {col} != '': a missing {col} is NULL, not the empty string, and NULL != '' "
                f"is not true either (a comparison with NULL never is), so you kept the {self.what} that do "
                f"have a {col}. 'No {col}' is `{attr}.is_(None)` (or `{attr} == None`), which SQLAlchemy sends "
                "as IS NULL"
            ))
        if "=" in operators:
            return RuleResult(self.name, False, (
                f"your filter tests {col} = '': it asks for an empty {col}, not for one that is there{none}. "
                f"A missing {col} is NULL, not the empty string; the {self.what} that have a {col}: "
                f"`{attr}.is_not(None)` (or `{attr} != None`), which SQLAlchemy sends as IS NOT NULL"
            ))
        return RuleResult(self.name, True)


# ------------------------------------------------------------ correct on SQLite, wrong on PostgreSQL

_LIKE = re.compile(r"(?<![A-Za-z_])(I?LIKE)\b", re.I)
_BOUNDARY = re.compile(r"\b(?:WHERE|AND|OR|ON|HAVING|WHEN|NOT)\b", re.I)


@dataclass
class CaseInsensitiveMatch(Rule):
    """A text match that must ignore case does so on both backends.

    Judged from the SQL the answer emitted: a LIKE whose left side is not wrapped in
    ``lower()`` / ``upper()`` is case-sensitive on PostgreSQL (ILIKE, or ``ilike()``
    rendered on SQLite as ``lower(x) LIKE lower(y)``, is not). SQLite's LIKE ignores
    ASCII case, so such an answer passes there and breaks where it is deployed.
    """

    name: str = "matches whatever the case"

    def judge(self, attempt: Attempt) -> RuleResult:
        for statement in attempt.log:
            if statement.verb not in ("SELECT", "WITH", "UPDATE", "DELETE"):
                continue
            for match in _LIKE.finditer(statement.sql):
                if match.group(1).upper() == "ILIKE":
                    continue
                left = _BOUNDARY.split(statement.sql[: match.start()])[-1]
                if not re.search(r"\b(lower|upper)\s*\(", left, re.I):
                    return RuleResult(self.name, False, (
                        "your match is case-sensitive on PostgreSQL: `contains()` / `like()` become LIKE, which "
                        "ignores case on SQLite (for ASCII letters) but not on PostgreSQL, where 'Ada' would not "
                        "match 'ada'. Use `icontains()` / `ilike()`, or compare `func.lower(col)` with a "
                        "lower-cased value"
                    ))
        return RuleResult(self.name, True)


@dataclass
class SavepointAroundFailure(Rule):
    """A statement that may fail runs inside a SAVEPOINT when the transaction carries on after it.

    Judged from the SQL log (failed statements are marked by the recorder): a write that
    raised with no savepoint of the answer's own open, followed by more statements in the
    same transaction. SQLite keeps such a transaction usable; PostgreSQL aborts it at the
    first error. The checker's own savepoint (a session answer's first SAVEPOINT, the
    caller's) does not count: set ``attempt.extra["checker_savepoints"]``.
    """

    name: str = "a savepoint around each failure the transaction carries on after"

    def judge(self, attempt: Attempt) -> RuleResult:
        base = int(attempt.extra.get("checker_savepoints", 0))
        stack: list[str] = []
        failed_outside = None
        for statement in attempt.log:
            words = statement.sql.split()
            verb = statement.verb
            if verb == "SAVEPOINT" and len(words) > 1:
                stack.append(words[1])
            elif verb in ("RELEASE", "ROLLBACK") and len(words) > 2 and words[-1] in stack:
                del stack[stack.index(words[-1]):]  # RELEASE SAVEPOINT x / ROLLBACK TO SAVEPOINT x
                failed_outside = None if len(stack) < base else failed_outside
            elif verb in ("BEGIN", "COMMIT", "ROLLBACK"):
                stack.clear()
                failed_outside = None
            elif statement.failed and verb in ("INSERT", "UPDATE", "DELETE") and len(stack) <= base:
                failed_outside = statement
            elif failed_outside is not None and not statement.failed:
                return RuleResult(self.name, False, (
                    f"a statement failed outside a savepoint ({failed_outside.sql.split('(')[0].strip()[:60]}...) "
                    "and your answer carried on in the same transaction: SQLite allows that, but PostgreSQL "
                    "aborts the whole transaction at the first error, and every later statement fails. Wrap "
                    "the statement that may fail in `async with session.begin_nested():`"
                ))
        return RuleResult(self.name, True)
