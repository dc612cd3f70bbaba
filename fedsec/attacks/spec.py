"""What every attack's parameters share, and how a scenario's ``{"name": ..., **params}`` becomes one.

Each attack class carries a nested pydantic ``Params`` model whose ``name`` field is a
``Literal`` equal to the name it is registered under, so a registry's ``Params`` models
form a discriminated union the scenario layer can embed (:func:`params_union`) or a plain
mapping can be checked against (:func:`parse_params`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Any, ClassVar, Protocol, TypeVar, Union

from pydantic import BaseModel, ConfigDict, Field

from fedsec.registry import Registry


class AttackParams(BaseModel):
    """Base of every attack's ``Params``: unknown keys are errors, values are immutable."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(description="Name the attack is registered under in the scenario file.")


class Configurable(Protocol):
    """An attack class: it declares the pydantic model of its parameters."""

    Params: ClassVar[type[AttackParams]]


A = TypeVar("A", bound=Configurable)


def params_union(registry: Registry[type[A]]) -> Any:
    """The discriminated union (on ``name``) of the ``Params`` of every class in ``registry``."""
    models = tuple(registry.get(name).Params for name in registry.names())
    return Annotated[Union[models], Field(discriminator="name")]  # noqa: UP007 (runtime tuple)


def parse_params(registry: Registry[type[A]], spec: Mapping[str, Any]) -> AttackParams:
    """Validate ``{"name": ..., **params}`` against the ``Params`` of the class registered as ``name``.

    Raises KeyError for an unknown name and pydantic.ValidationError for bad parameters.
    """
    if "name" not in spec:
        raise KeyError(f"a {registry.kind} spec needs a 'name' (known: {', '.join(registry.names())})")
    return registry.get(str(spec["name"])).Params.model_validate(dict(spec))


def resolve(registry: Registry[type[A]], spec: Mapping[str, Any] | AttackParams) -> tuple[type[A], AttackParams]:
    """The class a spec (a mapping, or already validated Params) names, and its validated parameters."""
    params = spec if isinstance(spec, AttackParams) else parse_params(registry, spec)
    cls = registry.get(params.name)
    if not isinstance(params, cls.Params):
        raise TypeError(f"{type(params).__name__} are not the parameters of {registry.kind} {params.name!r}")
    return cls, params
