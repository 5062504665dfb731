"""Exercises: ``await q1.check(answer)``, ``q1.hint()``, ``q1.solution()``.

An exercise declares the kind of answer it takes, an independent reference
(raw SQL where possible), and the rules that matter for it. Checking runs the
answer inside a transaction that is rolled back afterwards (sessions join it
through a SAVEPOINT, so even an answer that commits leaves nothing behind), or,
for answers that need their own sessions, against a scratch copy of the
database. Whatever the answer does (the wrong kind, raising, breaking its
session) the learner gets a verdict, never a traceback.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import os
import re
import textwrap
import warnings
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import event, select, text
from sqlalchemy import inspect as sa_inspect
from sqlalchemy.engine import Result, Row
from sqlalchemy.exc import MissingGreenlet, SAWarning
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession
from sqlalchemy.pool import Pool
from sqlalchemy.sql.base import Executable

from ..display import box, esc, highlight_sql, in_notebook, show_html
from ..recorder import record
from .explain import explain_error, explain_warning, first_leaf
from .rules import Attempt, NoLazyLoads, Rule, SameResult, has_top_level_order_by
from .verdict import CORRECT, ERROR, INCORRECT, NOT_ATTEMPTED, RuleResult, Verdict, plain, rich

STATEMENT = "statement"  # a Select / Insert / Update / Delete the checker executes
SESSION_FN = "session function"  # async def answer(session, **args)
DB_FN = "database function"  # async def answer(db, **args): makes its own sessions
FUNCTIONS = "set of functions"  # the capstone: an object with named async functions

ANSWER_TIMEOUT = 30.0

_KIND_EXAMPLES = {
    STATEMENT: "a SQLAlchemy statement, for example select(User).where(...)",
    SESSION_FN: "an async function taking a session, for example\n  async def answer(session): ...",
    DB_FN: "an async function taking the course database handle, for example\n  async def answer(db): ...",
    FUNCTIONS: "an object (class or module) with the async functions the exercise names",
}


class ExerciseFailed(AssertionError):
    """Raised in strict mode (``COURSE_STRICT=1``) for an incorrect or error verdict."""


def strict() -> bool:
    return os.environ.get("COURSE_STRICT", "") not in ("", "0", "false", "no")


def normalize(value: Any) -> Any:
    """Make an answer's result comparable: entities become their primary key, rows tuples."""
    if isinstance(value, Result):
        return [normalize(tuple(r)) if len(r) != 1 else normalize(r[0]) for r in value.all()]
    if isinstance(value, Row):
        return tuple(normalize(v) for v in value)
    if isinstance(value, (list, tuple)) and not isinstance(value, Row):
        return type(value)(normalize(v) for v in value) if isinstance(value, tuple) else [normalize(v) for v in value]
    try:
        mapper = sa_inspect(value, raiseerr=False)
    except Exception:
        mapper = None
    if mapper is not None and getattr(mapper, "mapper", None) is not None and hasattr(mapper, "identity"):
        identity = mapper.identity
        if identity is None:
            return ("pending", type(value).__name__)
        return identity[0] if len(identity) == 1 else tuple(identity)
    return value


def sql_reference(query: str, *, scalar: bool = False, flat: bool = False) -> Callable[..., Awaitable[Any]]:
    """A reference written in raw SQL, independent of the learner-facing solution.

    Parameters of the check call (``:name``) are bound. ``scalar`` returns one value;
    ``flat`` turns one-column rows into plain values (as :func:`normalize` does).
    """

    async def reference(conn: AsyncConnection, **params: Any) -> Any:
        result = await conn.execute(text(query), params)
        if scalar:
            return result.scalar_one()
        rows = [tuple(r) for r in result.all()]
        return [r[0] for r in rows] if flat else rows

    reference.__doc__ = query
    return reference


@dataclass
class Counterexample:
    """A plausible wrong answer and a phrase its verdict must contain (tested in CI)."""

    label: str
    answer: Callable[[], Any]
    says: str


@dataclass
class Requirement:
    """One sub-check of a ``FUNCTIONS`` exercise, scored as its own group of rules.

    ``scenario(answer, scratch, attempt)`` drives the answer's functions on a scratch
    database (call them through :func:`call_answer`) and fills ``attempt``: the value
    and reference to compare, the SQL log, findings in ``attempt.extra``. ``rules``
    judge that attempt; each result is named ``"<name> · <rule>"`` in the verdict.
    """

    name: str
    scenario: Callable[[Any, Any, Attempt], Awaitable[None]]
    rules: Sequence[Rule] = ()


