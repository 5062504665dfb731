"""The capstone's contract and its reference design: what ``solution()`` shows."""

from __future__ import annotations

from collections import defaultdict
from datetime import datetime

from sqlalchemy import func, select, tuple_
from sqlalchemy.exc import IntegrityError

from ...lab.errorkinds import constraint_kind
from ...schema import Comment, Post, Tag, User, post_tags

SCALE = 0.3  # the checker's data set: 1,500 posts (the notebook has 5,000)
TAG = "async"  # the tag the checker filters by
QUOTED_TAG = "it's-new"  # a tag nobody uses, with a quote: pasted into SQL text it breaks the statement
UNIQUE_INDEX = "CREATE UNIQUE INDEX IF NOT EXISTS uq_posts_author_title ON posts (author_id, title)"
FIELDS = ("id", "title", "author", "published_at", "tags", "comment_count")
PAGE_BUDGET = 3
CREATE_BUDGET = 6
WHEN = datetime(2026, 1, 1, 9, 30)  # published_at of the posts the checker creates (after every seeded one)



class AlreadyExists(Exception):
    """The domain error ``create_post`` raises when the author already has a post with that title."""




class FeedRepository:
    """Two statements per feed page whatever its size; one savepoint per new post."""

    @staticmethod
    async def feed(session, *, limit, cursor=None, tag=None):
        comment_count = select(func.count(Comment.id)).where(Comment.post_id == Post.id).scalar_subquery()
        stmt = (
            select(Post.id, Post.title, Post.published_at, User.username, comment_count.label("comment_count"))
            .join(Post.author)
            .where(Post.status == "published")
            .order_by(Post.published_at.desc(), Post.id.desc())
            .limit(limit + 1)
        )
        if tag is not None:
            stmt = stmt.where(Post.tags.any(Tag.name == tag))
        if cursor is not None:
            stmt = stmt.where(tuple_(Post.published_at, Post.id) < tuple_(*cursor))
        rows = (await session.execute(stmt)).all()
        page = rows[:limit]
        names = defaultdict(list)
        if page:
            pairs = await session.execute(
                select(post_tags.c.post_id, Tag.name)
                .join(Tag, Tag.id == post_tags.c.tag_id)
                .where(post_tags.c.post_id.in_([row.id for row in page]))
            )
            for post_id, name in pairs:
                names[post_id].append(name)
        items = [
            {
                "id": row.id,
                "title": row.title,
                "author": row.username,
                "published_at": row.published_at,
                "tags": sorted(names[row.id]),
                "comment_count": row.comment_count,
            }
            for row in page
        ]
        next_cursor = (page[-1].published_at, page[-1].id) if len(rows) > limit else None
        return items, next_cursor

    @staticmethod
    async def create_post(session, *, author_id, title, body, tag_names, published_at):
        names = list(dict.fromkeys(tag_names))
        known = {}
        if names:
            known = {t.name: t for t in await session.scalars(select(Tag).where(Tag.name.in_(names)))}
        post = Post(
            author_id=author_id,
            title=title,
            body=body,
            status="published",
            created_at=published_at,
            published_at=published_at,
        )
        try:
            async with session.begin_nested():  # a SAVEPOINT: a failure undoes this post only
                session.add(post)  # in the session first, then linked to tags that already are
                post.tags = [known.get(name) or Tag(name=name) for name in names]
        except IntegrityError as exc:
            if constraint_kind(exc) != "unique":  # a foreign key, a NOT NULL...: not a duplicate
                raise
            # tags.name is unique too: a new tag another request committed meanwhile fails the same way
            if await session.scalar(select(Post.id).where(Post.author_id == author_id, Post.title == title)) is None:
                raise
            raise AlreadyExists(f"author {author_id} already has a post titled {title!r}") from exc
        return post.id
