"""The README's scenario reference is the schema's."""

from __future__ import annotations

from pathlib import Path

from fedsec.reference import with_reference

README = Path(__file__).parents[1] / "README.md"


def test_readme_scenario_reference_is_current() -> None:
    text = README.read_text()
    assert with_reference(text) == text, "regenerate: python -m fedsec.reference --write README.md"
