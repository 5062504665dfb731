"""Lesson 07: bulk operations. These exercises pass only on a bulk path.

Each answer is an ``async def answer(session, ...)`` run in a transaction that is
rolled back afterwards. Besides the result, the checker reads the SQL: how many
statements, whether the INSERT fetched keys it did not need, whether the work
happened inside the function (not in a flush the checker triggered later).
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import DateTime, bindparam, insert, or_, select, text, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import DBAPIError, IntegrityError

from ..schema import Tag, User
from .core import SESSION_FN, Counterexample, Exercise, normalize
from .rules import Attempt, BulkPath, Probe, SameResult, SessionUsable, StatementBudget


def _guarded(probe):
    """Run a probe only on a transaction that still works.

    The checker also calls an exercise's probe after an answer that raised; on
    PostgreSQL the transaction is then aborted and any read fails, which would hide
    the answer's own error behind a checker error. The answer's error is what the
    learner must see, so a failed read here is skipped.
    """

    async def guarded(conn, attempt, **call):
        try:
            await probe(conn, attempt, **call)
        except DBAPIError:
            attempt.extra["probe_failed"] = True

    guarded.__name__ = probe.__name__
    return guarded


def _sent(verb: str, what: str) -> Probe:
    """The work happened while the answer ran (not in the checker's own autoflush)."""

    def test(attempt: Attempt) -> str | None:
        if attempt.log.count(verb):
            return None
        return (
            f"no {verb} was sent while your function ran ({what} waits in the session until a "
            "flush): execute the statement inside your function"
        )

    return Probe(test=test, name=f"the {verb} ran inside your function")


# ---------------------------------------------------------------------------- q1


def _no_returning(attempt: Attempt) -> str | None:
    fetched = [s for s in attempt.log.queries if s.verb == "INSERT" and "RETURNING" in s.sql.upper()]
    if not fetched:
        return None
    return (
        "your INSERT fetched the new ids back (RETURNING). add() and add_all() always do that, to "
        "give each object its primary key; you need no ids here, so pass the list of dicts to "
        "session.execute(insert(Tag), rows): one executemany, nothing sent back"
    )


async def _q1_solution(session, rows):
    await session.execute(insert(Tag), rows)


async def _q1_expected(conn, rows):
    return sorted(r["name"] for r in rows)


async def _q1_observe(session, returned, rows):
    names = [r["name"] for r in rows]
    return sorted(await session.scalars(select(Tag.name).where(Tag.name.in_(names))))


async def _q1_add_in_loop(session, rows):
    for row in rows:
        session.add(Tag(**row))
    await session.flush()


async def _q1_insert_per_row(session, rows):
    for row in rows:
        await session.execute(insert(Tag).values(**row))


async def _q1_add_all_no_flush(session, rows):
    session.add_all([Tag(**row) for row in rows])


async def _q1_returning(session, rows):
    await session.execute(insert(Tag).returning(Tag.id), rows)


q1 = Exercise(
    id="07.q1",
    title="Insert many tags in one statement",
    kind=SESSION_FN,
    solution_answer=_q1_solution,
    expected=_q1_expected,
    observe=_q1_observe,
    calls=({"rows": [{"name": f"bulk-tag-{i:03d}"} for i in range(200)]},),
    rules=[
        _sent("INSERT", "an object you add()"),
        SameResult(what="tag names"),
        BulkPath(1),
        Probe(test=_no_returning, name="no ids fetched that nobody reads"),
    ],
    hints=[
        "You have dicts, not objects: the ORM bulk INSERT takes the list itself, no Tag(...) needed.",
        "One call: await session.execute(insert(Tag), rows). Nothing to return.",
    ],
    why=(
        "execute(insert(Model), list_of_dicts) is one executemany on both drivers: no objects, no "
        "identity map, no RETURNING. add_all() is one INSERT ... RETURNING per row on SQLite."
    ),
    counterexamples=[
        Counterexample("add() in a loop, then flush", _q1_add_in_loop, "RETURNING"),
        Counterexample("one insert().values() per row", _q1_insert_per_row, "row-by-row"),
        Counterexample("add_all() without a flush", _q1_add_all_no_flush, "no INSERT was sent"),
        Counterexample("bulk insert with RETURNING", _q1_returning, "fetched the new ids"),
    ],
)


# ---------------------------------------------------------------------------- q2

_Q2_ROLES = ("editor", "moderator", "author", "member")
_Q2_CHANGES = [{"id": i, "role": _Q2_ROLES[i % len(_Q2_ROLES)]} for i in range(20, 60)]


async def _q2_solution(session, changes):
    await session.execute(update(User), changes)


async def _q2_expected(conn, changes):
    roles = dict((await conn.execute(text("SELECT id, role FROM users"))).all())
    roles.update({c["id"]: c["role"] for c in changes})
    return sorted(roles.items())


async def _q2_observe(session, returned, changes):
    return [tuple(r) for r in await session.execute(select(User.id, User.role).order_by(User.id))]


async def _q2_update_per_row(session, changes):
    for change in changes:
        await session.execute(update(User).where(User.id == change["id"]).values(role=change["role"]))


async def _q2_load_and_flush(session, changes):
    wanted = {c["id"]: c["role"] for c in changes}
    users = await session.scalars(select(User).where(User.id.in_(wanted)))
    for user in users:
        user.role = wanted[user.id]
    await session.flush()


async def _q2_load_no_flush(session, changes):
    wanted = {c["id"]: c["role"] for c in changes}
    for user in await session.scalars(select(User).where(User.id.in_(wanted))):
        user.role = wanted[user.id]


async def _q2_one_role_for_all(session, changes):
    ids = [c["id"] for c in changes]
    await session.execute(update(User).where(User.id.in_(ids)).values(role=changes[0]["role"]))


q2 = Exercise(
    id="07.q2",
    title="Update many users by primary key",
    kind=SESSION_FN,
    solution_answer=_q2_solution,
    expected=_q2_expected,
    observe=_q2_observe,
    calls=({"changes": _Q2_CHANGES},),
    rules=[
        _sent("UPDATE", "a change to a loaded object"),
        SameResult(ordered=True, what="(id, role) rows"),
        StatementBudget(1),
    ],
    hints=[
        "Each dict already names its row by primary key: no WHERE to write, no objects to load.",
        "update(User) without .where() or .values(), executed with the list as parameters: "
        "await session.execute(update(User), changes)",
    ],
    why=(
        "ORM bulk UPDATE by primary key turns the list into one executemany: WHERE id = ? comes "
        "from each dict, SET from the other keys (keep them the same in every dict)."
    ),
    counterexamples=[
        Counterexample("one UPDATE per row", _q2_update_per_row, "40 statements"),
        Counterexample("load the users, change them, flush", _q2_load_and_flush, "1 should be enough"),
        Counterexample("load and change, no flush", _q2_load_no_flush, "no UPDATE was sent"),
        Counterexample("one role for everybody", _q2_one_role_for_all, "missing"),
    ],
)


# ---------------------------------------------------------------------------- q3

_CUTOFF = datetime(2025, 1, 1)


async def _q3_solution(session, cutoff):
    result = await session.execute(
        update(User)
        .where(User.is_active, or_(User.last_login < cutoff, User.last_login.is_(None)))
        .values(is_active=False)
        .returning(User.id)
    )
    return sorted(result.scalars())


_Q3_SQL = text(
    "SELECT id FROM users WHERE is_active AND (last_login < :cutoff OR last_login IS NULL) ORDER BY id"
).bindparams(bindparam("cutoff", type_=DateTime()))


async def _q3_expected(conn, cutoff):
    return list((await conn.execute(_Q3_SQL, {"cutoff": cutoff})).scalars())


async def _q3_probe(conn, attempt, cutoff):
    still = (await conn.execute(_Q3_SQL, {"cutoff": cutoff})).scalars().all()
    attempt.extra["still_active"] = len(still)


def _q3_deactivated(attempt: Attempt) -> str | None:
    left = attempt.extra.get("still_active", 0)
    if not left:
        return None
    return f"{left} dormant users are still active after your function: the UPDATE must change them, not just find them"


async def _q3_only_before_cutoff(session, cutoff):
    result = await session.execute(
        update(User).where(User.is_active, User.last_login < cutoff).values(is_active=False).returning(User.id)
    )
    return sorted(result.scalars())


async def _q3_select_then_update(session, cutoff):
    ids = (
        await session.scalars(
            select(User.id).where(User.is_active, or_(User.last_login < cutoff, User.last_login.is_(None)))
        )
    ).all()
    for user_id in ids:
        await session.execute(update(User).where(User.id == user_id).values(is_active=False))
    return sorted(ids)


async def _q3_update_then_select(session, cutoff):
    dormant = or_(User.last_login < cutoff, User.last_login.is_(None))
    await session.execute(update(User).where(User.is_active, dormant).values(is_active=False))
    return sorted(await session.scalars(select(User.id).where(User.is_active.is_(False), dormant)))


async def _q3_select_only(session, cutoff):
    dormant = or_(User.last_login < cutoff, User.last_login.is_(None))
    return sorted(await session.scalars(select(User.id).where(User.is_active, dormant)))


q3 = Exercise(
    id="07.q3",
    title="Deactivate dormant users, one UPDATE ... RETURNING",
    kind=SESSION_FN,
    solution_answer=_q3_solution,
    expected=_q3_expected,
    probe=_guarded(_q3_probe),
    calls=({"cutoff": _CUTOFF},),
    rules=[
        SameResult(ordered=True, what="user ids"),
        Probe(test=_q3_deactivated, name="the dormant users were deactivated"),
        _sent("UPDATE", "a change to a loaded object"),
        StatementBudget(1),
    ],
    hints=[
        "A user who never logged in has last_login NULL, and NULL < cutoff is not true: "
        "the comparison alone leaves them out.",
        "Only active users count, and the UPDATE itself can tell you which rows it changed: "
        "add .returning(User.id).",
        "update(User).where(User.is_active, or_(User.last_login < cutoff, User.last_login.is_(None)))"
        ".values(is_active=False).returning(User.id); return the ids sorted.",
    ],
    why=(
        "UPDATE ... RETURNING changes the rows and names them in one round trip (SQLite >= 3.35 and "
        "PostgreSQL); a SELECT first and an UPDATE after can disagree when another session writes between."
    ),
    counterexamples=[
        Counterexample("last_login < cutoff only (NULLs lost)", _q3_only_before_cutoff, "missing"),
        Counterexample("select the ids, then update each", _q3_select_then_update, "statements"),
        Counterexample("update, then select what looks deactivated", _q3_update_then_select, "1 should be enough"),
        Counterexample("select only, no update", _q3_select_only, "still active"),
    ],
)


# ---------------------------------------------------------------------------- q4

_Q4_NAMES = ["python", "bulk-new-1", "sql", "orm", "bulk-new-2", "upsert", "async", "bulk-new-3"]


async def _q4_solution(session, names):
    dialect_insert = postgresql.insert if session.get_bind().dialect.name == "postgresql" else sqlite.insert
    stmt = (
        dialect_insert(Tag)
        .values([{"name": name} for name in names])
        .on_conflict_do_nothing(index_elements=[Tag.name])
        .returning(Tag.id)
    )
    return sorted((await session.execute(stmt)).scalars())


async def _q4_expected(conn, names):
    existing = set((await conn.execute(text("SELECT name FROM tags"))).scalars())
    return sorted(n for n in names if n not in existing)


async def _q4_observe(session, returned, names):
    """The tag names of the ids the answer returned (or why they are not ids)."""
    ids = normalize(returned)
    if not isinstance(ids, list):
        return ids
    ids = [i[0] if isinstance(i, tuple) and len(i) == 1 else i for i in ids]  # rows of one column
    if not all(isinstance(i, int) and not isinstance(i, bool) for i in ids):
        return f"not a list of tag ids: {ids[:3]!r}"
    found = dict((await session.execute(select(Tag.id, Tag.name).where(Tag.id.in_(ids)))).all())
    return sorted(found.get(i, f"(no tag with id {i})") for i in ids)


async def _q4_probe(conn, attempt, names):
    present = set((await conn.execute(text("SELECT name FROM tags"))).scalars())
    attempt.extra["absent"] = sorted(set(names) - present)


def _q4_all_present(attempt: Attempt) -> str | None:
    absent = attempt.extra.get("absent")
    if not absent:
        return None
    return f"after your function these names are not in tags: {', '.join(absent[:3])}"


def _q4_dialect_insert(session):
    return postgresql.insert if session.get_bind().dialect.name == "postgresql" else sqlite.insert


async def _q4_plain_insert(session, names):
    result = await session.execute(insert(Tag).returning(Tag.id), [{"name": n} for n in names])
    return sorted(result.scalars())


async def _q4_check_then_insert(session, names):
    new_ids = []
    for name in names:
        if await session.scalar(select(Tag.id).where(Tag.name == name)) is None:
            new_ids.append(await session.scalar(insert(Tag).values(name=name).returning(Tag.id)))
    return sorted(new_ids)


async def _q4_do_update(session, names):
    stmt = _q4_dialect_insert(session)(Tag).values([{"name": n} for n in names])
    stmt = stmt.on_conflict_do_update(index_elements=[Tag.name], set_={"name": stmt.excluded.name})
    return sorted((await session.execute(stmt.returning(Tag.id))).scalars())


async def _q4_select_missing_then_insert(session, names):
    existing = set(await session.scalars(select(Tag.name).where(Tag.name.in_(names))))
    missing = [{"name": n} for n in names if n not in existing]
    if not missing:  # an empty list of parameters would insert one row of NULLs
        return []
    return sorted((await session.execute(insert(Tag).returning(Tag.id), missing)).scalars())


async def _q4_savepoint_per_name(session, names):
    new_ids = []
    for name in names:
        try:
            async with session.begin_nested():
                new_ids.append(await session.scalar(insert(Tag).values(name=name).returning(Tag.id)))
        except IntegrityError:
            pass
    return sorted(new_ids)


q4 = Exercise(
    id="07.q4",
    title="Upsert tags: add the new names, skip the rest",
    kind=SESSION_FN,
    solution_answer=_q4_solution,
    expected=_q4_expected,
    observe=_q4_observe,
    probe=_guarded(_q4_probe),
    calls=({"names": _Q4_NAMES}, {"names": ["python", "sql"]}),
    rules=[
        SameResult(what="new tag names (read from the ids you returned)"),
        Probe(test=_q4_all_present, name="every name is a tag afterwards"),
        StatementBudget(1),
        SessionUsable(),
    ],
    hints=[
        "The database can skip duplicates itself: INSERT ... ON CONFLICT (name) DO NOTHING. "
        "It lives on the dialect's insert(): sqlalchemy.dialects.postgresql.insert or sqlalchemy.dialects.sqlite.insert.",
        "Pick the insert by session.get_bind().dialect.name; then "
        ".on_conflict_do_nothing(index_elements=[Tag.name]).returning(Tag.id): only inserted rows come back.",
        "dialect_insert(Tag).values([{'name': n} for n in names]).on_conflict_do_nothing(index_elements=[Tag.name])"
        ".returning(Tag.id), executed once; return the ids sorted.",
    ],
    why=(
        "ON CONFLICT DO NOTHING ... RETURNING inserts, skips and reports in one statement, and stays "
        "right when two sessions add the same name at once; check-then-insert does not."
    ),
    counterexamples=[
        Counterexample("plain insert", _q4_plain_insert, "IntegrityError"),
        Counterexample("check each name, then insert", _q4_check_then_insert, "statements"),
        Counterexample("DO UPDATE returns the existing rows too", _q4_do_update, "extra"),
        Counterexample("select the missing names, then insert", _q4_select_missing_then_insert, "1 should be enough"),
        Counterexample("a savepoint per name", _q4_savepoint_per_name, "statements"),
    ],
)

