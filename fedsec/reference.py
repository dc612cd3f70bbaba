"""The scenario reference table of the README, generated from the pydantic models."""

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


def _rows(model: type[BaseModel], prefix: str, variant: str = "") -> list[str]:
    rows = []
    for name, field in model.model_fields.items():
        path = f"{prefix}{name}"
        models = _submodels(field.annotation)
        if models:
            if len(models) > 1:
                tags = " \\| ".join(f"`{m.model_fields['name'].default}`" for m in models)
                chosen = field.get_default(call_default_factory=True).name
                rows.append(f"| `{path}.name` | {tags} | `{chosen}` | {field.description or 'Which variant.'} |")
            for sub in models:
                tag = sub.model_fields.get("name")
                label = f" ({tag.default})" if len(models) > 1 and tag is not None else ""
                rows.extend(_rows(sub, f"{path}.", label.strip(" ()")))
            continue
        if variant and name == "name":
            continue
        description = (field.description or "").replace("|", "\\|")
        where = f" *({variant})*" if variant else ""
        rows.append(f"| `{path}`{where} | {_type_name(field.annotation)} | {_default(field)} | {description} |")
    return rows


def scenario_reference() -> str:
    """Markdown table: every scenario key with its type, default and meaning (with unit)."""
    header = "| key | type | default | meaning |\n|---|---|---|---|"
    return "\n".join([header, *_rows(Scenario, "")])


if __name__ == "__main__":
    print(scenario_reference())
