"""Feedback that names the mistake: what every exercise gets from the checker core.

Each test builds a small exercise, runs a realistic wrong answer for real (on the active
backend: COURSE_DATABASE_URL selects PostgreSQL) and asserts the phrase the learner reads.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import time

import pytest
import pytest_asyncio
from sqlalchemy import delete, func, insert, literal_column, select, text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import joinedload

from course.exercises import (
    CORRECT,
    DB_FN,
    ERROR,
    INCORRECT,
    NOT_ATTEMPTED,
    SESSION_FN,
    STATEMENT,
    Exercise,
    sql_reference,
)
from course.exercises.rules import CaseInsensitiveMatch, SameResult, SavepointAroundFailure
from course.exercises.verdict import RuleResult, Verdict, plain, rich
from course.exercises.verdict import distinct as distinct_messages
from course.schema import Comment, Order, Post, Tag, User
from course.tools.grading import Scorecard
from tests.conftest import private_db
from tests.feedback_support import assert_renders_cleanly


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def db():
    async with private_db("feedback") as handle:
        yield handle


def _exercise(kind=STATEMENT, expected=None, rules=None, solution=None, **kw) -> Exercise:
    return Exercise(
        id="t.f", title="feedback", kind=kind, solution_answer=solution or (lambda: None),
        expected=expected, rules=rules if rules is not None else [SameResult()], hints=["h"], why="w", **kw,
    )


async def judged(exercise: Exercise, answer, db) -> Verdict:
    verdict = await exercise.evaluate(answer, db=db)
    assert_renders_cleanly(verdict)
    return verdict


# ------------------------------------------------------------------ 6. how messages look


def test_backticks_become_code_in_html_and_vanish_in_text():
    message = "use `exists()` instead of a join, or `func.count(distinct(Post.id))`; a <b> stays text"
    assert plain(message) == "use exists() instead of a join, or func.count(distinct(Post.id)); a <b> stays text"
    assert rich(message) == (
        "use <code>exists()</code> instead of a join, or <code>func.count(distinct(Post.id))</code>; "
        "a &lt;b&gt; stays text"
    )
    assert "`" not in rich("a stray ` backtick") and "`" not in plain("a stray ` backtick")


def test_headline_is_the_diagnosis_and_each_problem_is_said_once():
    same = "your function returned None: did you forget `return`?"
    verdict = Verdict("t.1", "t", INCORRECT, f"called with page=1: {same}", [
        RuleResult("the right result", False, f"called with page=1: {same}"),
        RuleResult("the next cursor", False, f"called with page=2: {same}"),
        RuleResult("statement budget", False, "your answer took 9 statements; 2 should be enough"),
        RuleResult("bound parameters", True),
    ])
    text_ = str(verdict)
    assert text_.splitlines()[1].strip() == f"called with page=1: {plain(same)}"  # the headline, first
    assert text_.count("did you forget return?") == 1
    assert "9 statements" in text_  # a different problem is still said
    html = verdict._repr_html_()
    assert html.count("did you forget <code>return</code>?") == 1
    assert html.index("course-diagnosis") < html.index("<ul>")
    assert_renders_cleanly(verdict)


def test_an_error_verdict_is_not_headlined_could_not_be_checked():
    verdict = Verdict("t.1", "t", ERROR, "An aggregate (`count()`) in WHERE: ... Your answer raised ...")
    assert "could not be checked" not in str(verdict) and "could not be checked" not in verdict._repr_html_()
    assert str(verdict).startswith("[Not yet]")


def test_a_scorecard_says_a_shared_problem_once():
    problem = "SimpleNamespace has no function feed, create_post: this exercise needs an object with `feed`"
    card = Scorecard("12_capstone.ipynb", "12", exercises=[
        {"exercise": f"12.q{i}", "title": f"part {i}", "status": ERROR, "message": problem, "rules": []}
        for i in range(1, 5)
    ])
    text_ = card.render()
    assert "0/4 correct" in text_
    assert text_.count("has no function feed") == 1, text_
    assert text_.count("same problem as 12.q1") == 3 and "`" not in text_
    assert distinct_messages(["a: x", "b: x", "y"]) == ["a: x", "y"]


def test_a_note_says_neither_its_requirement_nor_a_sentence_said_above_again():
    """12.q1: "a tag with a quote in its name · ...: a tag with a quote in its name: ..." said the
    requirement twice, and the same diagnosis came back for every page size with other numbers."""
    why = "LIMIT counts rows, not posts. Select one row per post"
    verdict = Verdict("12.q1", "The feed", INCORRECT, f"first page: 2 posts on a page of limit=5: {why}", [
        RuleResult("first page · the items", False, f"first page: 2 posts on a page of limit=5: {why}"),
        RuleResult("a page of 200 · the items", False, f"a page of 200: 90 posts on a page of limit=200: {why}"),
        RuleResult("a page of 200 · the next cursor", False, "a page of 200: next_cursor should not be None. " + why),
        RuleResult("a tag with a quote in its name · an empty page", False,
                   "a tag with a quote in its name: with tag=\"it's-new\" the SQL text broke"),
    ])
    text_ = str(verdict)
    assert text_.count("LIMIT counts rows") == 1 and text_.count("a tag with a quote in its name") == 1, text_
    assert "to do a page of 200 · the items\n" in text_ + "\n", text_  # nothing new to say: no note
    assert "to do a page of 200 · the next cursor: next_cursor should not be None (the rest as above)" in text_
    assert "to do a tag with a quote in its name · an empty page: with tag=\"it's-new\" the SQL text broke" in text_
    assert_renders_cleanly(verdict)


def _rule_labels(exercise) -> list[str]:
    """Every rule line an exercise can show, as the verdict names it (a requirement's rules behind its name)."""
    from course.exercises.core import FUNCTIONS
    from course.exercises.rules import Attempt, NoLazyLoads

    def label(rule) -> str:
        try:  # a rule whose label carries numbers ("statement budget (0 of 3)") names itself when judged
            return rule.judge(Attempt()).rule
        except Exception:
            return rule.name

    if exercise.kind == FUNCTIONS:
        return [
            f"{requirement.name} · {name}"
            for requirement in exercise.requirements
            for name in ["ran to the end", NoLazyLoads().name, *map(label, requirement.rules)]
        ]
    return [NoLazyLoads().name, *map(label, exercise.rules)]


_NEGATION = r"(?:no|not|none|never|nothing|nobody|without)"
_DOUBLED = re.compile(rf"\b{_NEGATION}\b[\s:·-]*\b{_NEGATION}\b", re.I)


def test_every_rule_line_of_every_exercise_reads_naturally_passed_or_failed():
    """A rule line is a word and the rule's label: no "NO  no known mistake raised" (a status word that
    is a negation, before a label that starts with one), in plain text or in HTML, passed or failed."""
    from course.exercises import all_exercises
    from tests.feedback_support import visible_text

    for exercise in all_exercises().values():
        labels = _rule_labels(exercise)
        assert all(label.strip() for label in labels), exercise.id
        for passed in (True, False):
            verdict = Verdict(exercise.id, exercise.title, CORRECT if passed else INCORRECT, "headline", [
                RuleResult(label, passed, "" if passed else f"what went wrong with {label}") for label in labels
            ])
            lines = str(verdict).splitlines()[2:]
            assert len(lines) == len(labels), str(verdict)
            items = re.findall(r"<li>(.*?)</li>", verdict._repr_html_())
            for line in [*lines, *map(visible_text, items)]:
                assert not _DOUBLED.search(line), (exercise.id, line)
            for line in lines:
                assert line.strip().startswith("ok " if passed else "to do "), (exercise.id, line)
                assert line.strip()[:6].isascii(), (exercise.id, line)  # the word needs no symbol font
    assert _DOUBLED.search("NO  no known mistake raised") and _DOUBLED.search("no no lazy loads")
    assert not _DOUBLED.search("to do no lazy loads") and not _DOUBLED.search("a plain (not partial) index")


def test_hints_render_code_without_backticks(capsys):
    exercise = _exercise()
    exercise.hints = ["Wrap it: `async with session.begin_nested():`"]
    exercise.hint()
    assert capsys.readouterr().out.strip().endswith("Wrap it: async with session.begin_nested():")


def test_every_hint_and_why_renders_without_backticks():
    from course.exercises import all_exercises
    from tests.feedback_support import HTML_TAG, visible_text

    for exercise in all_exercises().values():
        for message in [*exercise.hints, exercise.why]:
            assert "`" not in plain(message) and not HTML_TAG.search(plain(message)), (exercise.id, message)
            assert "`" not in visible_text(rich(message)), (exercise.id, message)


async def test_the_pool_listener_of_a_check_is_removed_after_it(db, monkeypatch):
    from sqlalchemy import event
    from sqlalchemy.pool import Pool

    from course.exercises import core

    made = []
    original = core.Leftovers.__init__

    def remember(self):
        original(self)
        made.append(self)

    monkeypatch.setattr(core.Leftovers, "__init__", remember)
    await _exercise(SESSION_FN, rules=[]).evaluate(_carries_on_after_a_failed_flush, db=db)
    await _exercise(DB_FN, rules=[], scratch_scale=0.1, calls=({"user_ids": [1, 2]},)).evaluate(
        _count_posts_one_session, db=db
    )
    assert len(made) == 2
    assert not any(event.contains(Pool, "checkout", leftovers._checkout) for leftovers in made)


# ------------------------------------------------------------------ 2. database errors explained

USERS_BY_COUNTRY = sql_reference(
    "SELECT country, count(*) FROM users GROUP BY country HAVING count(*) > 40 ORDER BY country"
)


async def test_aggregate_in_where_says_having(db):
    answer = (
        select(User.country, func.count()).where(func.count() > 40).group_by(User.country).order_by(User.country)
    )
    verdict = await judged(_exercise(expected=USERS_BY_COUNTRY), answer, db)
    assert verdict.status == ERROR
    assert verdict.message.startswith("An aggregate (`count()`, `sum()`, ...) in WHERE"), verdict.message
    assert "`.having(...)`" in verdict.message and "Your answer raised" in verdict.message


async def test_a_column_neither_grouped_nor_aggregated(db):
    answer = select(User.country, User.username, func.count()).group_by(User.country)
    verdict = await judged(_exercise(expected=USERS_BY_COUNTRY), answer, db)
    if db.backend == "postgresql":
        assert verdict.status == ERROR
        assert "`users.username` is selected but neither grouped nor aggregated" in verdict.message
        assert "`.group_by(...)`" in verdict.message
    else:  # SQLite accepts it (a value from any row of the group): the rows are what is wrong
        assert verdict.status == INCORRECT and "each row should have 2 column(s), yours have 3" in verdict.message


async def test_ambiguous_and_unknown_columns(db):
    expected = sql_reference("SELECT id FROM users")
    ambiguous = select(literal_column("id")).select_from(User).join(Post, Post.author_id == User.id)
    verdict = await judged(_exercise(expected=expected), ambiguous, db)
    assert verdict.status == ERROR
    assert "The column `id` is in more than one table of your FROM and joins" in verdict.message, verdict.message
    unknown = select(literal_column("nickname")).select_from(User)
    verdict = await judged(_exercise(expected=expected), unknown, db)
    assert "There is no column `nickname` in the tables your statement reads" in verdict.message, verdict.message


async def test_a_cartesian_product_is_named_before_the_rows(db):
    expected = sql_reference(
        "SELECT u.username, p.title FROM users u JOIN posts p ON p.author_id = u.id WHERE u.id < 30 AND p.id < 300"
    )
    answer = select(User.username, Post.title).where(User.id < 30, Post.id < 300)  # no join condition
    verdict = await judged(_exercise(expected=expected), answer, db)
    assert verdict.status == INCORRECT, str(verdict)
    assert verdict.message.startswith("a cartesian product: your statement reads `"), verdict.message
    assert "`users`" in verdict.message and "`posts`" in verdict.message and "Join them on their key" in verdict.message
    assert "What differs:" in verdict.message and "SQLAlchemy warned" in verdict.message


def test_a_cartesian_warning_that_lists_several_elements_names_the_one_left_out():
    """'"posts", "users" and FROM element "tags"': posts and users may be joined; tags is not linked to them."""
    from course.exercises.explain import explain_warning

    said = explain_warning(
        'SELECT statement has a cartesian product between FROM element(s) "posts", "users" and FROM element "tags"'
    )
    assert "reads `tags` with no condition linking it to `posts` or `users`" in said, said


@pytest.mark.parametrize("forgotten", ["author", "tags"])
async def test_an_exercise_says_the_cartesian_product_once(db, forgotten):
    """04.q1: the headline explains the cartesian product once (core puts SQLAlchemy's warning first; the
    rule adds what it did to the rows and the join to add), on a first run (warned) and a cached one."""
    from course.exercises import lesson04

    def answer():
        stmt = select(Post.id, User.username)
        stmt = stmt.join(Post.tags) if forgotten == "author" else stmt.join(Post.author)
        return stmt.where(Tag.name == "joins").order_by(Post.id)

    for _ in range(2):  # the second run comes from the compiled cache: SQLAlchemy does not warn again
        verdict = await judged(lesson04.q1, answer(), db)
        assert verdict.status == INCORRECT, str(verdict)
        said = plain(verdict.message).split("(SQLAlchemy warned")[0]
        assert said.count("cartesian product") == 1, said
        assert (".join(Post.author)" if forgotten == "author" else ".join(Post.tags)") in said, said


async def _carries_on_after_a_failed_flush(session):
    session.add(Tag(name="dup-tag"))
    session.add(Tag(name="dup-tag"))
    with contextlib.suppress(IntegrityError):  # neither rolled back nor in a savepoint
        await session.flush()
    return (await session.execute(select(func.count()).select_from(Tag))).scalar_one()


async def test_pending_rollback_says_roll_back_or_begin_nested(db):
    verdict = await judged(_exercise(SESSION_FN), _carries_on_after_a_failed_flush, db)
    assert verdict.status == ERROR
    assert verdict.message.startswith("An earlier statement in this transaction failed"), verdict.message
    assert "`async with session.begin_nested():`" in verdict.message and "PendingRollbackError" in verdict.message


async def _shares_the_session_between_tasks(session):
    async def add(name):
        session.add(Tag(name=name))
        await session.flush()

    await asyncio.gather(add("shared-1"), add("shared-2"))
    return 2


async def test_one_session_used_by_two_tasks_is_named(db):
    verdict = await judged(_exercise(SESSION_FN, rules=[]), _shares_the_session_between_tasks, db)
    assert verdict.status == ERROR, str(verdict)
    assert verdict.message.startswith("One session used by several tasks at once"), verdict.message
    assert "Give each task its own session" in verdict.message


async def _author_names(session):
    comments = (await session.scalars(select(Comment).order_by(Comment.id).limit(3))).all()
    return [c.author.username for c in comments]


async def _author_names_loaded(session):
    stmt = select(Comment).options(joinedload(Comment.author)).order_by(Comment.id).limit(3)
    return [c.author.username for c in (await session.scalars(stmt)).all()]


async def test_a_lazy_load_names_the_relationship_and_its_loader(db):
    expected = sql_reference(
        "SELECT u.username FROM comments c JOIN users u ON u.id = c.author_id ORDER BY c.id LIMIT 3", flat=True
    )
    exercise = _exercise(SESSION_FN, expected=expected, rules=[SameResult(ordered=True)])
    verdict = await judged(exercise, _author_names, db)
    assert verdict.status == INCORRECT
    assert verdict.message.startswith("`Comment.author` was loaded lazily"), verdict.message
    assert "`.options(joinedload(Comment.author))`" in verdict.message
    assert (await judged(exercise, _author_names_loaded, db)).status == CORRECT


async def _task_group_fails(session):
    async def one(n):
        if n == 2:
            raise ValueError("no post for user 2")
        return n

    async with asyncio.TaskGroup() as group:
        tasks = [group.create_task(one(n)) for n in range(3)]
    return [t.result() for t in tasks]


async def test_an_exception_group_names_its_first_cause(db):
    verdict = await judged(_exercise(SESSION_FN, rules=[]), _task_group_fails, db)
    assert verdict.status == ERROR
    assert "ExceptionGroup from a TaskGroup: 1 task(s) failed, the first with ValueError: no post for user 2" in (
        verdict.message
    ), verdict.message


async def _search_with_an_fstring(session):
    name = "o'brien"
    return (await session.execute(text(f"SELECT id FROM users WHERE username = '{name}'"))).all()


async def test_a_syntax_error_from_a_pasted_value_says_injection(db):
    verdict = await judged(_exercise(SESSION_FN, rules=[]), _search_with_an_fstring, db)
    assert verdict.status == ERROR
    assert "that is SQL injection" in verdict.message and "bound" in verdict.message, verdict.message


async def _search_leaking_through_an_error(session):
    term = "x' AND 1 = CAST((SELECT email FROM users ORDER BY id LIMIT 1) AS INTEGER) --"
    return (await session.execute(text(f"SELECT id FROM users WHERE username = '{term}'"))).all()


async def test_an_injection_that_leaks_through_the_error_text_is_named(db):
    verdict = await judged(_exercise(SESSION_FN, rules=[SameResult()], expected=sql_reference(
        "SELECT id FROM users WHERE 1 = 0"
    )), _search_leaking_through_an_error, db)
    if db.backend == "postgresql":  # the cast fails, and its message carries the e-mail address
        assert verdict.status == ERROR
        assert verdict.message.startswith("The database ran part of a value as SQL"), verdict.message
        assert "SQL injection" in verdict.message
    else:  # SQLite casts the text to 0: no error, no leak; SameResult alone cannot see the pasting
        # (an exercise that must, adds BoundParameters: lesson 10 does)
        assert verdict.status == CORRECT


async def _insert_a_taken_username(session):
    await session.execute(insert(User).values(
        email="x@example.com", username=(await session.scalar(select(User.username).limit(1))),
        display_name="x", country="NL", created_at=func.now(),
    ))


async def test_an_integrity_error_names_the_constraint_kind(db):
    verdict = await judged(_exercise(SESSION_FN, rules=[]), _insert_a_taken_username, db)
    assert verdict.status == ERROR
    assert verdict.message.startswith("A row with the same unique value already exists"), verdict.message


async def _delete_an_author_with_a_statement(session):
    # a Core DELETE of a user who wrote posts: posts.author_id still points at the row
    author = await session.scalar(select(Post.author_id).order_by(Post.id).limit(1))
    await session.execute(delete(User).where(User.id == author))


async def test_a_foreign_key_refusing_a_delete_statement_says_it_skipped_the_orm(db):
    verdict = await judged(_exercise(SESSION_FN, rules=[]), _delete_an_author_with_a_statement, db)
    assert verdict.status == ERROR
    # the row deleted is the one pointed at: not "points at a row that does not exist"
    assert verdict.message.startswith("Other rows still point at the row you deleted"), verdict.message
    assert "skips the ORM" in verdict.message and "does not exist" not in verdict.message, verdict.message


def _nulls_last_then_desc():
    return select(User.id).order_by(User.last_login.nulls_last().desc(), User.id)


async def test_nulls_last_before_desc_is_named_not_called_injection(db):
    verdict = await judged(_exercise(STATEMENT, rules=[]), _nulls_last_then_desc(), db)
    assert verdict.status == ERROR
    assert "NULLS LAST DESC" in verdict.message and "`.desc().nulls_last()`" in verdict.message, verdict.message
    assert "injection" not in verdict.message.lower(), verdict.message


async def test_malformed_sql_without_a_pasted_value_shows_where_it_stopped(db):
    verdict = await judged(_exercise(STATEMENT, rules=[]), text("SELECT id FROM users ORDER BY id DESC DESC"), db)
    assert verdict.status == ERROR
    assert verdict.message.startswith("The SQL your statement sent is malformed"), verdict.message
    assert 'the database stopped' in verdict.message and '"DESC"' in verdict.message, verdict.message
    assert "injection" not in verdict.message.lower(), verdict.message


async def _author_names_own_session(db):
    async with db.session() as session:  # no checker-made session: the loader's frame names it
        comments = (await session.scalars(select(Comment).order_by(Comment.id).limit(3))).all()
        return [c.author.username for c in comments]


async def test_a_lazy_load_in_the_answers_own_session_is_named_too(db):
    exercise = _exercise(DB_FN, rules=[SameResult()], scratch_scale=0.1, expected=sql_reference(
        "SELECT u.username FROM comments c JOIN users u ON u.id = c.author_id ORDER BY c.id LIMIT 3", flat=True
    ))
    verdict = await judged(exercise, _author_names_own_session, db)
    assert verdict.status == INCORRECT
    assert verdict.message.startswith("`Comment.author` was loaded lazily"), verdict.message


async def _inviters_without_alias(session):
    stmt = select(User.username).join(User, User.invited_by_id == User.id)
    return (await session.scalars(stmt)).all()


async def _first_tag_name(session):
    tag = await session.scalar(select(Tag).where(Tag.name == "no-such-tag"))
    return tag.name


@pytest.mark.parametrize(
    ("answer", "says"),
    [
        (_inviters_without_alias, "SQLAlchemy cannot tell where to join from"),
        (_first_tag_name, "Your code used None as an object: a lookup found nothing"),
    ],
)
async def test_common_python_side_errors_are_named(db, answer, says):
    verdict = await judged(_exercise(SESSION_FN, rules=[]), answer, db)
    assert verdict.status == ERROR and verdict.message.startswith(says), verdict.message


# ------------------------------------------------------------------ 1. what differs, concretely


async def test_missing_rows_that_share_a_null_are_named(db):
    expected = sql_reference("SELECT id, phone FROM users WHERE phone IS NULL OR phone NOT LIKE '+1-555-0%'")
    answer = select(User.id, User.phone).where(User.phone.not_like("+1-555-0%"))
    verdict = await judged(_exercise(expected=expected), answer, db)
    assert verdict.status == INCORRECT
    assert " missing rows have `phone` NULL: a comparison with NULL" in verdict.message, verdict.message
    assert "`.is_(None)`" in verdict.message and "What differs:" in verdict.message


async def test_not_in_over_a_null_is_named(db):
    expected = sql_reference(
        "SELECT id FROM users WHERE id NOT IN (SELECT invited_by_id FROM users WHERE invited_by_id IS NOT NULL)",
        flat=True,
    )
    answer = select(User.id).where(User.id.not_in(select(User.invited_by_id).scalar_subquery()))
    verdict = await judged(_exercise(expected=expected), answer, db)
    assert verdict.status == INCORRECT
    assert "NULL in NOT IN" in verdict.message and "`~exists()`" in verdict.message, verdict.message


async def test_not_in_over_a_column_without_null_blames_no_null(db):
    """orders.user_id is NOT NULL: an empty NOT IN result has another cause (every user has an order)."""
    expected = sql_reference("SELECT id FROM users WHERE id NOT IN (SELECT user_id FROM orders WHERE status = 'cancelled')", flat=True)
    answer = select(User.id).where(User.id.not_in(select(Order.user_id)))
    verdict = await judged(_exercise(expected=expected), answer, db)
    assert verdict.status == INCORRECT
    assert "NULL" not in verdict.message, verdict.message


async def test_not_in_blames_a_null_only_when_the_subquery_returned_one(db):
    """With a probe that runs the subquery, the analysis knows: no NULL came back, none is blamed."""
    from course.exercises.lesson05 import not_in_returns_null

    expected = sql_reference("SELECT id FROM users WHERE id <= 3", flat=True)
    no_null = select(User.id).where(
        User.id.not_in(select(User.invited_by_id).where(User.invited_by_id.is_not(None))), User.id < 0
    )
    verdict = await judged(_exercise(expected=expected, probe=not_in_returns_null), no_null, db)
    assert verdict.status == INCORRECT and "NULL" not in verdict.message, verdict.message
    # without the probe, the schema says the column may hold NULL: the message says "when"
    verdict = await judged(_exercise(expected=expected), no_null, db)
    assert "when the subquery returns a NULL" in verdict.message, verdict.message
    a_null = select(User.id).where(User.id.not_in(select(User.invited_by_id)))
    verdict = await judged(_exercise(expected=expected, probe=not_in_returns_null), a_null, db)
    assert "your NOT IN subquery returns a NULL" in verdict.message, verdict.message


async def test_one_missing_or_extra_row_is_said_in_the_singular(db):
    expected = sql_reference("SELECT id FROM users WHERE id <= 3", flat=True)
    verdict = await judged(_exercise(expected=expected), select(User.id).where(User.id <= 2), db)
    assert "1 missing row (e.g. 3)" in verdict.message, verdict.message
    verdict = await judged(_exercise(expected=expected), select(User.id).where(User.id <= 4), db)
    assert "1 extra row (e.g. 4)" in verdict.message, verdict.message
    verdict = await judged(_exercise(expected=expected), select(User.id).where(User.id <= 1), db)
    assert "2 missing rows" in verdict.message, verdict.message


async def test_rows_duplicated_by_a_join_are_named(db):
    expected = sql_reference("SELECT id FROM users WHERE EXISTS (SELECT 1 FROM posts WHERE author_id = users.id)", flat=True)
    answer = select(User.id).join(Post, Post.author_id == User.id)
    verdict = await judged(_exercise(expected=expected), answer, db)
    assert verdict.status == INCORRECT
    assert "appears more than once): duplicated by a join" in verdict.message, verdict.message
    assert "`exists()`" in verdict.message
    assert (await judged(_exercise(expected=expected), answer.distinct(), db)).status == CORRECT


async def test_the_same_value_on_every_row_says_uncorrelated(db):
    expected = sql_reference(
        "SELECT u.id, (SELECT count(*) FROM posts p WHERE p.author_id = u.id) FROM users u ORDER BY u.id"
    )
    uncorrelated = select(func.count(Post.id)).scalar_subquery()
    answer = select(User.id, uncorrelated).order_by(User.id)
    verdict = await judged(_exercise(expected=expected), answer, db)
    assert verdict.status == INCORRECT
    assert "on every row in column 2, where the expected values differ: is your subquery uncorrelated?" in (
        verdict.message
    ), verdict.message


async def test_the_same_value_from_a_window_is_no_subquery(db):
    """A derived table is no scalar subquery: the same count on every row comes from the window, said as
    a running count when the count() window has an ORDER BY, never as an uncorrelated subquery."""
    expected = sql_reference(
        "SELECT u.id, (SELECT count(*) FROM posts p WHERE p.author_id = u.id) FROM users u "
        "WHERE EXISTS (SELECT 1 FROM posts p WHERE p.author_id = u.id) ORDER BY u.id"
    )
    window = {"partition_by": Post.author_id, "order_by": Post.id}
    ranked = select(
        Post.author_id, func.row_number().over(**window).label("rn"), func.count().over(**window).label("n")
    ).subquery()
    running = select(ranked.c.author_id, ranked.c.n).where(ranked.c.rn == 1).order_by(ranked.c.author_id)
    verdict = await judged(_exercise(expected=expected), running, db)
    assert verdict.status == INCORRECT
    assert "makes it a running count" in verdict.message, verdict.message
    assert "subquery" not in verdict.message.split(". What differs")[0], verdict.message


async def test_a_page_off_by_one_is_named(db):
    expected = sql_reference("SELECT id FROM users ORDER BY id LIMIT 10 OFFSET 20", flat=True)
    answer = select(User.id).order_by(User.id).limit(10).offset(21)
    verdict = await judged(_exercise(expected=expected, rules=[SameResult(ordered=True)]), answer, db)
    assert verdict.status == INCORRECT
    assert "shifted by 1 (starting 1 too late): off by one page or one row" in verdict.message, verdict.message


async def test_rows_in_exactly_the_reverse_order_name_the_direction(db):
    expected = sql_reference("SELECT id FROM users WHERE id <= 10 ORDER BY id", flat=True)
    answer = select(User.id).where(User.id <= 10).order_by(User.id.desc())
    verdict = await judged(_exercise(expected=expected, rules=[SameResult(ordered=True)]), answer, db)
    assert "in exactly the reverse order: your ORDER BY runs the other way" in verdict.message, verdict.message


async def test_a_range_off_by_one_row_without_paging_names_the_boundary_not_pages(db):
    expected = sql_reference("SELECT id FROM users WHERE id >= 20 AND id < 30 ORDER BY id", flat=True)
    answer = select(User.id).where(User.id > 20, User.id <= 30).order_by(User.id)
    verdict = await judged(_exercise(expected=expected, rules=[SameResult(ordered=True)]), answer, db)
    assert "shifted by 1 (starting 1 too late): a boundary of your filter is off" in verdict.message, verdict.message
    assert "page" not in verdict.message  # no LIMIT or OFFSET: pages are not the cause


async def test_right_rows_in_the_wrong_order_and_wrong_columns(db):
    expected = sql_reference("SELECT id, username FROM users ORDER BY id DESC LIMIT 5")
    ordered = _exercise(expected=expected, rules=[SameResult(ordered=True)])
    ascending = select(User.id, User.username).order_by(User.id.desc()).limit(5).subquery()
    verdict = await judged(ordered, select(ascending).order_by(ascending.c.id), db)
    assert "the right rows, in exactly the reverse order" in verdict.message and "`.desc()`" in verdict.message
    wrong_column = select(User.id, User.email).order_by(User.id.desc()).limit(5)
    verdict = await judged(ordered, wrong_column, db)
    assert "the right rows (the same `id`), but `email` differs" in verdict.message, verdict.message
    swapped = select(User.username, User.id).order_by(User.id.desc()).limit(5)
    verdict = await judged(ordered, swapped, db)
    assert "the columns are in another order" in verdict.message or "missing" in verdict.message


def test_columns_name_the_label_the_order_and_the_objects_asked_for():
    from course.exercises.rules import Columns

    def said(got, want):
        class Seen:  # the one attribute Columns reads
            columns = got
        return Columns(want).judge(Seen()).message

    assert "the column 'count' should be named 'drafts'" in said(["id", "count"], ["id", "drafts"])
    assert '.label("drafts")' in said(["id", "count"], ["id", "drafts"])
    assert "name SQLAlchemy gives an expression you did not label" in said(["id", "username_1"], ["id", "invited_by"])
    assert "the right columns in another order" in said(["username", "id"], ["id", "username"])
    assert "the task wants whole User objects, not columns: `select(User)`" in said(["id", "username"], ["User"])
    assert "missing 'email'" in said(["id"], ["id", "email"])


async def test_a_statement_budget_names_the_read_back_of_a_row_just_written(db):
    from course.exercises import all_exercises

    async def refreshing(session, username, email, display_name, country, created_at):
        user = User(username=username, email=email, display_name=display_name, country=country, created_at=created_at)
        session.add(user)
        await session.flush()
        await session.refresh(user)  # the extra statement: the flush already set user.id
        return user.id

    verdict = await judged(all_exercises()["01.q2"], refreshing, db)
    assert verdict.status == INCORRECT
    assert "Statement 2 reads back from users what your answer had just written" in verdict.message, verdict.message
    assert "1. INSERT INTO users" in plain(verdict.message) and "2. SELECT users.id" in plain(verdict.message)


async def _flush_not_awaited(session, username, email, display_name, country, created_at):
    user = User(username=username, email=email, display_name=display_name, country=country, created_at=created_at)
    session.add(user)
    session.flush()  # the mistake under test: no await
    return user.id


async def _returns_a_coroutine(session, user_id):
    return session.scalar(select(func.count()).select_from(Post).where(Post.author_id == user_id))


async def _uses_a_coroutine(session, user_id):
    return session.execute(select(Post.id).where(Post.author_id == user_id)).scalars().first() is not None


@pytest.mark.parametrize(("exercise_id", "answer", "says"), [
    ("01.q2", _flush_not_awaited, "you forgot `await`: `session.flush()` was never awaited"),
    ("03.q3", _returns_a_coroutine, "you forgot `await`: your function returned a coroutine (from `session.scalar()`)"),
    ("03.q3", _uses_a_coroutine, "You forgot `await`: an async call"),
])
async def test_a_forgotten_await_is_the_headline_and_leaves_no_warning(db, exercise_id, answer, says):
    import gc
    import warnings

    from course.exercises import all_exercises

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        verdict = await judged(all_exercises()[exercise_id], answer, db)
        gc.collect()
    assert verdict.status in (INCORRECT, ERROR)
    # the headline: at most the call's arguments ("called with user_id=155: ") before it
    assert says in verdict.message and verdict.message.index(says) < 40, verdict.message
    # the coroutine it left is dealt with: no "never awaited" in a later cell
    assert not [w for w in caught if "never awaited" in str(w.message)]


# ------------------------------------------------------------------ 3. almost right

FIVE_USERS = sql_reference("SELECT id, username FROM users ORDER BY id LIMIT 5")


async def _forgot_return(session):
    (await session.execute(select(User.id, User.username).order_by(User.id).limit(5))).all()


async def _rows_as_lists(session):
    rows = (await session.execute(select(User.id, User.username).order_by(User.id).limit(5))).all()
    return [list(r) for r in rows]


async def _a_tuple_of_rows(session):
    return tuple((await session.execute(select(User.id, User.username).order_by(User.id).limit(5))).all())


async def _stub(session):
    raise NotImplementedError


async def test_a_function_that_returns_none_is_asked_about_return(db):
    exercise = _exercise(SESSION_FN, expected=FIVE_USERS)
    verdict = await judged(exercise, _forgot_return, db)
    assert verdict.status == INCORRECT
    assert verdict.message.startswith("your function returned None: did you forget `return`?")
    assert (await exercise.evaluate(_stub, db=db)).status == NOT_ATTEMPTED


async def test_none_as_the_answer_is_not_the_stub(db):
    verdict = await judged(_exercise(expected=FIVE_USERS), None, db)
    assert verdict.status == ERROR and "did a function that builds it forget `return`" in verdict.message
    verdict = await judged(_exercise(SESSION_FN, expected=FIVE_USERS), None, db)
    assert verdict.status == ERROR and "pass your function itself" in verdict.message
    assert (await judged(_exercise(expected=FIVE_USERS), ..., db)).status == NOT_ATTEMPTED


async def test_lists_and_tuples_compare_by_value(db):
    exercise = _exercise(SESSION_FN, expected=FIVE_USERS)
    assert (await judged(exercise, _rows_as_lists, db)).status == CORRECT
    assert (await judged(exercise, _a_tuple_of_rows, db)).status == CORRECT


async def test_a_statement_where_a_function_was_asked_and_back(db):
    statement = select(User.id, User.username).order_by(User.id).limit(5)
    verdict = await judged(_exercise(SESSION_FN, expected=FIVE_USERS), statement, db)
    assert verdict.status == ERROR
    assert "You passed a statement, but this exercise takes an async function: wrap it" in verdict.message
    assert "`async def answer(session): ...`" in verdict.message
    verdict = await judged(_exercise(expected=FIVE_USERS), _rows_as_lists, db)
    assert "You passed an async function, but this exercise takes the statement itself" in verdict.message
    verdict = await judged(_exercise(expected=FIVE_USERS), lambda: statement, db)
    assert "call your builder and pass what it returns" in verdict.message


# ------------------------------------------------------------------ 5. never hangs, never poisons


async def _count_posts_solution(db, user_ids):
    async def count(user_id):
        async with db.session() as session:
            return await session.scalar(select(func.count()).select_from(Post).where(Post.author_id == user_id))

    return dict(zip(user_ids, await asyncio.gather(*(count(u) for u in user_ids)), strict=True))


async def _count_posts_one_session(db, user_ids):
    async with db.session() as session:
        async def count(user_id):
            session.add(Tag(name=f"seen-{user_id}"))  # a write per task: the shared session breaks
            await session.flush()
            return await session.scalar(select(func.count()).select_from(Post).where(Post.author_id == user_id))

        counts = await asyncio.gather(*(count(u) for u in user_ids))
    return dict(zip(user_ids, counts, strict=True))


async def _count_posts_expected(conn, user_ids):
    rows = await conn.execute(text("SELECT author_id, count(*) FROM posts GROUP BY author_id"))
    counts = dict(rows.all())
    return {u: counts.get(u, 0) for u in user_ids}


async def test_an_answer_that_leaves_a_transaction_open_does_not_poison_the_next_check(db):
    exercise = _exercise(
        DB_FN, expected=_count_posts_expected, calls=({"user_ids": [1, 2, 3, 4]},), scratch_scale=0.1,
        rules=[SameResult(what="counts")],
    )
    started = time.perf_counter()
    verdict = await judged(exercise, _count_posts_one_session, db)
    first = time.perf_counter() - started
    assert verdict.status == ERROR, str(verdict)
    assert "session used by several tasks at once" in verdict.message.lower(), verdict.message
    assert "the checker ended them" in verdict.message, verdict.message
    started = time.perf_counter()
    verdict = await judged(exercise, _count_posts_solution, db)
    assert verdict.status == CORRECT, str(verdict)
    # before the fix, on PostgreSQL, both took 30 s (ANSWER_TIMEOUT): cleanup waited on the open transaction
    assert first < 15 and time.perf_counter() - started < 15


async def test_a_kernel_task_is_never_taken_for_the_answers():
    from course.exercises.core import _kernel_task

    def made_in(filename):
        namespace = {}
        exec(compile("async def handler():\n    pass\n", filename, "exec"), namespace)
        return namespace["handler"]()

    kernel = asyncio.ensure_future(made_in("/venv/lib/python3.11/site-packages/ipykernel/kernelbase.py"))
    cell = asyncio.ensure_future(made_in("/tmp/ipykernel_4242/3141592653.py"))
    assert _kernel_task(kernel) and not _kernel_task(cell)
    await asyncio.gather(kernel, cell)


# ------------------------------------------------------------------ 4. correct on SQLite, wrong on PostgreSQL

NAMES_WITH_ADA = sql_reference("SELECT id FROM users WHERE lower(username) LIKE '%' || lower(:part) || '%'", flat=True)


async def test_a_case_sensitive_match_is_rejected_on_both_backends(db):
    exercise = _exercise(
        expected=NAMES_WITH_ADA, rules=[SameResult(), CaseInsensitiveMatch()], calls=({"part": "Ada"},),
    )
    verdict = await judged(exercise, select(User.id).where(User.username.contains(text(":part"))), db)
    assert verdict.status == INCORRECT
    assert "your match is case-sensitive on PostgreSQL" in str(verdict), str(verdict)
    for right in (
        select(User.id).where(User.username.icontains(text(":part"))),
        select(User.id).where(func.lower(User.username).contains(func.lower(text(":part")))),
    ):
        assert (await judged(exercise, right, db)).status == CORRECT


async def _skips_duplicates_without_savepoint(session):
    added = 0
    for name in ["sp-a", "sp-a", "sp-b"]:
        try:
            await session.execute(insert(Tag).values(name=name))
            added += 1
        except IntegrityError:
            continue  # SQLite carries on; PostgreSQL has aborted the transaction
    return added


async def _skips_duplicates_in_savepoints(session):
    added = 0
    for name in ["sp-a", "sp-a", "sp-b"]:
        try:
            async with session.begin_nested():
                await session.execute(insert(Tag).values(name=name))
            added += 1
        except IntegrityError:
            continue
    return added


async def test_carrying_on_after_a_failure_without_a_savepoint_is_rejected_on_both_backends(db):
    exercise = _exercise(SESSION_FN, rules=[SavepointAroundFailure()])
    verdict = await judged(exercise, _skips_duplicates_without_savepoint, db)
    assert verdict.status in (INCORRECT, ERROR)
    if db.backend == "postgresql":  # the answer itself fails there
        assert "PostgreSQL aborts the whole transaction at the first error" in verdict.message, verdict.message
    else:
        assert "a statement failed outside a savepoint" in verdict.message, verdict.message
        assert "PostgreSQL aborts the whole transaction" in verdict.message
    assert (await judged(exercise, _skips_duplicates_in_savepoints, db)).status == CORRECT



_ADD_IN_A_BLOCK = '''
async def answer(session):
    async with session.{begin}():
        session.add(Tag(name="python"))  # exists: the INSERT fails at the flush as the block ends
'''


@pytest.mark.parametrize("begin", ["begin_nested", "begin"])
async def test_an_integrity_error_raised_as_the_block_ends_names_the_block(db, begin):
    """The flush that ends an `async with session.begin...()` block raised it: said, with the block read from
    the learner's line; with no source to read (code typed at a prompt), the block is named as a choice."""
    import linecache

    source = _ADD_IN_A_BLOCK.format(begin=begin)
    for filename, keep in ((f"<feedback-{begin}>", True), (f"<feedback-{begin}-unread>", False)):
        scope = {"Tag": Tag}
        exec(compile(source, filename, "exec"), scope)
        if keep:
            linecache.cache[filename] = (len(source), None, source.splitlines(True), filename)
        try:
            verdict = await judged(_exercise(SESSION_FN), scope["answer"], db)
        finally:
            linecache.cache.pop(filename, None)
        assert verdict.status == ERROR
        said = plain(verdict.message)
        assert said.startswith("A row with the same unique value already exists"), said
        block = f"async with session.{begin}():" if keep else "async with session.begin_nested(): (or begin())"
        assert f"raised when your {block} block ended" in said, said
        assert "Put the try around the whole block" in said and "check before" not in said.lower()
