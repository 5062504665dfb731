"""Lessons 07-09: verdicts that name the mistake and point the right way (issue 17)."""

from __future__ import annotations

import asyncio

import pytest
import pytest_asyncio

from course.exercises import INCORRECT, all_exercises, lesson07, lesson08, lesson09, lesson_modules
from course.exercises.verdict import plain
from tests.conftest import private_db


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def db():
    async with private_db("feedback0709") as handle:
        yield handle


async def test_row_by_row_insert_is_told_the_bulk_path_not_add_all(db):
    verdict = await lesson07.q1.evaluate(lesson07._q1_insert_per_row, db=db)
    text = str(verdict)
    assert verdict.status == INCORRECT
    assert verdict.message.startswith("200 INSERT statements for 200 rows"), text  # the headline is the diagnosis
    assert "session.execute(insert(Tag), rows)" in text
    assert "Not add_all()" in text and "use add_all" not in text.lower()
    assert "add() and add_all() always do that" not in text  # no RETURNING advice aimed at add()


async def test_lost_commit_is_not_retried_and_the_order_exists_once(db):
    verdict = await lesson09.q5.evaluate(lesson09._q5_solution, db=db)
    assert verdict.status == "correct", str(verdict)
    retried = await lesson09.q5.evaluate(lesson09._q5_commit_in_retry, db=db)
    assert retried.status == INCORRECT
    assert "charged 2 times" in str(retried)  # the first COMMIT really landed: the retry charged again


EXERCISES = all_exercises()


@pytest.mark.parametrize("exercise_id", [e for e in sorted(EXERCISES) if e[:2] in ("07", "08", "09")])
def test_lessons_07_to_09_catalogue_four_mistakes_and_accept_another_form(exercise_id):
    """Issue 17: at least four named mistakes per exercise, and a correct answer of another form."""
    exercise = EXERCISES[exercise_id]
    assert len(exercise.counterexamples) >= 4
    assert len({c.says.lower() for c in exercise.counterexamples}) >= 4  # four different messages
    if exercise_id == "08.q4" and not hasattr(asyncio, "TaskGroup"):
        pytest.skip("its alternative uses asyncio.TaskGroup (Python 3.11+)")
    assert getattr(lesson_modules()[exercise_id[:2]], "ALTERNATIVES", {}).get(exercise_id)


async def test_the_sqlite_insert_whatever_the_database_is_named_on_both_backends(db):
    """07.q4: sqlite.insert(...).on_conflict_do_nothing() runs on SQLite only; on PostgreSQL it fails to
    compile (an AttributeError about constraint_target), which the verdict names as the wrong dialect. On
    SQLite its result is right, so the code says it: no dialect test, only the SQLite construct."""
    verdict = await all_exercises()["07.q4"].evaluate(lesson07._q4_sqlite_insert, db=db)
    assert verdict.status in (INCORRECT, "error"), str(verdict)
    if db.is_postgresql:
        assert "the insert() of one dialect ran on the other database" in verdict.message, str(verdict)
    else:
        assert verdict.message.startswith(
            "called with names=['python', 'bulk-new-1', 'sql', 'orm', 'bulk-new-2', 'upsert', 'async', 'bulk-new-3']: "
            "your insert is always `sqlite.insert`: it works only on SQLite"
        ), str(verdict)
    assert "dialect_insert = postgresql.insert if session.get_bind().dialect.name" in verdict.message, str(verdict)


async def test_the_lessons_dialect_insert_picked_by_the_notebook_is_accepted(db):
    """07.q4: the lesson's own notebook-level `dialect_insert` (chosen by db.is_postgresql) is not 'always SQLite'."""
    from sqlalchemy.dialects import postgresql, sqlite

    from course.schema import Tag

    namespace = {"dialect_insert": postgresql.insert if db.is_postgresql else sqlite.insert, "Tag": Tag}
    exec(
        "async def answer(session, names):\n"
        "    stmt = dialect_insert(Tag).values([{'name': n} for n in names])\n"
        "    stmt = stmt.on_conflict_do_nothing(index_elements=[Tag.name]).returning(Tag.id)\n"
        "    return sorted((await session.execute(stmt)).scalars())\n",
        namespace,
    )
    verdict = await all_exercises()["07.q4"].evaluate(namespace["answer"], db=db)
    assert verdict.status == "correct", str(verdict)


