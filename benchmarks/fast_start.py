"""How long does a lesson's first cell take? ``import course`` then ``course.start()``.

Each run is a fresh Python process (as a fresh kernel is), timing from before the import
to the seeded database, on the active backend (``COURSE_DATABASE_URL`` selects
PostgreSQL). Prints each run and the medians. Target: well under 2 seconds on SQLite.
The lesson's namespace is discarded afterwards, outside the timing.

``--baseline DIR`` times another checkout of the course (e.g. ``git worktree add /tmp/base HEAD~3``)
in the same run, alternating with this one, and prints the ratio of the medians: the way to tell
whether a change made the first cell faster on a machine whose load moves under the timings.

    python benchmarks/fast_start.py [--runs 7] [--baseline DIR]
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


def _run_once(data: str, course_dir: str | None) -> dict:
    env = dict(os.environ, COURSE_DATA_DIR=data, COURSE_NAMESPACE=f"fs{uuid.uuid4().hex[:8]}")
    if course_dir:
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [course_dir, env.get("PYTHONPATH")]))
    done = subprocess.run([sys.executable, "-c", CHILD], env=env, capture_output=True, text=True,
                          cwd=course_dir or None)
    if done.returncode != 0:
        sys.exit(f"a run failed:\n{done.stderr}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--baseline", metavar="DIR", help="another checkout to time alternately")
    args = parser.parse_args()
    if args.baseline and not os.path.isfile(os.path.join(args.baseline, "course", "__init__.py")):
        sys.exit(f"--baseline {args.baseline}: no course/ package there (give a checkout's root)")
    sides = {"this": None, **({"baseline": os.path.abspath(args.baseline)} if args.baseline else {})}
    runs: dict[str, list[dict]] = {side: [] for side in sides}
    with tempfile.TemporaryDirectory(prefix="course-fast-start-") as data:
        for i in range(args.runs):
            for side, course_dir in sides.items():
                run = _run_once(data, course_dir)
                runs[side].append(run)
                print(f"run {i + 1} {side:>8}: import course {run['import']:.3f} s + start() "
                      f"{run['start']:.3f} s = {run['total']:.3f} s")
    backend = runs["this"][0]["backend"]
    heavy = sorted({m for r in runs["this"] for m in r["heavy"]})
    med = {side: {k: statistics.median(r[k] for r in rs) for k in ("import", "start", "total")}
           for side, rs in runs.items()}
    print()
    print("| backend | checkout | runs | import course | course.start() | first cell |")
    print("|---|---|---|---|---|---|")
    for side, m in med.items():
        print(f"| {backend} | {side} | {len(runs[side])} | {m['import']:.2f} s | {m['start']:.2f} s "
              f"| {m['total']:.2f} s |")
    if "baseline" in med:
        print(f"\nthis / baseline, medians: course.start() {med['this']['start'] / med['baseline']['start']:.2f}x, "
              f"first cell {med['this']['total'] / med['baseline']['total']:.2f}x")
    print(f"load average at the end: {', '.join(f'{x:.1f}' for x in os.getloadavg())} "
          f"({os.cpu_count()} CPUs)")
    print(f"heavy modules loaded by the first cell: {', '.join(heavy) if heavy else 'none'}")


if __name__ == "__main__":
    main()
