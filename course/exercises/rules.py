"""What a checker can judge. Each exercise declares only the rules that matter for it.

A rule looks at an :class:`Attempt` (what the answer returned, the SQL it
emitted, what it raised) and returns a :class:`RuleResult` whose message names
the problem in the learner's terms.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from ..recorder import SqlLog
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
        got, want = normal(attempt.value), normal(attempt.expected)
        if not isinstance(want, list):
            if got == want:
                return RuleResult(self.name, True)
            hint = ""
            if isinstance(got, (int, float)) and isinstance(want, (int, float)) and not isinstance(got, bool):
                hint = " (too high)" if got > want else " (too low)"
            return RuleResult(self.name, False, f"your answer gives {_fmt(got)}, which is not right{hint}")
        if not isinstance(got, list):
            return RuleResult(self.name, False, f"expected a list of {self.what}, got {_fmt(got)}")
        unordered = self.ordered and len(want) > 1 and attempt.extra.get("top_level_order_by") is False
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
                return RuleResult(self.name, False, f"the right {self.what}, in the wrong order{missing}")
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
        parts = []
        if missing:
            parts.append(f"{len(lacking)} missing {self.what} (e.g. {_examples(missing)})")
        if extra:
            parts.append(f"{len(surplus)} extra {self.what} (e.g. {_examples(extra)})")
        dupes = [k for k, n in g.items() if n > 1 and w.get(k, 0) < n]
        if dupes and not missing:
            parts.append("some rows appear more than once: a join that multiplies rows?")
        return RuleResult(self.name, False, "; ".join(parts))


def has_top_level_order_by(sql: str) -> bool:
    """Whether the outermost query sorts: ORDER BY outside any parentheses (a window's
    ``OVER (ORDER BY ...)``, a subquery's or a CTE's does not order the result)."""
    depth = 0
    quoted = False
    upper = sql.upper()
    for i, char in enumerate(upper):
        if char == "'":
            quoted = not quoted
        elif quoted:
            continue
        elif char == "(":
            depth += 1
        elif char == ")":
            depth -= 1
        elif depth == 0 and upper.startswith("ORDER BY", i) and (i == 0 or not upper[i - 1].isalnum()):
            return True
    return False


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
        return RuleResult(self.name, False, f"expected columns {list(self.names)}, got {got}")


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
        """Name the pattern behind a SELECT repeated: once per key (an N+1) or batches too small."""
        selects = [s for s in log.queries if s.verb in ("SELECT", "WITH")]
        if not selects:
            return ""
        sql, repeats = Counter(s.sql for s in selects).most_common(1)[0]
        if repeats < 3:
            return ""
        widest = max(_parameter_count(s.params) for s in selects if s.sql == sql)
        if widest <= 2:
            return f" That looks like an N+1: the same SELECT ran {repeats} times, once per row, each for a single key."
        return (
            f" The same SELECT ran {repeats} times with {widest} parameters each: batches that small cost a"
            " round trip each; fewer, larger ones (or one query) would do."
        )


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
        f"`selectinload({n})`" if attempt.lazy_collections.get(n) else f"`joinedload({n})`" for n in names
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
                f"the value(s) {_examples(pasted)} were pasted into the SQL text; pass them as "
                "bound parameters (compare columns with ==, or use text() with :name and a dict), "
                "never with an f-string",
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
                        "too. Check first, or undo only your own part with a savepoint: async with "
                        "session.begin_nested()"
                    ))
        return RuleResult(self.name, True)


AsyncProbe = Callable[[Any, Attempt], Awaitable[None]]
