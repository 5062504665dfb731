"""The checker's data set (ties across page boundaries, the unique index) and the raw-SQL feed."""

from __future__ import annotations

from collections import defaultdict
from datetime import datetime
from typing import Any

from sqlalchemy import DateTime, Integer, String, text

from ...schema import Post
from .reference import TAG, UNIQUE_INDEX


def _only_tagged(sql: str, tag: str | None) -> tuple[str, dict[str, Any]]:
    """Add the tag filter (an EXISTS over post_tags, the tag bound) to a query over ``posts p``."""
    if tag is None:
        return sql, {}
    return sql + (
        " AND EXISTS (SELECT 1 FROM post_tags pt JOIN tags t ON t.id = pt.tag_id"
        " WHERE pt.post_id = p.id AND t.name = :tag)"
    ), {"tag": tag}


async def _feed_order(conn: Any, tag: str | None = None) -> list[tuple[datetime, int]]:
    """(published_at, id) of the feed's posts, newest first (sorted here, not by the database)."""
    sql = "SELECT p.published_at, p.id FROM posts p WHERE p.status = 'published'"
    sql, params = _only_tagged(sql, tag)
    rows = (await conn.execute(text(sql).columns(published_at=DateTime, id=Integer), params)).all()
    return sorted(((r.published_at, r.id) for r in rows), reverse=True)


async def _tie(conn: Any, order: list[tuple[datetime, int]], first: int, last: int) -> None:
    """Give the posts at ranks first..last (0-based) the published_at of the one at ``first``."""
    at = order[first][0]
    ids = [pk for _, pk in order[first : last + 1]]
    posts = Post.__table__
    await conn.execute(posts.update().where(posts.c.id.in_(ids)).values(published_at=at))


async def prepare(scratch: Any) -> None:
    """The data set the learner has not seen: ties across page boundaries, and the unique index."""
    async with scratch.engine.begin() as conn:
        await conn.execute(text(UNIQUE_INDEX))
        # six posts share one published_at across the boundary of 50-post pages ...
        await _tie(conn, await _feed_order(conn), 47, 52)
        # ... and six tagged posts across the boundary of 10-post pages of the tag's feed
        await _tie(conn, await _feed_order(conn, TAG), 7, 12)


async def reference_feed(conn: Any, tag: str | None = None) -> list[tuple[Any, ...]]:
    """The whole feed in raw SQL: (id, title, author, published_at, tags, comment_count), newest first."""
    sql = (
        "SELECT p.id, p.title, u.username, p.published_at,"
        " (SELECT count(*) FROM comments c WHERE c.post_id = p.id) AS comment_count"
        " FROM posts p JOIN users u ON u.id = p.author_id WHERE p.status = 'published'"
    )
    sql, params = _only_tagged(sql, tag)
    rows = (
        await conn.execute(
            text(sql).columns(id=Integer, title=String, username=String, published_at=DateTime, comment_count=Integer),
            params,
        )
    ).all()
    names: dict[int, list[str]] = defaultdict(list)
    for post_id, name in await conn.execute(
        text("SELECT pt.post_id, t.name FROM post_tags pt JOIN tags t ON t.id = pt.tag_id")
    ):
        names[post_id].append(name)
    items = [(r.id, r.title, r.username, r.published_at, tuple(sorted(names[r.id])), r.comment_count) for r in rows]
    return sorted(items, key=lambda item: (item[3], item[0]), reverse=True)
