"""Lesson 07: bulk operations. These exercises pass only on a bulk path.

Each answer is an ``async def answer(session, ...)`` run in a transaction that is
rolled back afterwards. Besides the result, the checker reads the SQL: how many
statements, whether the INSERT fetched keys it did not need, whether the work
happened inside the function (not in a flush the checker triggered later).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from types import ModuleType

from sqlalchemy import DateTime, bindparam, insert, or_, select, text, update
from sqlalchemy import inspect as sa_inspect
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import DBAPIError, IntegrityError, InvalidRequestError

from ..lab.errorkinds import constraint_kind
from ..schema import Tag, User
from .core import SESSION_FN, Counterexample, Exercise, normalize
from .named_mistakes import EXPLAINED as _EXPLAINED
from .named_mistakes import Explaining as _Explaining
from .named_mistakes import KeepsSource
from .rules import (
    Attempt,
    LeavesTransactionToCaller,
    Probe,
    SameResult,
    SessionUsable,
    StatementBudget,
    has_top_level_order_by,
    names_used,
)
from .verdict import RuleResult


@dataclass
class _ReadsCode(_Explaining):
    """Also notes what the answer's code names, for what its result cannot show: which dialects'
    constructs (``_dialects_named``), and every name it uses (``names_used``: did it sort?)."""

    async def _attempt(self, answer, db, call):
        attempt = await super()._attempt(answer, db, call)
        attempt.extra["code_names"] = names_used(answer)
        attempt.extra["dialects"] = _dialects_named(answer)
        return attempt


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
        if attempt.log.count(verb) or attempt.extra.get("explained"):  # it raised: the headline says why
            return None
        return (
            f"no {verb} was sent while your function ran ({what} waits in the session until a "
            "flush): execute the statement inside your function"
        )

    return Probe(test=test, name=f"the {verb} ran inside your function")


@dataclass
class _CallersUnlessRaised(LeavesTransactionToCaller):
    """The caller's transaction rule, for an exercise that names the mistakes its answers raise: after
    one of those, the checker itself rolls the answer's part back (to the caller's savepoint), which is
    not the answer rolling back the caller's transaction."""

    def judge(self, attempt: Attempt) -> RuleResult:
        if attempt.extra.get("explained"):
            return RuleResult(self.name, True)
        return super().judge(attempt)


# ---------------------------------------------------------------------------- q1


def _one_statement(attempt: Attempt) -> str | None:
    inserts = [s for s in attempt.log.queries if s.verb == "INSERT"]
    if len(inserts) <= 1:
        return None
    per_row = all(s.batch_size <= 1 for s in inserts)
    if per_row and all("RETURNING" in s.sql.upper() for s in inserts):
        # the same SQL either way on PostgreSQL: name both ways of writing it
        how = "one INSERT ... RETURNING per row: add() for each object, or a loop of execute(insert(Tag).values(...))"
    elif per_row:
        how = "a loop of execute(insert(Tag).values(...)), one statement per row"
    else:
        how = "several batches"
    return (
        f"{len(inserts)} INSERT statements for {sum(s.batch_size for s in inserts)} rows ({how}): one "
        "statement per row is the slow path. Pass the whole list of dicts to one call, "
        "session.execute(insert(Tag), rows): the bulk path, one executemany. (Not add_all(): it builds "
        "objects and fetches every id, row by row on SQLite.)"
    )