async def test_missed_null_logins_are_not_also_told_the_update_only_found_them(db):
    """07.q3: the users left active all never logged in: one cause, said once (no contradicting rule)."""
    verdict = await all_exercises()["07.q3"].evaluate(lesson07._q3_only_before_cutoff, db=db)
    assert "NULL < cutoff is not true" in verdict.message, str(verdict)
    assert "not just find them" not in str(verdict), str(verdict)


# the learner trial's wrong answers: each verdict's HEADLINE names the misconception (not only a row diff)
HEADLINES = [
    # 07.q2: a loop of single-row updates, and one .values() for rows that each want their own value
    ("07.q2", lesson07._q2_update_per_row, ["40 UPDATE statements, one per dict", "ORM bulk UPDATE by primary key",
                                            'including', "session.execute(update(User), changes)"]),
    ("07.q2", lesson07._q2_one_role_for_all, ["every row got the same role", "one .values(role=...) sets one value",
                                              "list of dicts", "session.execute(update(User), changes)"]),
    ("07.q2", lesson07._q2_load_and_flush, ["you loaded the users first", "ORM bulk UPDATE by primary key"]),
    ("07.q2", lesson07._q2_get_each, ["you loaded the users one by one", "ORM bulk UPDATE by primary key"]),
    ("07.q4", lesson07._q4_or_ignore, ["INSERT OR IGNORE is SQLite's own syntax", "on_conflict_do_nothing"]),
    ("08.q1", lesson08._q1_rollback, ["the caller's whole transaction was rolled back"]),
    ("08.q2", lesson08._q2_one_savepoint_for_all, ["one savepoint around all the inserts", "one savepoint per name"]),
    ("07.q2", lesson07._q2_values_list, ["update(User).values() takes one set of values"]),
    # 07.q3: every row gets the same value: one UPDATE with WHERE, not the per-row form
    ("07.q3", lesson07._q3_select_then_update, ["one statement per row", "One UPDATE with the WHERE clause"]),
    ("07.q3", lesson07._q3_any_user, ["does not ask for active users", "User.is_active"]),
    ("07.q3", lesson07._q3_both_conditions_anded, ["no user is both", "or_("]),
    # 07.q4 (trial 4c): the wrong conflict target, names for ids, check-then-insert
    ("07.q4", lesson07._q4_conflict_on_id, ["your ON CONFLICT names (id)", "index_elements=[Tag.name]"]),
    ("07.q4", lesson07._q4_returns_names, ["you returned tag names", ".returning(Tag.id)"]),
    ("07.q4", lesson07._q4_select_missing_then_insert, ["a race", "check-then-insert", "on_conflict_do_nothing"]),
    # 07.q5 (trial 4c): an order nobody asked for passes no more (user_ids come unsorted)
    ("07.q5", lesson07._q5_returning_unsorted, ["in id order by chance", "RETURNING", "sorted("]),
    ("07.q5", lesson07._q5_input_order_answer, ["in the order of user_ids (25, 4, 36, 9 ...)", "ascending id"]),
    ("07.q5", lesson07._q5_select_unordered, ["in id order by chance", ".order_by(User.id)"]),
    # 07.q5: stale objects, and the ways out that do not fit this task
    ("07.q5", lesson07._q5_no_sync, ["stale objects", "synchronize_session at its default, 'auto'",
                                     "populate_existing", "expire_all()"]),
    ("07.q5", lesson07._q5_expire_all, ["you expired the objects", "MissingGreenlet", "'auto'"]),
    ("07.q5", lesson07._q5_populate_existing, ["you read the users again after the UPDATE", "'auto'"]),
    # 08.q1: written before the check
    ("08.q1", lesson08._q1_partial, ["wrote the post before it looked the tags up", "Returning None does not"]),
    ("08.q1", lesson08._q1_add_then_look_up, ["the post was written before you looked the tags up", "autoflush"]),
    ("08.q1", lesson08._q1_flush_then_check, ["your check came after the flush", "does not take it back"]),
    # 08.q1 (trial 4c): a tag linked twice, named with the call that repeats it; add() without a flush
    ("08.q1", lesson08._q1_append_each_name, ["tag_names=['sql', 'testing', 'sql']: the same tag was linked",
                                              "dict.fromkeys(tag_names)"]),
    ("08.q1", lesson08._q1_no_flush, ["no post reached the database", "await session.flush()"]),
    ("08.q1", lesson08._q1_count_with_duplicates, ["tag_names names one tag twice", "len(set(tag_names))"]),
    # 08.q3 (trial 4c): what was committed comes first, then the expired read; the sign-up's own failure
    ("08.q3", lesson08._q3_commit_each_reads_expired, ["partial import: 1 post(s)", "one transaction"]),
    ("08.q3", lesson08._q3_no_username, ["the sign-up failed: NOT NULL constraint on users.username",
                                         "User(username=username"]),
    # 09.q3 (trial 4c): pool_recycle=0 recycles at every checkout
    ("09.q3", lesson09._q3_recycle_zero, ["pool_recycle=0 replaces a connection older than 0 s", "pool_pre_ping=True"]),
    # 09.q4 (trial 4c): the handle's own engine instead of one made from `pool`
    ("09.q4", lesson09._q4_handle_sessions, ["your sessions ran on the handle's own engine", "db.create_engine(**pool)",
                                             "engine.dispose()"]),
    ("09.q4", lesson09._q4_engine_unused, ["your sessions never used it", "async_sessionmaker(engine)"]),
    # 09.q5 (trial 4c): a class caught instead of the connection_invalidated flag
    ("09.q5", lesson09._q5_interface_error, ["your function catches InterfaceError", "Catch DBAPIError",
                                             "connection_invalidated"]),
    ("09.q5", lesson09._q5_operational_error, ["your function catches OperationalError", "Catch DBAPIError"]),
    # 09.q5: the retry ran in the session (or the begin() block) whose transaction lost its connection
    ("09.q5", lesson09._q5_same_session, ["reused the session whose transaction lost its connection",
                                          "session.rollback()", "new session"]),
    ("09.q5", lesson09._q5_same_begin_block, ["same session.begin() block", "inside the retry loop"]),
    ("09.q5", lesson09._q5_reraise_first, ["the retry failed too", "new session"]),
]


