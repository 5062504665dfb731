"""Every relative link in README.md and docs/*.md points to a file that exists.

A link into a Markdown file with a ``#fragment`` must also name one of that file's headings
(GitHub's anchor rules), so "see troubleshooting#missinggreenlet" cannot silently go stale.
"""

from __future__ import annotations

import re
from pathlib import Path
from urllib.parse import unquote

import pytest

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]

_FENCE = re.compile(r"^(```|~~~).*?^\1", re.M | re.S)
_CODE = re.compile(r"`[^`\n]*`")
_LINK = re.compile(r"!?\[[^\]]*\]\(\s*(?:<([^>]+)>|([^)\s]+))(?:\s+\"[^\"]*\")?\s*\)")
_REF = re.compile(r"^\s*\[[^\]]+\]:\s*(\S+)", re.M)
_EXTERNAL = re.compile(r"^[a-z][a-z0-9+.-]*:", re.I)  # http:, https:, mailto:, ...


def _prose(text: str) -> str:
    """The page without code blocks and inline code (links there are examples, not links)."""
    return _CODE.sub("", _FENCE.sub("", text))


def links(page: Path) -> list[str]:
    text = _prose(page.read_text(encoding="utf-8"))
    return [m.group(1) or m.group(2) for m in _LINK.finditer(text)] + _REF.findall(text)


def anchors(page: Path) -> set[str]:
    """GitHub's heading anchors: lower case, punctuation dropped, spaces to hyphens."""
    out: set[str] = set()
    seen: dict[str, int] = {}
    for line in _FENCE.sub("", page.read_text(encoding="utf-8")).splitlines():
        match = re.match(r"^#{1,6}\s+(.*?)\s*#*\s*$", line)
        if not match:
            continue
        slug = re.sub(r"[^\w\- ]", "", match.group(1).strip().lower()).replace(" ", "-")
        n = seen.get(slug, 0)
        seen[slug] = n + 1
        out.add(slug if n == 0 else f"{slug}-{n}")
    return out


def test_there_are_pages_to_check():
    names = {p.name for p in PAGES}
    assert {"README.md", "cheatsheet.md", "troubleshooting.md", "migrations.md"} <= names


@pytest.mark.parametrize("page", PAGES, ids=[str(p.relative_to(ROOT)) for p in PAGES])
def test_relative_links_point_to_existing_files(page: Path):
    broken = []
    for target in links(page):
        if _EXTERNAL.match(target):
            continue
        path_part, _, fragment = target.partition("#")
        resolved = (page.parent / unquote(path_part)).resolve() if path_part else page
        if not resolved.exists():
            broken.append(f"{target} (no such file: {resolved.relative_to(ROOT) if resolved.is_relative_to(ROOT) else resolved})")
            continue
        if fragment and resolved.suffix == ".md" and fragment.lower() not in anchors(resolved):
            broken.append(f"{target} (no heading with the anchor #{fragment} in {resolved.name})")
    assert not broken, f"{page.name}: broken links:\n  " + "\n  ".join(broken)


def test_the_checker_sees_links_and_skips_code(tmp_path: Path):
    page = tmp_path / "p.md"
    page.write_text(
        "# A title, with: punctuation\n[a](x.md) [b](<y z.md>) ![c](img.png \"t\")\n"
        "`[no](inline.md)`\n```\n[no](fenced.md)\n```\n[ref]: r.md\n",
        encoding="utf-8",
    )
    assert links(page) == ["x.md", "y z.md", "img.png", "r.md"]
    assert anchors(page) == {"a-title-with-punctuation"}


# ------------------------------------------------------------------ quoted errors are real

def _page(name: str) -> str:
    return (ROOT / "docs" / name).read_text(encoding="utf-8")


def test_cheatsheet_quotes_what_a_row_really_raises():
    """`row["username"]` and `row.keys()` fail with the errors the cheat sheet quotes."""
    import sqlalchemy as sa

    engine = sa.create_engine("sqlite://")
    with engine.connect() as conn:
        row = conn.execute(sa.text("SELECT 1 AS username")).one()
    raised = {}
    for name, attempt in {"index": lambda: row["username"], "keys": lambda: row.keys()}.items():
        with pytest.raises(Exception) as caught:
            attempt()
        raised[name] = f"{type(caught.value).__name__}: {caught.value}"
    cheatsheet = _page("cheatsheet.md")
    assert raised["index"].startswith("TypeError") and raised["index"] in cheatsheet
    assert raised["keys"].startswith("AttributeError") and raised["keys"] in cheatsheet
    assert row._fields == ("username",)  # the 2.x spelling the cheat sheet offers


def test_troubleshooting_quotes_pending_rollback_error_as_sqlalchemy_words_it():
    """The quoted PendingRollbackError is the installed SQLAlchemy's, up to its version in the links."""
    import sqlalchemy as sa
    from sqlalchemy.orm import DeclarativeBase, Session, mapped_column

    class Base(DeclarativeBase):
        pass

    class Tag(Base):
        __tablename__ = "tags"
        id = mapped_column(sa.Integer, primary_key=True)
        name = mapped_column(sa.String, unique=True, nullable=False)

    engine = sa.create_engine("sqlite://")
    Base.metadata.create_all(engine)
    with Session(engine) as session:
        session.add(Tag(name="python"))
        session.commit()
        session.add(Tag(name="python"))
        with pytest.raises(sa.exc.IntegrityError):
            session.flush()
        with pytest.raises(sa.exc.PendingRollbackError) as caught:
            session.execute(sa.select(1))
    quoted = f"sqlalchemy.exc.PendingRollbackError: {caught.value}"
    version = "".join(sa.__version__.split(".")[:2])  # "20" or "21": the links' only difference
    page = _page("troubleshooting.md").replace("sqlalche.me/e/21/", f"sqlalche.me/e/{version}/")
    assert quoted in page
