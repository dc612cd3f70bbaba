"""What the registries hold, for people: every method by family with its paper, description and
parameters (key, type, default, meaning). ``fedsec list``, ``fedsec describe`` and the generated
methods page of the docs all read it from here."""

from __future__ import annotations

import inspect
import json
import re
import sys
import types
from dataclasses import dataclass
from typing import Annotated, Any, Literal, Union, get_args, get_origin

from pydantic import BaseModel

from fedsec.registry import Registry


@dataclass(frozen=True)
class Family:
    """A registry of methods and where a scenario (or a command) names them."""

    registry: Registry[Any]
    where: str

    @property
    def title(self) -> str:
        """The family's plural name: "defenses", "data attacks"."""
        return f"{self.registry.kind}s"


@dataclass(frozen=True)
class Parameter:
    """One parameter of a method, as a scenario author writes it."""

    key: str
    type: str
    default: str
    meaning: str


def families() -> list[Family]:
    """Every registry of methods, with where a scenario (or a command) names its methods."""
    from fedsec.attacks import DATA_ATTACKS, MODEL_ATTACKS
    from fedsec.data.datasets import DATASETS
    from fedsec.data.partitioners import PARTITIONERS
    from fedsec.defenses import DEFENSES
    from fedsec.extraction import EXTRACTIONS
    from fedsec.guards import GUARDS
    from fedsec.inspection import INSPECTORS, REPAIRS
    from fedsec.models import MODELS
    from fedsec.privacy import PRIVACY_ATTACKS
    from fedsec.watermark import WATERMARKS
    from fedsec.watermark.removal import REMOVALS

    return [Family(DATASETS, "data.dataset"), Family(MODELS, "model.name"), Family(PARTITIONERS, "data.partitioner"),
            Family(DATA_ATTACKS, "attack.data"), Family(MODEL_ATTACKS, "attack.model"), Family(DEFENSES, "defenses"),
            Family(WATERMARKS, "watermark.scheme"), Family(REMOVALS, "fedsec attack-watermark --attack"),
            Family(INSPECTORS, "inspection.methods"), Family(REPAIRS, "inspection.repair"),
            Family(GUARDS, "runtime_guards.chains"),
            Family(PRIVACY_ATTACKS, "privacy.inversion.attacks or privacy.membership.attacks"),
            Family(EXTRACTIONS, "extraction.attacks")]


GROUPS = {
    "datasets": ("dataset",), "models": ("model",), "partitioners": ("partitioner",),
    "attacks": ("data attack", "model attack"), "defenses": ("defense",), "watermarks": ("watermark scheme",),
    "removals": ("removal attack",), "inspectors": ("inspector",), "repairs": ("repair",), "guards": ("guard",),
    "privacy": ("privacy attack",), "extraction": ("extraction attack",),
}
"""The names ``fedsec list`` takes: a group is one or more registries, by their kind."""


def group(name: str) -> list[Family]:
    """The families of a group of :data:`GROUPS` (KeyError for another name)."""
    kinds = GROUPS[name]
    return [f for f in families() if f.registry.kind in kinds]


def _unmarked(text: str) -> str:
    """``text`` on one line, without reST markup."""
    return re.sub(r":\w+:`([^`]*)`|``([^`]*)``", lambda m: m[1] or m[2], " ".join(text.split()))


def description(entry: object) -> str:
    """The first paragraph of an entry's docstring, on one line, without reST markup."""
    return _unmarked(inspect.cleandoc(entry.__doc__ or "").split("\n\n")[0])


def first_sentence(text: str, limit: int = 100) -> str:
    """The first sentence of ``text``, cut to ``limit`` characters."""
    sentence = re.split(r"(?<=\.)\s+(?=[A-Z])", text, maxsplit=1)[0]
    return sentence if len(sentence) <= limit else f"{sentence[:limit - 3]}..."


