"""What README.md and docs/ cite, the repository ships: every relative link and every
cited Markdown file exists in the repository; other links are public web pages."""

from __future__ import annotations

import re
from pathlib import Path
from urllib.parse import urlsplit

import pytest

ROOT = Path(__file__).resolve().parent.parent
DOCS = sorted([ROOT / "README.md", *(ROOT / "docs").glob("*.md")])
LINK = re.compile(r"!?\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
CITED_MD = re.compile(r"`([^`\s]+\.md)(?:#[^`]*)?`")
LOCAL_HOSTS = ("localhost", "127.0.0.1", "0.0.0.0", "::1")


def links(text: str) -> list[str]:
    """Link targets of inline Markdown links, outside fenced code blocks."""
    prose = re.sub(r"```.*?```", "", text, flags=re.S)
    return LINK.findall(prose)


def problem(doc: Path, target: str) -> str | None:
    """Why ``target`` (a link in ``doc``) points outside the repository, or None."""
    parts = urlsplit(target)
    if parts.scheme in ("http", "https"):
        host = parts.hostname or ""
        return f"local web address {target}" if host in LOCAL_HOSTS else None
    if parts.scheme or target.startswith(("/", "\\", "~")) or re.match(r"[A-Za-z]:", target):
        return f"absolute or local path {target}"
    if not parts.path:  # an anchor in the same page
        return None
    path = (doc.parent / parts.path).resolve()
    if ROOT not in path.parents and path != ROOT:
        return f"{target} leaves the repository"
    if not path.exists():
        return f"{target} does not exist"
    return None


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_link_stays_in_the_repository_or_is_public(doc: Path) -> None:
    text = doc.read_text(encoding="utf-8")
    problems = [p for p in (problem(doc, t) for t in links(text)) if p]
    assert not problems, f"{doc.relative_to(ROOT)}: {problems}"


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_cited_markdown_file_is_shipped(doc: Path) -> None:
    text = doc.read_text(encoding="utf-8")
    missing = [
        name
        for name in CITED_MD.findall(text)
        if not (doc.parent / name).exists() and not (ROOT / name).exists()
    ]
    assert not missing, f"{doc.relative_to(ROOT)} cites files the repository lacks: {missing}"


@pytest.mark.parametrize(
    ("target", "bad"),
    [
        ("../shared/spec/PROTOCOL.md", True),
        ("/work/shared/spec/SPEC.md", True),
        ("file:///C:/Users/me/guide.txt", True),
        ("C:/Users/me/guide.txt", True),
        ("http://localhost:8888/tree", True),
        ("missing.md", True),
        ("protocol.md#hello", False),
        ("../README.md", False),
        ("https://www.cmegroup.com/markets/equities/nasdaq.html", False),
        ("#objects", False),
    ],
)
def test_link_checker_tells_outside_targets_from_shipped_ones(target: str, bad: bool) -> None:
    assert (problem(ROOT / "docs" / "guide.md", target) is not None) is bad


def test_link_parser_finds_inline_links_and_skips_code_blocks() -> None:
    text = 'See [a](docs/a.md) and ![b](img/b.png "t").\n```\n[c](../shared/x.md)\n```\n'
    assert links(text) == ["docs/a.md", "img/b.png"]