async def call_answer(function: Callable[..., Awaitable[Any]], *args: Any, **kwargs: Any) -> Any:
    """Await one of the answer's functions; whatever it raises arrives as ``_AnswerRaised``
    (a stub's ``NotImplementedError`` passes through: it means "not attempted")."""
    try:
        return await function(*args, **kwargs)
    except NotImplementedError:
        raise
    except Exception as exc:
        raise _AnswerRaised(exc) from exc


@dataclass
class Exercise:
    id: str
    title: str
    kind: str
    solution_answer: Callable[..., Any]
    expected: Callable[..., Awaitable[Any]] | None = None
    rules: Sequence[Rule] = field(default_factory=lambda: [SameResult()])
    hints: Sequence[str] = ()
    why: str = ""
    calls: Sequence[dict[str, Any]] = ({},)
    observe: Callable[..., Awaitable[Any]] | None = None
    probe: Callable[..., Awaitable[None]] | None = None
    counterexamples: Sequence[Counterexample] = ()
    scratch_scale: float = 1.0
    functions: Sequence[str] = ()  # FUNCTIONS: the async functions the answer object must have
    requirements: Sequence[Requirement] = ()  # FUNCTIONS: the sub-checks, in order
    prepare: Callable[[Any], Awaitable[None]] | None = None  # FUNCTIONS: set up the scratch database
    _hint_level: int = field(default=0, repr=False)

    # ---------------------------------------------------------------- learner API
    async def check(self, answer: Any = ..., *, db: Any = None) -> None:
        """Judge ``answer`` and show the verdict (in strict mode, a wrong answer raises)."""
        verdict = await self.evaluate(answer, db=db)
        from .record import record_verdict  # the learner's progress record (not the answer)

        record_verdict(verdict)
        if in_notebook():
            from IPython.display import display

            display(verdict)
        else:
            print(verdict)
        if strict() and verdict.status in (INCORRECT, ERROR):
            raise ExerciseFailed(str(verdict))

    def hint(self, level: int | None = None) -> None:
        """Show the next hint (or hint number ``level``); each call reveals a little more."""
        if not self.hints:
            text_ = "No hint for this one: try the recap's links, then solution()."
            n = 0
        else:
            if level is None:
                self._hint_level = min(self._hint_level + 1, len(self.hints))
                level = self._hint_level
            level = max(1, min(level, len(self.hints)))
            text_, n = self.hints[level - 1], level
        more = f" ({n} of {len(self.hints)}; call hint() again for more)" if n and n < len(self.hints) else ""
        self._show(box("info", f"Hint {n}{more}" if n else "Hint", f"<div>{rich(text_)}</div>"), plain(text_))

    def solution(self) -> None:
        """Show the reference answer's code."""
        code = solution_source(self.solution_answer)
        self._show(
            box("info", f"Solution · {self.id} {self.title}", f"<pre>{esc(code)}</pre>"),
            code,
        )

    def _show(self, html: str, plain: str) -> None:
        if in_notebook():
            show_html(html)
        else:
            print(plain)

    # ---------------------------------------------------------------- checking
    async def evaluate(self, answer: Any = ..., *, db: Any = None) -> Verdict:
        """The verdict for ``answer``, as data (no display, never raises for a bad answer)."""
        kind_problem, not_attempted = self._kind_problem(answer)
        if not_attempted:
            return self._verdict(NOT_ATTEMPTED, "Write your answer in the cell above, run it, then run this check again.")
        if kind_problem:
            return self._verdict(ERROR, kind_problem)
        if db is None:
            from ..database import current

            db = current()
        if self.kind == FUNCTIONS:
            return await self._evaluate_functions(answer, db)
        rule_results: list[RuleResult] = []
        for call in self.calls:
            try:
                attempt = await asyncio.wait_for(self._attempt(answer, db, call), ANSWER_TIMEOUT)
            except NotImplementedError:
                return self._verdict(NOT_ATTEMPTED, "Replace the `raise NotImplementedError` with your code, then check again.")
            except asyncio.TimeoutError:
                return self._verdict(ERROR, f"Your answer did not finish within {ANSWER_TIMEOUT:.0f} seconds.")
            except _AnswerRaised as raised:
                return self._verdict(ERROR, raised.explain())
            except Exception as exc:  # the checker itself failed: say so, and say it is not the learner
                if strict():
                    raise
                return self._verdict(
                    ERROR,
                    f"The checker itself failed ({type(exc).__name__}: {str(exc)[:200]}). This is a bug "
                    "in the course, not in your answer: please report it.",
                )
            prefix = _describe_call(call) if len(self.calls) > 1 else ""
            forgotten = _forgotten_await(attempt)
            if forgotten:  # the cause of whatever else differs: say it, and only it
                rule_results = [RuleResult(AWAITED, False, f"{prefix}: {forgotten}" if prefix else forgotten)]
                break
            rules = list(self.rules)
            if attempt.lazy_loads and not any(isinstance(r, NoLazyLoads) for r in rules):
                rules.insert(0, NoLazyLoads())
            for rule in rules:
                try:
                    result = rule.judge(attempt)
                except Exception:
                    # after a lazy load the answer never got as far as a result: a rule that reads the
                    # result has nothing to judge, and the lazy load (named first) is the verdict
                    if attempt.lazy_loads and attempt.value is None:
                        continue
                    raise
                if prefix and not result.passed:
                    result.message = f"{prefix}: {result.message}"
                rule_results.append(result)
        merged = _merge(rule_results)
        failed = [r for r in merged if not r.passed]
        # a lazy load explains every other symptom (a missing result, an error): name it first
        failed.sort(key=lambda r: (r.rule != AWAITED, not r.rule.startswith(NoLazyLoads.name)))
        if failed:
            message = failed[0].message
            if attempt.warnings:
                warned = attempt.warnings[0]
                if "cartesian product" in warned:  # the cause of the wrong rows: say it first
                    message = f"{explain_warning(warned)}. What differs: {message}"
                message += f" (SQLAlchemy warned: {warned})"
            return self._verdict(INCORRECT, message, merged)
        return self._verdict(CORRECT, self.why, merged)

    def _verdict(self, status: str, message: str, rules: list[RuleResult] | None = None) -> Verdict:
        return Verdict(self.id, self.title, status, message, rules or [])

    def _kind_problem(self, answer: Any) -> tuple[str | None, bool]:
        """(message naming the expected kind, or None; whether this is the untouched stub)."""
        if answer is ...:  # the untouched stub: `answer = ...  # YOUR CODE HERE`
            return None, True
        expected = f"This exercise takes {_KIND_EXAMPLES[self.kind]}."
        if answer is None:
            if self.kind == STATEMENT:
                return (
                    "Your answer is None, not a statement: did a function that builds it forget `return`, or "
                    "did you assign what a call that returns nothing gave back (`print(...)`, `session.add(...)`)?",
                    False,
                )
            return (f"Your answer is None: pass your function itself (`answer = my_function`). {expected}", False)
        if inspect.iscoroutine(answer):
            answer.close()
            return (
                f"You passed a coroutine: the function was already called. Pass the function "
                f"itself, without parentheses. {expected}", False,
            )
        if self.kind == STATEMENT:
            if isinstance(answer, Executable):
                return None, False
            if isinstance(answer, str):
                return (f"You passed a SQL string. {expected} (text() SQL is not what this one asks for.)", False)
            if inspect.iscoroutinefunction(answer):
                return (
                    "You passed an async function, but this exercise takes the statement itself: build it "
                    "and pass it unexecuted, `answer = select(...)...` (the checker executes it)", False,
                )
            if callable(answer) and not isinstance(answer, type):
                return (
                    "You passed a function, but this exercise takes the statement itself: call your builder "
                    "and pass what it returns, `answer = build()`", False,
                )
            return (f"You passed {_kind_name(answer)}. {expected}", False)
        if self.kind in (SESSION_FN, DB_FN):
            if inspect.iscoroutinefunction(answer):
                return None, False
            if isinstance(answer, Executable):
                arg = "session" if self.kind == SESSION_FN else "db"
                run = (
                    "await session.execute(stmt)" if self.kind == SESSION_FN
                    else "async with db.session() as session: ... await session.execute(stmt)"
                )
                return (
                    f"You passed a statement, but this exercise takes an async function: wrap it, "
                    f"`async def answer({arg}): ...` that runs it (`{run}`) and returns what the task asks "
                    f"for", False,
                )
            if callable(answer):
                return (f"You passed a regular (sync) function. {expected} Define it with `async def`.", False)
            return (f"You passed {_kind_name(answer)}. {expected}", False)
        if self.kind == FUNCTIONS:
            return _functions_problem(answer, self.functions, expected), False
        return None, False

    async def _evaluate_functions(self, answer: Any, db: Any) -> Verdict:
        """Run each requirement's scenario on one scratch database; one group of rules each."""
        from ..database import open_scratch

        results: list[RuleResult] = []
        scratch = await open_scratch(db.lesson, scale=self.scratch_scale)
        try:
            if self.prepare is not None:
                await self.prepare(scratch)
            for requirement in self.requirements:
                attempt = Attempt()
                problem = ""
                leftovers = Leftovers()
                try:
                    try:
                        await asyncio.wait_for(requirement.scenario(answer, scratch, attempt), ANSWER_TIMEOUT)
                    finally:
                        await leftovers.stop_tasks(attempt)
                        await leftovers.release(db.engine, attempt)
                except NotImplementedError:
                    return self._verdict(
                        NOT_ATTEMPTED, "Replace the `raise NotImplementedError` with your code, then check again."
                    )
                except asyncio.TimeoutError:
                    problem = f"your functions did not finish within {ANSWER_TIMEOUT:.0f} seconds"
                except _AnswerRaised as raised:
                    if _is_lazy_load(raised.error):
                        counted = attempt.lazy_loads  # a session's counter may have seen this one already
                        _note_lazy_load(attempt, raised.error)
                        attempt.lazy_loads = max(counted, 1)
                    else:
                        raised.leftovers = leftovers
                        problem = raised.explain()
                except Exception as exc:  # the checker itself failed
                    if strict():
                        raise
                    problem = (
                        f"the checker itself failed ({type(exc).__name__}: {str(exc)[:200]}). This is a bug "
                        "in the course, not in your answer: please report it"
                    )
                if problem:
                    results.append(RuleResult(f"{requirement.name} · ran to the end", False, f"{requirement.name}: {problem}"))
                    continue
                rules = list(requirement.rules)
                if attempt.lazy_loads and not any(isinstance(r, NoLazyLoads) for r in rules):
                    rules.insert(0, NoLazyLoads())
                for rule in rules:
                    result = rule.judge(attempt)
                    result.rule = f"{requirement.name} · {result.rule}"
                    if not result.passed:
                        result.message = f"{requirement.name}: {result.message}"
                    results.append(result)
        finally:
            await scratch.discard()
        failed = [r for r in results if not r.passed]
        failed.sort(key=lambda r: NoLazyLoads.name not in r.rule)
        if failed:
            return self._verdict(INCORRECT, failed[0].message, results)
        return self._verdict(CORRECT, self.why, results)

    async def _attempt(self, answer: Any, db: Any, call: dict[str, Any]) -> Attempt:
        if self.kind == DB_FN:
            return await self._attempt_on_scratch(answer, db, call)
        attempt = Attempt()
        async with db.engine.connect() as conn:
            outer = await conn.begin()
            try:
                if self.expected is not None:
                    attempt.expected = await self.expected(conn, **call)
                session = AsyncSession(bind=conn, join_transaction_mode="create_savepoint", expire_on_commit=False)
                counter = _LazyLoadCounter(session, attempt)
                attempt.extra["checker_savepoints"] = 1  # create_savepoint: the session's first is ours
                leftovers = Leftovers()
                finished = False
                try:
                    await self._run(answer, session, call, attempt)
                    finished = True
                except _AnswerRaised as raised:
                    raised.leftovers = leftovers
                    raise
                finally:
                    # tasks the answer started and left running (a gather that failed half-way)
                    # still use the session: stop them before the checker touches it again
                    await leftovers.stop_tasks(attempt)
                    await leftovers.release(db.engine, attempt)  # connections it opened itself, if any
                    # the counter sees relationship lazy loads; _run also counts an implicit
                    # IO it caught (e.g. a deferred column read outside the greenlet)
                    attempt.lazy_loads = max(attempt.lazy_loads, counter.count)
                    # probe only after an answer that ran to the end (after one that raised, the
                    # transaction may be aborted and the probe would hide the learner's error);
                    # and before the usability check: its SELECT 1 would autoflush (2.1),
                    # hiding an answer that forgot to flush
                    if finished and self.probe is not None and attempt.error is None:
                        await self.probe(conn, attempt, **call)
                    try:
                        attempt.session_usable = await _usable(session)
                        await session.close()
                    except Exception:  # left mid-operation by tasks sharing it: the connection goes
                        attempt.session_usable = False
                        await _discard_connection(conn)
            finally:
                if not conn.closed and not conn.invalidated:
                    try:
                        await asyncio.wait_for(outer.rollback(), 5)
                    except Exception:
                        await _discard_connection(conn)
        return attempt

    async def _run(self, answer: Any, session: AsyncSession, call: dict[str, Any], attempt: Attempt) -> None:
        # SQLAlchemy's own warnings (a cartesian product, say) are part of the feedback, not noise
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", SAWarning)
            warnings.simplefilter("always", RuntimeWarning)  # "coroutine ... was never awaited"
            try:
                await self._run_recorded(answer, session, call, attempt)
            finally:
                attempt.warnings = [
                    str(w.message).split(". ")[0] for w in caught if issubclass(w.category, SAWarning)
                ]
                _note_never_awaited(attempt, caught)

    async def _run_recorded(self, answer: Any, session: AsyncSession, call: dict[str, Any], attempt: Attempt) -> None:
        with record(show=False) as log:
            attempt.log = log
            try:
                if self.kind == STATEMENT:
                    result = await session.execute(answer, call or None)
                    attempt.columns = list(result.keys()) if _returns_rows(result) else None
                    reads = [s for s in log.queries if s.verb in ("SELECT", "WITH")]
                    if reads:  # an order the learner did not ask for is luck, not an answer
                        attempt.extra["top_level_order_by"] = has_top_level_order_by(reads[0].sql)
                    returned: Any = result
                else:
                    returned = await answer(session, **call)
                    attempt.extra["returned_none"] = returned is None and self.observe is None
                    _note_returned_coroutine(attempt, returned)
            except NotImplementedError:
                raise
            except Exception as exc:  # judged below, never shown as a traceback
                if _is_lazy_load(exc):
                    _note_lazy_load(attempt, exc)
                    return
                _drop_unawaited(exc)
                raise _AnswerRaised(exc) from exc
        # outside the answer's log (its reads are not the answer's statements), but still
        # watched by the lazy-load counter: touching an unloaded relationship here is the answer's
        try:
            attempt.value = await self._observe(session, returned, call)
        except Exception as exc:
            if not _is_lazy_load(exc):
                raise
            _note_lazy_load(attempt, exc)

    async def _observe(self, session: AsyncSession, returned: Any, call: dict[str, Any]) -> Any:
        if self.observe is not None:
            return await self.observe(session, returned, **call)
        if isinstance(returned, Result) and not _returns_rows(returned):
            return None
        return normalize(returned)

    async def _attempt_on_scratch(self, answer: Any, db: Any, call: dict[str, Any]) -> Attempt:
        from ..database import open_scratch

        attempt = Attempt()
        scratch = await open_scratch(db.lesson, scale=self.scratch_scale)
        try:
            if self.expected is not None:
                async with scratch.engine.connect() as conn:
                    attempt.expected = await self.expected(conn, **call)
            leftovers = Leftovers()
            with record(show=False) as log, warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always", SAWarning)
                warnings.simplefilter("always", RuntimeWarning)  # "coroutine ... was never awaited"
                attempt.log = log
                try:
                    returned = await answer(scratch, **call)
                    attempt.extra["returned_none"] = returned is None and self.observe is None
                except NotImplementedError:
                    raise
                except Exception as exc:
                    if _is_lazy_load(exc):
                        _note_lazy_load(attempt, exc)
                        return attempt
                    _drop_unawaited(exc)
                    raised = _AnswerRaised(exc)
                    raised.leftovers = leftovers
                    raise raised from exc
                finally:
                    # what the answer left open would block dropping the scratch database (and every
                    # check after this one): stop its tasks, end the transactions it left open
                    await leftovers.stop_tasks(attempt)
                    await leftovers.release(db.engine, attempt)
                    attempt.warnings = [
                        str(w.message).split(". ")[0] for w in caught if issubclass(w.category, SAWarning)
                    ]
                    _note_never_awaited(attempt, caught)
            _note_returned_coroutine(attempt, returned)
            if self.observe is not None:
                async with scratch.session() as session:
                    attempt.value = await self.observe(session, returned, **call)
            else:
                attempt.value = normalize(returned)
            if self.probe is not None:
                async with scratch.engine.connect() as conn:
                    await self.probe(conn, attempt, **call)
        finally:
            await scratch.discard()
        return attempt


