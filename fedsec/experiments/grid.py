"""A sweep's definition: a base scenario, fixed overrides, grid axes and seeds; its cells.

A grid key is a dotted path into the scenario at any depth; a numeric part indexes a list
(``defenses.0.f``). A value is any YAML value, so a whole section or list can be swapped
(``defenses=[{name: krum, f: 1}],[{name: flame}]``).
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from fedsec.scenario import ScenarioError, load_yaml_text, parse_override, read_yaml, validation_lines


@dataclass(frozen=True)
class Axis:
    """One grid dimension: a scenario key and the values it takes, each with a short label."""

    key: str
    values: tuple[Any, ...]
    labels: tuple[str, ...]


@dataclass(frozen=True)
class SweepSpec:
    """Everything that defines a sweep.

    ``overrides`` are (key, value) pairs applied to every cell before the grid values;
    ``seeds`` is None when every cell keeps the base scenario's own seed.
    """

    base: Path
    name: str
    overrides: tuple[tuple[str, Any], ...]
    axes: tuple[Axis, ...]
    seeds: tuple[int, ...] | None


@dataclass(frozen=True)
class Cell:
    """One combination of grid values (``labels`` follow ``spec.axes``) and one seed."""

    values: tuple[Any, ...]
    labels: tuple[str, ...]
    seed: int | None


def value_label(value: Any) -> str:
    """A short human label: ``krum(f=1)`` for ``{name: krum, f: 1}``, ``a+b`` for a list of
    named stages, ``none`` for an empty list, the YAML text of anything else."""
    if isinstance(value, dict) and isinstance(value.get("name"), str):
        rest = ", ".join(f"{k}={value_label(v)}" for k, v in value.items() if k != "name")
        return f"{value['name']}({rest})" if rest else value["name"]
    if isinstance(value, list):
        return "+".join(value_label(v) for v in value) if value else "none"
    if isinstance(value, dict):
        return ", ".join(f"{k}={value_label(v)}" for k, v in value.items())
    return yaml.safe_dump(value, default_flow_style=True, width=10**6).strip().removesuffix("...").strip()


def make_axis(key: str, values: list[Any] | dict[str, Any]) -> Axis:
    """An axis from a list of values (labels derived) or a mapping ``label: value``."""
    if isinstance(values, dict):
        return Axis(key, tuple(values.values()), tuple(str(label) for label in values))
    labels = [value_label(v) for v in values]
    if len(set(labels)) < len(labels):  # two values with the same short label: show them in full
        labels = [yaml.safe_dump(v, default_flow_style=True, width=10**6).strip() for v in values]
    return Axis(key, tuple(values), tuple(labels))


def parse_grid_option(text: str) -> Axis:
    """``key.path=v1,v2,...``: the values are read as one YAML flow list, so brackets and braces
    group (``defenses=[{name: krum}],[{name: flame}]`` is two values)."""
    if "=" not in text:
        raise ScenarioError([f"--grid {text}: expected key.path=value1,value2,..."])
    key, raw = (part.strip() for part in text.split("=", 1))
    try:
        values = load_yaml_text(f"[{raw}]")
    except yaml.YAMLError:
        raise ScenarioError([f"--grid {text}: cannot read the values as a YAML list"]) from None
    if not key or not values:
        raise ScenarioError([f"--grid {text}: expected key.path=value1,value2,..."])
    return make_axis(key, values)


class _SweepFile(BaseModel):
    """The sweep file's keys (see the README's "Sweeps, reports and games")."""

    model_config = ConfigDict(extra="forbid")

    base: str = Field(..., description="Scenario file, relative to the sweep file.")
    name: str | None = Field(None, pattern=r"^[A-Za-z0-9._-]+$", description="Sweep name.")
    set: dict[str, Any] = Field(default_factory=dict, description="Overrides applied to every cell.")
    grid: dict[str, list[Any] | dict[str, Any]] = Field(..., description="key.path: values or {label: value}.")
    seeds: list[int] | int | None = Field(None, description="Seeds, or a count n meaning 0..n-1.")

    @field_validator("grid")
    @classmethod
    def _non_empty(cls, grid: dict[str, Any]) -> dict[str, Any]:
        empty = [key for key, values in grid.items() if not values]
        if not grid or empty:
            raise ValueError(f"every grid key needs at least one value (empty: {empty or 'the grid'})")
        return grid


def seed_list(seeds: list[int] | int | None) -> tuple[int, ...] | None:
    """Seeds as given, or ``range(n)`` for a count."""
    if seeds is None:
        return None
    return tuple(range(seeds)) if isinstance(seeds, int) else tuple(seeds)


def is_sweep_file(raw: dict[str, Any]) -> bool:
    """A sweep file names a base scenario and a grid; a scenario file does neither."""
    return "grid" in raw and "base" in raw


def load_sweep_file(path: Path) -> SweepSpec:
    """Read and check a sweep file; ScenarioError with one line per problem."""
    try:
        parsed = _SweepFile.model_validate(read_yaml(path))
    except ValidationError as exc:
        raise ScenarioError([f"{path}: {line}" for line in validation_lines(exc)]) from None
    return SweepSpec(
        base=(path.parent / parsed.base),
        name=parsed.name or path.stem,
        overrides=tuple(parsed.set.items()),
        axes=tuple(make_axis(key, values) for key, values in parsed.grid.items()),
        seeds=seed_list(parsed.seeds),
    )


def cli_overrides(texts: list[str]) -> tuple[tuple[str, Any], ...]:
    """``--set key.path=value`` options as (key, value) pairs."""
    pairs = []
    for text in texts:
        path, value = parse_override(text)
        pairs.append((".".join(path), value))
    return tuple(pairs)


def cells(spec: SweepSpec) -> list[Cell]:
    """Every combination of axis values, for every seed (seeds vary fastest)."""
    seeds: tuple[int | None, ...] = spec.seeds if spec.seeds is not None else (None,)
    combos = itertools.product(*(range(len(axis.values)) for axis in spec.axes))
    return [
        Cell(tuple(axis.values[i] for axis, i in zip(spec.axes, combo, strict=True)),
             tuple(axis.labels[i] for axis, i in zip(spec.axes, combo, strict=True)), seed)
        for combo in combos for seed in seeds
    ]


def set_path(raw: dict[str, Any], key: str, value: Any) -> None:
    """Set ``key`` (dotted; numeric parts index lists) in the raw scenario mapping, creating
    missing mappings on the way. ValueError naming the key when a list index is out of range."""
    parts = key.split(".")
    node: Any = raw
    for depth, part in enumerate(parts):
        last = depth == len(parts) - 1
        if isinstance(node, list):
            if not part.isdigit() or int(part) >= len(node):
                where = ".".join(parts[:depth])
                raise ValueError(f"{key}: {where} has {len(node)} items, no item {part!r}")
            index: int | str = int(part)
        else:
            index = part
        if last:
            node[index] = value
            return
        if isinstance(node, dict) and not isinstance(node.get(index), (dict, list)):
            if parts[depth + 1].isdigit():
                raise ValueError(f"{key}: {'.'.join(parts[:depth + 1])} is not a list in the scenario")
            node[index] = {}
        node = node[index]


def cell_mapping(base: dict[str, Any], spec: SweepSpec, cell: Cell) -> dict[str, Any]:
    """The raw scenario of one cell: base, then fixed overrides, then grid values, then seed."""
    raw = yaml.safe_load(yaml.safe_dump(base))
    for key, value in spec.overrides:
        set_path(raw, key, value)
    for axis, value in zip(spec.axes, cell.values, strict=True):
        set_path(raw, axis.key, yaml.safe_load(yaml.safe_dump(value)))
    if cell.seed is not None:
        raw["seed"] = cell.seed
    return raw
