"""The documentation site: the generated methods catalogue is the registries', and MkDocs builds
the site strictly (a broken link or anchor, or a page left out of the navigation, fails)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from fedsec.catalogue import methods_page
from fedsec.reference import METHODS_FILE

ROOT = Path(__file__).parents[1]


def test_methods_catalogue_is_current() -> None:
    assert (ROOT / "docs" / METHODS_FILE).read_text() == methods_page(), \
        "regenerate: python -m fedsec.reference --write docs/reference.md"


def nav_pages(entries: list) -> list[str]:
    pages = []
    for entry in entries:
        for value in (entry.values() if isinstance(entry, dict) else [entry]):
            pages += nav_pages(value) if isinstance(value, list) else [value]
    return pages


def test_every_docs_page_is_in_the_navigation() -> None:
    class Loader(yaml.SafeLoader):
        pass

    Loader.add_multi_constructor("!", lambda loader, suffix, node: None)  # mkdocs.yml's !ENV and the like
    nav = nav_pages(yaml.load((ROOT / "mkdocs.yml").read_text(), Loader)["nav"])
    assert sorted(p for p in nav if not p.startswith("repo/")) == sorted(p.name for p in (ROOT / "docs").glob("*.md"))


def test_site_builds_strictly(tmp_path: Path) -> None:
    pytest.importorskip("material", reason="mkdocs-material is not installed (pip install -e '.[test]')")
    mkdocs = shutil.which("mkdocs", path=str(Path(sys.executable).parent)) or shutil.which("mkdocs")
    result = subprocess.run([mkdocs, "build", "--strict", "--site-dir", str(tmp_path / "site")], cwd=ROOT,
                            capture_output=True, text=True, timeout=300, env={**os.environ, "NO_MKDOCS_2_WARNING": "1"})
    assert result.returncode == 0, result.stderr[-3000:]
    site = tmp_path / "site"
    assert (site / "methods.html").is_file() and (site / "repo" / "EXPERIMENTS.html").is_file()
