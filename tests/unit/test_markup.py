"""Markup served to clients: HTML is cleaned whole; markdown keeps its own text intact and
only the HTML inside it is cleaned."""

from __future__ import annotations

import pytest

from engine.web.inspection import sanitize_markup


@pytest.mark.parametrize(
    "text",
    [
        "Tom && Jerry",
        "```python\nif a < b and c > d:\n    run('x & y')\n```",
        "Read <https://example.com/search?q=a&page=2> or write to <ops@example.com>.",
        "Escaped on purpose: &lt;script&gt; stays text.",
    ],
)
def test_markdown_without_html_is_served_as_written(text: str) -> None:
    assert sanitize_markup("text/markdown; charset=utf-8", text) == text


def test_html_in_markdown_is_cleaned_and_its_autolinks_kept() -> None:
    text = "Hi <b>there</b> <https://example.com/a?b=1> <script>steal()</script><img src=x onerror=go()>"
    assert sanitize_markup("text/markdown", text) == 'Hi <b>there</b> <https://example.com/a?b=1> <img src="x">'


@pytest.mark.parametrize(
    "text",
    [
        "<https://x.example/onclick=go()>",  # as HTML, an element with an onclick handler
        '<https://x.example/"onclick="go()>',  # a quote that could end an attribute
        "<javascript:go()>",
    ],
)
def test_an_autolink_that_could_act_as_html_is_cleaned_as_html(text: str) -> None:
    assert sanitize_markup("text/markdown", text) == ""


def test_text_holding_the_placeholder_characters_cannot_borrow_an_autolink() -> None:
    text = "x \ue0000\ue001 <b>y</b> <https://example.com>"
    assert sanitize_markup("text/markdown", text) == "x \ue0000\ue001 <b>y</b> ", "cleaned whole, as HTML is"


def test_html_is_cleaned_whole_and_other_types_are_left_alone() -> None:
    assert sanitize_markup("text/html", "Tom && Jerry <script>x</script>") == "Tom &amp;&amp; Jerry "
    assert sanitize_markup("text/plain", "<script>x</script>") == "<script>x</script>"


def test_svg_and_xml_are_served_with_their_character_references_written_out() -> None:
    """What a renderer reads once it decoded the references, so the rules see it too;
    references to markup and control characters stay, as writing them would change the
    document."""
    svg = '<animate attributeName="href" values="&#106;avascript&#x3A;go()" to="&#x0006A;s&#115"/>'
    assert sanitize_markup("image/svg+xml", svg) == '<animate attributeName="href" values="javascript:go()" to="jss"/>'
    kept = 'a="&#34;&#x27;&#60;&#x3e;&#38;&#9;&#0;&#xD800;&#1114112;&#99999999999;" &lt;&amp;'
    assert sanitize_markup("application/xml", kept) == kept
    assert sanitize_markup("application/atom+xml; charset=utf-8", "&#xe9;t&#233;") == "\u00e9t\u00e9"
    assert sanitize_markup("text/plain", "&#106;") == "&#106;"
