"""MkDocs hooks of the documentation site (mkdocs.yml): the pages link to repository files
outside docs/ (EXPERIMENTS.md, scenario files) with paths that work on a checkout; the site
carries those files under repo/ and the links are rewritten to reach them there. A link to a
file that does not exist is left as written, so that ``mkdocs build --strict`` reports it."""

from __future__ import annotations

import posixpath
import re
from pathlib import Path
from typing import Any

from mkdocs.structure.files import File, Files

ROOT = Path(__file__).resolve().parents[1]
OUTSIDE = "repo"
LINK = re.compile(r"(\]\(\s*<?)([^)\s>#]+)(#[^)\s>]*)?(>?(?:\s+\"[^\"]*\")?\s*\))")
FENCE = re.compile(r"^(```|~~~).*?^\1", re.M | re.S)


def _is_relative(target: str) -> bool:
    return not re.match(r"^[a-z][a-z0-9+.-]*:", target, re.I) and not target.startswith("/")


def _repository_path(src_uri: str) -> str:
    """Where a site file's source lies, relative to the repository root."""
    return src_uri.removeprefix(f"{OUTSIDE}/") if src_uri.startswith(f"{OUTSIDE}/") else f"docs/{src_uri}"


def _site_path(repository_path: str) -> str:
    return repository_path.removeprefix("docs/") if repository_path.startswith("docs/") \
        else f"{OUTSIDE}/{repository_path}"


def _targets(markdown: str, repository_path: str) -> list[str]:
    """Repository paths of the relative link targets of a page (code blocks left out)."""
    base = posixpath.dirname(repository_path)
    return [posixpath.normpath(posixpath.join(base, m[2])) for m in LINK.finditer(FENCE.sub("", markdown))
            if _is_relative(m[2])]


def on_files(files: Files, config: Any) -> Files:
    """Add the repository files outside docs/ that pages link to (and that exist), following
    links from the added Markdown files too."""
    pending = [f for f in files.documentation_pages()]
    seen = {f.src_uri for f in files}
    while pending:
        page = pending.pop()
        text = Path(page.abs_src_path).read_text(encoding="utf-8")
        for target in _targets(text, _repository_path(page.src_uri)):
            site = _site_path(target)
            if target.startswith("docs/") or site in seen or not (ROOT / target).is_file():
                continue
            seen.add(site)
            added = File.generated(config, site, abs_src_path=str(ROOT / target))
            files.append(added)
            if added.is_documentation_page():
                pending.append(added)
    return files


def on_page_markdown(markdown: str, page: Any, config: Any, files: Files) -> str:
    """Links to repository files rewritten to where the site holds them."""
    repository_path = _repository_path(page.file.src_uri)
    base = posixpath.dirname(repository_path)
    here = posixpath.dirname(page.file.src_uri)

    def rewrite(match: re.Match[str]) -> str:
        target = match[2]
        if not _is_relative(target):
            return match[0]
        site = _site_path(posixpath.normpath(posixpath.join(base, target)))
        if files.get_file_from_path(site) is None:
            return match[0]
        return f"{match[1]}{posixpath.relpath(site, here or '.')}{match[3] or ''}{match[4]}"

    fenced = [m.span() for m in FENCE.finditer(markdown)]
    return LINK.sub(lambda m: m[0] if any(a <= m.start() < b for a, b in fenced) else rewrite(m), markdown)