def _no_returning(attempt: Attempt) -> str | None:
    inserts = [s for s in attempt.log.queries if s.verb == "INSERT"]
    if len(inserts) != 1 or "RETURNING" not in inserts[0].sql.upper():
        return None  # several statements: _one_statement names that first
    return (
        "your INSERT fetched the new ids back (RETURNING). add() and add_all() always do that, to "
        "give each object its primary key, and so does .returning(); you need no ids here, so pass the "
        "list of dicts to session.execute(insert(Tag), rows): one executemany, nothing sent back"
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


async def _q1_commits(session, rows):
    await session.execute(insert(Tag), rows)
    await session.commit()  # "make it stick": but the transaction is the caller's


async def _q1_alt_multi_values(session, rows):
    await session.execute(insert(Tag).values(rows))  # one statement, a VALUES list


async def _q1_alt_core(session, rows):
    conn = await session.connection()
    await conn.execute(insert(Tag.__table__), rows)


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
        Probe(test=_one_statement, name="one statement for all rows"),
        Probe(test=_no_returning, name="no ids fetched that nobody reads"),
        LeavesTransactionToCaller(),
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
        Counterexample("add() in a loop, then flush", _q1_add_in_loop, "add()"),
        Counterexample("one insert().values() per row", _q1_insert_per_row, "one statement per row"),
        Counterexample("add_all() without a flush", _q1_add_all_no_flush, "no INSERT was sent"),
        Counterexample("bulk insert with RETURNING", _q1_returning, "fetched the new ids"),
        Counterexample("commits the caller's transaction", _q1_commits, "your function committed the session"),
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


_BULK_BY_PK = (
    "ORM bulk UPDATE by primary key writes each row's own value in one call: "
    "`await session.execute(update(User), changes)`: a list of dicts each including the primary key "
    "(`{\"id\": 20, \"role\": \"editor\"}`), as `changes` already is. The ORM sends one executemany: "
    "WHERE id = ? from each dict's id, SET from its other keys"
)


async def _q2_probe(conn, attempt, changes):
    attempt.extra["changes"] = list(changes)  # for the rules: which rows were to change, and to what


def _loads_users(attempt: Attempt) -> int:
    """SELECTs that loaded whole User objects (every column, email among them)."""
    return sum(1 for q in attempt.log.queries if q.verb == "SELECT" and "users.email" in q.sql.lower())


def _q2_per_dict(attempt: Attempt) -> str | None:
    updates = [q for q in attempt.log.queries if q.verb == "UPDATE"]
    if len(updates) <= 1 or not all(q.batch_size <= 1 for q in updates) or _loads_users(attempt):
        return None  # UPDATEs that a flush wrote for loaded objects: _q2_loaded_objects names those
    rows = len(attempt.extra.get("changes") or ())
    if rows and len(updates) < rows and all(" IN " in " ".join(q.sql.upper().split()) for q in updates):
        how = "one per role, each with WHERE id IN (...) and its own .values()"
    else:
        how = "one per dict: a loop of update(User).where(User.id == ...).values(...)"
    return f"{len(updates)} UPDATE statements, {how}, a round trip each. {_BULK_BY_PK}"


def _q2_loaded_objects(attempt: Attempt) -> str | None:
    """The users loaded as objects and changed one by one: the flush writes them, after a SELECT."""
    verbs = [q.verb for q in attempt.log.queries]
    if "UPDATE" not in verbs or "SELECT" not in verbs[: verbs.index("UPDATE")]:
        return None
    selects = verbs[: verbs.index("UPDATE")].count("SELECT")
    reads = "a SELECT" if selects == 1 else f"{selects} SELECTs"
    before = attempt.log.queries[: verbs.index("UPDATE")]
    # whole User objects load every column (email among them); a read of ids only loaded no object
    if not any(q.verb == "SELECT" and "users.email" in q.sql.lower() for q in before):
        return (
            f"the {'SELECT' if selects == 1 else f'{selects} SELECTs'} before your UPDATE "
            f"{'is one statement' if selects == 1 else 'are statements'} too many: the dicts already hold the primary "
            f"keys, so there is nothing to read first. {_BULK_BY_PK}"
        )
    loads = _loads_users(attempt)
    if loads > 1:
        return (
            f"you loaded the users one by one ({loads} SELECTs, one per user: `get()` or a query in the loop) "
            f"and set the role on each object, so the flush wrote them: {len(verbs)} statements in all. The "
            f"dicts already hold the primary keys, so there is nothing to load. {_BULK_BY_PK}"
        )
    return (
        f"you loaded the users first ({reads}) and set the role on each object, so a flush wrote them: "
        f"{len(verbs)} statements, and an object built and tracked per row. The dicts already hold the primary "
        f"keys, so there is nothing to load. {_BULK_BY_PK}"
    )


def _q2_one_value(attempt: Attempt) -> str | None:
    """One .values() for all the listed rows: every row got the same role, where each dict has its own."""
    changes, got, want = attempt.extra.get("changes"), attempt.value, attempt.expected
    if not changes or not isinstance(got, list) or not isinstance(want, list):
        return None
    wanted = {c["id"]: c.get("role") for c in changes}
    mine = {row[0]: row[1] for row in got if isinstance(row, tuple) and len(row) == 2}
    roles = {mine.get(i) for i in wanted}
    if len(set(wanted.values())) < 2 or len(roles) != 1:
        return None
    (role,) = roles
    before = dict(want)
    others = sum(1 for i, r in mine.items() if i not in wanted and before.get(i) != r)
    beyond = f" (and with no WHERE for the listed ids it changed {others} other users too)" if others else ""
    return (
        f"every row got the same role ({role!r}){beyond}: one `.values(role=...)` sets one value for all the "
        "rows the UPDATE matches, but each dict asks for its own. Per-row values need the list of dicts itself, "
        "each with its primary key, run as one ORM bulk UPDATE by primary key: "
        "`await session.execute(update(User), changes)` (one executemany: WHERE id = ? from each dict's id, SET "
        "from its other keys)"
    )


async def _q2_update_per_row(session, changes):
    for change in changes:
        await session.execute(update(User).where(User.id == change["id"]).values(role=change["role"]))


async def _q2_load_and_flush(session, changes):
    wanted = {c["id"]: c["role"] for c in changes}
    users = await session.scalars(select(User).where(User.id.in_(wanted)))
    for user in users:
        user.role = wanted[user.id]
    await session.flush()


async def _q2_ids_checked_first(session, changes):
    ids = [c["id"] for c in changes]
    assert len((await session.scalars(select(User.id).where(User.id.in_(ids)))).all()) == len(ids)
    await session.execute(update(User), changes)


async def _q2_get_each(session, changes):
    for change in changes:
        user = await session.get(User, change["id"])
        user.role = change["role"]
    await session.flush()


async def _q2_load_no_flush(session, changes):
    wanted = {c["id"]: c["role"] for c in changes}
    for user in await session.scalars(select(User).where(User.id.in_(wanted))):
        user.role = wanted[user.id]


async def _q2_one_role_for_all(session, changes):
    ids = [c["id"] for c in changes]
    await session.execute(update(User).where(User.id.in_(ids)).values(role=changes[0]["role"]))


async def _q2_bindparam_where(session, changes):
    """The 1.x recipe: a WHERE with bindparam() and a list of parameter sets, through the ORM session."""
    stmt = update(User).where(User.id == bindparam("user_id")).values(role=bindparam("new_role"))
    await session.execute(stmt, [{"user_id": c["id"], "new_role": c["role"]} for c in changes])


async def _q2_values_list(session, changes):
    await session.execute(update(User).values(changes))  # as insert(Tag).values(rows) did in exercise 1


async def _q2_one_update_per_role(session, changes):
    by_role: dict[str, list[int]] = {}
    for change in changes:
        by_role.setdefault(change["role"], []).append(change["id"])
    for role, ids in by_role.items():
        await session.execute(update(User).where(User.id.in_(ids)).values(role=role))


async def _q2_core_without_where(session, changes):
    """Core, as section 4 inserted: but a Core UPDATE with a list has no WHERE by primary key."""
    conn = await session.connection()
    await conn.execute(update(User.__table__), changes)


async def _q2_alt_case(session, changes):
    """One UPDATE whose SET picks each row's role with CASE on the id."""
    from sqlalchemy import case

    roles = case({c["id"]: c["role"] for c in changes}, value=User.id)
    await session.execute(update(User).where(User.id.in_([c["id"] for c in changes])).values(role=roles))


async def _q2_commits(session, changes):
    await session.execute(update(User), changes)
    await session.commit()


async def _q2_alt_core(session, changes):
    users = User.__table__
    conn = await session.connection()
    stmt = update(users).where(users.c.id == bindparam("user_id")).values(role=bindparam("new_role"))
    await conn.execute(stmt, [{"user_id": c["id"], "new_role": c["role"]} for c in changes])


def _q2_explain(error: BaseException) -> str | None:
    if isinstance(error, InvalidRequestError) and "does not support multiple parameter sets" in str(error):
        return (
            "update(User).values() takes one set of values, for every row the UPDATE matches: a list of dicts "
            "there is INSERT's multi-VALUES form, which UPDATE does not have. Pass the list as execute()'s "
            "second argument instead: `await session.execute(update(User), changes)`, the ORM bulk UPDATE by "
            "primary key (one executemany, WHERE id = ? from each dict)"
        )
    statement = " ".join(str(getattr(error, "statement", "") or "").split()).upper()
    if isinstance(error, IntegrityError) and statement.startswith("UPDATE") and " WHERE " not in statement:
        return (
            "your UPDATE has no WHERE: with a list of dicts, an UPDATE run on a Connection (or an update() of "
            "the users Table, even through the session) is a Core UPDATE: it SETs every key of each dict, id "
            "included, on every row, and the primary key refused the duplicates. Only update() of the mapped "
            "class run by the session turns each dict's primary key into WHERE id = ?: "
            "`await session.execute(update(User), changes)`"
        )
    if isinstance(error, InvalidRequestError) and "additional WHERE criteria" in str(error):
        return (
            "the ORM refused a WHERE with bindparam() plus a list of parameter sets (the 1.x recipe). "
            "update(User) with a list of dicts already updates by primary key: drop the .where() and "
            ".values() and pass the dicts as they are: await session.execute(update(User), changes)"
        )
    return None


q2 = _Explaining(
    id="07.q2",
    title="Update many users by primary key",
    kind=SESSION_FN,
    solution_answer=_q2_solution,
    expected=_q2_expected,
    observe=_q2_observe,
    probe=_q2_probe,
    calls=({"changes": _Q2_CHANGES},),
    rules=[
        _EXPLAINED,
        _sent("UPDATE", "a change to a loaded object"),
        Probe(test=_q2_per_dict, name="one UPDATE call for the whole list"),
        Probe(test=_q2_loaded_objects, name="no objects loaded to update rows by key"),
        Probe(test=_q2_one_value, name="each row gets the role of its own dict"),
        SameResult(ordered=True, what="(id, role) rows"),
        StatementBudget(1),
        _CallersUnlessRaised(),
    ],
    explain=_q2_explain,
    hints=[
        "Each dict already names its row by primary key: no WHERE to write, no objects to load.",
        "update(User) without .where() or .values(), executed with the list as parameters: "
        "await session.execute(update(User), changes)",
    ],
    why=(
        "Each row got its own role in one call, with no objects loaded. The ORM bulk UPDATE by primary key "
        "(update(User) with the list) is one executemany: WHERE id = ? from each dict, SET from its other keys "
        "(keep them the same in every dict); a Core UPDATE with bindparam() is the same executemany, and a CASE "
        "on the id does it in a single UPDATE."
    ),
    counterexamples=[
        Counterexample("one UPDATE per row", _q2_update_per_row, "session.execute(update(User), changes)"),
        Counterexample("load the users, change them, flush", _q2_load_and_flush, "you loaded the users first"),
        Counterexample("load and change, no flush", _q2_load_no_flush, "no UPDATE was sent"),
        Counterexample("get() each user, set the role", _q2_get_each, "you loaded the users one by one"),
        Counterexample("the ids checked with a SELECT first", _q2_ids_checked_first,
                       "the SELECT before your UPDATE is one statement too many"),
        Counterexample("one role for everybody", _q2_one_role_for_all, "every row got the same role"),
        Counterexample("a list passed to .values()", _q2_values_list, "UPDATE does not have"),
        Counterexample("one UPDATE per role", _q2_one_update_per_role, "one per role"),
        Counterexample("Core update(table) with the list", _q2_core_without_where, "your UPDATE has no WHERE"),
        Counterexample("a WHERE with bindparam() (1.x recipe)", _q2_bindparam_where, "already updates by primary key"),
        Counterexample("commits the caller's transaction", _q2_commits, "your function committed the session"),
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
    never = (
        await conn.execute(text("SELECT count(*) FROM users WHERE is_active AND last_login IS NULL"))
    ).scalar_one()
    attempt.extra["never_logged_in_still_active"] = never


def _q3_nulls(attempt: Attempt) -> str | None:
    left, never = attempt.extra.get("still_active", 0), attempt.extra.get("never_logged_in_still_active", 0)
    if left and left == never:
        return (
            f"the {left} dormant users your UPDATE missed all never logged in: their last_login is NULL, and "
            "NULL < cutoff is not true (it is NULL). Include them: or_(User.last_login < cutoff, "
            "User.last_login.is_(None))"
        )
    return None


def _q3_extra(attempt: Attempt) -> str | None:
    got, want = attempt.value, attempt.expected
    if not isinstance(got, list) or not isinstance(want, list):
        return None
    extra = set(got) - set(want)
    if not extra or not set(want) <= set(got) or attempt.extra.get("still_active"):
        return None
    verbs = [q.verb for q in attempt.log.queries]
    if "UPDATE" in verbs and "SELECT" in verbs[verbs.index("UPDATE") + 1 :]:
        return (
            f"{len(extra)} extra ids: users that were inactive before your function ran, found by a SELECT "
            "after the UPDATE. Return what the UPDATE itself changed: .returning(User.id)"
        )
    if not any("IS_ACTIVE" in _where(q.sql) for q in attempt.log.queries if q.verb == "UPDATE"):
        return (
            f"{len(extra)} extra ids: users who were inactive already. Your UPDATE's WHERE does not ask for "
            "active users, so it matched those too, and RETURNING names every row the UPDATE matched. Only "
            "active users count: add `User.is_active` to the WHERE"
        )
    return None


def _where(sql: str) -> str:
    """The WHERE clause of one statement, upper-cased on one line ("" when it has none)."""
    flat = " ".join(sql.split()).upper()
    return flat.partition(" WHERE ")[2].partition(" RETURNING ")[0]


def _q3_both_conditions(attempt: Attempt) -> str | None:
    """`.where(last_login < cutoff, last_login.is_(None))`: two conditions ANDed, which no row meets."""
    for q in attempt.log.queries:
        where = _where(q.sql)
        if q.verb == "UPDATE" and "LAST_LOGIN IS NULL" in where and "LAST_LOGIN <" in where and " OR " not in where:
            return (
                "your WHERE asks for last_login < cutoff AND last_login IS NULL, and no user is both: the "
                "conditions passed to .where() (or joined with &) must all hold. A dormant user meets either "
                "one: or_(User.last_login < cutoff, User.last_login.is_(None))"
            )
    return None


def _q3_per_row(attempt: Attempt) -> str | None:
    updates = attempt.log.count("UPDATE")
    if updates > 1:
        return (
            f"{updates} UPDATE statements: one statement per row. One UPDATE with the WHERE clause changes "
            "them all, and .returning(User.id) names them, so there is nothing to SELECT first. (Every row gets "
            "the same is_active=False here: the list-of-dicts form, update(User) with one dict per id, is for "
            "values that differ per row)"
        )
    return None


def _q3_select_first(attempt: Attempt) -> str | None:
    verbs = [q.verb for q in attempt.log.queries]
    if verbs.count("UPDATE") == 1 and verbs.index("UPDATE") > 0 and "SELECT" in verbs[: verbs.index("UPDATE")]:
        update_ = attempt.log.queries[verbs.index("UPDATE")]
        by_key = (
            " (update(User) with a list of dicts is for values that differ per row; every dormant user gets the "
            "same is_active=False)"
            if update_.executemany
            else ""
        )
        return (
            "you read the dormant ids with a SELECT, then updated them: 2 statements, and a user who logs "
            "in between the two is deactivated anyway (a race). One UPDATE with the WHERE clause, and "
            f".returning(User.id) to learn which rows it changed{by_key}"
        )
    return None


def _q3_sorted(attempt: Attempt) -> str | None:
    got, want = attempt.value, attempt.expected
    if isinstance(got, list) and got != want and sorted(got, key=repr) == sorted(want or [], key=repr):
        return (
            "the right ids in another order: RETURNING sends rows in no promised order, so sort them "
            "before you return them (sorted(result.scalars()))"
        )
    return None


def _q3_deactivated(attempt: Attempt) -> str | None:
    left = attempt.extra.get("still_active", 0)
    if not left or left == attempt.extra.get("never_logged_in_still_active", 0):
        return None  # all of them never logged in: _q3_nulls says why
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


async def _q3_select_ids_then_one_update(session, cutoff):
    dormant = or_(User.last_login < cutoff, User.last_login.is_(None))
    ids = (await session.scalars(select(User.id).where(User.is_active, dormant))).all()
    await session.execute(update(User).where(User.id.in_(ids)).values(is_active=False))
    return sorted(ids)


async def _q3_returning_as_sent(session, cutoff):
    stmt = (
        update(User)
        .where(User.is_active, or_(User.last_login < cutoff, User.last_login.is_(None)))
        .values(is_active=False)
        .returning(User.id)
    )
    return list((await session.execute(stmt)).scalars())  # in id order today, by chance


async def _q3_any_user(session, cutoff):
    stmt = update(User).where(or_(User.last_login < cutoff, User.last_login.is_(None))).values(is_active=False)
    return sorted((await session.execute(stmt.returning(User.id))).scalars())  # inactive users come back too


async def _q3_both_conditions_anded(session, cutoff):
    stmt = update(User).where(User.is_active, User.last_login < cutoff, User.last_login.is_(None))
    return sorted((await session.execute(stmt.values(is_active=False).returning(User.id))).scalars())


async def _q3_select_then_bulk_by_key(session, cutoff):
    dormant = or_(User.last_login < cutoff, User.last_login.is_(None))
    ids = (await session.scalars(select(User.id).where(User.is_active, dormant))).all()
    await session.execute(update(User), [{"id": i, "is_active": False} for i in ids])
    return sorted(ids)


async def _q3_update_then_select(session, cutoff):
    dormant = or_(User.last_login < cutoff, User.last_login.is_(None))
    await session.execute(update(User).where(User.is_active, dormant).values(is_active=False))
    return sorted(await session.scalars(select(User.id).where(User.is_active.is_(False), dormant)))


async def _q3_select_only(session, cutoff):
    dormant = or_(User.last_login < cutoff, User.last_login.is_(None))
    return sorted(await session.scalars(select(User.id).where(User.is_active, dormant)))


async def _q3_alt_or_operator(session, cutoff):
    dormant = (User.last_login < cutoff) | User.last_login.is_(None)
    stmt = update(User).where(User.is_active.is_(True), dormant).values(is_active=False).returning(User.id)
    return sorted((await session.scalars(stmt)).all())


async def _q3_alt_coalesce(session, cutoff):
    from sqlalchemy import func

    never = datetime(1900, 1, 1)
    stmt = (
        update(User)
        .where(User.is_active, func.coalesce(User.last_login, never) < cutoff)
        .values(is_active=False)
        .returning(User.id)
    )
    return sorted((await session.execute(stmt)).scalars())


async def _q3_unsorted(session, cutoff):
    result = await session.execute(
        update(User)
        .where(User.is_active, or_(User.last_login < cutoff, User.last_login.is_(None)))
        .values(is_active=False)
        .returning(User.id)
    )
    return list(result.scalars())[::-1]  # RETURNING promises no order; here reversed to show it


def _q3_sorts(attempt: Attempt) -> str | None:
    source = attempt.extra.get("source")
    if not source or "returning" not in source.lower() or any(w in source for w in ("sorted(", ".sort(")):
        return None
    return (
        "the ids come back as RETURNING sent them: in id order here, by chance. RETURNING promises no order; "
        "sort them before you return them: sorted(result.scalars())"
    )


q3 = KeepsSource(
    id="07.q3",
    title="Deactivate dormant users, one UPDATE ... RETURNING",
    kind=SESSION_FN,
    solution_answer=_q3_solution,
    expected=_q3_expected,
    probe=_guarded(_q3_probe),
    calls=({"cutoff": _CUTOFF},),
    rules=[
        Probe(test=_q3_both_conditions, name="either condition makes a user dormant"),
        Probe(test=_q3_nulls, name="users who never logged in count as dormant"),
        Probe(test=_q3_extra, name="only the users this UPDATE changed"),
        Probe(test=_q3_per_row, name="one UPDATE for all rows"),
        Probe(test=_q3_select_first, name="no SELECT before the UPDATE"),
        Probe(test=_q3_sorted, name="ids in ascending order"),
        Probe(test=_q3_sorts, name="the ids sorted by your function"),
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
        Counterexample("last_login < cutoff only (NULLs lost)", _q3_only_before_cutoff, "NULL < cutoff is not true"),
        Counterexample("select the ids, then update each", _q3_select_then_update, "one statement per row"),
        Counterexample("update, then select what looks deactivated", _q3_update_then_select, "inactive before your function ran"),
        Counterexample("select only, no update", _q3_select_only, "still active"),
        Counterexample("ids as RETURNING sent them, unsorted", _q3_unsorted, "no promised order"),
        Counterexample("SELECT the ids, then one UPDATE", _q3_select_ids_then_one_update, "a race"),
        Counterexample("RETURNING's order, unsorted", _q3_returning_as_sent, "by chance"),
        Counterexample("forgets is_active: inactive users come back", _q3_any_user, "does not ask for active users"),
        Counterexample("both conditions in .where(): AND, not OR", _q3_both_conditions_anded, "no user is both"),
        Counterexample("SELECT the ids, then update by primary key", _q3_select_then_bulk_by_key, "values that differ per row"),
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
        return _NotIds(ids)
    found = dict((await session.execute(select(Tag.id, Tag.name).where(Tag.id.in_(ids)))).all())
    return sorted(found.get(i, f"(no tag with id {i})") for i in ids)


async def _q4_probe(conn, attempt, names):
    present = set((await conn.execute(text("SELECT name FROM tags"))).scalars())
    attempt.extra["absent"] = sorted(set(names) - present)
    attempt.extra["names"] = list(names)


@dataclass
class _NotIds:
    """What the answer returned instead of a list of tag ids (names, rows of several columns...)."""

    items: list

    def __repr__(self) -> str:
        return f"not tag ids: {self.items[:3]!r}"


def _q4_ids(attempt: Attempt) -> str | None:
    got = attempt.value
    if not isinstance(got, _NotIds):
        return None
    names = set(attempt.extra.get("names") or ())
    if got.items and all(isinstance(i, str) and i in names for i in got.items):
        return (
            f"you returned tag names ({', '.join(got.items[:3])}{' ...' if len(got.items) > 3 else ''}), and the "
            "task asks for the ids of the tags you added: `.returning(Tag.id)`, then the ids sorted"
        )
    return (
        f"return a list of tag ids (whole numbers), not {got.items[:3]!r}: `.returning(Tag.id)` and "
        "`.scalars()` give one id per added tag"
    )


@dataclass
class _SameTags(SameResult):
    """SameResult, silent about a result that is not ids (``_q4_ids`` names that)."""

    def judge(self, attempt: Attempt) -> RuleResult:
        if isinstance(attempt.value, _NotIds):
            return RuleResult(self.name, False, "not compared: your function did not return tag ids (see above)")
        return super().judge(attempt)


_DIALECT_WORDS = ("dialect", "get_bind", "bind", "backend", "is_postgresql", "is_sqlite")


def _dialects_named(function) -> tuple[set[str], bool]:
    """Which dialects' constructs the answer's code names (``sqlite.insert``, ``pg_insert``, an import of
    ``sqlalchemy.dialects.sqlite``), and whether it tells the databases apart (a dialect's name,
    ``db.is_postgresql``, the lesson's ``dialect_insert``)."""
    found = names_used(function)
    known = getattr(function, "__globals__", {})
    named: set[str] = set()
    tells = False
    for name in found:
        low = name.lower()
        if any(word in low for word in _DIALECT_WORDS):
            tells = True
        value = known.get(name)
        origin = value.__name__ if isinstance(value, ModuleType) else getattr(value, "__module__", None) or ""
        # imported under its own name (`from sqlalchemy.dialects.sqlite import insert`): that dialect's
        origin = origin if getattr(value, "__name__", None) == name or isinstance(value, ModuleType) else ""
        if "sqlite" in low or origin.startswith("sqlalchemy.dialects.sqlite"):
            named.add("sqlite")
        if "postgres" in low or low == "pg" or low.startswith("pg_") or origin.startswith("sqlalchemy.dialects.postgresql"):
            named.add("postgresql")
    return named, tells


_PICK = (
    "Build the insert for the dialect in use, as the lesson does: `dialect_insert = postgresql.insert if "
    "session.get_bind().dialect.name == \"postgresql\" else sqlite.insert`"
)


def _q4_one_dialect(attempt: Attempt) -> str | None:
    """sqlite.insert whatever the database: right on SQLite, so only the code can show it (on PostgreSQL
    the SQLite construct fails, and ``_q4_explain`` names that). The other way round is not judged:
    SQLite happens to compile PostgreSQL's ON CONFLICT DO NOTHING."""
    named, tells = attempt.extra.get("dialects", (set(), True))
    if tells or named != {"sqlite"}:
        return None
    return (
        "your insert is always `sqlite.insert`: it works only on SQLite, and this function must run on both "
        f"(on PostgreSQL the SQLite construct fails). {_PICK}"
    )


_SQLITE_ONLY_INSERT = re.compile(r"\bINSERT\s+OR\s+(IGNORE|REPLACE)\b", re.IGNORECASE)
_OR_IGNORE = (
    "INSERT OR {0} is SQLite's own syntax: PostgreSQL refuses it (a syntax error at \"OR\"), and this "
    "function must run on both. Skip the existing names with ON CONFLICT DO NOTHING instead, which both "
    "databases have: the dialect's insert() with `.on_conflict_do_nothing(index_elements=[Tag.name])`. "
)


def _q4_sqlite_only_syntax(attempt: Attempt) -> str | None:
    """``prefix_with("OR IGNORE")``: right on SQLite, a syntax error on PostgreSQL (judged from the SQL)."""
    _named, tells = attempt.extra.get("dialects", (set(), True))
    if tells:  # sent only when the answer found itself on SQLite: its other branch is judged on PostgreSQL
        return None
    found = next((m for q in attempt.log.queries if (m := _SQLITE_ONLY_INSERT.search(q.sql))), None)
    return (_OR_IGNORE.format(found.group(1).upper()) + _PICK) if found else None


def _q4_check_first(attempt: Attempt) -> str | None:
    """A SELECT of the existing names, then the INSERT: check-then-insert, which races."""
    verbs = [q.verb for q in attempt.log.queries]
    if "INSERT" not in verbs or "SELECT" not in verbs[: verbs.index("INSERT")]:
        return None
    return (
        f"you looked the existing names up with a SELECT, then inserted the others: {len(verbs)} statements, and a "
        "race: another session can add one of those names between your check and your INSERT, which then fails on "
        "tags.name UNIQUE (check-then-insert). Let the INSERT skip the existing names itself, in one statement: the "
        "dialect's insert() with `.on_conflict_do_nothing(index_elements=[Tag.name])` and `.returning(Tag.id)`"
    )


def _q4_savepoints(attempt: Attempt) -> str | None:
    savepoints = attempt.log.count("SAVEPOINT") - 1  # the first is the checker's own (the caller's)
    if savepoints > 1:
        return (
            f"{savepoints} savepoints, an INSERT in each: it works, but it is one statement per row. "
            "INSERT ... ON CONFLICT DO NOTHING skips the existing names in one statement"
        )
    return None


def _q4_existing_returned(attempt: Attempt) -> str | None:
    got, want = attempt.value, attempt.expected
    if not isinstance(got, list) or not isinstance(want, list):
        return None
    extra = set(got) - set(want)
    if extra and extra <= set(attempt.extra.get("names", ())):
        return (
            f"you returned tags that existed before too ({', '.join(sorted(extra)[:3])}): ON CONFLICT DO UPDATE "
            "returns the rows it updated as well as the ones it inserted. on_conflict_do_nothing() with "
            ".returning(Tag.id) returns only the rows it added"
        )
    return None


def _q4_all_present(attempt: Attempt) -> str | None:
    absent = attempt.extra.get("absent")
    if not absent:
        return None
    return f"after your function these names are not in tags: {', '.join(absent[:3])}"


def _q4_dialect_insert(session):
    return postgresql.insert if session.get_bind().dialect.name == "postgresql" else sqlite.insert


async def _q4_or_ignore(session, names):
    stmt = insert(Tag).prefix_with("OR IGNORE").values([{"name": name} for name in names]).returning(Tag.id)
    return sorted((await session.execute(stmt)).scalars())


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


async def _q4_check_then_insert_empty(session, names):
    existing = set(await session.scalars(select(Tag.name).where(Tag.name.in_(names))))
    missing = [{"name": n} for n in names if n not in existing]
    return sorted((await session.execute(insert(Tag).returning(Tag.id), missing)).scalars())


async def _q4_sqlite_insert(session, names):
    """Runs on SQLite only: on PostgreSQL the SQLite construct fails to compile; named from the code on both."""
    wrong = sqlite.insert
    stmt = wrong(Tag).values([{"name": n} for n in names]).on_conflict_do_nothing(index_elements=[Tag.name])
    return sorted((await session.execute(stmt.returning(Tag.id))).scalars())


async def _q4_conflict_on_id(session, names):
    stmt = _q4_dialect_insert(session)(Tag).values([{"name": n} for n in names])
    stmt = stmt.on_conflict_do_nothing(index_elements=[Tag.id])  # the primary key never clashes here
    return sorted((await session.execute(stmt.returning(Tag.id))).scalars())


async def _q4_returns_names(session, names):
    stmt = _q4_dialect_insert(session)(Tag).values([{"name": n} for n in names]).on_conflict_do_nothing()
    return (await session.execute(stmt.returning(Tag.name))).scalars().all()


async def _q4_alt_no_target(session, names):
    """No conflict target: DO NOTHING then skips a conflict on any unique column (both backends)."""
    dialect = postgresql if session.bind.dialect.name == "postgresql" else sqlite
    stmt = dialect.insert(Tag).values([{"name": n} for n in names]).on_conflict_do_nothing().returning(Tag.id)
    return sorted((await session.scalars(stmt)).all())


async def _q4_alt_executemany(session, names):
    stmt = _q4_dialect_insert(session)(Tag).on_conflict_do_nothing(index_elements=["name"]).returning(Tag.id)
    return sorted((await session.scalars(stmt, [{"name": n} for n in names])).all())


def _q4_explain(error: BaseException) -> str | None:
    if isinstance(error, AttributeError) and any(
        word in str(error) for word in ("OnConflictDoNothing", "OnConflictDoUpdate", "constraint_target")
    ):
        return (
            "the insert() of one dialect ran on the other database: sqlalchemy.dialects.sqlite.insert builds "
            f"ON CONFLICT for SQLite only, postgresql.insert for PostgreSQL only. {_PICK}"
        )
    if isinstance(error, IntegrityError) and constraint_kind(error) == "not_null":
        return (
            "your INSERT ran with an empty list of parameters (every name existed already): an empty list "
            "means no parameters, so the INSERT tried one row of NULLs and NOT NULL refused it. Checking "
            "first also races with another session; let the database skip the existing names: "
            ".on_conflict_do_nothing(index_elements=[Tag.name])"
        )
    statement = " ".join(str(getattr(error, "statement", "") or "").split())
    or_ignore = _SQLITE_ONLY_INSERT.search(statement)
    if or_ignore:
        return _OR_IGNORE.format(or_ignore.group(1).upper()) + _PICK
    target = re.search(r"ON CONFLICT\s*\(([^)]*)\)", statement, re.IGNORECASE)
    if isinstance(error, IntegrityError) and target and target.group(1).strip().lower() != "name":
        return (
            f"your ON CONFLICT names ({target.group(1).strip()}), but the clash is on tags.name (UNIQUE): a conflict "
            "on any other column is not caught, so the existing names still raised IntegrityError. Name the column "
            "that clashes, `.on_conflict_do_nothing(index_elements=[Tag.name])`, or give no target at all (DO NOTHING "
            "then skips a conflict on any unique column)"
        )
    if isinstance(error, IntegrityError):
        return (
            "a plain INSERT stops at the first name that exists (IntegrityError: tags.name is UNIQUE). Let "
            "the database skip those rows: the dialect's insert() with .on_conflict_do_nothing(index_elements="
            "[Tag.name]), and .returning(Tag.id) for the ones it added"
        )
    return None


q4 = _ReadsCode(
    id="07.q4",
    title="Upsert tags: add the new names, skip the rest",
    kind=SESSION_FN,
    solution_answer=_q4_solution,
    expected=_q4_expected,
    observe=_q4_observe,
    probe=_guarded(_q4_probe),
    calls=({"names": _Q4_NAMES}, {"names": ["python", "sql"]}),
    rules=[
        _EXPLAINED,
        Probe(test=_q4_one_dialect, name="the insert of the dialect in use"),
        Probe(test=_q4_sqlite_only_syntax, name="no SQLite-only INSERT OR IGNORE"),
        Probe(test=_q4_ids, name="tag ids returned"),
        Probe(test=_q4_existing_returned, name="only the tags added"),
        Probe(test=_q4_check_first, name="no check before the INSERT"),
        Probe(test=_q4_savepoints, name="no savepoint per row"),
        _SameTags(what="new tag names (read from the ids you returned)"),
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
        Counterexample("plain insert", _q4_plain_insert, "a plain INSERT stops at the first name that exists"),
        # right on SQLite, a syntax error on PostgreSQL: named on both
        Counterexample("INSERT OR IGNORE", _q4_or_ignore, "INSERT OR IGNORE is SQLite's own syntax"),
        Counterexample("check each name, then insert", _q4_check_then_insert, "check-then-insert"),
        Counterexample("DO UPDATE returns the existing rows too", _q4_do_update, "returns the rows it updated"),
        Counterexample("select the missing names, then insert", _q4_select_missing_then_insert, "a race"),
        Counterexample("sqlite.insert whatever the database", _q4_sqlite_insert, "build the insert for the dialect in use"),
        Counterexample("ON CONFLICT on the id", _q4_conflict_on_id, "your ON CONFLICT names (id)"),
        Counterexample("returns the names, not the ids", _q4_returns_names, "you returned tag names"),
        Counterexample("a savepoint per name", _q4_savepoint_per_name, "an INSERT in each"),
        Counterexample("check first, insert an empty list", _q4_check_then_insert_empty, "an empty list of parameters"),
    ],
    explain=_q4_explain,
)



# ---------------------------------------------------------------------------- q5

_Q5_IDS = [25, 4, 36, 9, 16]  # not in id order: the objects must come back sorted all the same


async def _q5_solution(session, user_ids):
    users = (await session.scalars(select(User).where(User.id.in_(user_ids)).order_by(User.id))).all()
    await session.execute(update(User).where(User.id.in_(user_ids)).values(role="editor"))
    return users  # synchronize_session="auto" updated the loaded objects too


async def _q5_expected(conn, user_ids):
    return [(i, "editor") for i in sorted(user_ids)]


async def _q5_observe(session, returned, user_ids):
    """What a caller reads from the objects it got back (in memory, no refresh)."""
    items = returned if isinstance(returned, list | tuple) else [returned]
    if not all(isinstance(u, User) for u in items):
        return f"not a list of User objects: {type(items[0]).__name__ if items else 'empty'}"
    # an expired role would be loaded on this read: a lazy load the caller cannot do in async code
    expired = sum(1 for u in items if "role" in sa_inspect(u).unloaded)
    if expired:
        return _Expired(expired, len(items))
    return [(u.id, u.role) for u in items]


@dataclass
class _Expired:
    """What the caller would find: objects whose role was expired, not loaded."""

    count: int
    of: int

    def __repr__(self) -> str:
        return f"{self.count} of {self.of} objects expired"


async def _q5_probe(conn, attempt, user_ids):
    attempt.extra["user_ids"] = list(user_ids)
    rows = (await conn.execute(select(User.id, User.role).where(User.id.in_(user_ids)))).all()
    attempt.extra["stored"] = dict(rows)
    attempt.extra["non_editors"] = (
        await conn.execute(text("SELECT count(*) FROM users WHERE role <> 'editor'"))
    ).scalar_one()


_Q5_SYNC = (
    "Let the ORM UPDATE fix them as it runs: leave synchronize_session at its default, 'auto' (it sets the new "
    "role on the loaded objects its WHERE matches: found by evaluating the WHERE in Python, or by fetching the "
    "matched primary keys when it cannot)"
)


def _q5_stale(attempt: Attempt) -> str | None:
    got, stored = attempt.value, attempt.extra.get("stored", {})
    if not isinstance(got, list) or not stored:
        return None
    stale = [(i, role) for i, role in got if stored.get(i) == "editor" and role != "editor"]
    if stale:
        i, role = stale[0]
        return (
            f"the database says editor, but the User objects you returned still say {role!r} (user {i} and "
            f"{len(stale) - 1} more): stale objects. Your UPDATE did not touch the objects already in the session "
            "(synchronize_session=False, or an UPDATE sent through Core or text()), and selecting them again hands "
            "back those same objects unchanged (unless with execution_options(populate_existing=True): a third "
            f"statement). {_Q5_SYNC}; or load nothing first and take the objects from the UPDATE: "
            ".returning(User). Not expire_all(): the caller's next read of user.role would then be a lazy load "
            "(MissingGreenlet in async code)"
        )
    return None


def _q5_expired(attempt: Attempt) -> str | None:
    if not isinstance(attempt.value, _Expired):
        return None
    return (
        "you expired the objects (session.expire() or expire_all()), so that they forget the stale role: "
        f"{attempt.value.count} of the {attempt.value.of} objects you returned have no role loaded, and the caller's "
        "next read of user.role must load it from the database: a lazy load, which attribute access cannot do "
        f"in async code (MissingGreenlet), and one SELECT per user. Do not expire them. {_Q5_SYNC}"
    )


def _q5_one_by_one(attempt: Attempt) -> str | None:
    """More than one SELECT and one UPDATE: a read per user (get(), refresh()), a read of them all
    again, or an UPDATE per user."""
    queries = attempt.log.queries
    if len(queries) <= 2:
        return None
    selects = [q for q in queries if q.verb == "SELECT"]
    updates = [q for q in queries if q.verb == "UPDATE"]
    if len(selects) >= 3:
        return (
            f"{len(queries)} statements ({len(selects)} SELECTs): the users were read one at a time "
            "(get() or refresh() per id), an N+1. Load them with one SELECT before the UPDATE and keep "
            "synchronize_session at its default ('auto'), or get them from the UPDATE itself: .returning(User)"
        )
    if len(updates) > 1:
        return (
            f"{len(updates)} UPDATE statements, one per user: one UPDATE with WHERE id IN (...) changes them "
            "all: update(User).where(User.id.in_(user_ids)).values(role='editor')"
        )
    return (
        f"{len(queries)} statements: you read the users again after the UPDATE, a third statement (a plain "
        "SELECT does not even refresh objects already in the session; populate_existing would, at the cost of "
        "that statement). Two are enough: an ORM UPDATE sets the "
        "new role on the objects it matches in the session as it runs, with synchronize_session at its default, "
        "'auto' (False turns that off). Or run the UPDATE first and load the users after it"
    )


def _q5_input_order(attempt: Attempt) -> str | None:
    """The objects in the order of user_ids (a dict looked up id by id), not by id."""
    got, asked = attempt.value, attempt.extra.get("user_ids") or []
    if not isinstance(got, list) or asked == sorted(asked) or [i for i, _ in got] != asked:
        return None
    shown = ", ".join(map(str, asked[:4])) + (" ..." if len(asked) > 4 else "")
    return (
        f"your objects come back in the order of user_ids ({shown}), and the task asks for ascending id: "
        "`.order_by(User.id)` on the SELECT that loads them (or `sorted(users, key=lambda u: u.id)`)"
    )


def _q5_order_said(attempt: Attempt) -> str | None:
    """The right order, but nothing in the answer asked for it: RETURNING (or a SELECT without ORDER BY)
    sent the rows in id order by chance."""
    names = attempt.extra.get("code_names")
    if not names or attempt.value != attempt.expected:
        return None  # no code to read (judged by the result alone), or another rule explains the result
    ordered_in_sql = any(
        has_top_level_order_by(q.sql) for q in attempt.log.queries if q.verb in ("SELECT", "WITH")
    )
    if ordered_in_sql or names & {"sorted", "sort", "order_by"}:
        return None
    returning = any(q.verb == "UPDATE" and " RETURNING " in f" {q.sql.upper()} " for q in attempt.log.queries)
    source = "RETURNING sends the rows" if returning else "a SELECT without ORDER BY sends the rows"
    return (
        f"the objects are in id order by chance: {source} in no promised order. Sort "
        "them before you return them: `sorted(users, key=lambda u: u.id)`"
        + ("" if returning else ", or `.order_by(User.id)` on the SELECT")
    )


def _q5_objects(attempt: Attempt) -> str | None:
    if isinstance(attempt.value, str) and attempt.value.startswith("not a list of User"):
        return f"return the User objects themselves, not {attempt.value.rsplit(': ', 1)[-1]} values"
    return None


def _q5_only_listed(attempt: Attempt) -> str | None:
    if attempt.extra.get("non_editors") == 0:
        return "every user is an editor now: the UPDATE needs WHERE id IN (...) for the listed users only"
    return None


async def _q5_no_sync(session, user_ids):
    users = (await session.scalars(select(User).where(User.id.in_(user_ids)).order_by(User.id))).all()
    await session.execute(
        update(User).where(User.id.in_(user_ids)).values(role="editor"),
        execution_options={"synchronize_session": False},  # "faster": but the objects are not told
    )
    return users


async def _q5_no_sync_reselect(session, user_ids):
    loaded = (await session.scalars(select(User).where(User.id.in_(user_ids)))).all()  # noqa: F841 (kept)
    await session.execute(
        update(User).where(User.id.in_(user_ids)).values(role="editor"),
        execution_options={"synchronize_session": False},
    )
    # a new SELECT returns the objects already in the identity map, unchanged
    return (await session.scalars(select(User).where(User.id.in_(user_ids)).order_by(User.id))).all()


async def _q5_ids(session, user_ids):
    await session.execute(update(User).where(User.id.in_(user_ids)).values(role="editor"))
    return sorted(user_ids)


async def _q5_everyone(session, user_ids):
    users = (await session.scalars(select(User).where(User.id.in_(user_ids)).order_by(User.id))).all()
    await session.execute(update(User).values(role="editor"))
    return users


async def _q5_commits(session, user_ids):
    users = (await session.scalars(select(User).where(User.id.in_(user_ids)).order_by(User.id))).all()
    await session.execute(update(User).where(User.id.in_(user_ids)).values(role="editor"))
    await session.commit()
    return users


async def _q5_expire_all(session, user_ids):
    users = (await session.scalars(select(User).where(User.id.in_(user_ids)).order_by(User.id))).all()
    await session.execute(
        update(User).where(User.id.in_(user_ids)).values(role="editor"),
        execution_options={"synchronize_session": False},
    )
    session.expire_all()  # "forget the stale values": the caller's next read is a lazy load
    return users


async def _q5_populate_existing(session, user_ids):
    by_id = select(User).where(User.id.in_(user_ids)).order_by(User.id)
    await session.scalars(by_id)
    await session.execute(
        update(User).where(User.id.in_(user_ids)).values(role="editor"),
        execution_options={"synchronize_session": False},
    )
    return (await session.scalars(by_id.execution_options(populate_existing=True))).all()  # a 3rd statement


async def _q5_update_per_user(session, user_ids):
    users = (await session.scalars(select(User).where(User.id.in_(user_ids)).order_by(User.id))).all()
    for user_id in user_ids:
        await session.execute(update(User).where(User.id == user_id).values(role="editor"))
    return users


async def _q5_core_update(session, user_ids):
    users = (await session.scalars(select(User).where(User.id.in_(user_ids)).order_by(User.id))).all()
    conn = await session.connection()
    users_table = User.__table__
    await conn.execute(update(users_table).where(users_table.c.id.in_(user_ids)).values(role="editor"))
    return users


async def _q5_alt_fetch(session, user_ids):
    users = (await session.scalars(select(User).where(User.id.in_(user_ids)).order_by(User.id))).all()
    await session.execute(
        update(User).where(User.id.in_(user_ids)).values(role="editor"),
        execution_options={"synchronize_session": "fetch"},  # RETURNING names the rows to update in memory
    )
    return users


async def _q5_alt_update_first(session, user_ids):
    await session.execute(update(User).where(User.id.in_(user_ids)).values(role="editor"))
    return (await session.scalars(select(User).where(User.id.in_(user_ids)).order_by(User.id))).all()


async def _q5_alt_returning(session, user_ids):
    stmt = update(User).where(User.id.in_(user_ids)).values(role="editor").returning(User)
    return sorted((await session.scalars(stmt)).all(), key=lambda u: u.id)


async def _q5_returning_unsorted(session, user_ids):
    stmt = update(User).where(User.id.in_(user_ids)).values(role="editor").returning(User)
    return (await session.scalars(stmt)).all()  # in id order today, by chance


async def _q5_input_order_answer(session, user_ids):
    users = {u.id: u for u in await session.scalars(select(User).where(User.id.in_(user_ids)))}
    await session.execute(update(User).where(User.id.in_(user_ids)).values(role="editor"))
    return [users[i] for i in user_ids]  # the caller's order, not the ids'


async def _q5_select_unordered(session, user_ids):
    users = (await session.scalars(select(User).where(User.id.in_(user_ids)))).all()  # no ORDER BY
    await session.execute(update(User).where(User.id.in_(user_ids)).values(role="editor"))
    return users


async def _q5_alt_unit_of_work(session, user_ids):
    """Set the role on each loaded object and flush: the unit of work sends one executemany UPDATE."""
    users = (await session.scalars(select(User).where(User.id.in_(user_ids)).order_by(User.id))).all()
    for user in users:
        user.role = "editor"
    await session.flush()
    return users


async def _q5_alt_dict_sorted(session, user_ids):
    users = {u.id: u for u in await session.scalars(select(User).where(User.id.in_(user_ids)))}
    await session.execute(update(User).where(User.id.in_(user_ids)).values(role="editor"))
    return [users[i] for i in sorted(user_ids)]


async def _q5_refresh_each(session, user_ids):
    users = (await session.scalars(select(User).where(User.id.in_(user_ids)).order_by(User.id))).all()
    await session.execute(
        update(User).where(User.id.in_(user_ids)).values(role="editor"), execution_options={"synchronize_session": False}
    )
    for user in users:
        await session.refresh(user)
    return users


async def _q5_get_each(session, user_ids):
    await session.execute(update(User).where(User.id.in_(user_ids)).values(role="editor"))
    return [await session.get(User, i) for i in sorted(user_ids)]


q5 = _ReadsCode(
    id="07.q5",
    title="Promote users and hand back their objects",
    kind=SESSION_FN,
    solution_answer=_q5_solution,
    expected=_q5_expected,
    observe=_q5_observe,
    probe=_guarded(_q5_probe),
    calls=({"user_ids": _Q5_IDS},),
    rules=[
        Probe(test=_q5_objects, name="User objects returned"),
        Probe(test=_q5_only_listed, name="only the listed users change"),
        Probe(test=_q5_expired, name="the objects hold their role (not expired)"),
        Probe(test=_q5_stale, name="the objects show what the database holds"),
        Probe(test=_q5_one_by_one, name="at most two statements (one SELECT, one UPDATE)"),
        Probe(test=_q5_input_order, name="the objects in id order, not in the order of user_ids"),
        SameResult(ordered=True, what="(id, role) of the objects you returned"),
        Probe(test=_q5_order_said, name="the id order asked for (ORDER BY or a sort), not left to chance"),
        LeavesTransactionToCaller(),
    ],
    hints=[
        "Load the users, then change them all with one update(User).where(User.id.in_(user_ids)). What happens "
        "to the objects you loaded depends on the execution option synchronize_session.",
        "Leave synchronize_session at its default ('auto'): SQLAlchemy then sets the new role on the loaded "
        "objects too. Or skip the SELECT and let the UPDATE hand back the objects: .returning(User).",
    ],
    why=(
        "The objects you hand back say what the database holds, in at most two statements. An ORM UPDATE sets the new "
        "value on the loaded objects it matches (synchronize_session, 'auto' by default); objects loaded after the "
        "UPDATE, taken from UPDATE ... RETURNING or flushed by the unit of work are current too. An UPDATE with "
        "synchronize_session=False, or through Core, leaves the loaded objects stale."
    ),
    counterexamples=[
        Counterexample("synchronize_session=False", _q5_no_sync, "stale objects"),
        Counterexample("synchronize_session=False, then SELECT again", _q5_no_sync_reselect, "stale objects"),
        Counterexample("returns ids", _q5_ids, "return the User objects themselves"),
        Counterexample("updates everyone", _q5_everyone, "WHERE id IN"),
        Counterexample("commits the caller's transaction", _q5_commits, "your function committed the session"),
        Counterexample("synchronize_session=False, then refresh each", _q5_refresh_each, "an N+1"),
        Counterexample("UPDATE, then get() per id", _q5_get_each, "read one at a time"),
        Counterexample("synchronize_session=False, then expire_all()", _q5_expire_all, "you expired the objects"),
        Counterexample("synchronize_session=False, then populate_existing", _q5_populate_existing, "read the users again"),
        Counterexample("one UPDATE per user", _q5_update_per_user, "one per user"),
        Counterexample("UPDATE through the session's connection (Core)", _q5_core_update, "sent through Core"),
        Counterexample("UPDATE ... RETURNING User, unsorted", _q5_returning_unsorted, "RETURNING sends the rows in no promised order"),
        Counterexample("objects looked up in the order of user_ids", _q5_input_order_answer, "in the order of user_ids"),
        Counterexample("SELECT without ORDER BY", _q5_select_unordered, "in id order by chance"),
    ],
)


# correct answers of another form: tests/test_exercises.py proves each is accepted
ALTERNATIVES = {
    "07.q1": [
        ("one INSERT with a VALUES list (.values(rows))", _q1_alt_multi_values),
        ("Core executemany on the session's connection", _q1_alt_core),
    ],
    "07.q2": [
        ("Core UPDATE with bindparam() on the session's connection", _q2_alt_core),
        ("one UPDATE with CASE on the id", _q2_alt_case),
    ],
    "07.q3": [
        ("| instead of or_(), is_(True)", _q3_alt_or_operator),
        ("coalesce(last_login, a date long ago) < cutoff", _q3_alt_coalesce),
    ],
    "07.q4": [
        ("ON CONFLICT DO NOTHING as an executemany with RETURNING", _q4_alt_executemany),
        ("ON CONFLICT DO NOTHING without a target, the module picked by session.bind", _q4_alt_no_target),
    ],
    "07.q5": [
        ("UPDATE ... RETURNING User (fresh objects)", _q5_alt_returning),
        ("synchronize_session='fetch'", _q5_alt_fetch),
        ("UPDATE first, then load the users", _q5_alt_update_first),
        ("set the role on each object, flush (one executemany UPDATE)", _q5_alt_unit_of_work),
        ("a dict by id, read in sorted(user_ids) order", _q5_alt_dict_sorted),
    ],
}
