"""The documentation: the README's set-up commands, and every relative link in README.md and docs/*.md."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
SETUP = [
    "python3 -m venv .venv && . .venv/bin/activate && pip install -e '.[tensorflow-cpu]' && python scripts/demo.py",
    "python3 -m venv .venv && . .venv/bin/activate && pip install -e '.[tensorflow-cpu,test,jax,torch]' && python -m pytest",
]
FENCE = re.compile(r"^```.*?^```[ \t]*$", re.MULTILINE | re.DOTALL)
# [text](target) and ![alt](target), with an optional "title".
LINK = re.compile(r"\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")


def _slug(heading: str) -> str:
    """GitHub's anchor for a heading: lowercase, punctuation but '-' and '_' dropped, spaces to '-'."""
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", heading)  # a link in a heading anchors by its text
    text = re.sub(r"[^\w\- ]", "", text.strip().lower())
    return text.replace(" ", "-")


def _anchors(page: Path) -> set[str]:
    anchors: set[str] = set()
    seen: dict[str, int] = {}
    for line in FENCE.sub("", page.read_text()).splitlines():
        match = re.match(r"^#{1,6}\s+(.*?)\s*#*\s*$", line)
        if match:
            slug = _slug(match.group(1))
            # A repeated heading gets -1, -2, ... as on GitHub.
            anchors.add(f"{slug}-{seen[slug]}" if slug in seen else slug)
            seen[slug] = seen.get(slug, 0) + 1
    return anchors


def _links(page: Path) -> list[str]:
    text = FENCE.sub("", page.read_text())
    text = re.sub(r"`[^`\n]*`", "code", text)  # inline code holds no link, but may be a link's text
    return [target for target in LINK.findall(text) if not re.match(r"^[a-z][a-z0-9+.-]*:", target)]


def test_the_readme_opens_with_the_two_setup_commands():
    readme = (ROOT / "README.md").read_text()
    assert readme.startswith("# tracker\n\n```bash\n")
    first_block = readme.split("```bash\n", 1)[1].split("```", 1)[0]
    assert first_block.splitlines() == SETUP


def test_the_readme_links_every_docs_page():
    linked = {(ROOT / target.split("#")[0]).resolve() for target in _links(ROOT / "README.md")}
    assert set(PAGES[1:]) <= linked, sorted(str(p.relative_to(ROOT)) for p in set(PAGES[1:]) - linked)


def test_the_slug_rule():
    assert _slug("What is guaranteed, and what is not") == "what-is-guaranteed-and-what-is-not"
    assert _slug("The `python -m` forms") == "the-python--m-forms"
    assert _slug("Checkpoints inside epochs, and a save on SIGTERM") == "checkpoints-inside-epochs-and-a-save-on-sigterm"


def test_the_link_finder_skips_code_and_sees_links_with_code_in_their_text(tmp_path):
    page = tmp_path / "page.md"
    page.write_text("[`tracker list`](cli.md#reading-runs) `[not](a.md)`\n```bash\n[no](b.md)\n```\n![img](x.png)\n"
                    "[web](https://example.com)\n")
    assert _links(page) == ["cli.md#reading-runs", "x.png"]


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_relative_link_points_at_a_file_and_a_heading(page):
    assert _links(page), f"{page.name} has no links: the link finder is broken"
    for target in _links(page):
        path, _, anchor = target.partition("#")
        file = (page.parent / path).resolve() if path else page
        assert file.exists(), f"{page.relative_to(ROOT)} links to {target}: no such file"
        if anchor:
            assert file.suffix == ".md", f"{page.relative_to(ROOT)} links to {target}: an anchor into a non-Markdown file"
            assert anchor in _anchors(file), (
                f"{page.relative_to(ROOT)} links to {target}: no such heading. "
                f"Expected one of {sorted(_anchors(file))}")