@pytest.mark.parametrize(("exercise_id", "answer", "phrases"), HEADLINES,
                         ids=[f"{e}-{a.__name__}" for e, a, _ in HEADLINES])
async def test_the_headline_names_the_misconception(db, exercise_id, answer, phrases):
    verdict = await all_exercises()[exercise_id].evaluate(answer, db=db)
    assert verdict.status in (INCORRECT, "error"), str(verdict)
    headline = plain(verdict.message)
    for phrase in phrases:
        assert phrase in headline, str(verdict)


async def test_q2_per_row_advice_is_not_given_where_every_row_gets_one_value(db):
    """07.q3 writes the same value to every row: its advice is one UPDATE with WHERE, and the list-of-dicts
    form is named only as what it is for (values that differ per row), never as the fix."""
    verdict = await all_exercises()["07.q3"].evaluate(lesson07._q3_select_then_bulk_by_key, db=db)
    assert "a race" in verdict.message and "values that differ per row" in verdict.message, str(verdict)
    assert "session.execute(update(User), changes)" not in str(verdict)


async def test_a_session_shared_by_tasks_is_not_also_told_they_ran_one_after_another(db):
    """08.q4: the shared session raised because the tasks overlapped; the details agree with that headline."""
    verdict = await all_exercises()["08.q4"].evaluate(lesson08._q4_shared_session, db=db)
    text = str(verdict)
    assert "one after another" not in text and "took turns" not in text, text
    rules = {r.rule: r.passed for r in verdict.rules}
    if "one session used by several tasks at once" in verdict.message:  # SQLite: the session refused
        assert rules["one session per task"] is False and rules["the tasks ran at the same time"] is True, text
        assert rules["the right counts"] is False, text  # it returned nothing to compare
    else:  # PostgreSQL: the tasks queued on the one connection; the recorder saw them share it
        assert "tasks ran statements through one session" in verdict.message, text


