"""What the course's HTML looks like, without a browser (tests/test_e2e.py checks it rendered).

- SQL: no trailing blanks, no stray space before LIMIT/OFFSET; the stylesheet wraps at spaces.
- Boxes and verdicts: icons are inline SVG (no font needed), the word beside them, no emoji.
- ``course.frame``: a database client's table: no index, NULL, column types, scrolling box.
- The engine's log (lesson 07) renders as the SQL log does.
"""

from __future__ import annotations

import re
from datetime import datetime

from sqlalchemy import select

import course
from course.display import STYLE, box, highlight_sql, tidy_sql
from course.exercises.verdict import CORRECT, INCORRECT, RuleResult, Verdict
from course.frames import MAX_ROWS, frame_html
from course.lab.bulk import EngineLog
from course.schema import User

EMOJI = re.compile("[\u2190-\u2bff\U0001F000-\U0001FAFF\ufe0f]")


def visible_text(markup: str) -> str:
    return re.sub(r"<[^>]+>", "", re.sub(r"<(style|svg)\b.*?</\1>", "", markup, flags=re.S))


def test_sql_has_no_stray_indent_before_limit() -> None:
    sql = str(select(User.id).where(User.id > 3).order_by(User.id).limit(3).offset(1).compile())
    assert "\n LIMIT" in sql  # how SQLAlchemy writes it
    tidy = tidy_sql(sql)
    assert not re.search(r"\n[ \t]", tidy) and not re.search(r"[ \t]\n", tidy), tidy
    assert "\nLIMIT" in tidy
    # indentation the author wrote is kept
    assert tidy_sql("WITH t AS (\n    SELECT 1\n)\nSELECT * FROM t") == "WITH t AS (\n    SELECT 1\n)\nSELECT * FROM t"
    assert "\n<span class=\"kw\">LIMIT</span>" in highlight_sql(sql)


def test_sql_log_wraps_at_spaces_on_a_clear_background() -> None:
    rule = next(line for line in STYLE.splitlines() if "white-space:pre-wrap" in line and ".course-sql-log" in line)
    for declaration in ("white-space:pre-wrap!important", "word-break:normal!important",
                        "background:transparent!important"):
        assert declaration in rule


def test_boxes_draw_their_icon_without_a_font() -> None:
    for kind, word in (("ok", "Correct"), ("bad", "Not yet"), ("todo", "Not attempted yet"), ("info", "Hint")):
        markup = box(kind, word)
        assert f'<svg class="course-icon course-icon-{kind}"' in markup
        assert not EMOJI.search(visible_text(markup)), visible_text(markup)
        assert word in visible_text(markup)


def test_verdict_rules_marked_without_a_font() -> None:
    rules = [RuleResult("same rows", True), RuleResult("one statement", False, "2 statements")]
    for status in (CORRECT, INCORRECT):
        markup = Verdict("00.q1", "Users", status, "", rules)._repr_html_()
        assert markup.count('<svg class="course-icon') == 3  # the headline's and one per rule
        assert not EMOJI.search(visible_text(markup)), visible_text(markup)


def test_frame_is_shown_as_a_database_client_shows_a_result() -> None:
    df = course.frame([
        {"id": 1, "name": "ada", "invited_by": None, "score": 1.5, "seen": datetime(2026, 1, 2, 3, 4, 5)},
        {"id": 2, "name": None, "invited_by": 1, "score": None, "seen": None},
    ])
    assert isinstance(df, __import__("pandas").DataFrame)
    assert df["invited_by"].tolist()[1] == 1  # an integer column with NULLs stays integer
    markup = frame_html(df)
    assert '<div class="course-frame">' in markup and "<tbody><tr><td>1</td>" in markup  # no index column
    assert markup.count("<tr>") == 3 and markup.count("<thead>") == 1  # no index-name row
    text = visible_text(markup)
    for shown in ("<NA>", "NaN", "NaT", "None", "1.0"):
        assert shown not in text, text
    assert text.count("NULL") == 4
    assert re.findall(r'class="course-type">(\w+)<', markup) == ["integer", "text", "integer", "float", "datetime"]
    assert "2026-01-02 03:04:05" in text
    assert df._repr_html_() == markup  # what the notebook shows


def test_long_frame_shows_head_and_tail() -> None:
    df = course.frame([(i,) for i in range(MAX_ROWS + 40)], columns=["n"])
    markup = frame_html(df)
    assert "more rows" in markup and f"{MAX_ROWS + 40:,} rows" in markup
    assert markup.count("<tr>") < 20


def test_engine_log_renders_as_the_sql_log() -> None:
    log = EngineLog(["INSERT INTO users (name) VALUES (?) RETURNING id",
                     "[insertmanyvalues 1/3 (unordered; batch not supported)] ('ada',)", "COMMIT"])
    notes = log.matching("insertmanyvalues")
    assert notes == [log[1]] and isinstance(notes, list)
    markup = notes._repr_html_()
    assert 'class="course-sql-log course-engine-log"' in markup and "<b>1</b> line" in markup
    assert "['" not in markup
