"""Lesson 09 · Connection pooling: size a pool, survive a dropped connection, share a small pool.

Most answers here build or use engines, so the checker watches every pool while an
answer runs (``course.lab.pooling.PoolWatch`` on the ``Pool`` class: connects, checkouts,
the peak of connections out at once) and judges what the pool did, on either backend.
"""

from __future__ import annotations

import asyncio
import math
import sys
from contextvars import ContextVar
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import DateTime, bindparam, event, func, select, text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker
from sqlalchemy.pool import NullPool, Pool, QueuePool
from sqlalchemy.util import await_only

from ..lab.pooling import SCOPE, PoolWatch, drop_idle_connection, run_burst
from ..schema import Order
from .core import DB_FN, SESSION_FN, Counterexample, Exercise
from .rules import Attempt, Probe, SameResult, names_used


@dataclass
class Raised:
    """What an answer raised, kept as its result so the rules can judge it."""

    error: BaseException

    @property
    def name(self) -> str:
        return type(self.error).__name__

    @property
    def invalidated(self) -> bool:
        return bool(getattr(self.error, "connection_invalidated", False))

    def __repr__(self) -> str:
        return f"raised {self.name}"


@dataclass
class PoolExercise(Exercise):
    """A database-function exercise that watches every pool while the answer runs.

    ``attempt.extra["pool"]`` holds the counts (``PoolWatch.summary()``). With
    ``catch_errors`` an exception from the answer becomes a :class:`Raised` result
    for the rules to judge, instead of an error verdict. Call values with a
    ``fresh()`` method are replaced by ``value.fresh()`` for each attempt.
    """

    catch_errors: bool = False

    async def _attempt(self, answer: Any, db: Any, call: dict[str, Any]) -> Attempt:
        call = {k: (v.fresh() if hasattr(v, "fresh") else v) for k, v in call.items()}
        scope = object()
        watch = PoolWatch(Pool, scope=scope)

        engines: list[dict[str, Any]] = []
        made: list[Any] = []
        own: list[PoolWatch] = []  # the pools of the engines the answer made: did its work use them?
        open_left: list[int] = []
        slow_steps: list[bool] = []

        async def watched(scratch: Any, **kw: Any) -> Any:
            before = asyncio.all_tasks()
            token = SCOPE.set(scope)
            steps = _SLOW_STEPS.set(slow_steps)
            make = scratch.create_engine

            def create_engine(**engine_kw: Any) -> Any:  # which settings the answer's engines got
                engine = make(**engine_kw)
                engines.append(engine_kw)
                made.append(engine)
                own.append(PoolWatch(engine).attach())
                return engine

            scratch.create_engine = create_engine
            returned: Any = None
            try:
                with watch:
                    returned = await answer(scratch, **kw)
                return returned
            except NotImplementedError:
                raise
            except Exception as error:
                # tasks the answer started may still hold connections (gather does not cancel
                # its other tasks): let them finish before the scratch database goes away
                started = asyncio.all_tasks() - before - {asyncio.current_task()}
                if started:
                    await asyncio.wait(started, timeout=5)
                if not self.catch_errors:
                    raise
                return Raised(error)
            finally:
                del scratch.create_engine
                # connections the answer's own engines still held when it returned (before the checker disposes)
                open_left.append(sum(w.connects - w.closes - w.invalidations for w in own))
                for engine in made:  # an engine the answer forgot to dispose (the watch has seen that)
                    if engine is not returned:  # a returned engine is the answer (q1, q3): observed next
                        await engine.dispose()
                for watch_ in own:
                    watch_.detach()
                _SLOW_STEPS.reset(steps)
                SCOPE.reset(token)

        attempt = await super()._attempt(watched, db, call)
        attempt.extra["engines"] = engines
        attempt.extra["own_checkouts"] = sum(w.checkouts for w in own)
        attempt.extra["own_open"] = open_left[0] if open_left else 0
        attempt.extra["slow_steps"] = slow_steps
        attempt.extra["pool"] = watch.summary()
        attempt.extra["call"] = call
        attempt.extra["code_names"] = names_used(answer)
        return attempt


SMALL = {"scratch_scale": 0.05}  # 25 users, 150 orders: enough, and quick to create


# ---------------------------------------------------------------- q1: a pool with hard limits


async def _q1_solution(db):
    return db.create_engine(pool_size=3, max_overflow=0, pool_timeout=1)


async def _q1_observe(session: AsyncSession, returned: Any) -> dict[str, Any]:
    """Read the pool's settings, then load it: 4 tasks at once, each holding a connection
    for 0.3 s (how long a 4th caller may wait is the pool's own ``timeout()``)."""
    if not isinstance(returned, AsyncEngine):
        return {"type": type(returned).__name__}
    pool = returned.pool
    seen: dict[str, Any] = {"type": "AsyncEngine", "pool": type(pool).__name__, "backend": returned.dialect.name}
    try:
        if isinstance(pool, QueuePool):
            seen.update(size=pool.size(), overflow=pool._max_overflow, timeout=pool.timeout())
        burst = await run_burst(returned, 4, 0.3)
        seen.update(peak=burst.peak, waited=burst.waited, connects=burst.connects)
    finally:
        await returned.dispose()
    return seen


def _q1_engine(attempt: Attempt) -> str | None:
    seen = attempt.value or {}
    if seen.get("type") != "AsyncEngine":
        return (
            f"return the engine itself (you returned {seen.get('type', 'nothing')}): "
            "db.create_engine(...) gives an AsyncEngine"
        )
    return None


def _q1_at_most(attempt: Attempt) -> str | None:
    seen = attempt.value or {}
    if seen.get("type") != "AsyncEngine":
        return None
    if seen.get("pool") == NullPool.__name__:
        return (
            f"with NullPool there is no pool to limit: {seen.get('peak')} connections were open at once "
            "(it opens one per checkout and closes it on return)"
        )
    if "size" in seen and seen["size"] + seen["overflow"] > 3:
        size, overflow = seen["size"], seen["overflow"]
        lets = f"pool_size={size} with max_overflow={overflow} lets {size + overflow} connections out at once, not 3"
        if not any("max_overflow" in kw for kw in attempt.extra.get("engines", [])):
            default = (
                "the default of db.create_engine() on PostgreSQL in this course; SQLAlchemy's own is 10"
                if seen.get("backend") == "postgresql"
                else "SQLAlchemy's default"
            )
            return (
                f"{lets}: max_overflow is not 0 unless you say so. You left it unset, so it is {overflow} here "
                f"({default}): set max_overflow=0, and pool_size is the limit"
            )
        if overflow == 0:
            return f"{lets}: with max_overflow=0 the limit is pool_size itself, so pool_size=3"
        return f"{lets}: the two add up; make pool_size + max_overflow = 3 (pool_size=3, max_overflow=0)"
    if seen.get("peak", 0) > 3:
        return f"{seen['peak']} connections were out at once; the limit is 3"
    return None