CITATION = re.compile(r"(?:(\w+)[^\w(]*)?\(([^()]*?)\b((?:19|20)\d\d\b[^()]*)\)")
"""A parenthesis holding a year, and the word before it (the author when the parenthesis names
none: "Unnervik (EPFL thesis 2024)")."""


def paper(entry: object) -> str | None:
    """The publication a method follows, as its module's first paragraph cites it ("Nguyen et al.,
    USENIX Security 2022"); None for a method without one (a dataset, a baseline)."""
    module = sys.modules.get(getattr(entry, "__module__", ""))
    summary = _unmarked(inspect.cleandoc((module.__doc__ if module else None) or "").split("\n\n")[0])
    if match := re.search(r"([A-Z][\w-]+ et al\.) \(((?:19|20)\d\d)\)", summary):  # "Uchida et al. (2017)"
        return f"{match[1]}, {match[2]}"
    match = CITATION.search(summary)
    if match is None:
        return None
    before_year = match[2]
    named = any(mark in before_year for mark in ("et al", "&", ","))
    author = match[1] if match[1] and match[1][0].isupper() and not named else None
    return f"{author}, {match[2]}{match[3]}" if author else f"{match[2]}{match[3]}"


def type_text(annotation: Any) -> str:
    """A field's type as a scenario author writes values: ``cosine | euclidean``, ``float | null``."""
    origin, args = get_origin(annotation), get_args(annotation)
    if origin is Annotated:
        return type_text(args[0])
    if origin is Literal:
        return " | ".join(str(a) for a in args)
    if origin in (Union, types.UnionType):
        return " | ".join(type_text(a) for a in args)
    if origin is not None:
        return f"{origin.__name__} of {', '.join(type_text(a) for a in args if a is not ...)}"
    if annotation is type(None):
        return "null"
    return "mapping" if isinstance(annotation, type) and issubclass(annotation, BaseModel) else annotation.__name__


def parameters(entry: object) -> list[Parameter]:
    """Every parameter a method takes besides its name, with its bounds in the type."""
    model = getattr(entry, "Params", entry)
    rows = []
    for key, field in getattr(model, "model_fields", {}).items():
        if key == "name":
            continue
        bounds = [f"{symbol} {getattr(m, attr)}" for m in field.metadata
                  for attr, symbol in (("gt", ">"), ("ge", ">="), ("lt", "<"), ("le", "<=")) if hasattr(m, attr)]
        kind = type_text(field.annotation) + (f" ({', '.join(bounds)})" if bounds else "")
        default = "required" if field.is_required() else field.get_default(call_default_factory=True)
        if hasattr(default, "model_dump"):
            default = default.model_dump(mode="json")
        shown = default if isinstance(default, str) else json.dumps(default)
        rows.append(Parameter(key, kind, shown, field.description or ""))
    return rows


def _escaped(text: str) -> str:
    return text.replace("|", "\\|")


def methods_page() -> str:
    """The docs' methods catalogue (Markdown): per family, each method's paper, description and
    parameters."""
    lines = ["# Methods", "",
             "Every method fedsec registers, by family, generated from the registries (`fedsec list` and",
             "`fedsec describe NAME` print the same). A scenario names a method by the name in the heading",
             "and sets its parameters beside it; keys not listed are errors. Where each family's",
             "methods run and what they report: the [manual](manual.md) and the family pages.", ""]
    for family in families():
        lines += [f"## {family.title.capitalize()}", "", f"Named in `{family.where}`.", ""]
        for name in family.registry.names():
            entry = family.registry.get(name)
            lines += [f"### {name} ({family.registry.kind})", "", description(entry), ""]
            if cited := paper(entry):
                lines += [f"Paper: {cited}.", ""]
            rows = parameters(entry)
            if rows:
                lines += ["| key | type | default | meaning |", "|---|---|---|---|"]
                lines += [f"| `{p.key}` | {_escaped(p.type)} | `{_escaped(p.default)}` | {_escaped(p.meaning)} |"
                          for p in rows]
            else:
                lines.append("No parameters.")
            lines.append("")
    return "\n".join(lines)
