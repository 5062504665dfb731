"""Lesson 09 · Connection pooling: size a pool, survive a dropped connection, share a small pool.

Most answers here build or use engines, so the checker watches every pool while an
answer runs (``course.lab.pooling.PoolWatch`` on the ``Pool`` class: connects, checkouts,
the peak of connections out at once) and judges what the pool did, on either backend.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

from sqlalchemy import func, select, text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker
from sqlalchemy.pool import NullPool, Pool, QueuePool

from ..lab.pooling import SCOPE, PoolWatch, drop_idle_connection, run_burst
from ..schema import Order
from .core import DB_FN, SESSION_FN, Counterexample, Exercise
from .rules import Attempt, Probe, SameResult


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

        async def watched(scratch: Any, **kw: Any) -> Any:
            before = asyncio.all_tasks()
            token = SCOPE.set(scope)
            try:
                with watch:
                    return await answer(scratch, **kw)
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
                SCOPE.reset(token)

        attempt = await super()._attempt(watched, db, call)
        attempt.extra["pool"] = watch.summary()
        attempt.extra["call"] = call
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
    seen: dict[str, Any] = {"type": "AsyncEngine", "pool": type(pool).__name__}
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
        return (
            f"pool_size={seen['size']} with max_overflow={seen['overflow']} lets "
            f"{seen['size'] + seen['overflow']} connections out at once, not 3: max_overflow is not 0 unless "
            "you say so (SQLAlchemy's default is 10)"
        )
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


async def _q1_no_timeout(db):
    return db.create_engine(pool_size=3, max_overflow=0)


async def _q1_nullpool(db):
    return db.create_engine(poolclass=NullPool)


async def _q1_sessionmaker(db):
    return async_sessionmaker(db.create_engine(pool_size=3, max_overflow=0, pool_timeout=1))


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
        Counterexample("default timeout", _q1_no_timeout, "defaults to 30"),
        Counterexample("NullPool", _q1_nullpool, "NullPool"),
        Counterexample("a sessionmaker", _q1_sessionmaker, "return the engine itself"),
    ],
    **SMALL,
)


# ---------------------------------------------------------------- q2: the connection budget

Q2_CALLS = (
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
    if got == (mc - r) - o:
        return "that is the budget of one process: every worker process has its own pool, so divide by processes"
    if got == (mc - r) // p:
        return f"{got} leaves no room for the overflow: each process may open max_overflow={o} more"
    if got > want and got == round((mc - r) / p) - o:
        return (
            f"rounded: {p} x ({got} + {o}) = {p * (got + o)} connections, more than the {mc - r} "
            "available; round down (//)"
        )
    if got == mc // p - o:
        return f"the server keeps {r} connections for superusers: budget max_connections - reserved"
    if got > want:
        return f"{p} x ({got} + {o}) = {p * (got + o)} connections, more than the {mc - r} available (too high)"
    return f"{got} is too low: {p} x ({got + 1} + {o}) = {p * (got + 1 + o)} still fits in {mc - r}"


async def _q2_one_process(session, processes, max_overflow, max_connections, reserved):
    return max_connections - reserved - max_overflow


async def _q2_no_overflow(session, processes, max_overflow, max_connections, reserved):
    return (max_connections - reserved) // processes


async def _q2_rounds(session, processes, max_overflow, max_connections, reserved):
    size = round((max_connections - reserved) / processes) - max_overflow
    return size if size >= 1 else None


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
            "pool_recycle only replaces old connections; test each one at checkout instead"
        )
    return None


def _q3_reuses(attempt: Attempt) -> str | None:
    seen = attempt.value or {}
    if seen.get("type") != "AsyncEngine" or "connects" not in seen:
        return None
    if seen["connects"] > 2:
        return (
            f"{seen['connects']} connections opened for {seen['checkouts']} checkouts: it survives by never "
            f"reusing a connection ({seen['pool']}), paying a new connection every time; keep the pool and "
            "test connections at checkout"
        )
    return None


async def _q3_default(db):
    return db.create_engine()


async def _q3_recycle(db):
    return db.create_engine(pool_recycle=3600)


async def _q3_nullpool(db):
    return db.create_engine(poolclass=NullPool)


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
        "(and the rest of the pool checked) before your code sees it.",
        "return db.create_engine(pool_pre_ping=True)",
    ],
    why="pre_ping turns 'the first request after a restart fails' into one extra round trip per checkout.",
    counterexamples=[
        Counterexample("default engine", _q3_default, "the first query after the connection was dropped failed"),
        Counterexample("pool_recycle", _q3_recycle, "pool_recycle only replaces old connections"),
        Counterexample("NullPool", _q3_nullpool, "never reusing a connection"),
    ],
    **SMALL,
)


# ---------------------------------------------------------------- q4: many tasks, a small pool

SLOW_STEP = 0.2  # seconds each task keeps its session open for other work


async def slow_step() -> None:
    """Stands for work a task does while it keeps its session (and connection): an API call, a
    computation, a lock it must keep. Takes a fifth of a second."""
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


q4 = PoolExercise(
    id="09.q4",
    title="Many tasks, a small pool",
    kind=DB_FN,
    solution_answer=_q4_solution,
    expected=_q4_expected,
    calls=(Q4_CALL,),
    rules=[
        SameResult(what="counts"),
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
        Counterexample("unbounded gather", _q4_unbounded, "QueuePool limit"),
        Counterexample("semaphore around the query only", _q4_gate_around_query_only, "TimeoutError"),
        Counterexample("one by one", _q4_one_by_one, "one at a time"),
        Counterexample("a bigger pool", _q4_bigger_pool, "the pool you were given allows 2"),
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


Q5_CALLS = ({"work": LosesConnectionOnce()}, {"work": BreaksAConstraint()})


async def _q5_solution(db, work):
    for attempt in (1, 2):
        try:
            async with db.session() as session, session.begin():
                return await work(session)
        except DBAPIError as error:
            if not error.connection_invalidated or attempt == 2:
                raise


async def _q5_observe(session: AsyncSession, returned: Any, work: Any) -> dict[str, Any]:
    tags = (await session.execute(text("SELECT id FROM tags WHERE name = :n"), {"n": RETRY_TAG})).scalars().all()
    return {"returned": returned, "work_calls": work.calls, "tags": list(tags), "work": type(work).__name__}


def _q5_judge(attempt: Attempt) -> str | None:
    seen = attempt.value or {}
    returned, calls = seen.get("returned"), seen.get("work_calls")
    if seen.get("work") == LosesConnectionOnce.__name__:
        if isinstance(returned, Raised):
            if returned.invalidated and calls == 1:
                return (
                    f"the work lost its connection mid-transaction ({returned.name}, connection_invalidated=True) "
                    "and your function did not run it again. pool_pre_ping cannot help here: it tests a "
                    "connection at checkout, not in the middle of a transaction"
                )
            if returned.name == "PendingRollbackError":
                return (
                    "your retry reused the broken session: PendingRollbackError (\"Can't reconnect until invalid "
                    "transaction is rolled back\"). Run the retry in a new session"
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


q5 = PoolExercise(
    id="09.q5",
    title="Retry a transaction that lost its connection",
    kind=DB_FN,
    solution_answer=_q5_solution,
    observe=_q5_observe,
    calls=Q5_CALLS,
    catch_errors=True,
    rules=[Probe(test=_q5_judge, name="retries a lost connection, and only that")],
    hints=[
        "Run the work inside `async with db.session() as session, session.begin():` so it commits. "
        "What does SQLAlchemy raise when the connection dies, and which attribute says so?",
        "A DBAPIError with .connection_invalidated True means the connection was lost: the whole "
        "transaction is gone, so run the work again from the start in a new session. Re-raise anything else.",
        "for attempt in (1, 2): try: (session block) return await work(session) except DBAPIError as e: "
        "if not e.connection_invalidated or attempt == 2: raise",
    ],
    why="pre_ping guards checkouts; a connection lost mid-transaction takes the transaction with it, "
    "and only your code can decide to run it again.",
    counterexamples=[
        Counterexample("no retry", _q5_no_retry, "did not run it again"),
        Counterexample("pool_pre_ping instead", _q5_pre_ping, "pool_pre_ping cannot help here"),
        Counterexample("retries every error", _q5_retry_everything, "retried an error that is not a lost connection"),
        Counterexample("retries in the same session", _q5_same_session, "PendingRollbackError"),
        Counterexample("never commits", _q5_no_commit, "not committed"),
    ],
    **SMALL,
)