def _q1_serves_three(attempt: Attempt) -> str | None:
    seen = attempt.value or {}
    if seen.get("type") != "AsyncEngine" or "size" not in seen:
        return None
    total = seen["size"] + seen["overflow"]
    if total < 3:
        return f"only {total} connection(s) can be out at once; three tasks should run together"
    return None


def _q1_fails_fast(attempt: Attempt) -> str | None:
    seen = attempt.value or {}
    if seen.get("type") != "AsyncEngine" or "size" not in seen:
        return None
    if seen["timeout"] > 1:
        return (
            f"a 4th caller would wait {seen['timeout']:g} s for a connection (pool_timeout"
            f"{' defaults to 30' if seen['timeout'] == 30 else ''}); make it give up after 1 second"
        )
    return None


async def _q1_only_size(db):
    return db.create_engine(pool_size=3)


async def _q1_size_four(db):
    return db.create_engine(pool_size=4, max_overflow=0, pool_timeout=1)  # "4: three, plus one spare"


async def _q1_overflow_too(db):
    return db.create_engine(pool_size=3, max_overflow=3, pool_timeout=1)  # the overflow comes on top


async def _q1_no_timeout(db):
    return db.create_engine(pool_size=3, max_overflow=0)


async def _q1_nullpool(db):
    return db.create_engine(poolclass=NullPool)


async def _q1_sessionmaker(db):
    return async_sessionmaker(db.create_engine(pool_size=3, max_overflow=0, pool_timeout=1))


async def _q1_alt_overflow(db):
    return db.create_engine(pool_size=2, max_overflow=1, pool_timeout=1)  # 2 kept + 1 under load = 3


async def _q1_alt_shorter_timeout(db):
    return db.create_engine(pool_size=3, max_overflow=0, pool_timeout=0.5)  # gives up sooner than 1 s


q1 = PoolExercise(
    id="09.q1",
    title="A pool with hard limits",
    kind=DB_FN,
    solution_answer=_q1_solution,
    observe=_q1_observe,
    rules=[
        Probe(test=_q1_engine, name="returns an engine"),
        Probe(test=_q1_at_most, name="never more than 3 connections out"),
        Probe(test=_q1_serves_three, name="3 tasks can run together"),
        Probe(test=_q1_fails_fast, name="a 4th caller gives up within 1 s"),
    ],
    hints=[
        "Three settings decide it: pool_size (kept open), max_overflow (extra under load), "
        "pool_timeout (how long a checkout waits).",
        "max_overflow defaults to 10 (3 in the course's PostgreSQL engines) and pool_timeout to 30: set "
        "both, not only pool_size.",
        "return db.create_engine(pool_size=3, max_overflow=0, pool_timeout=1)",
    ],
    why="pool_size + max_overflow is the most connections one process can hold; pool_timeout is how "
    "long a caller waits before TimeoutError.",
    counterexamples=[
        Counterexample("only pool_size", _q1_only_size, "max_overflow is not 0 unless you say so"),
        Counterexample("pool_size=4, max_overflow=0", _q1_size_four, "with max_overflow=0 the limit is pool_size itself"),
        Counterexample("pool_size=3 plus an overflow of 3", _q1_overflow_too, "the two add up"),
        Counterexample("default timeout", _q1_no_timeout, "defaults to 30"),
        Counterexample("NullPool", _q1_nullpool, "NullPool"),
        Counterexample("a sessionmaker", _q1_sessionmaker, "return the engine itself"),
    ],
    **SMALL,
)


# ---------------------------------------------------------------- q2: the connection budget

Q2_CALLS = (
    # first, a budget where every common slip gives a different number, so the verdict can name it
    {"processes": 4, "max_overflow": 5, "max_connections": 100, "reserved": 5},
    {"processes": 4, "max_overflow": 5, "max_connections": 100, "reserved": 3},
    {"processes": 8, "max_overflow": 10, "max_connections": 100, "reserved": 3},
    {"processes": 6, "max_overflow": 0, "max_connections": 200, "reserved": 3},
    {"processes": 12, "max_overflow": 10, "max_connections": 100, "reserved": 3},
)


async def _q2_solution(session, processes, max_overflow, max_connections, reserved):
    per_process = (max_connections - reserved) // processes
    pool_size = per_process - max_overflow
    return pool_size if pool_size >= 1 else None


async def _q2_expected(conn, processes, max_overflow, max_connections, reserved):
    # integer division in SQL, on both backends
    return (
        await conn.execute(
            text(
                "SELECT CASE WHEN (CAST(:mc AS INTEGER) - CAST(:r AS INTEGER)) / CAST(:p AS INTEGER) "
                "- CAST(:o AS INTEGER) >= 1 THEN (CAST(:mc AS INTEGER) - CAST(:r AS INTEGER)) "
                "/ CAST(:p AS INTEGER) - CAST(:o AS INTEGER) END"
            ),
            {"mc": max_connections, "r": reserved, "p": processes, "o": max_overflow},
        )
    ).scalar_one()


async def _q2_probe(conn, attempt: Attempt, **call: Any) -> None:
    attempt.extra["call"] = call


