"""``python -m course admin``: see and remove learners' databases on a shared server.

Every notebook owns one namespace, ``course_<user>_<lesson>_<folder>``: a schema on
PostgreSQL, a file on SQLite. On PostgreSQL each schema also carries a comment naming
its learner (``course user=<name>``), because the name alone is ambiguous: a schema
``course_ann_b_06_...`` may be ann's (lesson "b_06") or ann_b's. Schemas made before
the comment existed are matched by name.
"""

from __future__ import annotations

import asyncio
import datetime as dt
from dataclasses import dataclass
from pathlib import Path

from .. import config as cfg
from ..engines import check_reachable, make_engine

PREFIX = "course_"
#: how long a DROP waits for a kernel that holds a lock on the schema before giving up
LOCK_TIMEOUT = "5s"


@dataclass
class Namespace:
    """One learner namespace: a PostgreSQL schema or a SQLite file."""

    name: str
    owner: str | None  # from the schema's comment; None: only the name says whose it is
    size: int  # bytes
    tables: int | None = None  # PostgreSQL only
    connections: int | None = None  # PostgreSQL only: open connections of the course's engines
    modified: dt.datetime | None = None  # SQLite only

    def belongs_to(self, user: str) -> bool:
        if self.owner is not None:
            return self.owner == user
        return self.name.startswith(f"{PREFIX}{user}_")


def normalise_user(name: str) -> str:
    """A user name as ``course_user()`` turns it into a namespace part."""
    return cfg._identifier(name)[:20]


def human_size(size: int) -> str:
    value = float(size)
    for unit in ("B", "kB", "MB", "GB"):
        if value < 1024 or unit == "GB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    raise AssertionError("unreachable")


# --- SQLite: files in the data folder ---


def sqlite_namespaces(folder: Path | None = None) -> list[Namespace]:
    folder = folder or cfg.data_dir()
    out = []
    for path in sorted(folder.glob(f"{PREFIX}*.sqlite3")):
        size = sum(
            Path(f"{path}{suffix}").stat().st_size
            for suffix in ("", "-wal", "-shm")
            if Path(f"{path}{suffix}").exists()
        )
        modified = dt.datetime.fromtimestamp(path.stat().st_mtime).replace(microsecond=0)
        out.append(Namespace(path.name.removesuffix(".sqlite3"), None, size, modified=modified))
    return out


def _remove_sqlite(name: str, folder: Path) -> bool:
    existed = False
    for suffix in ("", "-wal", "-shm", "-journal"):
        path = folder / f"{name}.sqlite3{suffix}"
        if path.exists():
            path.unlink()
            existed = True
    return existed


# --- PostgreSQL: schemas ---

_LIST_SQL = r"""
SELECT n.nspname,
       obj_description(n.oid, 'pg_namespace'),
       COALESCE(SUM(pg_total_relation_size(c.oid)) FILTER (WHERE c.relkind IN ('r', 'p', 'm')), 0),
       COUNT(c.oid) FILTER (WHERE c.relkind IN ('r', 'p'))
FROM pg_namespace n
LEFT JOIN pg_class c ON c.relnamespace = n.oid
WHERE n.nspname LIKE 'course\_%'
GROUP BY n.oid, n.nspname
ORDER BY n.nspname
"""

_CONNECTIONS_SQL = """
SELECT substr(application_name, 8), count(*) FROM pg_stat_activity
WHERE application_name LIKE 'course:%' AND datname = current_database()
GROUP BY 1
"""


async def _server(config: cfg.BackendConfig):
    """A one-connection engine on the server (no schema of its own), checked reachable:
    a friendly :class:`DatabaseUnavailable` within seconds if not."""
    engine = make_engine(config, "public", pool_size=1, max_overflow=0)
    await check_reachable(engine, config)
    return engine


async def ping(config: cfg.BackendConfig) -> None:
    """Raise :class:`DatabaseUnavailable` (saying what to do) unless the server answers."""
    await (await _server(config)).dispose()


async def postgresql_namespaces(config: cfg.BackendConfig) -> list[Namespace]:
    engine = await _server(config)
    try:
        async with engine.connect() as conn:
            rows = (await conn.exec_driver_sql(_LIST_SQL)).all()
            # application_name is "course:<namespace>" cut at 63 characters
            conns = dict((await conn.exec_driver_sql(_CONNECTIONS_SQL)).all())
    finally:
        await engine.dispose()
    out = []
    for name, comment, size, tables in rows:
        match = cfg.OWNER_COMMENT.match(comment or "")
        open_conns = sum(n for app, n in conns.items() if app and name.startswith(app))
        out.append(Namespace(name, match.group(1) if match else None, int(size), int(tables), open_conns))
    return out


