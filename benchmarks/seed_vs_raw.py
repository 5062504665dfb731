"""How close is ``course.start()``'s seeding to the fastest raw path of the backend?

Side by side in one run, on the active backend (``COURSE_DATABASE_URL`` selects PostgreSQL):

- seed, first: every cache of the rows cleared (``seed.forget_cached_rows``: memory and, on
  SQLite, the cache file in the data folder), then what ``start()`` does after connecting:
  prepare the schema (PostgreSQL: drop and create it; both: create the tables) and ``seed.load``
  (which generates the rows, on SQLite converts them to stored values and writes the cache
  file, inserts them and, on PostgreSQL, moves the sequences). Once per machine and version;
- seed, kernel (SQLite only): the rows gone from memory but the cache file there, as in every
  new kernel after the first: the rows are read from the file instead of generated;
- seed, reset: the rows already in memory, as on every ``start()`` after the first in a kernel;
- raw: the same ready-made rows inserted into the same freshly created, empty tables by the
  driver's fastest path, with nothing else: ``executemany`` in one transaction through aiosqlite
  (values converted beforehand as ``seed._sqlite_value`` does, same pragmas as the course engine),
  or COPY (asyncpg ``copy_records_to_table``) in one transaction.

Connections are opened before each timed section on every path. Runs are interleaved and the
medians printed, with the ratio seed/raw (target: at most 1.5x) both of the medians and as the
median of per-round ratios. On SQLite, "(convert)" times alone the value conversion that a
first seed does and the raw path did beforehand.

    python benchmarks/seed_vs_raw.py [--repeat 5]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

from course import config as cfg
from course import database, seed
from course.engines import make_engine, sqlite_path
from course.schema import TABLES_IN_LOAD_ORDER

SCALE = 1.0


def namespace(kind: str) -> str:
    return f"course_bench_{kind}_{uuid.uuid4().hex[:8]}"


async def fresh_engine(config: cfg.BackendConfig, ns: str) -> Any:
    """An engine on an empty namespace with one connection already open in its pool."""
    sqlite_file = None
    if config.backend == "sqlite":
        sqlite_file = sqlite_path(ns, cfg.data_dir())
        database._remove_sqlite_files(sqlite_file)
    engine = make_engine(config, ns, sqlite_file=sqlite_file)
    async with engine.connect() as conn:
        await conn.exec_driver_sql("SELECT 1")
    return engine


async def run_seed(config: cfg.BackendConfig, *, cache: str) -> float:
    """``cache``: "none" (first seed on a machine), "file" (a new kernel), "memory" (a reset)."""
    ns = namespace("seed")
    engine = await fresh_engine(config, ns)
    if config.backend == "sqlite":
        seed.sqlite_rows(SCALE)  # the cache file exists from here on
    else:
        seed.generate(SCALE)
    if cache == "none":
        seed.forget_cached_rows(SCALE)
    elif cache == "file":
        seed.generate.cache_clear()
        seed.sqlite_rows.cache_clear()
    try:
        began = time.perf_counter()
        await database._prepare_schema(engine, config.backend, ns)
        async with engine.connect() as conn:
            counts = await seed.load(conn, config.backend, ns, SCALE)
        elapsed = time.perf_counter() - began
    finally:
        await engine.dispose()
        await drop(config, ns)
    assert counts["comments"] == len(seed.generate(SCALE)["comments"])
    return elapsed


async def run_raw(config: cfg.BackendConfig) -> float:
    ns = namespace("raw")
    data = seed.generate(SCALE)
    engine = await fresh_engine(config, ns)
    try:
        await database._prepare_schema(engine, config.backend, ns)  # the same empty tables
    finally:
        await engine.dispose()
    try:
        if config.backend == "sqlite":
            return await raw_sqlite(ns, data)
        return await raw_postgresql(config, ns, data)
    finally:
        await drop(config, ns)


async def raw_sqlite(ns: str, data: dict[str, list[tuple[Any, ...]]]) -> float:
    import aiosqlite

    rows = {t: [tuple(seed._sqlite_value(v) for v in r) for r in data[t]] for t in TABLES_IN_LOAD_ORDER}
    sql = {
        t: f"INSERT INTO {t} ({', '.join(seed.COLUMNS[t])}) VALUES ({', '.join('?' * len(seed.COLUMNS[t]))})"
        for t in TABLES_IN_LOAD_ORDER
    }
    conn = await aiosqlite.connect(sqlite_path(ns, cfg.data_dir()), isolation_level=None)
    try:
        for pragma in (  # as the course engine sets them
            "PRAGMA foreign_keys = ON",
            "PRAGMA journal_mode = WAL",
            "PRAGMA busy_timeout = 5000",
            "PRAGMA synchronous = NORMAL",
        ):
            await conn.execute(pragma)
        began = time.perf_counter()
        await conn.execute("BEGIN")
        for table in TABLES_IN_LOAD_ORDER:
            await conn.executemany(sql[table], rows[table])
        await conn.commit()
        elapsed = time.perf_counter() - began
    finally:
        await conn.close()
    return elapsed


async def raw_postgresql(config: cfg.BackendConfig, ns: str, data: dict[str, list[tuple[Any, ...]]]) -> float:
    import asyncpg

    url = config.url
    assert url is not None
    conn = await asyncpg.connect(
        host=url.query.get("host") or url.host, port=url.port, user=url.username,
        password=url.password, database=url.database,
    )
    try:
        began = time.perf_counter()
        async with conn.transaction():
            for table in TABLES_IN_LOAD_ORDER:
                await conn.copy_records_to_table(
                    table, records=data[table], columns=list(seed.COLUMNS[table]), schema_name=ns
                )
        elapsed = time.perf_counter() - began
    finally:
        await conn.close()
    return elapsed


async def convert_values() -> float:
    """Only the value conversion a first seed does on SQLite and the raw path did beforehand."""
    data = seed.generate(SCALE)
    began = time.perf_counter()
    for table in ("users", "posts", "comments", "orders"):  # the tables seed.sqlite_rows converts
        [tuple(seed._sqlite_value(v) for v in row) for row in data[table]]
    return time.perf_counter() - began


async def drop(config: cfg.BackendConfig, ns: str) -> None:
    if config.backend == "sqlite":
        database._remove_sqlite_files(sqlite_path(ns, cfg.data_dir()))
    else:
        await database.drop(ns)


async def main(repeat: int) -> int:
    config = cfg.resolve_backend()
    print(f"backend: {config.label}  ({config.safe_url})")
    sizes = {t: len(r) for t, r in seed.generate(SCALE).items()}
    print("rows: " + ", ".join(f"{n:,} {t}" for t, n in sizes.items()) + f"  (total {sum(sizes.values()):,})")

    runs: dict[str, Callable[[], Awaitable[float]]] = {
        "seed first": lambda: run_seed(config, cache="none"),
        "seed kernel": lambda: run_seed(config, cache="file"),
        "seed reset": lambda: run_seed(config, cache="memory"),
        "raw": lambda: run_raw(config),
    }
    if config.backend != "sqlite":  # no cache file: a new kernel generates the rows again
        del runs["seed kernel"]
    if config.backend == "sqlite":  # what a first seed does that raw does not: convert values
        runs["(convert)"] = convert_values
    times: dict[str, list[float]] = {name: [] for name in runs}
    for run in runs.values():  # one untimed warm-up each: imports, first connections
        await run()
    for i in range(repeat):
        order = list(runs)
        order = order[i % len(order):] + order[: i % len(order)]  # rotate who goes first
        for name in order:
            times[name].append(await runs[name]())

    med = {name: statistics.median(t) for name, t in times.items()}
    raw = med["raw"]
    print(f"\nmedian of {repeat} interleaved runs:")
    for name, value in med.items():
        spread = f"[{min(times[name]) * 1000:.0f}..{max(times[name]) * 1000:.0f}]"
        ratio = "" if name in ("raw", "(convert)") else f"  {value / raw:.2f}x raw"
        print(f"  {name:12s} {value * 1000:8.1f} ms  {spread:>14s}{ratio}")
    # runs of one round are adjacent in time, so load from other processes mostly cancels in their ratio
    paired = {
        name: statistics.median(s / r for s, r in zip(times[name], times["raw"], strict=True))
        for name in runs if name.startswith("seed")
    }
    print("\nseed/raw (of the medians; median of per-round ratios):")
    for name, ratio in paired.items():
        of_medians = med[name] / raw
        verdict = "within" if max(of_medians, ratio) <= 1.5 else "ABOVE"
        print(f"  {name}: {of_medians:.2f}x; {ratio:.2f}x  ({verdict} the 1.5x target)")
    return 0


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    os.environ.setdefault("COURSE_USER", "bench")
    sys.exit(asyncio.run(main(args.repeat)))
