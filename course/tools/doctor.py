"""``python -m course doctor``: what this learner's setup actually has, as a checklist.

Each check prints one line, ``✔ ok`` or ``✘ FAIL`` (readable without colour), and a
failed one says exactly what to do. Nothing raises: every error becomes a line.
The last check is real: ``course.start("doctor")`` seeds a database, then discards it.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass


@dataclass
class Check:
    name: str
    ok: bool
    detail: str
    fix: str = ""
    skipped: bool = False

    def render(self) -> str:
        mark = "- skip" if self.skipped else "✔ ok  " if self.ok else "✘ FAIL"
        lines = [f"{mark}  {self.name}: {self.detail}"]
        if not self.ok and self.fix:
            lines += [f"          fix: {line}" if i == 0 else f"               {line}"
                      for i, line in enumerate(self.fix.splitlines())]
        return "\n".join(lines)


def _version(dist: str) -> str | None:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(dist)
    except PackageNotFoundError:
        return None


PIP = f"{os.path.basename(sys.executable)} -m pip install"


def check_python() -> Check:
    v = sys.version_info
    text = f"{v.major}.{v.minor}.{v.micro} ({sys.executable})"
    if v < (3, 11):  # lesson 10 uses sqlite3's 3.11-only error names; CI runs 3.11
        return Check("Python", False, text, "Install Python 3.11 or newer.")
    return Check("Python", True, text)


def check_sqlalchemy() -> Check:
    try:
        import sqlalchemy
    except ImportError as exc:
        return Check("SQLAlchemy", False, f"not importable ({exc})", f'{PIP} "sqlalchemy[asyncio]>=2.0.36"')
    if not sqlalchemy.__version__.startswith("2."):
        return Check("SQLAlchemy", False, f"{sqlalchemy.__version__} is not 2.x",
                     f'{PIP} -U "sqlalchemy[asyncio]>=2.0.36"')
    try:
        import greenlet  # noqa: F401  (SQLAlchemy's asyncio layer runs on it)
    except ImportError:
        return Check("SQLAlchemy", False, f"{sqlalchemy.__version__}, but greenlet is missing "
                     "(the [asyncio] extra: 2.1 no longer installs it by default)",
                     f'{PIP} "sqlalchemy[asyncio]"')
    return Check("SQLAlchemy", True, f"{sqlalchemy.__version__} with greenlet {_version('greenlet')}")


def check_driver(module: str, needed: bool) -> Check:
    name = f"{module} driver"
    try:
        __import__(module)
    except ImportError as exc:
        if needed:
            return Check(name, False, f"not importable ({exc})", f"{PIP} {module}")
        return Check(name, True, "not installed (only needed for PostgreSQL)")
    return Check(name, True, _version(module) or "importable")


def check_kernel() -> Check:
    try:
        import ipykernel  # noqa: F401
        from jupyter_client.kernelspec import KernelSpecManager, NoSuchKernel
    except ImportError as exc:
        return Check("Jupyter kernel", False, f"ipykernel is missing ({exc})", f"{PIP} ipykernel")
    try:
        spec = KernelSpecManager().get_kernel_spec("python3")
    except NoSuchKernel:
        return Check("Jupyter kernel", False, "no kernel named python3",
                     f"{sys.executable} -m ipykernel install --user")
    python = spec.argv[0] if spec.argv else ""
    if python in ("python", "python3", sys.executable):
        return Check("Jupyter kernel", True, f"python3 runs {sys.executable}")
    # a kernelspec left by another installation: does its Python have the course?
    try:
        done = subprocess.run([python, "-c", "import course"], capture_output=True, timeout=60)
        fine = done.returncode == 0
    except (OSError, subprocess.SubprocessError):
        fine = False
    if fine:
        return Check("Jupyter kernel", True, f"python3 runs {python} (the course is importable there)")
    return Check("Jupyter kernel", False,
                 f"the python3 kernel runs {python}, which cannot import the course",
                 f"{sys.executable} -m ipykernel install --user   (point python3 at this environment)")


def check_backend() -> tuple[Check, object | None]:
    from .. import config as cfg
    from ..errors import CourseError

    source = cfg.backend_source()
    try:
        config = cfg.resolve_backend()
    except CourseError as exc:
        return Check("backend", False, f"{exc.message} (from {source})", exc.hint or ""), None
    if config.backend == "sqlite":
        try:
            folder = cfg.data_dir()
            with tempfile.NamedTemporaryFile(dir=folder, prefix=".doctor-"):
                pass
        except OSError as exc:
            return Check("backend", False, f"SQLite, but its data folder is not writable ({exc})",
                         f"Set {cfg.ENV_DATA_DIR} to a folder you can write to."), config
        return Check("backend", True, f"SQLite (aiosqlite), files in {folder}; from {source}"), config

    try:
        from .admin import ping

        asyncio.run(ping(config))
    except CourseError as exc:
        return Check("backend", False, f"{exc.message} (from {source})", exc.hint or ""), config
    except ImportError as exc:
        return Check("backend", False, f"PostgreSQL needs a driver that is missing ({exc})",
                     f"{PIP} asyncpg"), config
    except Exception as exc:
        return Check("backend", False, f"{type(exc).__name__}: {cfg.hide_secret(str(exc))}",
                     "Check COURSE_DATABASE_URL, or unset it to use SQLite."), config
    return Check("backend", True, f"{config.label} at {config.safe_url} answers; from {source}"), config


def check_seeding() -> Check:
    from ..errors import CourseError

    async def seed() -> tuple[dict[str, int], dict[str, int], float]:
        from ..database import start

        began = time.perf_counter()
        db = await start("doctor")
        try:
            counts = await db.counts()
        finally:
            await db.discard()
        return db.seeded, counts, time.perf_counter() - began

    try:
        seeded, counts, seconds = asyncio.run(seed())
    except CourseError as exc:
        return Check("seeding", False, exc.message, exc.hint or "")
    except Exception as exc:
        from ..config import hide_secret

        return Check("seeding", False, f"{type(exc).__name__}: {hide_secret(str(exc)).splitlines()[0]}",
                     "Run `python -m course doctor` again; if it repeats, report it with this line.")
    if counts != seeded:
        return Check("seeding", False, f"loaded {seeded} but found {counts}",
                     "Report this: the database did not keep what was loaded.")
    rows = sum(counts.values())
    return Check("seeding", True, f'course.start("doctor") loaded {rows:,} rows in {seconds:.1f} s, then discarded them')


def run(out: Callable[[str], object] = print) -> int:
    """Print the checklist; 0 if every check passed, 1 otherwise."""
    checks: list[Check] = []

    def add(check: Check) -> None:
        checks.append(check)
        out(check.render())

    out("Checking your setup for the async SQLAlchemy course")
    add(check_python())
    sqlalchemy_ok = check_sqlalchemy()
    add(sqlalchemy_ok)
    backend, config = check_backend()
    on_postgresql = getattr(config, "backend", None) == "postgresql"
    add(check_driver("aiosqlite", needed=not on_postgresql))
    add(check_driver("asyncpg", needed=on_postgresql))
    add(check_kernel())
    add(backend)
    if backend.ok and sqlalchemy_ok.ok:
        add(check_seeding())
    else:
        add(Check("seeding", False, "not tried: fix the lines above first", skipped=True))
    failed = [c for c in checks if not c.ok and not c.skipped]
    out("")
    out("All good: open notebooks/00_start_here.ipynb." if not failed
        else f"{len(failed)} problem(s): fix the first ✘ line, then run `python -m course doctor` again.")
    return 1 if failed else 0
