"""A class on one PostgreSQL server: N learners work the same lessons at once.

Each learner is a real Jupyter kernel (as on a hub) with its own ``COURSE_USER``, running the learner
notebooks cell by cell with a think time between cells, as people work; ``--think 0`` is the worst
case, everyone pressing Run All at the same moment. First one learner works alone (the baseline),
then the class. It prints, side by side in one run:

- median and 95th-percentile cell latency of the class against the learner alone (ratios);
- the slowest first cell (``course.start()`` while every kernel starts at once);
- peak connections on the server, sampled from ``pg_stat_activity``, against the instructors'
  guide's formula (learners x one open notebook x the lesson's per-kernel peak + 10);
- failed cells, and the learners' schemas left after ``python -m course admin drop --user``.

Kernels talk over IPC sockets, not TCP: forty kernels started within a second can collide on a
TCP port ("Address already in use"). Needs ``COURSE_DATABASE_URL`` on PostgreSQL.

    python benchmarks/workshop.py --learners 10 --lessons 00,06,09 [--think 2-6] [--sample-ms 50]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import nbformat

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = ROOT / "notebooks"
#: connections one kernel held at most, per lesson (docs/instructors.md, "Connections")
PER_KERNEL = {"00": 1, "01": 2, "06": 1, "08": 6, "09": 9, "10": 5, "12": 3}


@dataclass
class Learner:
    name: str
    lessons: list[str]
    latencies: list[float] = field(default_factory=list)
    first_cells: list[float] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)


def _notebook(lesson: str) -> Path:
    found = sorted(NOTEBOOKS.glob(f"{lesson}_*.ipynb"))
    if not found:
        sys.exit(f"no learner notebook for lesson {lesson!r} in {NOTEBOOKS}")
    return found[0]


def _think(spec: str) -> tuple[float, float]:
    low, _, high = spec.partition("-")
    return float(low), float(high or low)


async def _run_cell(client, code: str, timeout: float) -> str | None:
    """Execute one cell; None when it ran clean, else the error's first line."""
    msg_id = client.execute(code, store_history=True, allow_stdin=False, stop_on_error=True)
    error = None
    deadline = time.monotonic() + timeout
    while True:
        msg = await client.get_iopub_msg(timeout=max(0.1, deadline - time.monotonic()))
        if msg["parent_header"].get("msg_id") != msg_id:
            continue
        if msg["msg_type"] == "error":
            error = f"{msg['content']['ename']}: {msg['content']['evalue']}"[:200]
        elif msg["msg_type"] == "status" and msg["content"]["execution_state"] == "idle":
            return error


async def _work(learner: Learner, data_dir: str, think: tuple[float, float], rng: random.Random,
                cell_timeout: float) -> None:
    from jupyter_client.manager import AsyncKernelManager

    env = dict(os.environ, COURSE_USER=learner.name, COURSE_DATA_DIR=data_dir, MPLBACKEND="Agg")
    for lesson in learner.lessons:
        path = _notebook(lesson)
        cells = [c.source for c in nbformat.read(path, as_version=4).cells if c.cell_type == "code"]
        manager = AsyncKernelManager(transport="ipc", connection_file=os.path.join(
            data_dir, f"kernel-{learner.name}-{lesson}.json"))
        await manager.start_kernel(env=env, cwd=str(path.parent))
        client = manager.client()
        client.start_channels()
        try:
            await client.wait_for_ready(timeout=120)
            for i, code in enumerate(cells):
                began = time.perf_counter()
                try:
                    error = await _run_cell(client, code, cell_timeout)
                except Exception as exc:  # a cell that never finished
                    error = f"no answer within {cell_timeout:.0f} s ({type(exc).__name__})"
                took = time.perf_counter() - began
                (learner.first_cells if i == 0 else learner.latencies).append(took)
                if error:
                    learner.failures.append(f"{learner.name} {lesson} cell {i}: {error}")
                    break
                if think[1] > 0:
                    await asyncio.sleep(rng.uniform(*think))
        finally:
            client.stop_channels()
            await manager.shutdown_kernel(now=True)


async def _sample_connections(url: str, every: float, stop: asyncio.Event, users: list[str]) -> int:
    """Peak of the connections the learners' kernels hold (their application_name carries the
    namespace, which starts with the user: other jobs on the same server are not counted)."""
    import asyncpg

    dsn = url.replace("postgresql+asyncpg://", "postgresql://", 1)
    conn = await asyncpg.connect(dsn)
    patterns = [f"course:course\\_{user}\\_%" for user in users]
    peak = 0
    try:
        while not stop.is_set():
            n = await conn.fetchval(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                "AND application_name LIKE ANY($1::text[])", patterns,
            )
            peak = max(peak, n)
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(stop.wait(), every)
    finally:
        await conn.close()
    return peak


