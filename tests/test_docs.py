"""The documentation: the generated scenario reference is the schema's, the README stays short,
relative links resolve, and no page cites a document the repository does not hold."""

from __future__ import annotations

import fnmatch
import os
import re
from pathlib import Path

import pytest

from fedsec.reference import with_reference

ROOT = Path(__file__).parents[1]
REFERENCE = ROOT / "docs" / "reference.md"
README = ROOT / "README.md"
PAGES = [README, ROOT / "EXPERIMENTS.md", *sorted((ROOT / "docs").glob("*.md"))]

FENCE = re.compile(r"^(```|~~~)")
LINK = re.compile(r"!?\[(?:[^\[\]]|\[[^\]]*\])*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
INLINE_CODE = re.compile(r"(`+)(?:(?!\1).)+?\1")


def test_scenario_reference_is_current() -> None:
    text = REFERENCE.read_text()
    assert with_reference(text) == text, "regenerate: python -m fedsec.reference --write docs/reference.md"


def test_readme_is_short() -> None:
    lines = README.read_text().count("\n")
    assert lines <= 250, f"README.md has {lines} lines (at most 250: move details to docs/)"


def prose_lines(text: str) -> list[str]:
    """The lines outside fenced code blocks."""
    lines, fenced = [], False
    for line in text.splitlines():
        if FENCE.match(line.lstrip()):
            fenced = not fenced
            continue
        if not fenced:
            lines.append(line)
    return lines


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: link targets dropped, lower case, punctuation removed,
    spaces to hyphens."""
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", heading).strip().lower()
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def anchors(path: Path) -> set[str]:
    """Every heading anchor of a Markdown file, with GitHub's -1, -2... for repeated headings."""
    seen: dict[str, int] = {}
    out = set()
    for line in prose_lines(path.read_text()):
        match = re.match(r"^#{1,6}\s+(.*?)\s*#*\s*$", line)
        if not match:
            continue
        base = slug(match.group(1))
        count = seen.get(base, 0)
        seen[base] = count + 1
        out.add(base if count == 0 else f"{base}-{count}")
    return out


def relative_links(path: Path) -> list[str]:
    """Link targets of a Markdown file that point inside the repository (code spans and fenced
    blocks excluded)."""
    return [target for line in prose_lines(path.read_text()) for target in relative_links_of(line)]


def relative_links_of(text: str) -> list[str]:
    """Link targets in one line of prose, without URLs (``scheme:``) and code spans."""
    return [t for t in LINK.findall(INLINE_CODE.sub("", text)) if not re.match(r"^[a-z][a-z0-9+.-]*:", t, re.I)]


def test_link_parsing() -> None:
    assert slug("As a Flower App (`flwr run`)") == "as-a-flower-app-flwr-run"
    assert slug("Encryption (CKKS)") == "encryption-ckks"
    assert slug("Sweeps, reports and games") == "sweeps-reports-and-games"
    line = "see [a](x.md#b), [c](https://e.org), `[d](not-a-link.md)` and ![i](img.png)"
    assert relative_links_of(line) == ["x.md#b", "img.png"]


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_relative_links_resolve(page: Path) -> None:
    problems = []
    for target in relative_links(page):
        file_part, _, anchor = target.partition("#")
        destination = (page.parent / file_part).resolve() if file_part else page
        if not destination.exists():
            problems.append(f"{target}: no file {destination.relative_to(ROOT) if destination.is_relative_to(ROOT) else destination}")
            continue
        if anchor and destination.suffix == ".md" and anchor not in anchors(destination):
            problems.append(f"{target}: no heading with anchor #{anchor} in {destination.relative_to(ROOT)}")
    assert not problems, f"{page.relative_to(ROOT)}:\n" + "\n".join(problems)


def ignored_patterns() -> list[str]:
    """Name patterns of .gitignore (plain patterns only), plus the version-control directory."""
    patterns = [".git"]
    for line in (ROOT / ".gitignore").read_text().splitlines():
        line = line.strip()
        if line and not line.startswith(("#", "!")):
            patterns.append(line.strip("/"))
    return patterns


def test_no_reference_to_documents_outside_the_repository() -> None:
    # Built from parts so that this file does not match itself.
    needles = [("DESIGN" + " §").encode(), ("DESIGN" + ".md").encode()]
    patterns = ignored_patterns()
    hits = []
    for directory, subdirectories, files in os.walk(ROOT):
        subdirectories[:] = [d for d in subdirectories if not any(fnmatch.fnmatch(d, p) for p in patterns)]
        for name in files:
            if any(fnmatch.fnmatch(name, p) for p in patterns):
                continue
            path = Path(directory) / name
            if path.is_symlink() or not path.is_file():
                continue
            data = path.read_bytes()
            hits += [f"{path.relative_to(ROOT)}: {needle.decode()}" for needle in needles if needle in data]
    assert not hits, "cite the repository's docs/ pages instead:\n" + "\n".join(hits)