async def namespaces(config: cfg.BackendConfig, user: str | None = None) -> list[Namespace]:
    """Every course namespace on the active backend, or only ``user``'s."""
    found = sqlite_namespaces() if config.backend == "sqlite" else await postgresql_namespaces(config)
    if user is not None:
        user = normalise_user(user)
        found = [ns for ns in found if ns.belongs_to(user)]
    return found


async def drop_namespaces(config: cfg.BackendConfig, names: list[str]) -> list[tuple[str, str | None]]:
    """Drop each namespace; returns ``(name, None)`` when it went, ``(name, why)`` when it did not."""
    results: list[tuple[str, str | None]] = []
    if config.backend == "sqlite":
        folder = cfg.data_dir()
        for name in names:
            results.append((name, None if _remove_sqlite(name, folder) else "no such file"))
        return results
    engine = await _server(config)
    try:
        for name in names:
            try:
                async with engine.begin() as conn:
                    exists = (await conn.exec_driver_sql(
                        "SELECT count(*) FROM pg_namespace WHERE nspname = $1", (name,))).scalar_one()
                    await conn.exec_driver_sql(f"SET LOCAL lock_timeout = '{LOCK_TIMEOUT}'")
                    await conn.exec_driver_sql(f'DROP SCHEMA IF EXISTS "{name}" CASCADE')
                results.append((name, None if exists else "no such schema"))
            except Exception as exc:  # one schema in use must not stop the others
                state = getattr(getattr(exc, "orig", None), "sqlstate", None)
                if state == "55P03":
                    why = (f"in use: a running kernel held it for {LOCK_TIMEOUT}; restart or shut down "
                           "that notebook's kernel and run this again")
                else:
                    why = cfg.hide_secret(f"{type(exc).__name__}: {exc}".splitlines()[0])
                results.append((name, why))
    finally:
        await engine.dispose()
    return results


# --- the command ---


def _where(config: cfg.BackendConfig) -> str:
    if config.backend == "sqlite":
        return (f"SQLite: schemas exist only on PostgreSQL; these are the learners' database files "
                f"in {cfg.data_dir()}")
    return f"{config.label}: {config.safe_url}"


def render(config: cfg.BackendConfig, found: list[Namespace]) -> str:
    if config.backend == "sqlite":
        rows = [("file", "size", "modified")]
        rows += [(f"{ns.name}.sqlite3", human_size(ns.size), str(ns.modified)) for ns in found]
    else:
        rows = [("learner", "schema", "tables", "size", "connections")]
        rows += [
            (ns.owner or "?", ns.name, str(ns.tables), human_size(ns.size), str(ns.connections))
            for ns in found
        ]
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip() for row in rows)


async def run_list(user: str | None) -> int:
    config = cfg.resolve_backend()
    found = await namespaces(config, user)
    print(_where(config))
    if not found:
        print(f"no course namespaces{' for ' + normalise_user(user) if user else ''}")
        return 0
    print(render(config, found))
    total = sum(ns.size for ns in found)
    kind = "file" if config.backend == "sqlite" else "schema"
    learners = {ns.owner for ns in found if ns.owner}
    extra = ""
    if config.backend == "postgresql":
        extra = f", {len(learners)} learner{'' if len(learners) == 1 else 's'} named in the schemas' comments"
    print(f"{len(found)} {kind}{'' if len(found) == 1 else 's'}, {human_size(total)}{extra}")
    return 0


async def run_drop(user: str) -> int:
    config = cfg.resolve_backend()
    user = normalise_user(user)
    found = await namespaces(config, user)
    print(_where(config))
    if not found:
        print(f"nothing to drop: no course namespaces for {user}")
        return 0
    failed = 0
    for name, why in await drop_namespaces(config, [ns.name for ns in found]):
        if why is None:
            print(f"dropped {name}")
        else:
            failed += 1
            print(f"NOT dropped {name}: {why}")
    print(f"{len(found) - failed} of {len(found)} dropped for {user}")
    return 1 if failed else 0


def main(action: str, user: str | None) -> int:
    from ..errors import CourseError

    try:
        if action == "list":
            return asyncio.run(run_list(user))
        if not user:
            print("refusing to drop without --user NAME: name the learner whose namespaces go "
                  "(see them with `python -m course admin list`)")
            return 2
        return asyncio.run(run_drop(user))
    except CourseError as exc:
        print(f"error: {exc}")
        return 1