async def _session(learners: list[Learner], url: str, think: tuple[float, float], sample: float,
                   cell_timeout: float, seed: int) -> tuple[float, int]:
    stop = asyncio.Event()
    sampler = asyncio.create_task(_sample_connections(url, sample, stop, [x.name for x in learners]))
    began = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="course-workshop-") as data_dir:
        await asyncio.gather(*(
            _work(learner, data_dir, think, random.Random(seed + i), cell_timeout)
            for i, learner in enumerate(learners)
        ))
    stop.set()
    return time.perf_counter() - began, await sampler


def _drop(users: list[str]) -> None:
    for user in users:
        subprocess.run([sys.executable, "-m", "course", "admin", "drop", "--user", user],
                       cwd=ROOT, capture_output=True, text=True, timeout=300)


def _left(users: list[str]) -> int:
    from course import config as cfg
    from course.tools import admin

    async def count() -> int:
        config = cfg.resolve_backend()
        return sum([len(await admin.namespaces(config, user)) for user in users])

    return asyncio.run(count())


def _p95(values: list[float]) -> float:
    return statistics.quantiles(values, n=20)[-1] if len(values) >= 2 else (values[0] if values else 0.0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--learners", type=int, default=10)
    parser.add_argument("--lessons", default="00,06,09", help="comma-separated, e.g. 00,06,09")
    parser.add_argument("--think", default="2-6", help="seconds between cells, 'LOW-HIGH' or 0 (Run All)")
    parser.add_argument("--sample-ms", type=float, default=50, help="pg_stat_activity sampling period")
    parser.add_argument("--cell-timeout", type=float, default=300)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    url = os.environ.get("COURSE_DATABASE_URL", "")
    if not url.startswith("postgresql+asyncpg://"):
        sys.exit("set COURSE_DATABASE_URL=postgresql+asyncpg://... : the class shares one PostgreSQL server")
    if args.learners < 1:
        sys.exit("--learners must be at least 1")
    lessons = [x.strip() for x in args.lessons.split(",") if x.strip()]
    for lesson in lessons:
        _notebook(lesson)
    think = _think(args.think)
    run = uuid.uuid4().hex[:5]

    alone = [Learner(f"ws{run}solo", lessons)]
    class_ = [Learner(f"ws{run}n{i:02d}", lessons) for i in range(args.learners)]
    users = [learner.name for learner in alone + class_]
    try:
        solo_time, solo_peak = asyncio.run(_session(alone, url, think, args.sample_ms / 1000,
                                                    args.cell_timeout, args.seed))
        class_time, class_peak = asyncio.run(_session(class_, url, think, args.sample_ms / 1000,
                                                      args.cell_timeout, args.seed))
    finally:
        _drop(users)
    left = _left(users)

    solo_cells = alone[0].latencies
    cells = [t for learner in class_ for t in learner.latencies]
    firsts = [t for learner in class_ for t in learner.first_cells]
    failures = [f for learner in alone + class_ for f in learner.failures]
    per_kernel = max(PER_KERNEL.get(lesson, 2) for lesson in lessons)
    formula = args.learners * 1 * per_kernel + 10
    med_ratio = statistics.median(cells) / statistics.median(solo_cells) if cells and solo_cells else 0
    p95_ratio = _p95(cells) / _p95(solo_cells) if cells and solo_cells else 0

    print(f"lessons {','.join(lessons)}, think {args.think} s, sampling every {args.sample_ms:g} ms, "
          f"{os.cpu_count()} CPUs, load average at the end {os.getloadavg()[0]:.1f}")
    print()
    print("| learners | cells | median cell | p95 cell | median / alone | p95 / alone | slowest first cell "
          "| peak connections | formula | failed cells | schemas left |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    print(f"| 1 (alone) | {len(solo_cells)} | {statistics.median(solo_cells):.2f} s | {_p95(solo_cells):.2f} s "
          f"| 1.00 | 1.00 | {max(alone[0].first_cells):.2f} s | {solo_peak} | {per_kernel + 10} "
          f"| {len(alone[0].failures)} | |")
    print(f"| {args.learners} | {len(cells)} | {statistics.median(cells):.2f} s | {_p95(cells):.2f} s "
          f"| {med_ratio:.2f} | {p95_ratio:.2f} | {max(firsts):.2f} s | {class_peak} | {formula} "
          f"| {len(failures)} | {left} |")
    print(f"\nwall time: alone {solo_time:.0f} s, class {class_time:.0f} s")
    for failure in failures[:10]:
        print("FAILED", failure)
    if failures or left:
        sys.exit(1)


if __name__ == "__main__":
    main()