def _functions_problem(answer: Any, names: Sequence[str], expected: str) -> str | None:
    """Why ``answer`` is not an object holding the async functions ``names`` (None if it is)."""
    expected = expected.rstrip(".")
    if inspect.isfunction(answer) or inspect.ismethod(answer):
        return (
            f"You passed one function ({getattr(answer, '__name__', '?')}). {expected}: "
            f"pass the class or object that holds {', '.join(names)}."
        )
    what = getattr(answer, "__name__", type(answer).__name__)
    missing = [n for n in names if not callable(getattr(answer, n, None))]
    if missing:
        return (
            f"{what} has no function {', '.join(missing)}: this exercise needs an object with "
            f"the async functions {', '.join(names)}."
        )
    sync = [n for n in names if not inspect.iscoroutinefunction(getattr(answer, n))]
    if sync:
        return f"{', '.join(sync)} should be defined with `async def`: {expected}."
    if inspect.isclass(answer):
        takes_self = [
            n for n in names
            if next(iter(inspect.signature(getattr(answer, n)).parameters), "") in ("self", "cls")
        ]
        if takes_self:
            one = len(takes_self) == 1
            return (
                f"{', '.join(takes_self)} {'takes' if one else 'take'} self: mark {'it' if one else 'them'} "
                f"@staticmethod, or pass an instance ({what}()) instead of the class."
            )
    return None


