"""The scenario reference table of docs/reference.md, generated from the pydantic models, and the
methods catalogue docs/methods.md, generated from the registries (:mod:`fedsec.catalogue`).

Regenerate both with ``python -m fedsec.reference --write`` (default file: docs/reference.md;
methods.md is written beside it); without ``--write`` the table is printed.
"""

from __future__ import annotations

import types
import typing
from typing import Any

from pydantic import BaseModel
from pydantic.fields import FieldInfo

from fedsec.scenario import Scenario


def _submodels(annotation: Any) -> list[type[BaseModel]]:
    """Pydantic models inside an annotation (unwrapping Annotated, unions and Optional)."""
    origin = typing.get_origin(annotation)
    if origin is typing.Annotated:
        return _submodels(typing.get_args(annotation)[0])
    if origin in (typing.Union, types.UnionType):
        return [m for arg in typing.get_args(annotation) for m in _submodels(arg)]
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    return []


def _type_name(annotation: Any) -> str:
    origin = typing.get_origin(annotation)
    if origin is typing.Literal:
        return " \\| ".join(f"`{a}`" for a in typing.get_args(annotation))
    if origin in (typing.Union, types.UnionType):
        return " or ".join(_type_name(a) for a in typing.get_args(annotation) if a is not type(None))
    return getattr(annotation, "__name__", str(annotation))


def _default(field: FieldInfo) -> str:
    if field.is_required():
        return "required"
    value = field.get_default(call_default_factory=True)
    if value is None:
        return "none"
    return f"`{str(value).lower()}`" if isinstance(value, bool) else f"`{value}`"


def _shared_fields(models: list[type[BaseModel]]) -> set[str]:
    """Fields every variant declares with the same default (listed once, untagged)."""
    first, *rest = models
    return {
        name for name, field in first.model_fields.items()
        if name != "name" and all(
            name in m.model_fields and _default(m.model_fields[name]) == _default(field) for m in rest
        )
    }


def _rows(model: type[BaseModel], prefix: str, variant: str = "", skip: frozenset[str] = frozenset()) -> list[str]:
    rows = []
    for name, field in model.model_fields.items():
        path = f"{prefix}{name}"
        models = _submodels(field.annotation)
        if models:
            shared: set[str] = set()
            if len(models) > 1:
                tags = " \\| ".join(f"`{m.model_fields['name'].default}`" for m in models)
                chosen = None if field.is_required() else field.get_default(call_default_factory=True)
                default = "required" if field.is_required() else f"`{chosen.name}`" if chosen is not None else "none"
                rows.append(f"| `{path}.name` | {tags} | {default} | {field.description or 'Which variant.'} |")
                shared = _shared_fields(models)
                rows.extend(r for r in _rows(models[0], f"{path}.") if r.split("`")[1].rsplit(".", 1)[-1] in shared)
            for sub in models:
                tag = sub.model_fields.get("name")
                label = tag.default if len(models) > 1 and tag is not None else ""
                rows.extend(_rows(sub, f"{path}.", label, frozenset(shared)))
            continue
        if (variant and name == "name") or name in skip:
            continue
        description = (field.description or "").replace("|", "\\|")
        where = f" *({variant})*" if variant else ""
        rows.append(f"| `{path}`{where} | {_type_name(field.annotation)} | {_default(field)} | {description} |")
    return rows


def scenario_reference() -> str:
    """Markdown table: every scenario key with its type, default and meaning (with unit)."""
    header = "| key | type | default | meaning |\n|---|---|---|---|"
    return "\n".join([header, *_rows(Scenario, "")])


START, END = "<!-- scenario-reference:start -->", "<!-- scenario-reference:end -->"
METHODS_FILE = "methods.md"
"""The generated methods catalogue, beside the reference page."""


def with_reference(text: str) -> str:
    """``text`` (a Markdown page) with the text between the reference markers replaced by the current table."""
    head, rest = text.split(START, 1)
    _, tail = rest.split(END, 1)
    return f"{head}{START}\n{scenario_reference()}\n{END}{tail}"


if __name__ == "__main__":
    import sys
    from pathlib import Path

    from fedsec.catalogue import methods_page

    if sys.argv[1:2] == ["--write"]:
        path = Path(sys.argv[2] if len(sys.argv) > 2 else "docs/reference.md")
        path.write_text(with_reference(path.read_text()))
        (path.parent / METHODS_FILE).write_text(methods_page())
    else:
        print(scenario_reference())
