"""course.lab.plans: EXPLAIN through the active dialect with bound parameters, read as a tree.

The parsing tests need no database; the rest run on the active backend
(COURSE_DATABASE_URL selects PostgreSQL), so CI checks both.
"""

from __future__ import annotations

from datetime import datetime

import pytest
import pytest_asyncio
from sqlalchemy import Index, bindparam, literal_column, select, text
from sqlalchemy.orm import defer

import course
from course.lab import plans
from course.schema import Comment, Order, Post, User
from tests.conftest import private_db

# ------------------------------------------------------------------ parsing (no database)


@pytest.mark.parametrize(
    ("detail", "table", "index", "access", "condition"),
    [
        ("SCAN orders", "orders", None, plans.TABLE_SCAN, None),
        ("SEARCH orders USING INDEX ix_orders_user_id (user_id=?)", "orders", "ix_orders_user_id", plans.INDEX_SEARCH, "user_id=?"),
        ("SCAN orders USING COVERING INDEX ix_orders_user_status", "orders", "ix_orders_user_status", plans.INDEX_SCAN, None),
        ("SEARCH parent USING COVERING INDEX ix_comments_post_id (post_id=?)", "parent", "ix_comments_post_id", plans.INDEX_SEARCH, "post_id=?"),
        ("SEARCH users USING INTEGER PRIMARY KEY (rowid=?)", "users", None, plans.ROWID_SEARCH, "rowid=?"),
        ("SEARCH c USING AUTOMATIC COVERING INDEX (parent_id=?)", "c", "(automatic index)", plans.INDEX_SEARCH, "parent_id=?"),
        ("SEARCH orders USING INDEX ix (ANY(user_id) AND status=?)", "orders", "ix", plans.INDEX_SEARCH, "ANY(user_id) AND status=?"),
        ("USE TEMP B-TREE FOR ORDER BY", None, None, None, None),
        ("SCAN CONSTANT ROW", None, None, None, None),
    ],
)
def test_sqlite_details_are_read(detail, table, index, access, condition):
    node = plans._sqlite_node(detail)
    assert (node.table, node.index, node.access, node.condition) == (table, index, access, condition)


def test_sqlite_rows_become_a_tree():
    rows = [
        (2, 0, 0, "SEARCH users USING INTEGER PRIMARY KEY (rowid<?)"),
        (9, 0, 0, "CORRELATED SCALAR SUBQUERY 1"),
        (14, 9, 0, "SEARCH orders USING COVERING INDEX ix_orders_user_id (user_id=?)"),
    ]
    plan = plans.Plan("sqlite", "SELECT ...", (), plans._sqlite_tree(rows), raw=rows)
    assert [len(r.children) for r in plan.roots] == [0, 1]
    assert plan.indexes == ["ix_orders_user_id"] and not plan.full_scan
    assert plan.outline.splitlines()[-1] == "-> SEARCH orders USING COVERING INDEX ix_orders_user_id (user_id=?)"
    assert plan.searches_index("ix_orders_user_id") and "CORRELATED SCALAR SUBQUERY" in plan


def test_postgresql_json_becomes_a_tree():
    document = [{
        "Plan": {
            "Node Type": "Bitmap Heap Scan", "Relation Name": "orders", "Alias": "orders",
            "Recheck Cond": "(user_id = 7)", "Actual Rows": 6, "Actual Loops": 1, "Actual Total Time": 0.02,
            "Shared Hit Blocks": 7, "Plan Rows": 6, "Plan Width": 26,
            "Plans": [{
                "Node Type": "Bitmap Index Scan", "Index Name": "ix_orders_user_status", "Index Cond": "(user_id = 7)",
                "Actual Rows": 6, "Actual Loops": 1, "Actual Total Time": 0.01, "Shared Hit Blocks": 2,
            }],
        },
        "Planning Time": 0.1, "Execution Time": 0.05,
    }]
    roots = [plans._pg_node(document[0]["Plan"])]
    plans._refine_pg_searches(roots, {"ix_orders_user_status": "user_id"})
    plan = plans.Plan("postgresql", "SELECT ...", (7,), roots, raw=document, analyzed=True,
                      planning_ms=0.1, execution_ms=0.05)
    assert plan.searches_index("ix_orders_user_status") and not plan.full_scan
    assert plan.shared_buffers == 7 and plan.rows == 6
    assert plan.brief == "Bitmap Heap Scan on orders > Bitmap Index Scan using ix_orders_user_status"
    assert "buffers hit=7" in plan.text and "buffers" not in plan.outline