def _returns_rows(result: Result[Any]) -> bool:
    return bool(getattr(result, "returns_rows", True))


class _AnswerRaised(Exception):
    def __init__(self, error: BaseException) -> None:
        super().__init__(str(error))
        self.error = error
        self.leftovers: Leftovers | None = None

    def explain(self) -> str:
        """The mistake in the lesson's terms first (when known), then the raw error, quoted."""
        err, failures = first_leaf(self.error)
        first = (str(err).strip().splitlines() or [""])[0][:300]
        name = type(getattr(err, "orig", None) or err).__name__
        raw = f"{type(err).__name__}" + (f" ({name})" if name != type(err).__name__ else "") + f": {first}"
        if err is not self.error:  # a TaskGroup's ExceptionGroup: name its first cause
            raw = (
                f"{type(self.error).__name__} from a TaskGroup: {failures} task(s) failed, the first with {raw}"
            )
        text_ = f"Your answer raised {raw}"
        # an error raised while handling another (a cleanup that failed: a session closed in
        # `async with` while tasks still used it) hides the cause: name the first one too
        context = err.__context__
        if context is not None and not err.__suppress_context__ and type(context) is not type(err):
            cause = (str(context).strip().splitlines() or [""])[0][:300]
            text_ += f" (raised while handling {type(context).__name__}: {cause})"
        left = self.leftovers.describe() if self.leftovers is not None else ""
        if left:
            text_ += f". {left}"
        diagnosis = explain_error(self.error)
        if diagnosis:
            return f"{diagnosis[:1].upper()}{diagnosis[1:]}. {text_}"
        return text_