async def test_one_query_is_not_called_counts_run_one_after_another(db):
    verdict = await all_exercises()["08.q4"].evaluate(lesson08._q4_group_by_outer_join, db=db)
    assert verdict.message.startswith("one query for all the users"), str(verdict)
    assert "one after another" not in str(verdict)


async def test_q1_names_the_overflow_the_answer_really_has(db):
    """09.q1: the default max_overflow is stated as it is on this backend (10, SQLAlchemy's; 3, the course's
    PostgreSQL engines), and only when the answer left it unset: never "the default is 10" beside a 0 or a 3."""
    unset = await lesson09.q1.evaluate(lesson09._q1_only_size, db=db)
    if db.is_postgresql:
        assert "You left it unset, so it is 3 here (the default of db.create_engine() on PostgreSQL" in unset.message
    else:
        assert "You left it unset, so it is 10 here (SQLAlchemy's default)" in unset.message, str(unset)
    for answer in (lesson09._q1_size_four, lesson09._q1_overflow_too):
        verdict = await lesson09.q1.evaluate(answer, db=db)
        assert verdict.status == INCORRECT, str(verdict)
        assert "default" not in str(verdict) and "unless you say so" not in str(verdict), str(verdict)


async def test_q4_sessions_on_the_handles_engine_are_not_told_their_engine_was_disposed(db):
    """09.q4: no engine made from `pool`: the disposal line does not read "ok" for an engine that never existed."""
    verdict = await lesson09.q4.evaluate(lesson09._q4_handle_sessions, db=db)
    disposed = [r for r in verdict.rules if r.rule == "the engine disposed"]
    assert disposed and not disposed[0].passed, str(verdict)


async def test_q1_no_ok_for_what_an_explained_error_stopped(db):
    """08.q1: after the answer raised (a tag linked twice), no line claims "ok" for what was not checked, and
    the verdict does not advise catching the IntegrityError the answer caused itself."""
    verdict = await lesson08.q1.evaluate(lesson08._q1_append_each_name, db=db)
    lines = {r.rule: r for r in verdict.rules}
    for rule in ("all or nothing", "returns the new id, or None", "the caller's transaction left to the caller"):
        assert not lines[rule].passed, str(verdict)
    assert "catch IntegrityError" not in str(verdict) and "begin_nested" not in verdict.message, str(verdict)


async def test_q3_an_answer_stopped_by_a_lazy_load_is_still_judged_on_what_it_committed(db):
    """08.q3: commit per post, then user.id read after a rollback (MissingGreenlet): the lines say what reached
    the database (a partial import), the lazy load is named as the expired User.id, nothing reads "ok" unchecked."""
    verdict = await lesson08.q3.evaluate(lesson08._q3_commit_each_reads_expired, db=db)
    lines = {r.rule: r for r in verdict.rules}
    assert verdict.message.startswith("called with username='grace_new'"), str(verdict)
    assert not lines["the import is all or nothing"].passed, str(verdict)
    assert not lines["returns what was committed"].passed, str(verdict)
    assert "`User.id`" in lines["no attribute read after a commit or rollback expired it"].message, str(verdict)
