"""Test-suite settings shared by the unit tests and nbval over the notebooks.

- ``COURSE_STRICT=1``: an incorrect exercise verdict raises, so a notebook whose
  reference answer stopped passing fails nbval (kernels inherit the variable).
- SQLite files go to a folder private to this run, removed when the run ends (pass or fail;
  xdist workers inherit the folder from the controller, which alone creates and removes it).
- Tests marked ``postgresql`` or ``sqlite`` are *selected* by the active backend
  (deselected, not skipped, on the other one), so a skip always means a problem.
- Tests marked ``e2e`` (JupyterLab in a real browser) and ``hub`` (a real JupyterHub) are
  deselected unless ``-m`` names them: ``pytest -m e2e``, ``pytest -m hub``.
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile

import pytest

os.environ.setdefault("COURSE_STRICT", "1")
os.environ.setdefault("MPLBACKEND", "Agg")


_OWN_DATA_DIR = pytest.StashKey[str]()  # the SQLite folder this process made (not inherited)


def pytest_configure(config: pytest.Config) -> None:
    if "COURSE_DATA_DIR" not in os.environ:
        made = tempfile.mkdtemp(prefix="course-test-")
        os.environ["COURSE_DATA_DIR"] = made
        config.stash[_OWN_DATA_DIR] = made


def pytest_unconfigure(config: pytest.Config) -> None:
    """Remove the run's SQLite folder (pytest calls this after failures and interrupts too)."""
    made = config.stash.get(_OWN_DATA_DIR, None)
    if made is not None:
        shutil.rmtree(made, ignore_errors=True)
        if os.environ.get("COURSE_DATA_DIR") == made:
            del os.environ["COURSE_DATA_DIR"]



def active_backend() -> str:
    return "postgresql" if os.environ.get("COURSE_DATABASE_URL") else "sqlite"


def selected(config: pytest.Config, marker: str) -> bool:
    """True when ``-m`` names the marker (then ``-m`` alone decides about those tests)."""
    return re.search(rf"\b{marker}\b", config.getoption("markexpr", "") or "") is not None


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    backend = active_backend()
    other = "sqlite" if backend == "postgresql" else "postgresql"
    on_demand = [m for m in ("e2e", "hub") if not selected(config, m)]
    keep, drop = [], []
    for item in items:
        unwanted = item.get_closest_marker(other) or any(item.get_closest_marker(m) for m in on_demand)
        (drop if unwanted else keep).append(item)
    if drop:
        config.hook.pytest_deselected(items=drop)
        items[:] = keep


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """On PostgreSQL, drop the shared pristine seed copy the run's ``start()`` calls saved.

    It is a cache (the next start saves it again), but nothing a test run creates outlives it.
    Only the main process does this, after every xdist worker has finished.
    """
    if hasattr(session.config, "workerinput") or active_backend() != "postgresql":
        return
    import asyncio

    from course import config as cfg
    from course import seed
    from course.engines import make_engine

    async def drop() -> None:
        engine = make_engine(cfg.resolve_backend(), "public")
        try:
            async with engine.begin() as conn:
                pattern = seed.PRISTINE_PREFIX.replace("_", "\\_") + "%"
                names = (await conn.exec_driver_sql(
                    "SELECT nspname FROM pg_namespace WHERE nspname LIKE $1", (pattern,)
                )).scalars().all()
                for name in names:
                    await conn.exec_driver_sql(f'DROP SCHEMA IF EXISTS "{name}" CASCADE')
        finally:
            await engine.dispose()

    asyncio.run(drop())
