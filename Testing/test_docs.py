"""The user pages hold together: every relative link and image in README.md, CHANGELOG.md, docs/*.md and the
bundled model's card points at a file that exists, every ``#anchor`` at a heading that exists, and the README stays
a short page that names the two set-up commands.

Each check is a plain function over text, so the tests below also feed it a broken page and see it fail.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
README_MAX_LINES = 200
PAGES = sorted(
    [README, ROOT / "CHANGELOG.md", ROOT / "Resources" / "Models" / "diffux2ct-64" / "README.md"]
    + list((ROOT / "docs").glob("*.md")),
)

# [text](target) and ![alt](target), with an optional "title"; <img src="..."> in raw HTML.
MARKDOWN_LINK = re.compile(r"!?\[(?:[^\[\]]|\[[^\]]*\])*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
HTML_IMAGE = re.compile(r"<img\s[^>]*src=[\"']([^\"']+)[\"']", re.IGNORECASE)
FENCE = re.compile(r"^(```|~~~)")
HEADING = re.compile(r"^(#{1,6})\s+(.*?)\s*#*\s*$")


def _prose_lines(text: str) -> list[str]:
    """The page's lines outside fenced code blocks, with inline code spans blanked (a link in code is not a link)."""
    lines, fenced = [], False
    for line in text.splitlines():
        if FENCE.match(line.strip()):
            fenced = not fenced
            continue
        if not fenced:
            lines.append(re.sub(r"`[^`]*`", "``", line))
    return lines


def links(text: str) -> list[str]:
    """Every link and image target of a markdown page, outside code."""
    found = []
    for line in _prose_lines(text):
        found += MARKDOWN_LINK.findall(line) + HTML_IMAGE.findall(line)
    return found


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, markup and punctuation dropped, spaces to hyphens."""
    text = re.sub(r"`([^`]*)`", r"\1", heading)
    text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", text)
    text = re.sub(r"[*_]", "", text).strip().lower()
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def anchors(text: str) -> set[str]:
    """The anchors a page's headings make, GitHub-style (a repeated heading gets -1, -2, ...)."""
    seen: dict[str, int] = {}
    result = set()
    for line in _prose_lines(text):
        match = HEADING.match(line)
        if not match:
            continue
        base = slug(match.group(2))
        count = seen.get(base, 0)
        seen[base] = count + 1
        result.add(base if count == 0 else f"{base}-{count}")
    return result


def broken_links(page: Path, text: str | None = None) -> list[str]:
    """The relative links of ``page`` (its text, or ``text`` in its place) whose file or heading does not exist."""
    text = page.read_text(encoding="utf-8") if text is None else text
    problems = []
    for target in links(text):
        if re.match(r"^[a-z][a-z0-9+.-]*:", target, re.IGNORECASE):  # http:, https:, mailto: ...
            continue
        path_part, _, anchor = target.partition("#")
        destination = (page.parent / path_part).resolve() if path_part else page
        if not destination.exists():
            problems.append(f"{target}: no such file")
            continue
        if anchor:
            if destination.suffix != ".md" or destination.is_dir():
                problems.append(f"{target}: an anchor into a file that is not a markdown page")
            elif anchor not in anchors(destination.read_text(encoding="utf-8") if destination != page else text):
                problems.append(f"{target}: no heading makes #{anchor}")
    return problems


def readme_problems(text: str) -> list[str]:
    """What the README must be: at most README_MAX_LINES lines, naming `make demo` and `make test`."""
    problems = []
    count = len(text.splitlines())
    if count > README_MAX_LINES:
        problems.append(f"README.md has {count} lines (at most {README_MAX_LINES})")
    for command in ("make demo", "make test"):
        if command not in text:
            problems.append(f"README.md does not name `{command}`")
    return problems


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_relative_link_and_image_exists(page):
    assert page.exists()
    assert broken_links(page) == []


def test_the_docs_folder_holds_the_pages_the_readme_promises():
    for name in ("cli", "training", "performance", "geometry", "anatomy", "slicer", "development"):
        assert (ROOT / "docs" / f"{name}.md").exists(), name


def test_readme_is_short_and_names_the_two_setup_commands():
    assert readme_problems(README.read_text(encoding="utf-8")) == []


def test_the_readme_shows_the_screenshot():
    assert "Resources/Screenshots/DiffuX2CT.png" in links(README.read_text(encoding="utf-8"))


# The checks themselves: each one fails on a page that is wrong.


def test_a_missing_file_is_a_broken_link():
    page = ROOT / "docs" / "cli.md"
    assert broken_links(page, "See [training](training.md) and [nowhere](no-such-page.md).") == [
        "no-such-page.md: no such file"
    ]


def test_a_missing_image_is_a_broken_link():
    text = "![fine](Resources/Screenshots/DiffuX2CT.png)\n![gone](Resources/Screenshots/gone.png)\n"
    assert broken_links(README, text) == ["Resources/Screenshots/gone.png: no such file"]
    assert broken_links(README, '<img src="Resources/Screenshots/gone.png">') == [
        "Resources/Screenshots/gone.png: no such file"
    ]


def test_an_anchor_without_its_heading_is_a_broken_link():
    page = ROOT / "docs" / "cli.md"
    text = "# Title\n\n## Sampling precision\n\n[here](#sampling-precision) [there](#no-such-heading)\n"
    assert broken_links(page, text) == ["#no-such-heading: no heading makes #no-such-heading"]
    assert broken_links(page, "[x](training.md#no-such-heading)") == [
        "training.md#no-such-heading: no heading makes #no-such-heading"
    ]


def test_links_in_code_are_not_links_and_web_links_are_not_checked():
    text = "```\n[a](missing.md)\n```\n`[b](missing.md)` [c](https://example.org/missing.md)\n"
    assert broken_links(README, text) == []


def test_slugs_follow_github():
    assert slug("The paper-128 preset: a first model (not bundled)") == "the-paper-128-preset-a-first-model-not-bundled"
    assert slug("`evaluate` and **more**") == "evaluate-and-more"
    assert anchors("## A\n## A\n```\n## B\n```\n") == {"a", "a-1"}


def test_a_long_readme_or_one_without_the_setup_commands_fails():
    long_text = "make demo\nmake test\n" + "line\n" * README_MAX_LINES
    assert readme_problems(long_text) == [f"README.md has {README_MAX_LINES + 2} lines (at most {README_MAX_LINES})"]
    assert readme_problems("make demo only\n") == ["README.md does not name `make test`"]