class Leftovers:
    """What an answer may leave behind when it stops: tasks still running (a gather whose other
    tasks carry on after one failed) and, on PostgreSQL, connections still inside a transaction.

    Left alone, those block the checker's cleanup (dropping the scratch database waits on their
    locks) and so every later check in the notebook. Create it just before the answer runs.
    """

    def __init__(self) -> None:
        self.tasks_before = set(asyncio.all_tasks())
        self.tasks_stopped = 0
        self.connections_ended = 0
        self._pids: set[int] = set()
        event.listen(Pool, "checkout", self._checkout)

    def _checkout(self, dbapi_connection: Any, record: Any, proxy: Any) -> None:
        get_pid = getattr(getattr(dbapi_connection, "driver_connection", None), "get_server_pid", None)
        if get_pid is not None:
            with contextlib.suppress(Exception):
                self._pids.add(int(get_pid()))

    async def stop_tasks(self, attempt: Attempt | None = None) -> int:
        """Cancel the tasks the answer started that still run; how many there were."""
        current = asyncio.current_task()
        left = [
            t for t in asyncio.all_tasks() - self.tasks_before
            if t is not current and not t.done() and not _kernel_task(t)
        ]
        for task in left:
            task.cancel()
        if left:
            await asyncio.wait(left, timeout=5)
        for task in left:  # read their outcome, so no "exception was never retrieved" later
            if task.done() and not task.cancelled():
                task.exception()
        self.tasks_stopped += len(left)
        if attempt is not None and left:
            attempt.extra["tasks_left_running"] = attempt.extra.get("tasks_left_running", 0) + len(left)
        return len(left)

    async def release(self, engine: Any, attempt: Attempt | None = None) -> int:
        """End (``pg_terminate_backend``) the connections the answer checked out that are still
        inside a transaction or a statement; stop watching. PostgreSQL only: a SQLite file
        connection holds no lock once its tasks are gone."""
        if event.contains(Pool, "checkout", self._checkout):
            event.remove(Pool, "checkout", self._checkout)
        pids, self._pids = sorted(self._pids), set()
        if not pids or engine.dialect.name != "postgresql":
            return 0
        async with engine.connect() as conn:
            ended = (await conn.execute(text(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE pid = ANY(CAST(:pids AS integer[])) AND pid <> pg_backend_pid() AND state <> 'idle'"
            ), {"pids": pids})).all()
            await conn.commit()
        self.connections_ended += len(ended)
        if attempt is not None and ended:
            attempt.extra["connections_ended"] = attempt.extra.get("connections_ended", 0) + len(ended)
        return len(ended)

    def describe(self) -> str:
        parts = []
        if self.tasks_stopped:
            parts.append(f"{self.tasks_stopped} task(s) it started were still running")
        if self.connections_ended:
            parts.append(f"{self.connections_ended} connection(s) it opened were left inside a transaction")
        if not parts:
            return ""
        return f"When your answer stopped, {' and '.join(parts)}: the checker ended them"


