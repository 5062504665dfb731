"""What does ``with course.sql():`` cost? Many small queries with and without a log open.

Side by side in one run, on the active backend (``COURSE_DATABASE_URL`` selects PostgreSQL),
each variant runs the same loop of small queries
(``SELECT users.email FROM users WHERE users.id = :id``, one connection held open):

- plain: an engine configured like the course's but without the recorder's events;
- instrumented: the course engine (recorder events attached), no log open;
- recording: the course engine inside ``course.sql(show=False)``.

Runs are interleaved (the order rotates) and the medians printed with the overheads
(target: recording costs less than 10% over instrumented).

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


async def loop(engine: Any, queries: int, *, record: bool) -> float:
    stmt = select(User.email).where(User.id == bindparam("id"))
    async with engine.connect() as conn:
        await conn.execute(stmt, {"id": 1})  # statement cache and connection warm
        gc.collect()
        began = time.perf_counter()
        if record:
            with course.sql(show=False) as log:
                for i in range(queries):
                    (await conn.execute(stmt, {"id": i % 500 + 1})).scalar_one()
            assert len(log) == queries
        else:
            for i in range(queries):
                (await conn.execute(stmt, {"id": i % 500 + 1})).scalar_one()
        return time.perf_counter() - began


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
        times: dict[str, list[float]] = {name: [] for name in variants}
        for run in variants.values():  # untimed warm-up
            await run()
        for i in range(repeat):
            order = list(variants)
            order = order[i % len(order):] + order[: i % len(order)]
            for name in order:
                times[name].append(await variants[name]())
    finally:
        await plain.dispose()
        await db.close()
        await database.drop(db.namespace)

    med = {name: statistics.median(t) for name, t in times.items()}
    print(f"\nmedian of {repeat} interleaved runs:")
    for name, value in med.items():
        print(f"  {name:13s} {value * 1000:8.1f} ms   {value / queries * 1e6:6.1f} us/query"
              f"   [{min(times[name]) * 1000:.0f}..{max(times[name]) * 1000:.0f}]")

    def overhead(a: str, b: str) -> tuple[float, float]:
        """Percent of a over b: from the medians, and the median of the per-round ratios
        (runs of one round are adjacent in time, so load from other processes mostly cancels)."""
        of_medians = (med[a] / med[b] - 1) * 100
        paired = (statistics.median(x / y for x, y in zip(times[a], times[b], strict=True)) - 1) * 100
        return of_medians, paired

    print("\noverhead (of the medians; median of per-round ratios):")
    rec = overhead("recording", "instrumented")
    print(f"  recording vs instrumented, no log open: {rec[0]:+5.1f}%; {rec[1]:+5.1f}%  "
          f"({'within' if max(rec) < 10 else 'ABOVE'} the 10% target)")
    hooks = overhead("instrumented", "plain")
    print(f"  instrumented, no log open vs plain:    {hooks[0]:+5.1f}%; {hooks[1]:+5.1f}%")
    total = overhead("recording", "plain")
    print(f"  recording vs plain:                    {total[0]:+5.1f}%; {total[1]:+5.1f}%")
    return 0


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--queries", type=int, default=2000)
    parser.add_argument("--repeat", type=int, default=15)
    args = parser.parse_args()
    os.environ.setdefault("COURSE_USER", "bench")
    sys.exit(asyncio.run(main(args.queries, args.repeat)))