def test_postgresql_index_condition_off_the_leading_column_is_a_full_index_scan():
    node = plans._pg_node({"Node Type": "Index Only Scan", "Index Name": "ix_orders_user_status",
                           "Relation Name": "orders", "Alias": "orders", "Index Cond": "((status)::text = 'paid'::text)"})
    plans._refine_pg_searches([node], {"ix_orders_user_status": "user_id"})
    assert node.access == plans.INDEX_SCAN


# ------------------------------------------------------------------ on the active backend


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def db():
    async with private_db("plantests") as handle:
        async with handle.engine.begin() as conn:
            for table in ("users", "posts", "comments", "orders"):
                await conn.execute(text(f"ANALYZE {table}"))
        yield handle


async def test_a_search_and_a_scan(db):
    by_user = await plans.explain(db, select(Order).where(Order.user_id == 42))
    assert not by_user.full_scan and by_user.indexes
    assert any(by_user.searches_index(i) for i in ("ix_orders_user_id", "ix_orders_user_status"))
    by_parent = await plans.explain(db, select(Comment).where(Comment.parent_id == 4242))
    assert by_parent.scans_table("comments") and by_parent.full_scan and not by_parent.indexes


async def test_parameters_are_bound_not_pasted(db):
    with course.sql(show=False) as log:
        await plans.explain(db, select(User).where(User.email == "nobody@example.com"))
    assert log[0].sql.startswith("EXPLAIN") and "nobody@example.com" not in log[0].sql
    assert "nobody@example.com" in log[0].params


async def test_bindparam_values_and_orm_options(db):
    plan = await plans.explain(db, select(User).where(User.id == bindparam("uid")), {"uid": 3})
    assert plan.tables == ["users"]
    deferred = await plans.explain(db, select(Post).options(defer(Post.body)).where(Post.id == 3))
    assert "posts.body" not in deferred.sql and "posts.title" in deferred.sql


async def test_statement_columns_do_not_type_the_plan_rows(db):
    # four columns like SQLite's plan rows, one a DateTime: the plan must not be parsed as dates
    stmt = select(Order.id, Order.user_id, Order.status, Order.created_at).where(Order.id == 5)
    plan = await plans.explain(db, stmt)
    assert plan.nodes and plan.tables == ["orders"]


async def test_expanding_in_and_a_recorded_statement(db):
    with course.sql(show=False) as log:
        async with db.session() as session:
            await session.execute(select(User).where(User.id.in_([1, 2, 3])))
            plan = await plans.explain(session, log[0])
    assert plan.params == log[0].params and plan.tables == ["users"]


async def test_an_index_tried_in_a_transaction(db):
    index = Index("ix_orders_total_cents_test", Order.total_cents)
    stmt = select(Order).where(Order.total_cents.between(1_000, 1_100))
    try:
        async with db.engine.connect() as conn:
            assert (await plans.explain(conn, stmt)).scans_table("orders")
            await conn.run_sync(index.create)
            assert (await plans.explain(conn, stmt)).searches_index("ix_orders_total_cents_test")
            await conn.rollback()
            assert (await plans.explain(conn, stmt)).scans_table("orders")
    finally:
        Order.__table__.indexes.discard(index)


async def test_partial_index_and_generic_plans(db):
    def active(status):
        return select(Order.id).where(
            Order.user_id == 254, status, Order.created_at >= datetime(2025, 1, 1), Order.created_at < datetime(2025, 7, 1)
        )

    literal = active(Order.status != literal_column("'cancelled'"))
    bound = active(Order.status != "cancelled")
    assert (await plans.explain(db, literal)).uses_index("ix_orders_active")
    assert (await plans.explain(db, bound)).uses_index("ix_orders_active")  # the value is seen when planning
    assert not (await plans.explain(db, active(Order.status != "shipped"))).uses_index("ix_orders_active")
    if db.is_postgresql:
        assert not (await plans.explain(db, bound, generic=True)).uses_index("ix_orders_active")
        generic = await plans.explain(db, literal, generic=True)
        assert generic.generic and generic.uses_index("ix_orders_active")
    else:
        with pytest.raises(NotImplementedError):
            await plans.explain(db, bound, generic=True)


async def test_html_names_the_class(db):
    plan = await plans.explain(db, select(Order).where(Order.user_id == 42))
    assert 'class="course-plan"' in plan._repr_html_()


async def test_wrong_target_is_a_clear_error(db):
    with pytest.raises(TypeError, match="AsyncSession"):
        await plans.explain("not a database", select(User))