_KERNEL_PARTS = ("ipykernel", "tornado", "zmq", "jupyter_client", "anyio", "comm", "ipywidgets")


AWAITED = "every async call awaited"
#: coroutines of SQLAlchemy's asyncio API (and asyncio.sleep) by qualified name: what a learner calls;
#: a driver's own coroutine left behind by a failed lazy load is not the learner's missing await
_ASYNC_API = ("AsyncSession.", "AsyncConnection.", "AsyncEngine.", "AsyncResult.", "AsyncScalarResult.",
              "AsyncMappingResult.", "AsyncSessionTransaction.", "AsyncTransaction.", "AsyncAttrs.",
              "AsyncTupleResult.", "sleep")
_OWNER_NAMES = {"AsyncSession": "session", "AsyncConnection": "conn", "AsyncEngine": "engine",
                "AsyncResult": "result", "AsyncScalarResult": "result", "AsyncMappingResult": "result",
                "AsyncTupleResult": "result", "AsyncSessionTransaction": "transaction",
                "AsyncTransaction": "transaction"}


def _as_call(qualname: str) -> str:
    """``AsyncSession.flush`` -> ``session.flush()``; ``sleep`` -> ``asyncio.sleep()``;
    ``answer.<locals>.helper`` (the learner's own nested function) -> ``helper()``."""
    owner, _, method = qualname.split("<locals>.")[-1].rpartition(".")
    if not owner:
        return "asyncio.sleep()" if method == "sleep" else f"{method}()"
    return f"{_OWNER_NAMES.get(owner, owner)}.{method}()"


