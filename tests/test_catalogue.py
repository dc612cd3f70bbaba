"""The methods catalogue: ``fedsec list`` and ``fedsec describe`` show the registries as they are,
and every parameter of every method says what it means and, for a quantity, in what unit."""

from __future__ import annotations

import re

from typer.testing import CliRunner

from fedsec.catalogue import GROUPS, families, group, paper, parameters
from fedsec.cli import app

# Words that give a number its unit or scale: a count of something, a share, a multiple, a
# physical or parameter-space unit.
UNIT = re.compile(
    r"\b(count|number of|images?|examples?|rounds?|epochs?|steps?|pixels?|bits?|clients?|queries|passes|"
    r"iterations?|coordinates|rows|particles|moves|units?|classes|labels|shards|parts|periods|nats|poisons|models|points|"
    r"fraction|share|multiple|factor|dimensionless|ratio|rate|quantile|0\.\.1|0–1|0\.\.255|0–255|L2|std|"
    r"seed|index|class|perturbations|restarts|evaluations|inputs|neurons|references|channels?|"
    r"probability|%)\b|/ median", re.IGNORECASE)


def is_quantity(kind: str, meaning: str) -> bool:
    """A parameter holding a number (possibly optional) that the method uses."""
    return bool(re.match(r"(int|float)\b", kind)) and not meaning.startswith("Unused")


def test_list_defenses_is_the_registry_with_papers() -> None:
    from fedsec.defenses import DEFENSES

    result = CliRunner().invoke(app, ["list", "defenses"])
    assert result.exit_code == 0, result.output
    heading, *rows = result.stdout.splitlines()
    assert heading == "defenses, in defenses:"
    assert [row.split()[0] for row in rows] == DEFENSES.names()
    for row in rows:
        cited = paper(DEFENSES.get(row.split()[0]))
        assert cited is None or cited.split(', "')[0] in row  # a paper's title is left to describe


def test_every_group_is_listed_and_an_unknown_one_is_refused() -> None:
    assert {f.registry.kind for name in GROUPS for f in group(name)} == {f.registry.kind for f in families()}
    result = CliRunner().invoke(app, ["list", "defences"])
    assert result.exit_code == 2 and "did you mean defenses?" in result.stderr


def test_every_parameter_has_a_meaning_and_quantities_a_unit() -> None:
    missing, unitless = [], []
    for family in families():
        for name in family.registry.names():
            for p in parameters(family.registry.get(name)):
                where = f"{family.registry.kind} {name}.{p.key}"
                if not p.meaning.strip():
                    missing.append(where)
                elif is_quantity(p.type, p.meaning) and not UNIT.search(p.meaning):
                    unitless.append(f"{where}: {p.meaning}")
    assert not missing, "parameters without a description:\n" + "\n".join(missing)
    assert not unitless, "quantities without a unit:\n" + "\n".join(unitless)


def test_papers_are_read_from_the_modules() -> None:
    from fedsec.defenses import DEFENSES
    from fedsec.watermark import WATERMARKS

    assert paper(DEFENSES.get("flame")) == "Nguyen et al., USENIX Security 2022"
    assert paper(DEFENSES.get("weight-space")) == "Unnervik, EPFL thesis 2024, chapter 4"
    assert paper(WATERMARKS.get("uchida")) == "Uchida et al., 2017"


def test_shell_completion_offers_families_and_methods() -> None:
    from fedsec.cli import _complete_group, _complete_method

    assert _complete_group("de") == ["defenses"]
    assert {"flame", "fltrust", "fine-pruning", "feature-squeezing"} <= set(_complete_method("f"))
    assert all(name.startswith("f") for name in _complete_method("f"))
