"""How long does each lesson take to run? Every solutions notebook, executed cell by cell.

For the instructor guide: the machine time of a lesson (what a learner waits for while
running every cell once), on SQLite and, when a URL is given, on PostgreSQL. Each
notebook runs in a fresh kernel started in solutions/ (as Jupyter starts it), in its own
namespace; kernel start-up is timed apart from the cells. A lesson whose cells raise is
still timed and its errors counted (lessons being written may be unfinished).

    python benchmarks/lesson_durations.py [--postgresql URL] [--only 00 03]

Without --postgresql, COURSE_DATABASE_URL (when set) is used for the PostgreSQL column.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SOLUTIONS = ROOT / "solutions"


def run_notebook(path: Path, env: dict[str, str | None]) -> tuple[float, float, int, int]:
    """(kernel start seconds, cells seconds, code cells, cells that raised)."""
    import nbformat
    from nbclient import NotebookClient

    saved = {k: os.environ.get(k) for k in env}
    for key, value in env.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value
    try:
        nb = nbformat.read(path, as_version=4)
        client = NotebookClient(nb, kernel_name="python3", timeout=600, allow_errors=True,
                                resources={"metadata": {"path": str(path.parent)}})
        began = time.perf_counter()
        with client.setup_kernel():
            started = time.perf_counter()
            for index, cell in enumerate(nb.cells):
                client.execute_cell(cell, index)
            finished = time.perf_counter()
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
    code = [c for c in nb.cells if c.cell_type == "code"]
    errors = sum(1 for c in code if any(o.get("output_type") == "error" for o in c.get("outputs", [])))
    return started - began, finished - started, len(code), errors


def drop_namespaces_ending(url: str, suffix: str) -> None:
    """Remove what a run left on the server (each notebook's schema and scratch copies)."""
    import asyncio

    from course import config as cfg
    from course.tools import admin

    async def go() -> None:
        config = cfg.resolve_backend(url)
        names = [ns.name for ns in await admin.namespaces(config) if ns.name.endswith(suffix)]
        await admin.drop_namespaces(config, names)

    asyncio.run(go())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--postgresql", metavar="URL", default=os.environ.get("COURSE_DATABASE_URL"),
                        help="a postgresql+asyncpg:// URL for the PostgreSQL column")
    parser.add_argument("--only", nargs="*", metavar="NN", help="lesson numbers to run (default: all)")
    args = parser.parse_args()

    lessons = sorted(SOLUTIONS.glob("[0-9][0-9]_*.ipynb"))
    if args.only:
        lessons = [p for p in lessons if p.name[:2] in args.only]
    backends = {"SQLite": None}
    if args.postgresql:
        backends["PostgreSQL"] = args.postgresql
    rows: dict[str, dict[str, tuple[float, float, int, int]]] = {}
    with tempfile.TemporaryDirectory(prefix="course-durations-") as data:
        for path in lessons:
            rows[path.name] = {}
            for label, url in backends.items():
                env = {"COURSE_DATABASE_URL": url, "COURSE_DATA_DIR": data, "COURSE_STRICT": "1",
                       "COURSE_NAMESPACE": f"dur{uuid.uuid4().hex[:8]}", "MPLBACKEND": "Agg"}
                result = run_notebook(path, env)
                if url:
                    drop_namespaces_ending(url, "_" + env["COURSE_NAMESPACE"])
                rows[path.name][label] = result
                kernel, cells, n, errors = result
                print(f"{path.name} on {label}: {cells:.1f} s for {n} code cells"
                      f"{f', {errors} raised' if errors else ''} (kernel start {kernel:.1f} s)", flush=True)

    print()
    print("| lesson | code cells | " + " | ".join(f"{b} (s)" for b in backends) + " | cells that raised |")
    print("|---|---|" + "---|" * len(backends) + "---|")
    totals = dict.fromkeys(backends, 0.0)
    for name, by_backend in rows.items():
        n = next(iter(by_backend.values()))[2]
        raised = ", ".join(f"{b}: {r[3]}" for b, r in by_backend.items() if r[3]) or "none"
        cells = []
        for b in backends:
            totals[b] += by_backend[b][1]
            cells.append(f"{by_backend[b][1]:.1f}")
        print(f"| {name.removesuffix('.ipynb')} | {n} | " + " | ".join(cells) + f" | {raised} |")
    print("| **all** | | " + " | ".join(f"**{totals[b]:.0f}**" for b in backends) + " | |")
    starts = [r[0] for by in rows.values() for r in by.values()]
    if starts:
        print(f"\nkernel start (not included above): median {statistics.median(starts):.1f} s; "
              f"load average {', '.join(f'{x:.1f}' for x in os.getloadavg())} on {os.cpu_count()} CPUs")


if __name__ == "__main__":
    main()
