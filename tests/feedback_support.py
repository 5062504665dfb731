"""What every rendered verdict must satisfy: code shows as code, no markup leaks into the text."""

from __future__ import annotations

import html
import re

from course.exercises.verdict import Verdict, plain

# tags the course's HTML uses: in plain text they would be markup leaking onto the screen
HTML_TAG = re.compile(r"</?(code|b|i|em|strong|div|span|pre|ul|ol|li|br|p|a|table|tr|td|th)\b[^>]*>", re.I)


def visible_text(markup: str) -> str:
    """What a browser shows of an HTML fragment (the <style> sheet is not shown)."""
    markup = re.sub(r"<style>.*?</style>", "", markup, flags=re.S)
    return html.unescape(re.sub(r"<[^>]+>", "", markup))


def assert_renders_cleanly(verdict: Verdict) -> None:
    text = str(verdict)
    assert "`" not in text, f"a backtick leaks into the plain text:\n{text}"
    assert not HTML_TAG.search(text), f"an HTML tag leaks into the plain text:\n{text}"
    markup = verdict._repr_html_()
    shown = visible_text(markup)
    assert "`" not in shown, f"a raw backtick shows in the HTML:\n{markup}"
    assert markup.count("<code>") == markup.count("</code>")
    # every message the verdict holds is on screen in both (each distinct problem once)
    if verdict.message:
        said = " ".join(plain(verdict.message).split())[:60]
        assert said in " ".join(text.split()), text
        assert said in " ".join(shown.split()), markup
