"""The sample domain every lesson uses: users, posts, comments, tags and orders.

Typed 2.x declarative models (``Mapped[...]``, ``mapped_column``) with
``AsyncAttrs`` so lessons can show ``await obj.awaitable_attrs.posts``.
Column types are chosen so the same rows read back identically on SQLite and
PostgreSQL: naive UTC datetimes, money as integer cents.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import (
    Boolean,
    CheckConstraint,
    Column,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    String,
    Table,
    Text,
)
from sqlalchemy.ext.asyncio import AsyncAttrs
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship


class Base(AsyncAttrs, DeclarativeBase):
    """Declarative base of the course schema."""


post_tags = Table(
    "post_tags",
    Base.metadata,
    Column("post_id", ForeignKey("posts.id", ondelete="CASCADE"), primary_key=True),
    Column("tag_id", ForeignKey("tags.id", ondelete="CASCADE"), primary_key=True),
)


class User(Base):
    __tablename__ = "users"

    id: Mapped[int] = mapped_column(primary_key=True)
    email: Mapped[str] = mapped_column(String(120), unique=True)
    username: Mapped[str] = mapped_column(String(40), unique=True)
    display_name: Mapped[str] = mapped_column(String(80))
    role: Mapped[str] = mapped_column(String(20), default="member")
    country: Mapped[str] = mapped_column(String(2))
    is_active: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[datetime] = mapped_column(DateTime)
    last_login: Mapped[datetime | None] = mapped_column(DateTime)
    phone: Mapped[str | None] = mapped_column(String(30))
    invited_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))

    invited_by: Mapped[User | None] = relationship(
        remote_side=[id], back_populates="invitees"
    )
    invitees: Mapped[list[User]] = relationship(back_populates="invited_by")
    posts: Mapped[list[Post]] = relationship(
        back_populates="author", order_by="Post.id"
    )
    comments: Mapped[list[Comment]] = relationship(
        back_populates="author", order_by="Comment.id"
    )
    orders: Mapped[list[Order]] = relationship(
        back_populates="user", order_by="Order.id"
    )

    def __repr__(self) -> str:
        return f"User(id={self.id!r}, username={self.username!r})"


class Post(Base):
    __tablename__ = "posts"

    id: Mapped[int] = mapped_column(primary_key=True)
    author_id: Mapped[int] = mapped_column(ForeignKey("users.id"), index=True)
    title: Mapped[str] = mapped_column(String(200))
    body: Mapped[str] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(20), default="draft")
    created_at: Mapped[datetime] = mapped_column(DateTime)
    published_at: Mapped[datetime | None] = mapped_column(DateTime)

    author: Mapped[User] = relationship(back_populates="posts")
    comments: Mapped[list[Comment]] = relationship(
        back_populates="post", cascade="all, delete-orphan", order_by="Comment.id"
    )
    tags: Mapped[list[Tag]] = relationship(
        secondary=post_tags, back_populates="posts", order_by="Tag.id"
    )

    def __repr__(self) -> str:
        return f"Post(id={self.id!r}, title={self.title!r})"


class Comment(Base):
    __tablename__ = "comments"

    id: Mapped[int] = mapped_column(primary_key=True)
    post_id: Mapped[int] = mapped_column(
        ForeignKey("posts.id", ondelete="CASCADE"), index=True
    )
    author_id: Mapped[int] = mapped_column(ForeignKey("users.id"), index=True)
    parent_id: Mapped[int | None] = mapped_column(ForeignKey("comments.id"))
    body: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(DateTime)

    post: Mapped[Post] = relationship(back_populates="comments")
    author: Mapped[User] = relationship(back_populates="comments")
    parent: Mapped[Comment | None] = relationship(
        remote_side=[id], back_populates="replies"
    )
    replies: Mapped[list[Comment]] = relationship(back_populates="parent")

    def __repr__(self) -> str:
        return f"Comment(id={self.id!r}, post_id={self.post_id!r})"


class Tag(Base):
    __tablename__ = "tags"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(40), unique=True)

    posts: Mapped[list[Post]] = relationship(
        secondary=post_tags, back_populates="tags", order_by="Post.id"
    )

    def __repr__(self) -> str:
        return f"Tag(id={self.id!r}, name={self.name!r})"


class Order(Base):
    __tablename__ = "orders"

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"), index=True)
    status: Mapped[str] = mapped_column(String(20))
    total_cents: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(DateTime)

    user: Mapped[User] = relationship(back_populates="orders")

    __table_args__ = (
        # the composite index lesson 11 studies: equality column first
        Index("ix_orders_user_status", "user_id", "status"),
        # the partial index lesson 11 studies: only the orders still alive
        Index(
            "ix_orders_active",
            "user_id",
            "created_at",
            postgresql_where=(status != "cancelled"),
            sqlite_where=(status != "cancelled"),
        ),
        # lesson 10 trips it: a negative total is refused by the database itself
        CheckConstraint("total_cents >= 0", name="ck_orders_total_not_negative"),
    )

    def __repr__(self) -> str:
        return f"Order(id={self.id!r}, status={self.status!r})"


#: Tables in an order that satisfies every foreign key (parents first).
TABLES_IN_LOAD_ORDER = ("users", "tags", "posts", "post_tags", "comments", "orders")

MODELS = (User, Post, Comment, Tag, Order)