def _note_never_awaited(attempt: Attempt, caught: list[warnings.WarningMessage]) -> None:
    for w in caught:
        found = re.match(r"coroutine '([\w.<>]+)' was never awaited", str(w.message))
        name = found.group(1).split("<locals>.")[-1] if found else ""
        seen = attempt.extra.setdefault("never_awaited", [])
        if name and (name.startswith(_ASYNC_API) or "." not in name) and found.group(1) not in seen:
            seen.append(found.group(1))


def _note_returned_coroutine(attempt: Attempt, returned: Any) -> None:
    if inspect.iscoroutine(returned):
        attempt.extra["returned_coroutine"] = returned.__qualname__
        returned.close()  # it never runs: no "never awaited" warning later, in another cell


def _drop_unawaited(exc: BaseException) -> None:
    """An answer that failed on a coroutine it forgot to await (``'coroutine' object has no attribute
    'scalars'``): free that coroutine now, so no "never awaited" warning pops up in a later cell."""
    if "'coroutine' object" in str(exc):
        from ..expect import _chain, _release_frames

        for error in _chain(exc):
            if inspect.iscoroutine(getattr(error, "obj", None)):  # AttributeError.obj: the coroutine itself
                error.obj.close()  # closing one that never started runs nothing and warns nothing
        _release_frames(_chain(exc))


def _forgotten_await(attempt: Attempt) -> str | None:
    """The headline for an async call made without ``await``, or None."""
    returned = attempt.extra.get("returned_coroutine")
    if returned:
        call = _as_call(returned)
        return (
            f"you forgot `await`: your function returned a coroutine (from `{call}`), not its result. "
            f"An async call without `await` only creates a coroutine and nothing runs. Write "
            f"`return await {call.removesuffix('()')}(...)`"
        )
    never = attempt.extra.get("never_awaited")
    if never:
        call = _as_call(never[0])
        more = f" (and {len(never) - 1} other call{'s' if len(never) > 2 else ''})" if len(never) > 1 else ""
        sql = " (no SQL was sent)" if never[0].split("<locals>.")[-1].startswith(_ASYNC_API[:-1]) else ""
        return (
            f"you forgot `await`: `{call}` was never awaited{more}. An async call without `await` only "
            f"creates a coroutine, so it never ran{sql}. Write `await {call.removesuffix('()')}(...)`"
        )
    return None


def _kernel_task(task: asyncio.Task[Any]) -> bool:
    """A task the Jupyter kernel started meanwhile (a message handler), not the answer's: never cancelled."""
    code = getattr(task.get_coro(), "cr_code", None)
    filename = (getattr(code, "co_filename", "") or "").replace(os.sep, "/")
    # a package's own folder (".../ipykernel/kernelbase.py"); a notebook cell's code lives in
    # "/tmp/ipykernel_<pid>/<hash>.py" and is the learner's
    return any(f"/{part}/" in filename for part in _KERNEL_PARTS)