def _q2_diagnose(attempt: Attempt) -> str | None:
    got, want = attempt.value, attempt.expected
    if got == want:
        return None
    c = attempt.extra.get("call", {})
    p, o, mc, r = c.get("processes"), c.get("max_overflow"), c.get("max_connections"), c.get("reserved")
    if want is None:
        if isinstance(got, int) and got <= 0:
            return (
                f"no pool size fits here, so return None: {got} is not a pool size (pool_size=0 even "
                "means 'no limit' in SQLAlchemy)"
            )
        return f"{p} processes x (1 + {o}) connections already exceed {mc - r}: return None"
    if not isinstance(got, int) or isinstance(got, bool):
        return f"return a whole number of connections (or None), not {got!r}"
    available = mc - r
    # each formula a learner plausibly wrote, with what it means; one value can fit several
    causes = [
        (available - o, "that is the budget of one process: every worker process has its own pool, so divide by processes"),
        (available // p, f"{got} leaves no room for the overflow: each process may open max_overflow={o} more"),
        (
            -(-available // p) - o,
            f"you rounded {available} / {p} = {available / p:.2f} up (round() or ceil()): "
            f"{p} x ({got} + {o}) = {p * (got + o)} connections, more than the {available} available; round down (//)",
        ),
        (mc // p - o, f"the server keeps {r} connections for superusers: budget max_connections - reserved"),
        ((available - o) // p, f"max_overflow counts once per process, not once in total: {p} x ({got} + {o}) = "
         f"{p * (got + o)} connections, more than the {available} available"),
    ]
    found = [message for value, message in causes if value == got and value != want]
    if found:
        return found[0] if len(found) == 1 else "two possible causes: " + "; or ".join(found)
    if got > want:
        return f"{p} x ({got} + {o}) = {p * (got + o)} connections, more than the {available} available (too high)"
    return f"{got} is too low: {p} x ({got + 1} + {o}) = {p * (got + 1 + o)} still fits in {available}"


async def _q2_one_process(session, processes, max_overflow, max_connections, reserved):
    return max_connections - reserved - max_overflow


async def _q2_no_overflow(session, processes, max_overflow, max_connections, reserved):
    return (max_connections - reserved) // processes


async def _q2_rounds(session, processes, max_overflow, max_connections, reserved):
    size = round((max_connections - reserved) / processes) - max_overflow
    return size if size >= 1 else None


async def _q2_ceil(session, processes, max_overflow, max_connections, reserved):
    size = math.ceil((max_connections - reserved) / processes) - max_overflow
    return size if size >= 1 else None


async def _q2_no_reserved(session, processes, max_overflow, max_connections, reserved):
    size = max_connections // processes - max_overflow
    return size if size >= 1 else None


async def _q2_overflow_once(session, processes, max_overflow, max_connections, reserved):
    size = (max_connections - reserved - max_overflow) // processes
    return size if size >= 1 else None


async def _q2_alt_loop(session, processes, max_overflow, max_connections, reserved):
    best = None
    for size in range(1, max_connections + 1):
        if processes * (size + max_overflow) <= max_connections - reserved:
            best = size
    return best


async def _q2_alt_floor(session, processes, max_overflow, max_connections, reserved):
    size = math.floor((max_connections - reserved - processes * max_overflow) / processes)
    return size if size > 0 else None


async def _q2_zero(session, processes, max_overflow, max_connections, reserved):
    return max(0, (max_connections - reserved) // processes - max_overflow)


q2 = Exercise(
    id="09.q2",
    title="The connection budget",
    kind=SESSION_FN,
    solution_answer=_q2_solution,
    expected=_q2_expected,
    probe=_q2_probe,
    calls=Q2_CALLS,
    rules=[Probe(test=_q2_diagnose, name="the largest pool_size that fits"), SameResult()],
    hints=[
        "Each process can hold pool_size + max_overflow connections, and there are `processes` of them.",
        "Available: max_connections - reserved. Solve processes x (pool_size + max_overflow) <= available "
        "for the largest whole pool_size (floor division), and return None when it is below 1.",
        "size = (max_connections - reserved) // processes - max_overflow; return size if size >= 1 else None",
    ],
    why="The server counts connections across all processes: size pools from max_connections down, "
    "not from one worker up.",
    counterexamples=[
        Counterexample("one process", _q2_one_process, "every worker process has its own pool"),
        Counterexample("forgets the overflow", _q2_no_overflow, "no room for the overflow"),
        Counterexample("rounds", _q2_rounds, "round down"),
        Counterexample("zero instead of None", _q2_zero, "return None"),
        Counterexample("rounds up with ceil()", _q2_ceil, "round down (//)"),
        Counterexample("forgets the reserved connections", _q2_no_reserved, "superusers"),
        Counterexample("one overflow for all processes", _q2_overflow_once, "once per process"),
    ],
)


# ---------------------------------------------------------------- q3: survive a dropped connection


async def _q3_solution(db):
    return db.create_engine(pool_pre_ping=True)


async def _q3_observe(session: AsyncSession, returned: Any) -> dict[str, Any]:
    """Use the engine, drop its idle connection behind its back, use it again."""
    if not isinstance(returned, AsyncEngine):
        return {"type": type(returned).__name__}
    seen: dict[str, Any] = {"type": "AsyncEngine", "pool": type(returned.pool).__name__}
    try:
        with PoolWatch(returned) as watch:
            for _ in range(3):
                async with returned.connect() as conn:
                    await conn.execute(text("SELECT 1"))
            await drop_idle_connection(returned, killer=session.bind)
            try:
                async with AsyncSession(returned) as s:
                    seen["users"] = await s.scalar(text("SELECT count(*) FROM users"))
            except DBAPIError as error:
                seen["error"] = type(error).__name__
                seen["invalidated"] = error.connection_invalidated
            for _ in range(3):
                async with returned.connect() as conn:
                    await conn.execute(text("SELECT 1"))
        seen["checkouts"], seen["connects"] = watch.checkouts, watch.connects
    finally:
        await returned.dispose()
    return seen


def _q3_engine(attempt: Attempt) -> str | None:
    seen = attempt.value or {}
    if seen.get("type") != "AsyncEngine":
        return f"return the engine itself (you returned {seen.get('type', 'nothing')})"
    return None


def _q3_survives(attempt: Attempt) -> str | None:
    seen = attempt.value or {}
    if seen.get("type") == "AsyncEngine" and "error" in seen:
        return (
            f"the first query after the connection was dropped failed ({seen['error']}, "
            f"connection_invalidated={seen['invalidated']}): the pool handed out a dead connection. "
            + (
                "pool_recycle only replaces old connections; test each one at checkout instead: "
                "`pool_pre_ping=True`"
                if any("pool_recycle" in kw for kw in attempt.extra.get("engines", []))
                else "Make the engine with `pool_pre_ping=True`: the pool then tests each connection at checkout"
            )
        )
    return None


def _q3_reuses(attempt: Attempt) -> str | None:
    seen = attempt.value or {}
    if seen.get("type") != "AsyncEngine" or "connects" not in seen:
        return None
    if seen["connects"] <= 2:
        return None
    opened = f"{seen['connects']} connections opened for {seen['checkouts']} checkouts"
    recycle = [kw["pool_recycle"] for kw in attempt.extra.get("engines", []) if kw.get("pool_recycle") is not None]
    if seen["pool"] != NullPool.__name__ and recycle and 0 <= recycle[0] < 60:
        every = "0 means every checkout" if recycle[0] == 0 else "here nearly every checkout"
        return (
            f"pool_recycle={recycle[0]} replaces a connection older than {recycle[0]} s when it is checked out, and "
            f"{every} gets a new one ({opened}; -1, the default, never recycles): it survives the drop only by "
            "never reusing a connection. Keep the pool, drop pool_recycle (or give it hours: 3600) and test each "
            "connection at checkout: `pool_pre_ping=True`"
        )
    if seen["pool"] == NullPool.__name__:
        return (
            f"{opened}: it survives by never reusing a connection (NullPool), paying a new connection every time; "
            "keep the pool and test connections at checkout: `pool_pre_ping=True`"
        )
    return (
        f"{opened}: your pool replaced its connections instead of reusing them, paying a new connection every "
        "time; keep them and test each one at checkout instead: `pool_pre_ping=True`"
    )


async def _q3_default(db):
    return db.create_engine()


async def _q3_recycle(db):
    return db.create_engine(pool_recycle=3600)


async def _q3_recycle_zero(db):
    return db.create_engine(pool_recycle=0, pool_use_lifo=True)  # "0: always a fresh connection"


async def _q3_nullpool(db):
    return db.create_engine(poolclass=NullPool)


async def _q3_sessionmaker(db):
    return async_sessionmaker(db.create_engine(pool_pre_ping=True))


async def _q3_alt_with_recycle(db):
    return db.create_engine(pool_pre_ping=True, pool_recycle=3600)


async def _q3_alt_lifo(db):
    return db.create_engine(pool_pre_ping=True, pool_use_lifo=True, pool_size=1)


q3 = PoolExercise(
    id="09.q3",
    title="Survive a dropped connection",
    kind=DB_FN,
    solution_answer=_q3_solution,
    observe=_q3_observe,
    rules=[
        Probe(test=_q3_engine, name="returns an engine"),
        Probe(test=_q3_survives, name="the query after the drop works"),
        Probe(test=_q3_reuses, name="connections are still reused"),
    ],
    hints=[
        "A pooled connection can die while it sits idle in the pool. Which engine option tests it "
        "before handing it out?",
        "pool_pre_ping=True: a cheap round trip at each checkout; a dead connection is replaced "
        "(and every older pooled connection is marked for replacement) before your code sees it.",
        "return db.create_engine(pool_pre_ping=True)",
    ],
    why="pre_ping turns 'the first request after a restart fails' into one extra round trip per checkout.",
    counterexamples=[
        Counterexample("default engine", _q3_default, "Make the engine with `pool_pre_ping=True`"),
        Counterexample("pool_recycle", _q3_recycle, "pool_recycle only replaces old connections"),
        Counterexample("NullPool", _q3_nullpool, "never reusing a connection"),
        Counterexample("pool_recycle=0 (recycled at every checkout)", _q3_recycle_zero, "0 means every checkout gets a new one"),
        Counterexample("a sessionmaker", _q3_sessionmaker, "return the engine itself"),
    ],
    **SMALL,
)


# ---------------------------------------------------------------- q4: many tasks, a small pool

SLOW_STEP = 0.2  # seconds each task keeps its session open for other work


_SLOW_STEPS: ContextVar[list[bool] | None] = ContextVar("course_slow_steps", default=None)


async def slow_step() -> None:
    """Stands for work a task does while it keeps its session (and connection): an API call, a
    computation, a lock it must keep. Takes a fifth of a second."""
    seen = _SLOW_STEPS.get()
    if seen is not None:  # under the checker: was the caller's session still open (holding a connection)?
        caller = sys._getframe(1).f_locals.values()
        sessions = [v for v in caller if isinstance(v, AsyncSession)]
        if sessions:
            seen.append(any(v.in_transaction() for v in sessions))
    await asyncio.sleep(SLOW_STEP)


Q4_CALL = {
    "user_ids": [3, 5, 8, 13, 21, 1],
    "pool": {"pool_size": 2, "max_overflow": 0, "pool_timeout": 0.1},
}


async def _q4_solution(db, user_ids, pool):
    engine = db.create_engine(**pool)
    Session = async_sessionmaker(engine, expire_on_commit=False)
    gate = asyncio.Semaphore(pool["pool_size"] + pool["max_overflow"])

    async def one(user_id):
        async with gate, Session() as session:  # wait here, not in the pool
            count = await session.scalar(select(func.count()).select_from(Order).where(Order.user_id == user_id))
            await slow_step()
            return user_id, count

    try:
        return dict(await asyncio.gather(*(one(u) for u in user_ids)))
    finally:
        await engine.dispose()


async def _q4_expected(conn, user_ids, pool):
    counts = {}
    for user_id in user_ids:
        counts[user_id] = (
            await conn.execute(text("SELECT count(*) FROM orders WHERE user_id = :u"), {"u": user_id})
        ).scalar_one()
    return counts


def _q4_limit(attempt: Attempt) -> str | None:
    peak, allowed = attempt.extra["pool"]["peak"], _q4_allowed(attempt)
    if peak > allowed:
        return (
            f"{peak} connections were checked out at once; the pool you were given allows {allowed}. "
            "Make your engine with db.create_engine(**pool) and bound the tasks"
        )
    return None


def _q4_together(attempt: Attempt) -> str | None:
    peak, allowed = attempt.extra["pool"]["peak"], _q4_allowed(attempt)
    if isinstance(attempt.value, dict) and peak < allowed:
        return (
            f"your tasks ran one at a time (never more than {peak} connection in use); with {allowed} "
            f"connections, {allowed} of them can run together"
        )
    return None


def _q4_no_timeout(attempt: Attempt) -> str | None:
    raised = attempt.value
    if not isinstance(raised, Raised):
        return None
    allowed = _q4_allowed(attempt)
    if raised.name == "TimeoutError":
        return (
            f"a pool TimeoutError (\"{str(raised.error).split(',')[0]}\"): more tasks asked for a connection "
            f"than the {allowed} the pool has, and the extra ones gave up after pool_timeout. A session keeps "
            "its connection from its first query until it closes, across slow_step(): bound the tasks with "
            f"asyncio.Semaphore({allowed}) held for the whole session (async with gate, Session() as session), "
            "not just around the query"
        )
    return f"your function {raised!r}: {str(raised.error).splitlines()[0][:160]}"


def _q4_own_engine(attempt: Attempt) -> str | None:
    """The work ran on an engine made from ``pool`` (not on the handle's own, ``db.session()``)."""
    if isinstance(attempt.value, Raised) or not attempt.extra.get("pool", {}).get("checkouts"):
        return None  # it raised (said above), or it never reached the database
    made = attempt.extra.get("engines")
    if made and attempt.extra.get("own_checkouts"):
        return None
    how = (
        "you made an engine from pool, but your sessions never used it: they ran"
        if made
        else "your sessions ran"
    )
    return (
        f"{how} on the handle's own engine (`db.session()` or `db.engine`), whose pool is not the one you were "
        "given, so this says nothing about a small pool. Make the engine yourself, `engine = "
        "db.create_engine(**pool)`, open every session on it (`Session = async_sessionmaker(engine)`), and "
        "`await engine.dispose()` in a `finally:` at the end"
    )


def _q4_given_pool(attempt: Attempt) -> str | None:
    given = attempt.extra.get("call", {}).get("pool", Q4_CALL["pool"])
    for settings in attempt.extra.get("engines", []):
        differ = {k: settings.get(k) for k in given if settings.get(k) != given[k]}
        if differ:
            yours = ", ".join(f"{k}={v}" for k, v in differ.items())
            theirs = ", ".join(f"{k}={given[k]}" for k in differ)
            return (
                f"your engine has {yours}, not the {theirs} you were given: a longer pool_timeout or a bigger "
                "pool hides the problem instead of solving it. Make the engine with `db.create_engine(**pool)` "
                "and let the extra tasks wait in your code (`asyncio.Semaphore`)"
            )
    return None


def _q4_slow_step_in_session(attempt: Attempt) -> str | None:
    steps = attempt.extra.get("slow_steps") or []
    if steps and not all(steps):
        return (
            "`slow_step()` ran after your session had closed: the task gave its connection back before its "
            "slow work, so the pool never ran short. Call `await ex.slow_step()` inside `async with "
            "Session() as session:`, after the query, as the task says"
        )
    return None


def _q4_disposed(attempt: Attempt) -> str | None:
    if isinstance(attempt.value, Raised):
        # tasks gather() did not cancel may still have held connections when the engine was disposed
        return "not judged: your function raised (see above)"
    if not attempt.extra.get("engines"):
        return "you made no engine of your own, so none was disposed: make it from pool, dispose of it at the end"
    left = attempt.extra.get("own_open", 0)
    if left > 0:
        return (
            f"your engine was never disposed: {left} connection(s) stayed open after your function returned. "
            "`await engine.dispose()` in a `finally:` when you are done with an engine you made"
        )
    return None


def _q4_allowed(attempt: Attempt) -> int:
    pool = attempt.extra.get("call", {}).get("pool", Q4_CALL["pool"])
    return pool["pool_size"] + pool["max_overflow"]


async def _q4_unbounded(db, user_ids, pool):
    engine = db.create_engine(**pool)
    Session = async_sessionmaker(engine, expire_on_commit=False)

    async def one(user_id):
        async with Session() as session:
            count = await session.scalar(select(func.count()).select_from(Order).where(Order.user_id == user_id))
            await slow_step()
            return user_id, count

    try:
        return dict(await asyncio.gather(*(one(u) for u in user_ids)))
    finally:
        await engine.dispose()


async def _q4_gate_around_query_only(db, user_ids, pool):
    engine = db.create_engine(**pool)
    Session = async_sessionmaker(engine, expire_on_commit=False)
    gate = asyncio.Semaphore(pool["pool_size"])

    async def one(user_id):
        async with Session() as session:
            async with gate:  # guards the query... but the session keeps its connection after it
                count = await session.scalar(
                    select(func.count()).select_from(Order).where(Order.user_id == user_id)
                )
            await slow_step()
            return user_id, count

    try:
        return dict(await asyncio.gather(*(one(u) for u in user_ids)))
    finally:
        await engine.dispose()


async def _q4_one_by_one(db, user_ids, pool):
    engine = db.create_engine(**pool)
    Session = async_sessionmaker(engine, expire_on_commit=False)
    counts = {}
    try:
        for user_id in user_ids:
            async with Session() as session:
                counts[user_id] = await session.scalar(
                    select(func.count()).select_from(Order).where(Order.user_id == user_id)
                )
                await slow_step()
    finally:
        await engine.dispose()
    return counts


async def _q4_bigger_pool(db, user_ids, pool):
    engine = db.create_engine(pool_size=len(user_ids), max_overflow=0)  # "just make the pool bigger"
    Session = async_sessionmaker(engine, expire_on_commit=False)

    async def one(user_id):
        async with Session() as session:
            count = await session.scalar(select(func.count()).select_from(Order).where(Order.user_id == user_id))
            await slow_step()
            return user_id, count

    try:
        return dict(await asyncio.gather(*(one(u) for u in user_ids)))
    finally:
        await engine.dispose()


async def _q4_longer_timeout(db, user_ids, pool):
    engine = db.create_engine(**{**pool, "pool_timeout": 30})  # "give the pool more time"
    Session = async_sessionmaker(engine, expire_on_commit=False)

    async def one(user_id):
        async with Session() as session:
            count = await session.scalar(select(func.count()).select_from(Order).where(Order.user_id == user_id))
            await slow_step()
            return user_id, count

    try:
        return dict(await asyncio.gather(*(one(u) for u in user_ids)))
    finally:
        await engine.dispose()


async def _q4_slow_step_after_session(db, user_ids, pool):
    engine = db.create_engine(**pool)
    Session = async_sessionmaker(engine, expire_on_commit=False)

    async def one(user_id):
        async with Session() as session:
            count = await session.scalar(select(func.count()).select_from(Order).where(Order.user_id == user_id))
        await slow_step()  # the connection is back in the pool already
        return user_id, count

    try:
        return dict(await asyncio.gather(*(one(u) for u in user_ids)))
    finally:
        await engine.dispose()


async def _q4_not_disposed(db, user_ids, pool):
    engine = db.create_engine(**pool)
    Session = async_sessionmaker(engine, expire_on_commit=False)
    gate = asyncio.Semaphore(pool["pool_size"] + pool["max_overflow"])

    async def one(user_id):
        async with gate, Session() as session:
            count = await session.scalar(select(func.count()).select_from(Order).where(Order.user_id == user_id))
            await slow_step()
            return user_id, count

    return dict(await asyncio.gather(*(one(u) for u in user_ids)))


async def _q4_handle_sessions(db, user_ids, pool):
    gate = asyncio.Semaphore(pool["pool_size"] + pool["max_overflow"])

    async def one(user_id):
        async with gate, db.session() as session:  # the handle's engine: its pool, not the one given
            count = await session.scalar(select(func.count()).select_from(Order).where(Order.user_id == user_id))
            await slow_step()
            return user_id, count

    return dict(await asyncio.gather(*(one(u) for u in user_ids)))


async def _q4_engine_unused(db, user_ids, pool):
    engine = db.create_engine(**pool)
    gate = asyncio.Semaphore(pool["pool_size"] + pool["max_overflow"])

    async def one(user_id):
        async with gate, db.session() as session:  # made an engine... and opened the sessions elsewhere
            count = await session.scalar(select(func.count()).select_from(Order).where(Order.user_id == user_id))
            await slow_step()
            return user_id, count

    try:
        return dict(await asyncio.gather(*(one(u) for u in user_ids)))
    finally:
        await engine.dispose()


async def _q4_alt_batches(db, user_ids, pool):
    """Batches as wide as the pool, one gather each; sessions from the handle's factory bound to the engine."""
    engine = db.create_engine(**pool)
    width = pool["pool_size"] + pool["max_overflow"]

    async def one(user_id):
        async with db.session(bind=engine) as session:
            count = await session.scalar(select(func.count(Order.id)).where(Order.user_id == user_id))
            await slow_step()
            return user_id, count

    counts = {}
    try:
        for start in range(0, len(user_ids), width):
            counts.update(await asyncio.gather(*(one(u) for u in user_ids[start : start + width])))
    finally:
        await engine.dispose()
    return counts


async def _q4_alt_workers(db, user_ids, pool):
    """As many workers as connections, each taking ids from a queue: concurrency bounded without a semaphore."""
    engine = db.create_engine(**pool)
    Session = async_sessionmaker(engine, expire_on_commit=False)
    todo: asyncio.Queue = asyncio.Queue()
    for user_id in user_ids:
        todo.put_nowait(user_id)
    counts = {}

    async def worker():
        while not todo.empty():
            user_id = todo.get_nowait()
            async with Session() as session:
                counts[user_id] = await session.scalar(
                    select(func.count()).select_from(Order).where(Order.user_id == user_id)
                )
                await slow_step()

    try:
        await asyncio.gather(*(worker() for _ in range(pool["pool_size"] + pool["max_overflow"])))
    finally:
        await engine.dispose()
    return counts


q4 = PoolExercise(
    id="09.q4",
    title="Many tasks, a small pool",
    kind=DB_FN,
    solution_answer=_q4_solution,
    expected=_q4_expected,
    calls=(Q4_CALL,),
    catch_errors=True,
    rules=[
        Probe(test=_q4_no_timeout, name="no task gives up waiting for a connection"),
        Probe(test=_q4_own_engine, name="the sessions run on an engine made with db.create_engine(**pool)"),
        Probe(test=_q4_given_pool, name="the pool you were given"),
        Probe(test=_q4_slow_step_in_session, name="slow_step() while the session is open"),
        SameResult(what="counts"),
        Probe(test=_q4_disposed, name="the engine disposed"),
        Probe(test=_q4_limit, name="stays within the pool"),
        Probe(test=_q4_together, name="tasks run concurrently"),
    ],
    hints=[
        "Start all the tasks with asyncio.gather, one session per task (a session is not safe to share "
        "between concurrent tasks). What happens to the tasks the pool cannot serve within pool_timeout?",
        "Let the tasks queue in your code, not in the pool: asyncio.Semaphore(n) with n = the connections "
        "the pool has; hold it for as long as the session is open.",
        "gate = asyncio.Semaphore(2); in each task: async with gate, Session() as session: ...",
    ],
    why="A pool's timeout is a guard against a stuck pool, not a work queue: bound your concurrency to what "
    "the pool can serve and let the rest wait for as long as they need.",
    counterexamples=[
        Counterexample("unbounded gather", _q4_unbounded, "bound the tasks with asyncio.Semaphore(2)"),
        Counterexample("semaphore around the query only", _q4_gate_around_query_only, "not just around the query"),
        Counterexample("one by one", _q4_one_by_one, "one at a time"),
        Counterexample("a bigger pool", _q4_bigger_pool, "the pool you were given allows 2"),
        Counterexample("pool_timeout=30 instead of the given 0.1", _q4_longer_timeout, "not the pool_timeout=0.1 you were given"),
        Counterexample("slow_step() after the session closed", _q4_slow_step_after_session, "slow_step() ran after your session had closed"),
        Counterexample("engine never disposed", _q4_not_disposed, "your engine was never disposed"),
        Counterexample("db.session() and a semaphore, no engine from pool", _q4_handle_sessions, "the handle's own engine"),
        Counterexample("an engine from pool, but db.session() for the work", _q4_engine_unused, "your sessions never used it"),
    ],
    **SMALL,
)


# ---------------------------------------------------------------- q5: retry a lost transaction

RETRY_TAG = "pooling-retry"


class LosesConnectionOnce:
    """Work for q5: the first time, its connection dies mid-transaction; the second time it
    inserts the tag ``pooling-retry`` and returns its id."""

    def __init__(self) -> None:
        self.calls = 0

    def fresh(self) -> LosesConnectionOnce:
        return type(self)()

    async def __call__(self, session: AsyncSession) -> int:
        self.calls += 1
        tag_id = (
            await session.execute(text("INSERT INTO tags (name) VALUES (:name) RETURNING id"), {"name": RETRY_TAG})
        ).scalar_one()
        if self.calls == 1:
            conn = await session.connection()
            if conn.dialect.name == "postgresql":
                # the server ends this very connection, in the middle of the transaction
                await session.execute(text("SELECT pg_terminate_backend(pg_backend_pid())"))
            else:
                await (await conn.get_raw_connection()).driver_connection.close()
                await session.execute(text("SELECT 1"))
        return tag_id

    def __repr__(self) -> str:
        return "<work that loses its connection on the first try>"


class BreaksAConstraint:
    """Work for q5: inserts a tag that already exists (an IntegrityError: retrying cannot help)."""

    def __init__(self) -> None:
        self.calls = 0

    def fresh(self) -> BreaksAConstraint:
        return type(self)()

    async def __call__(self, session: AsyncSession) -> int:
        self.calls += 1
        return (
            await session.execute(text("INSERT INTO tags (name) VALUES ('python') RETURNING id"))
        ).scalar_one()

    def __repr__(self) -> str:
        return "<work that breaks a unique constraint>"


CHARGE_STATUS = "retry-charge"  # marks the orders q5's commit-time work writes
_CHARGE = text(
    "INSERT INTO orders (user_id, status, total_cents, created_at) VALUES (1, :status, 4200, :at) RETURNING id"
).bindparams(bindparam("at", type_=DateTime()))


class LosesConnectionAtCommit:
    """Work for q5: charges an order, a write that is NOT idempotent (every run adds one).

    The first time, the COMMIT reaches the server and is applied, and then the connection dies
    before the client hears back: the caller sees a lost connection while committing and cannot
    tell whether the order was written (it was). Running the work again charges twice.
    """

    def __init__(self) -> None:
        self.calls = 0
        self.committed = 0

    def fresh(self) -> LosesConnectionAtCommit:
        return type(self)()

    async def __call__(self, session: AsyncSession) -> int:
        self.calls += 1
        order_id = (
            await session.execute(_CHARGE, {"status": CHARGE_STATUS, "at": datetime(2026, 1, 1)})
        ).scalar_one()
        conn = await session.connection()
        first = self.calls == 1

        def at_commit(sync_conn: Any) -> None:
            self.committed += 1
            if not first:
                return
            sync_conn.exec_driver_sql("COMMIT")  # the server applies the write...
            if sync_conn.dialect.name == "postgresql":
                sync_conn.exec_driver_sql("SELECT pg_terminate_backend(pg_backend_pid())")
            else:
                await_only(sync_conn.connection.dbapi_connection.driver_connection.close())
            sync_conn.exec_driver_sql("SELECT 1")  # ...and the client finds its connection gone

        event.listen(conn.sync_connection, "commit", at_commit, once=True)
        return order_id

    def __repr__(self) -> str:
        return "<work that charges an order and loses its connection during COMMIT>"


Q5_CALLS = ({"work": LosesConnectionOnce()}, {"work": BreaksAConstraint()}, {"work": LosesConnectionAtCommit()})


async def _q5_solution(db, work):
    for attempt in (1, 2):
        async with db.session() as session:
            try:
                result = await work(session)
            except DBAPIError as error:
                if not error.connection_invalidated or attempt == 2:
                    raise
                continue  # lost before COMMIT: the transaction is gone, nothing was written
            await session.commit()  # lost here, the outcome is unknown: no retry, it reaches the caller
            return result


async def _q5_commit_in_retry(db, work):
    """The retry wraps the commit too: a COMMIT whose outcome is unknown is run again."""
    for attempt in (1, 2):
        try:
            async with db.session() as session, session.begin():
                return await work(session)
        except DBAPIError as error:
            if not error.connection_invalidated or attempt == 2:
                raise


async def _q5_observe(session: AsyncSession, returned: Any, work: Any) -> dict[str, Any]:
    tags = (await session.execute(text("SELECT id FROM tags WHERE name = :n"), {"n": RETRY_TAG})).scalars().all()
    charged = (
        await session.execute(text("SELECT count(*) FROM orders WHERE status = :s"), {"s": CHARGE_STATUS})
    ).scalar_one()
    return {
        "returned": returned, "work_calls": work.calls, "tags": list(tags), "work": type(work).__name__,
        "charged": charged, "commits": getattr(work, "committed", None),
    }


_Q5_FRESH = (
    "Run each try in a new session (`async with db.session() as session:` inside the loop), or call "
    "`await session.rollback()` before you try again: the rollback ends the lost transaction, and the session's "
    "next statement checks out another connection"
)


_LOST_CONNECTION_CLASSES = {"InterfaceError", "OperationalError", "InternalError", "DisconnectionError"}


def _q5_one_class(attempt: Attempt) -> list[str]:
    """The DBAPIError subclasses the answer's code names where it should test connection_invalidated."""
    names = attempt.extra.get("code_names") or set()
    if "DBAPIError" in names or "connection_invalidated" in names:
        return []
    return sorted(names & _LOST_CONNECTION_CLASSES)


def _q5_catch_what(caught: list[str]) -> str:
    return (
        f"your function catches {' and '.join(caught)}, but the class a lost connection raises depends on the "
        "driver, and on asyncpg even on the moment it noticed. Catch `DBAPIError` and test its "
        "`connection_invalidated`: True whenever SQLAlchemy found the connection lost, whatever the class"
    )


def _q5_judge(attempt: Attempt) -> str | None:
    seen = attempt.value or {}
    returned, calls = seen.get("returned"), seen.get("work_calls")
    if seen.get("work") == LosesConnectionOnce.__name__:
        if isinstance(returned, Raised):
            if returned.invalidated and calls == 1:
                lost = (
                    f"the work lost its connection mid-transaction ({returned.name}, connection_invalidated=True) "
                    "and your function did not run it again"
                )
                caught = _q5_one_class(attempt)
                if caught:
                    return f"{lost}: {_q5_catch_what(caught)}"
                if any(kw.get("pool_pre_ping") for kw in attempt.extra.get("engines", [])):
                    return (
                        f"{lost}. pool_pre_ping cannot help here: it tests a connection at checkout, not in the "
                        "middle of a transaction"
                    )
                return (
                    f"{lost}. Catch `DBAPIError` around the work and, when its `connection_invalidated` is True, run "
                    "the work once more in a new session (the commit after the work, outside that try)"
                )
            if returned.name == "PendingRollbackError":
                return (
                    "your retry reused the session whose transaction lost its connection: that session refuses "
                    "every statement until it is rolled back (PendingRollbackError: \"Can't reconnect until invalid "
                    f"transaction is rolled back\"). {_Q5_FRESH}"
                )
            if "closed transaction inside context manager" in str(returned.error):
                return (
                    "your retry ran inside the same `session.begin()` block as the try that lost its connection: "
                    "`rollback()` ended the transaction that block owns, and the block refuses any further statement "
                    "(InvalidRequestError: \"Can't operate on closed transaction inside context manager\"). Each try "
                    "needs a transaction of its own: open the session, and its `begin()` block if you use one, "
                    "inside the retry loop"
                )
            if returned.invalidated and calls and calls > 1:
                return (
                    f"the work ran {calls} times and the retry failed too: your function raised the lost connection "
                    f"({returned.name}). A retry in a new session succeeds here, so yours ran in the session whose "
                    "transaction had lost its connection, which refuses every statement until it is rolled back. "
                    + _Q5_FRESH
                )
            return f"your function {returned!r}: {str(returned.error).splitlines()[0][:160]}"
        if returned is None:
            return "your function returned None: the work's result (the new tag's id) should come back"
        if len(seen.get("tags", [])) != 1:
            return (
                f"{len(seen.get('tags', []))} '{RETRY_TAG}' tags in the database after the retry, expected 1: "
                "the work's transaction was not committed"
            )
        if returned != seen["tags"][0]:
            return f"your function returned {returned!r}, not what the work returned ({seen['tags'][0]})"
        caught = _q5_one_class(attempt)
        if caught:  # it retried here, where the loss raised a class it catches: not on every backend
            return f"the retry worked with this database's driver only: {_q5_catch_what(caught)}"
        return None
    if seen.get("work") == LosesConnectionAtCommit.__name__:
        if calls and calls > 1:
            return (
                f"your function ran the work again after the connection was lost during COMMIT: that COMMIT "
                f"had reached the server, so the order is now charged {seen.get('charged')} times. A write whose "
                "COMMIT outcome is unknown is not safe to retry blindly: retry only what failed before the "
                "commit (or a read, or an idempotent write), and let a lost COMMIT reach the caller, who can "
                "check whether it landed"
            )
        if not seen.get("commits"):
            return "the work's transaction was never committed: commit it after the work returns"
        if not isinstance(returned, Raised):
            return (
                f"the connection was lost during COMMIT and your function returned {returned!r}: the caller "
                "cannot know whether the order was written. Let that error reach the caller"
            )
        if not returned.invalidated:
            return f"a lost COMMIT should reach the caller as it was raised, not as {returned.name}"
        return None
    # the work that breaks a constraint: nothing to retry
    if calls and calls > 1:
        return (
            f"the work ran {calls} times: you retried an error that is not a lost connection "
            "(an IntegrityError comes back every time). Retry only when connection_invalidated is True"
        )
    if not isinstance(returned, Raised):
        return f"an IntegrityError should reach the caller; your function returned {returned!r} instead"
    if returned.name != "IntegrityError":
        return f"an IntegrityError should reach the caller, not {returned.name}"
    return None


async def _q5_no_retry(db, work):
    async with db.session() as session, session.begin():
        return await work(session)


async def _q5_pre_ping(db, work):
    engine = db.create_engine(pool_pre_ping=True)  # "pre_ping will reconnect for us"
    Session = async_sessionmaker(engine, expire_on_commit=False)
    async with Session() as session, session.begin():
        return await work(session)


async def _q5_retry_everything(db, work):
    for attempt in (1, 2):
        try:
            async with db.session() as session, session.begin():
                return await work(session)
        except Exception:
            if attempt == 2:
                raise


async def _q5_same_session(db, work):
    async with db.session() as session:
        try:
            result = await work(session)
        except DBAPIError as error:
            if not error.connection_invalidated:
                raise
            result = await work(session)  # the session still holds the broken transaction
        await session.commit()
        return result


async def _q5_no_commit(db, work):
    for attempt in (1, 2):
        try:
            async with db.session() as session:
                return await work(session)  # leaves without commit: rolled back
        except DBAPIError as error:
            if not error.connection_invalidated or attempt == 2:
                raise


async def _q5_same_begin_block(db, work):
    """One `session.begin()` block around every try: the rollback ends the block's own transaction."""
    async with db.session() as session, session.begin():
        for attempt in (1, 2):
            try:
                return await work(session)
            except DBAPIError as error:
                if not error.connection_invalidated or attempt == 2:
                    raise
                await session.rollback()  # ends the transaction the begin() block owns


async def _q5_reraise_first(db, work):
    """Retries in the same session and, when that fails too, re-raises the first error."""
    async with db.session() as session:
        try:
            result = await work(session)
        except DBAPIError as first:
            if not first.connection_invalidated:
                raise
            try:
                result = await work(session)  # the session still holds the lost transaction
            except Exception:
                raise first from None
        await session.commit()
        return result


async def _q5_interface_error(db, work):
    """Catches one class (asyncpg's usual one), not the flag: aiosqlite raises OperationalError here."""
    from sqlalchemy.exc import InterfaceError

    for attempt in (1, 2):
        async with db.session() as session:
            try:
                result = await work(session)
            except InterfaceError:
                if attempt == 2:
                    raise
                continue
            await session.commit()
            return result


async def _q5_operational_error(db, work):
    """Catches aiosqlite's class: right on SQLite, where the lost connection raises it; not on asyncpg."""
    from sqlalchemy.exc import OperationalError

    for attempt in (1, 2):
        async with db.session() as session:
            try:
                result = await work(session)
            except OperationalError:
                if attempt == 2:
                    raise
                continue
            await session.commit()
            return result


async def _q5_alt_rollback_same_session(db, work):
    """One session for both tries, rolled back between them: the second try gets a new connection."""
    async with db.session() as session:
        for attempt in (1, 2):
            try:
                result = await work(session)
            except DBAPIError as error:
                if not error.connection_invalidated or attempt == 2:
                    raise
                await session.rollback()
                continue
            await session.commit()
            return result


async def _q5_alt_flag(db, work):
    """Knows where it failed: a lost connection before the commit is retried, during it is not."""
    for attempt in (1, 2):
        committing = False
        try:
            async with db.session() as session:
                result = await work(session)
                committing = True
                await session.commit()
                return result
        except DBAPIError as error:
            if committing or not error.connection_invalidated or attempt == 2:
                raise


async def _q5_alt_begin_inside(db, work):
    attempt = 0
    while True:
        attempt += 1
        session = db.session()
        try:
            await session.begin()
            try:
                result = await work(session)
            except DBAPIError as error:
                if error.connection_invalidated and attempt < 2:
                    continue
                raise
            await session.commit()
            return result
        finally:
            await session.close()


q5 = PoolExercise(
    id="09.q5",
    title="Retry a transaction that lost its connection",
    kind=DB_FN,
    solution_answer=_q5_solution,
    observe=_q5_observe,
    calls=Q5_CALLS,
    catch_errors=True,
    rules=[Probe(test=_q5_judge, name="retries a connection lost before COMMIT, and only that")],
    hints=[
        "What does SQLAlchemy raise when the connection dies, and which attribute says so? And when is a "
        "retry safe: before the COMMIT was sent (nothing was written), or during it (the write may have landed)?",
        "A DBAPIError with .connection_invalidated True while the work runs means the transaction is gone: "
        "run the work again in a new session (or roll the old one back first). Commit outside that try: a lost "
        "COMMIT must reach the caller.",
        "for attempt in (1, 2): async with db.session() as session: try: result = await work(session) "
        "except DBAPIError as e: (re-raise unless e.connection_invalidated and attempt == 1; else continue); "
        "then await session.commit(); return result",
    ],
    why="pre_ping guards checkouts; a connection lost mid-transaction takes the transaction with it, "
    "and only your code can decide to run it again: safe before COMMIT, not when the COMMIT itself was lost.",
    counterexamples=[
        Counterexample("no retry", _q5_no_retry, "did not run it again"),
        Counterexample("pool_pre_ping instead", _q5_pre_ping, "pool_pre_ping cannot help here"),
        Counterexample("retries every error", _q5_retry_everything, "retried an error that is not a lost connection"),
        Counterexample("retries in the same session", _q5_same_session, "PendingRollbackError"),
        Counterexample("never commits", _q5_no_commit, "not committed"),
        Counterexample("retries a lost COMMIT too", _q5_commit_in_retry, "COMMIT outcome is unknown"),
        Counterexample("retries inside the same session.begin() block", _q5_same_begin_block, "same `session.begin()` block"),
        Counterexample("retries in the same session, re-raises the first error", _q5_reraise_first, "the retry failed too"),
        Counterexample("catches InterfaceError, not connection_invalidated", _q5_interface_error, "test its connection_invalidated"),
        Counterexample("catches OperationalError, not connection_invalidated", _q5_operational_error, "test its connection_invalidated"),
    ],
    **SMALL,
)


# correct answers of another form: tests/test_exercises.py proves each is accepted
ALTERNATIVES = {
    "09.q1": [
        ("pool_size=2 plus max_overflow=1", _q1_alt_overflow),
        ("gives up after 0.5 s", _q1_alt_shorter_timeout),
    ],
    "09.q2": [
        ("tries every size", _q2_alt_loop),
        ("math.floor of (available - processes x overflow) / processes", _q2_alt_floor),
    ],
    "09.q3": [
        ("pre-ping plus pool_recycle", _q3_alt_with_recycle),
        ("pre-ping with a LIFO pool of one", _q3_alt_lifo),
    ],
    "09.q4": [
        ("one worker per connection, taking ids from a queue", _q4_alt_workers),
        ("batches as wide as the pool, db.session(bind=engine)", _q4_alt_batches),
    ],
    "09.q5": [
        ("a flag says whether the COMMIT had started", _q5_alt_flag),
        ("one session, rolled back before the retry", _q5_alt_rollback_same_session),
        ("a while loop with explicit begin() and close()", _q5_alt_begin_inside),
    ],
}
