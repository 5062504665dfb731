"""How long does a lesson's first cell take? ``import course`` then ``course.start()``.

Each run is a fresh Python process (as a fresh kernel is), timing from before the import
to the seeded database, on the active backend (``COURSE_DATABASE_URL`` selects
PostgreSQL). Prints each run and the medians. Target: well under 2 seconds on SQLite.
The lesson's namespace is discarded afterwards, outside the timing.

    python benchmarks/fast_start.py [--runs 7]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import uuid

CHILD = r"""
import time
t0 = time.perf_counter()
import asyncio, json, sys
import course
t1 = time.perf_counter()

async def main():
    db = await course.start("fs")
    t2 = time.perf_counter()
    heavy = [m for m in ("pandas", "matplotlib", "ipywidgets") if m in sys.modules]
    await db.discard()
    return t2, db.backend, heavy

t2, backend, heavy = asyncio.run(main())
print(json.dumps({"import": t1 - t0, "start": t2 - t1, "total": t2 - t0, "backend": backend, "heavy": heavy}))
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=7)
    args = parser.parse_args()
    runs = []
    with tempfile.TemporaryDirectory(prefix="course-fast-start-") as data:
        for i in range(args.runs):
            env = dict(os.environ, COURSE_DATA_DIR=data, COURSE_NAMESPACE=f"fs{uuid.uuid4().hex[:8]}")
            done = subprocess.run([sys.executable, "-c", CHILD], env=env, capture_output=True, text=True)
            if done.returncode != 0:
                sys.exit(f"run {i + 1} failed:\n{done.stderr}")
            run = json.loads(done.stdout.strip().splitlines()[-1])
            runs.append(run)
            print(f"run {i + 1}: import course {run['import']:.3f} s + start() {run['start']:.3f} s "
                  f"= {run['total']:.3f} s")
    backend = runs[0]["backend"]
    heavy = sorted({m for r in runs for m in r["heavy"]})
    med = {k: statistics.median(r[k] for r in runs) for k in ("import", "start", "total")}
    print()
    print("| backend | runs | import course | course.start() | first cell |")
    print("|---|---|---|---|---|")
    print(f"| {backend} | {len(runs)} | {med['import']:.2f} s | {med['start']:.2f} s | {med['total']:.2f} s |")
    print(f"load average at the end: {', '.join(f'{x:.1f}' for x in os.getloadavg())} "
          f"({os.cpu_count()} CPUs)")
    print(f"heavy modules loaded by the first cell: {', '.join(heavy) if heavy else 'none'}")


if __name__ == "__main__":
    main()