async def _discard_connection(conn: AsyncConnection) -> None:
    """Throw away a connection an answer left mid-operation (closed at the driver, not reused)."""
    with contextlib.suppress(Exception):
        await conn.invalidate()


class _LazyLoadCounter:
    """Counts lazy loads (relationship loads not asked for up front) in one session, and
    names them: ``Comment.author`` (many-to-one) or ``Post.comments`` (a collection)."""

    def __init__(self, session: AsyncSession, attempt: Attempt | None = None) -> None:
        self.count = 0
        self.attempt = attempt
        event.listen(session.sync_session, "do_orm_execute", self._on_execute)

    def _on_execute(self, state: Any) -> None:
        if state.is_select and state.lazy_loaded_from is not None:
            self.count += 1
            if self.attempt is not None:
                note_lazy_attribute(self.attempt, state)


def note_lazy_attribute(attempt: Attempt, orm_state: Any) -> None:
    """Record which relationship an ORM execute loaded lazily (from its loader path)."""
    try:
        prop = getattr(orm_state.loader_strategy_path, "prop", None)
    except Exception:
        prop = None
    _note_property(attempt, prop)


def _note_property(attempt: Attempt, prop: Any) -> None:
    if prop is None or not hasattr(prop, "uselist"):
        return
    name = f"{prop.parent.class_.__name__}.{prop.key}"
    if name not in attempt.lazy_attributes:
        attempt.lazy_attributes.append(name)
        attempt.lazy_collections[name] = bool(prop.uselist)


def _note_lazy_load(attempt: Attempt, exc: BaseException) -> None:
    from ..expect import _chain, _release_frames

    attempt.lazy_loads += 1
    attempt.error = exc
    chain = _chain(exc)
    for error in chain:  # the lazy loader's frame knows the relationship (any session, no listener)
        tb = error.__traceback__
        while tb is not None:
            snapshot = tb.tb_frame.f_locals  # a dict Python 3.11 keeps on the frame: emptied below
            loader = snapshot.get("self")
            if type(loader).__name__.endswith("LazyLoader"):  # _LazyLoader in 2.1
                _note_property(attempt, getattr(loader, "parent_property", None))
            loader = None
            snapshot.clear()  # else it keeps the driver's unawaited coroutine alive ("never awaited" later)
            tb = tb.tb_next
    _release_frames(chain)  # no "coroutine was never awaited" echo in a later cell


def _is_lazy_load(exc: BaseException) -> bool:
    item: BaseException | None = exc
    while item is not None:
        if isinstance(item, MissingGreenlet):
            return True
        item = getattr(item, "orig", None) or item.__cause__
    return "greenlet_spawn has not been called" in str(exc)


async def _usable(session: AsyncSession) -> bool:
    try:
        await session.execute(select(1))
        return True
    except Exception:
        return False


def _merge(results: list[RuleResult]) -> list[RuleResult]:
    """One line per rule across several calls: the first failure wins."""
    merged: dict[str, RuleResult] = {}
    for r in results:
        key = r.rule.split(" (")[0]
        if key not in merged or (merged[key].passed and not r.passed):
            merged[key] = r
    return list(merged.values())


def _describe_call(call: dict[str, Any]) -> str:
    return "called with " + ", ".join(f"{k}={v!r}" for k, v in call.items()) if call else "called"


def _kind_name(answer: Any) -> str:
    if isinstance(answer, list):
        return "a list (did you run the query and pass its rows? pass the statement itself)"
    if isinstance(answer, Result):
        return "a result (pass the statement, not what executing it returned)"
    return f"a {type(answer).__name__}"


def solution_source(answer: Callable[..., Any]) -> str:
    """The solution as the learner should write it: a builder's body, or a whole async function."""
    source = textwrap.dedent(inspect.getsource(answer))
    if inspect.iscoroutinefunction(answer) or inspect.isclass(answer):
        return source.strip()
    lines = source.splitlines()
    body = textwrap.dedent("\n".join(lines[1:])).strip().splitlines()
    if len(body) == 1 and body[0].startswith("return "):
        return body[0][len("return "):]
    # a builder with helper names: show it as the cell the learner writes
    return "\n".join("answer = " + line[len("return "):] if line.startswith("return ") else line for line in body)


def statement_sql(stmt: Any, dialect: Any) -> str:
    """The SQL text a statement compiles to (bound parameters stay as placeholders)."""
    return highlight_sql(str(stmt.compile(dialect=dialect)))
