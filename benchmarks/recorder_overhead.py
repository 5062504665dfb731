"""What does ``with course.sql():`` cost? Many small queries with and without a log open.

Side by side in one run, on the active backend (``COURSE_DATABASE_URL`` selects PostgreSQL),
each variant runs the same loop of small queries
(``SELECT users.email FROM users WHERE users.id = :id``, one connection held open):

- plain: an engine configured like the course's but without the recorder's events;
- instrumented: the course engine (recorder events attached), no log open;
- recording: the course engine inside ``course.sql(show=False)``.

Runs are interleaved (the order rotates each round). For each variant the median wall time is
printed, and the overheads three ways: from the medians, as the median of the per-round ratios
(runs of one round are adjacent in time, so load from other processes mostly cancels), and in
this process's CPU time (``time.process_time``: what the recorder itself adds, whatever else
the machine is doing; it leaves out the database server's work). Last, the recorder's two
cursor hooks are timed directly on the arguments of a real execution. Target: recording costs
less than 10% over instrumented.

    python benchmarks/recorder_overhead.py [--queries 2000] [--repeat 15]
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
import statistics
import sys
import time
import uuid
from typing import Any

from sqlalchemy import bindparam, select

import course
from course import database
from course.engines import make_engine
from course.schema import User


async def loop(engine: Any, queries: int, *, record: bool) -> tuple[float, float]:
    """Wall and CPU seconds for ``queries`` small SELECTs on one connection."""
    stmt = select(User.email).where(User.id == bindparam("id"))
    async with engine.connect() as conn:
        await conn.execute(stmt, {"id": 1})  # statement cache and connection warm
        gc.collect()
        wall, cpu = time.perf_counter(), time.process_time()
        if record:
            with course.sql(show=False) as log:
                for i in range(queries):
                    (await conn.execute(stmt, {"id": i % 500 + 1})).scalar_one()
            assert len(log) == queries
        else:
            for i in range(queries):
                (await conn.execute(stmt, {"id": i % 500 + 1})).scalar_one()
        return time.perf_counter() - wall, time.process_time() - cpu


async def hook_cost(plain: Any) -> float:
    """Microseconds the recorder's two cursor hooks take per statement while a log is open.

    The hooks are called directly (``timeit``, best of several) with the arguments SQLAlchemy
    passed them for a real execution of the benchmark query, so the number does not depend on
    the database or on other load on the machine.
    """
    import timeit

    from sqlalchemy import event

    from course import recorder

    seen: list[tuple[Any, ...]] = []

    def capture(*args: Any) -> None:
        seen.append(args)

    stmt = select(User.email).where(User.id == bindparam("id"))
    event.listen(plain.sync_engine, "before_cursor_execute", capture)
    try:
        async with plain.connect() as conn:
            await conn.execute(stmt, {"id": 1})
            conn_, cursor, statement, params, context, many = seen[-1]

            def both() -> None:
                recorder._before(conn_, cursor, statement, params, context, many)
                recorder._after(conn_, cursor, statement, params, context, many)

            with course.sql(show=False) as log:
                number = 20_000
                best = min(timeit.repeat(both, number=number, repeat=5)) / number
            assert len(log) == 5 * number
    finally:
        event.remove(plain.sync_engine, "before_cursor_execute", capture)
    return best * 1e6


def percent(ratio: float) -> str:
    return f"{(ratio - 1) * 100:+6.1f}%"


async def main(queries: int, repeat: int) -> int:
    os.environ.setdefault("COURSE_NAMESPACE", f"bench{uuid.uuid4().hex[:8]}")
    db = await course.start("bench")
    plain = make_engine(db.config, db.namespace, sqlite_file=db.sqlite_file)
    try:
        print(f"backend: {db.config.label}  ({db.config.safe_url})")
        print(f"{queries:,} queries per run: SELECT users.email FROM users WHERE users.id = :id")
        variants = {
            "plain": lambda: loop(plain, queries, record=False),
            "instrumented": lambda: loop(db.engine, queries, record=False),
            "recording": lambda: loop(db.engine, queries, record=True),
        }
        wall: dict[str, list[float]] = {name: [] for name in variants}
        cpu: dict[str, list[float]] = {name: [] for name in variants}
        for run in variants.values():  # untimed warm-up
            await run()
        for i in range(repeat):
            order = list(variants)
            order = order[i % len(order):] + order[: i % len(order)]
            for name in order:
                w, c = await variants[name]()
                wall[name].append(w)
                cpu[name].append(c)
        hooks_us = await hook_cost(plain)
    finally:
        await plain.dispose()
        await db.close()
        await database.drop(db.namespace)

    med = {name: statistics.median(t) for name, t in wall.items()}
    print(f"\nmedian of {repeat} interleaved runs (wall time):")
    for name, value in med.items():
        print(f"  {name:13s} {value * 1000:8.1f} ms   {value / queries * 1e6:6.1f} us/query"
              f"   [{min(wall[name]) * 1000:.0f}..{max(wall[name]) * 1000:.0f}]"
              f"   cpu {statistics.median(cpu[name]) * 1000:.0f} ms")

    def overheads(a: str, b: str) -> list[float]:
        return [
            med[a] / med[b],
            statistics.median(x / y for x, y in zip(wall[a], wall[b], strict=True)),
            statistics.median(cpu[a]) / statistics.median(cpu[b]),
        ]

    print("\noverhead:                                 medians  per-round  cpu time")
    for label, a, b in (
        ("recording vs instrumented (no log open)", "recording", "instrumented"),
        ("instrumented (no log open) vs plain", "instrumented", "plain"),
        ("recording vs plain", "recording", "plain"),
    ):
        print(f"  {label:39s} " + "  ".join(percent(r) for r in overheads(a, b)))
    fastest = min(wall["plain"]) / queries * 1e6
    print(f"\nrecorder hooks, timed directly: {hooks_us:.1f} us per statement while a log is open, "
          f"{hooks_us / fastest * 100:.1f}% of the fastest plain query ({fastest:.0f} us)")
    rec = overheads("recording", "instrumented")
    if max(rec) < 1.10:
        verdict = "within the 10% target on every measure"
    elif min(rec) >= 1.10:
        verdict = "ABOVE the 10% target on every measure"
    else:
        verdict = "the measures disagree about the 10% target (a busy machine? run it again)"
    print(f"\nrecording vs instrumented: {verdict}")
    return 0


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--queries", type=int, default=2000)
    parser.add_argument("--repeat", type=int, default=15)
    args = parser.parse_args()
    os.environ.setdefault("COURSE_USER", "bench")
    sys.exit(asyncio.run(main(args.queries, args.repeat)))
