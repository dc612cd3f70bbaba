"""The scenario file: pydantic models, loading, ``--set`` overrides, one-line errors.

A scenario is untrusted input. The loader refuses files larger than :data:`MAX_FILE_BYTES`,
duplicate keys, nesting deeper than :data:`MAX_DEPTH` and documents that expand (through YAML
aliases) to more than :data:`MAX_VALUES` values; validation is strict (no bool or string where a
number is expected, every number finite and within 64 bits), and every count has an upper bound
stated in its description.
"""

from __future__ import annotations

import difflib
import json
import math
import re
import types
from collections.abc import Iterator
from functools import lru_cache
from itertools import islice
from pathlib import Path
from typing import Annotated, Any, Literal, Union, get_args, get_origin

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    create_model,
    field_validator,
    model_validator,
)

from fedsec.attacks import (
    DATA_ATTACKS,
    MODEL_ATTACKS,
    AttackSchedule,
    build_data_attack,
    build_model_attack,
    malicious_clients,
    params_union,
)
from fedsec.crypto.config import EncryptionConfig
from fedsec.data.datasets import DATASETS, MAX_EXAMPLES
from fedsec.data.partitioners import PARTITIONERS, DirichletPartitioner
from fedsec.defenses import DEFENSES, build_pipeline, encrypted_defense_problem
from fedsec.extraction import EXTRACTIONS, ExtractionConfig
from fedsec.faults import FaultsConfig
from fedsec.guards import GUARDS, RuntimeGuardsConfig
from fedsec.inspection import INSPECTORS, REPAIRS, InspectionConfig
from fedsec.models import MODELS, dataset_problems
from fedsec.pretraining import PretrainingConfig
from fedsec.privacy import PRIVACY_ATTACKS, PrivacyConfig
from fedsec.sanitization import SANITIZERS, SanitizationConfig
from fedsec.training import MAX_BATCH, MAX_EPOCHS, ClientConfig
from fedsec.tracking import TRACKERS, TrackerSpec
from fedsec.watermark import WATERMARKS, WatermarkConfig

MAX_FILE_BYTES = 1 << 20
"""Largest scenario or sweep file read, in bytes (1 MiB; real ones are a few KiB)."""
MAX_DEPTH = 32
"""Deepest nesting of mappings and lists in a YAML document (a scenario needs about 5)."""
MAX_VALUES = 100_000
"""Most values (scalars, lists, mappings) a document may hold once its aliases are expanded."""
MAX_NUMBER_CHARS = 100
"""Longest integer literal read, in characters (a 64-bit integer needs at most 66, in binary)."""
MAX_PROBLEMS = 20
"""Most problem lines reported for one scenario; a count of the others follows them."""

MAX_SEED = 50_000_000
"""Largest scenario seed: the per-client seeds derived from it must fit in 64 bits."""
MAX_ROUNDS = 100_000
MAX_CLIENTS = 1_000_000
MAX_SECONDS = 86_400.0
"""Longest timeout, in seconds (one day)."""


class ScenarioError(Exception):
    """A scenario that cannot be used; ``lines`` holds one message per problem."""

    def __init__(self, lines: list[str]) -> None:
        super().__init__("\n".join(lines))
        self.lines = lines


class Section(BaseModel):
    """Base of every scenario section: unknown keys are errors, values are checked on assignment,
    numbers are finite."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True, frozen=True, allow_inf_nan=False)


PartitionerSpec = Annotated[
    Union[tuple(PARTITIONERS.get(name) for name in PARTITIONERS.names())],  # noqa: UP007 (runtime tuple)
    Field(discriminator="name"),
]

DatasetName = Literal[tuple(DATASETS.names())]
ModelName = Literal[tuple(MODELS.names())]


class DataConfig(Section):
    """Which dataset, how many clients, how it is split among them."""

    dataset: DatasetName = Field("fashion-mnist", description="Dataset name.")
    root: str | None = Field(
        None,
        description="Directory for torchvision datasets (mnist, cifar10); "
        "default $FEDSEC_DATA or ~/.cache/fedsec/data.",
    )
    num_clients: int = Field(
        20, ge=1, le=MAX_CLIENTS,
        description=f"Clients in the federation (partitions), at most {MAX_CLIENTS:,} and at most the "
        "training examples.",
    )
    partitioner: PartitionerSpec = Field(
        default_factory=DirichletPartitioner,
        description="How client partitions are drawn; the other keys depend on the name.",
    )
    test_samples: int | None = Field(
        None, ge=1, le=MAX_EXAMPLES,
        description="Evaluate on the first N test examples only (at most the test set); default: all.",
    )

    @model_validator(mode="before")
    @classmethod
    def _default_partitioner_name(cls, raw: Any) -> Any:
        """A partitioner given without ``name`` is the default one (dirichlet)."""
        if isinstance(raw, dict) and isinstance(raw.get("partitioner"), dict):
            raw = {**raw, "partitioner": {"name": "dirichlet", **raw["partitioner"]}}
        return raw


class ModelConfig(Section):
    """The network every client trains."""

    name: ModelName = Field("cnn", description="Model architecture.")


class SamplingConfig(Section):
    """Which clients train in a round: a fixed count, or a fraction of all clients."""

    clients_per_round: int | None = Field(
        None, ge=1, description="Clients sampled per round (default: all, or `fraction`)."
    )
    fraction: float | None = Field(
        None, gt=0, le=1, description="Fraction of clients sampled per round."
    )
    min_clients: int = Field(
        1, ge=1, description="A round with fewer valid replies than this is skipped."
    )

    @model_validator(mode="after")
    def _one_of(self) -> SamplingConfig:
        if self.clients_per_round is not None and self.fraction is not None:
            raise ValueError("give clients_per_round or fraction, not both")
        return self


class ResourcesConfig(Section):
    """What each simulated client may use, and where tensors live."""

    client_cpus: float = Field(1.0, gt=0, description="CPU cores reserved per client actor.")
    client_gpus: float = Field(
        0.0, ge=0, le=1, description="GPU fraction per client actor (0 = CPU only)."
    )
    device: Literal["auto", "cpu", "cuda"] = Field(
        "auto", description="auto = cuda when available, else cpu."
    )
    client_actors: int | None = Field(
        None, ge=1, le=1024,
        description="Client actors the private Ray cluster runs at once (default: as many as its cores "
                    "allow at client_cpus each). Each actor is a process that imports torch and Flower "
                    "(seconds of CPU), so a small federation costs less with one. client_actors x client_cpus "
                    "must be whole cores.",
    )
    server_threads: int | None = Field(
        None, ge=1, le=1024,
        description="torch CPU threads of the server's process: aggregation, evaluation, the owner's "
                    "embedding (default: torch's own, the machine's cores). A seeded run repeats bit for bit "
                    "only with the same count, so set it for results that other machines must reproduce.",
    )
    ray_address: str | None = Field(
        None, description="Attach to this existing Ray cluster instead of starting one."
    )

    @property
    def client_threads(self) -> int:
        """torch threads each client trains with: its whole reserved cores, at least one."""
        return max(1, int(self.client_cpus))

    @model_validator(mode="after")
    def _actors_on_a_private_cluster(self) -> ResourcesConfig:
        if self.client_actors is not None and self.ray_address is not None:
            raise ValueError("client_actors sizes the private cluster; an existing one (ray_address) has its own cores")
        if self.client_actors is not None and not float(self.client_actors * self.client_cpus).is_integer():
            raise ValueError(f"client_actors x client_cpus must be whole cores (Ray counts CPUs in whole "
                             f"numbers), got {self.client_actors} x {self.client_cpus:g}")
        return self


class EvaluationConfig(Section):
    """Central evaluation of the global model by the evaluator."""

    every: int = Field(
        1, ge=1, le=MAX_ROUNDS, description=f"Evaluate every N rounds, at most {MAX_ROUNDS:,} (the last round always)."
    )
    batch_size: int = Field(
        1000, ge=1, le=MAX_BATCH, description=f"Examples per evaluation batch (at most {MAX_BATCH:,})."
    )


class ServerConfig(Section):
    """The aggregation server's own settings."""

    lr: float = Field(1.0, gt=0, description="Server learning rate: w += lr * aggregate update.")
    round_timeout_s: float | None = Field(
        None, gt=0, le=MAX_SECONDS,
        description=f"Seconds to wait for replies in a round, at most {MAX_SECONDS:,.0f} (default: wait for all).",
    )
    reply_poll_s: float = Field(
        0.2, gt=0, le=10,
        description="Seconds between the server's checks for client replies on the deployment engine "
                    "(Flower's own grid checks every 3 s; the simulation's every 0.1 s).",
    )
    max_update_norm: float | None = Field(
        None, gt=0, description="Replies whose update L2 norm exceeds this are rejected as absurd."
    )


DataAttackSpec = params_union(DATA_ATTACKS)
ModelAttackSpec = params_union(MODEL_ATTACKS)


class AttackConfig(Section):
    """Who is malicious, when they attack, and how (data poisoning and/or model poisoning).

    Roles are god-view knowledge: they reach only the malicious clients and the evaluator,
    never the server's defenses.
    """

    fraction: float | None = Field(
        None, ge=0, le=1, description="Share of all clients that are malicious (0..1)."
    )
    ids: list[int] | None = Field(None, description="Explicit malicious client (partition) ids.")
    redraw_each_round: bool = Field(False, description="Draw a fresh malicious set every round.")
    schedule: AttackSchedule = Field(
        default_factory=AttackSchedule, description="Rounds in which malicious clients attack."
    )
    data: DataAttackSpec | None = Field(None, description="Data poisoning applied to local batches.")
    model: ModelAttackSpec | None = Field(None, description="Rewriting of the trained update.")
    collusion: Literal["none", "attackers", "full-knowledge"] = Field(
        "none",
        description="Benign updates a malicious client knows: its own (none), those of the malicious "
        "clients sampled with it (attackers), or those of every sampled client (full-knowledge). "
        "ALIE, IPM, Min-Max/Min-Sum and constrain-scale's radius use them.",
    )
    local_epochs: int | None = Field(
        None, ge=1, le=MAX_EPOCHS,
        description=f"Local epochs of malicious clients, at most {MAX_EPOCHS:,} (default: client.local_epochs).",
    )
    lr: float | None = Field(None, gt=0, description="Local learning rate of malicious clients.")

    @model_validator(mode="after")
    def _who_and_how(self) -> AttackConfig:
        if (self.fraction is None) == (self.ids is None):
            raise ValueError("give fraction or ids (exactly one)")
        if self.data is None and self.model is None:
            raise ValueError("give a data attack, a model attack, or both")
        return self

    def malicious(self, num_clients: int, seed: int, round_number: int) -> frozenset[int]:
        """The malicious partitions in a round."""
        return malicious_clients(
            num_clients, fraction=self.fraction, ids=self.ids, seed=seed,
            redraw_each_round=self.redraw_each_round, server_round=round_number,
        )


class DataSupplyConfig(Section):
    """A poisoned data supply: the poisons of a data attack, injected into chosen honest clients'
    partitions before the run. The clients do not know (they stay benign in every metric); the
    evaluator knows which rows are poisons."""

    attack: DataAttackSpec = Field(
        description="The data attack the supply carries; its poison_fraction is the share (0..1) of each "
        "chosen client's eligible examples replaced by poisons.")
    fraction: float | None = Field(None, ge=0, le=1, description="Share (0..1) of all clients whose data is poisoned.")
    ids: list[int] | None = Field(None, description="Explicit ids of the clients (partitions) whose data is poisoned.")

    @model_validator(mode="after")
    def _which_clients(self) -> DataSupplyConfig:
        if (self.fraction is None) == (self.ids is None):
            raise ValueError("give fraction or ids (exactly one)")
        return self

    def clients(self, num_clients: int, seed: int) -> frozenset[int]:
        """The partitions whose data is poisoned (the same for the whole run)."""
        return malicious_clients(num_clients, fraction=self.fraction, ids=self.ids, seed=seed + 1)


def _defense_spec(name: str) -> type[BaseModel]:
    """The defense's Params with a ``name`` tag, so that a list of stages is a tagged union."""
    params = DEFENSES.get(name).Params
    return create_model(
        f"{params.__name__}_{name}", __base__=params,
        name=(Literal[name], Field(description="Registered name of the defense stage.")),
    )


DefenseSpec = Annotated[
    Union[tuple(_defense_spec(name) for name in DEFENSES.names())],  # noqa: UP007 (runtime tuple)
    Field(discriminator="name"),
]


class RootDataConfig(Section):
    """A small clean dataset the server itself holds (declared here, used by FLTrust)."""

    samples: int = Field(
        100, ge=1, le=MAX_EXAMPLES,
        description="Examples drawn (with the seed) from the training set (at most its size).",
    )
    local_epochs: int = Field(
        1, ge=1, le=MAX_EPOCHS,
        description=f"Epochs of the server's own update on them per round (at most {MAX_EPOCHS:,}).",
    )


class OutputConfig(Section):
    """Where the run directory goes and what it keeps."""

    dir: str = Field("runs", description="Parent directory of run directories.")
    save_model: bool = Field(True, description="Write the final global model (model.pt).")
    plots: bool = Field(True, description="Write PNG plots (accuracy, label histogram).")
    trackers: list[TrackerSpec] = Field(  # type: ignore[valid-type]
        default_factory=list, max_length=len(TRACKERS.names()),
        description="Experiment trackers that also receive the run's parameters, round metrics, plots and "
        f"summary ({', '.join(TRACKERS.names())}; each at most once); none by default.",
    )

    @field_validator("trackers")
    @classmethod
    def _once_each(cls, trackers: list[Any]) -> list[Any]:
        names = [t.name for t in trackers]
        if len(set(names)) < len(names):
            raise ValueError(f"each tracker at most once, got {names}")
        return trackers


class Scenario(Section):
    """A whole experiment: data, model, training, sampling, resources, outputs."""

    name: str = Field(
        ..., min_length=1, max_length=100, pattern=r"^[A-Za-z0-9._-]+$",
        description="Run name (letters, digits, . _ -; at most 100 characters).",
    )
    seed: int = Field(
        0, ge=0, le=MAX_SEED, description=f"Seed of every random choice in the run (0 to {MAX_SEED:,})."
    )
    rounds: int = Field(10, ge=1, le=MAX_ROUNDS, description=f"Federated rounds (at most {MAX_ROUNDS:,}).")
    data: DataConfig = Field(default_factory=DataConfig)
    model: ModelConfig = Field(default_factory=ModelConfig)
    client: ClientConfig = Field(default_factory=ClientConfig)
    sampling: SamplingConfig = Field(default_factory=SamplingConfig)
    resources: ResourcesConfig = Field(default_factory=ResourcesConfig)
    server: ServerConfig = Field(default_factory=ServerConfig)
    attack: AttackConfig | None = Field(None, description="Malicious clients (none: all honest).")
    data_supply: DataSupplyConfig | None = Field(
        None, description="Poisons injected into honest clients' data (none: a clean data supply).")
    sanitization: SanitizationConfig | None = Field(
        None, description="Data sanitization by honest clients before local training (none: no sanitization).")
    pretraining: PretrainingConfig | None = Field(
        None, description="Central pre-training on held-out training examples, then federated fine-tuning "
        "(none: the federation trains from a random initialisation).")
    defenses: list[DefenseSpec] = Field(
        default_factory=list,
        description="Server defense stages, applied in order (empty: FedAvg).",
    )
    root_data: RootDataConfig | None = Field(
        None, description="The server's clean root dataset (needed by fltrust)."
    )
    faults: FaultsConfig = Field(default_factory=FaultsConfig)
    watermark: WatermarkConfig | None = Field(
        None, description="The model owner's watermark, embedded after aggregation (none: no watermark)."
    )
    privacy: PrivacyConfig | None = Field(None, description="Privacy attacks by the server (none: no privacy audit).")
    inspection: InspectionConfig | None = Field(None, description="Inspection and repair of the global model by the server (none: no inspection).")
    extraction: ExtractionConfig | None = Field(None, description="Model-extraction thieves and the PRADA detector (none: no extraction audit).")
    runtime_guards: RuntimeGuardsConfig | None = Field(None, description="Runtime guards in front of the deployed model (none: no guards audit).")
    encryption: EncryptionConfig = Field(default_factory=EncryptionConfig)
    evaluation: EvaluationConfig = Field(default_factory=EvaluationConfig)
    output: OutputConfig = Field(default_factory=OutputConfig)

    @model_validator(mode="after")
    def _cross_checks(self) -> Scenario:
        n = self.data.num_clients
        if self.sampling.clients_per_round is not None and self.sampling.clients_per_round > n:
            raise ValueError(
                f"sampling.clients_per_round: {self.sampling.clients_per_round} is more than "
                f"data.num_clients ({n})"
            )
        if self.sampling.min_clients > self.clients_per_round:
            raise ValueError(
                f"sampling.min_clients: {self.sampling.min_clients} is more than the "
                f"{self.clients_per_round} clients sampled per round"
            )
        if self.attack is not None and self.attack.ids is not None:
            outside = [i for i in self.attack.ids if not 0 <= i < n]
            if outside:
                raise ValueError(f"attack.ids: {outside} are not client ids 0..{n - 1}")
        if self.data_supply is not None:
            outside = [i for i in self.data_supply.ids or () if not 0 <= i < n]
            if outside:
                raise ValueError(f"data_supply.ids: {outside} are not client ids 0..{n - 1}")
            if self.attack is not None and self.attack.data is not None:
                raise ValueError("data_supply: the evaluator scores one data attack; give attack.data or data_supply, not both")
            if self.pretraining is None and build_data_attack(self.data_supply.attack).surrogate_models():
                raise ValueError(f"data_supply.attack: {self.data_supply.attack.name} crafts its poisons against a "
                                 "model; a supply crafts them against the pre-trained model (add a pretraining section)")
        try:
            pipeline = build_pipeline([spec.model_dump() for spec in self.defenses])
        except ValueError as exc:
            raise ValueError(f"defenses: {exc}") from None
        for i, stage in enumerate(pipeline.stages):
            if stage.needs_root_data and self.root_data is None:
                raise ValueError(f"root_data: {stage.name} needs the server's root dataset (add a root_data section)")
            if self.clients_per_round < stage.minimum_rows():
                raise ValueError(
                    f"defenses.{i}: {stage.label()} needs at least {stage.minimum_rows()} updates per round, "
                    f"the scenario samples {self.clients_per_round} clients"
                )
        if self.privacy is not None and (
                problems := self.privacy.problems(self.rounds, self.data.num_clients, self.client.optimizer)):
            raise ValueError(problems[0])
        if problems := dataset_problems(self.model.name, self.data.dataset):
            raise ValueError(f"model.name: {problems[0]}")
        if self.encryption.mode != "off":  # simulated keeps ckks's rules, so its results transfer
            if self.watermark is not None and self.watermark.fingerprints is not None:
                raise ValueError(f"watermark.fingerprints: the server fingerprints a plaintext global model; under "
                                 f"encryption.mode {self.encryption.mode} it holds ciphertexts only")
            for i, spec in enumerate(self.defenses):
                if problem := encrypted_defense_problem(i, spec.name, self.encryption.mode):
                    raise ValueError(problem)
        return self

    @property
    def data_attack(self) -> Any:
        """The data attack's validated Params the evaluator scores: malicious clients' or the supply's (None: none)."""
        if self.attack is not None and self.attack.data is not None:
            return self.attack.data
        return self.data_supply.attack if self.data_supply is not None else None

    @property
    def held_out_examples(self) -> int:
        """Training examples reserved for central pre-training (0 without it)."""
        return self.pretraining.samples if self.pretraining is not None else 0

    @property
    def clients_per_round(self) -> int:
        """Clients sampled per round, resolved from count or fraction."""
        s = self.sampling
        if s.clients_per_round is not None:
            return s.clients_per_round
        if s.fraction is not None:
            return max(1, round(s.fraction * self.data.num_clients))
        return self.data.num_clients


def _format_location(loc: tuple[int | str, ...]) -> str:
    parts = [str(p) for p in loc if p not in _DISCRIMINATOR_TAGS]
    return ".".join(parts) if parts else "(top level)"


# pydantic puts the chosen variant's tag in an error's location; users never wrote it.
_DISCRIMINATOR_TAGS = {*PARTITIONERS.names(), *DATA_ATTACKS.names(), *MODEL_ATTACKS.names(),
                       *DEFENSES.names(), *WATERMARKS.names(), *INSPECTORS.names(), *REPAIRS.names(),
                       *GUARDS.names(), *PRIVACY_ATTACKS.names(), *EXTRACTIONS.names(),
                       *SANITIZERS.names()}


def _shown(value: Any, limit: int = 60) -> str:
    """``repr(value)``, cut to ``limit`` characters (a hostile value may be a megabyte long)."""
    text = repr(value)
    return text if len(text) <= limit else f"{text[:limit - 3]}..."


def _alternatives(annotation: Any) -> tuple[Any, ...]:
    """The types a value annotated ``annotation`` may have: Annotated and unions unwrapped."""
    origin = get_origin(annotation)
    if origin is Annotated:
        return _alternatives(get_args(annotation)[0])
    if origin in (Union, types.UnionType):
        return tuple(t for arg in get_args(annotation) for t in _alternatives(arg))
    return (annotation,)


def _names(model: type[BaseModel]) -> tuple[Any, ...]:
    """The values a model's ``name: Literal[...]`` field allows (none without such a field)."""
    field = model.model_fields.get("name")
    return get_args(field.annotation) if field is not None and get_origin(field.annotation) is Literal else ()


def _tag(model: type[BaseModel]) -> str | None:
    """The method name a model's ``name`` field fixes, None for a section."""
    names = _names(model)
    return names[0] if len(names) == 1 else None


def _models(types_: tuple[Any, ...]) -> list[type[BaseModel]]:
    """The pydantic models among ``types_``."""
    return [t for t in types_ if isinstance(t, type) and issubclass(t, BaseModel)]


@lru_cache(maxsize=256)
def _types_at(schema: Any, loc: tuple[int | str, ...]) -> tuple[Any, ...]:
    """The types the value at ``loc`` (a pydantic error location) of a ``schema`` document may have."""
    if not loc:
        return _alternatives(schema)
    found: list[Any] = []
    for parent in _types_at(schema, loc[:-1]):
        origin, args, part = get_origin(parent), get_args(parent), loc[-1]
        if isinstance(part, int) and (origin is list or origin is tuple and args[-1:] == (...,)):
            found += _alternatives(args[0])
        elif origin is dict and len(args) == 2:
            found += _alternatives(args[1])
        elif isinstance(parent, type) and issubclass(parent, BaseModel):
            if isinstance(part, str) and part in parent.model_fields:
                found += _alternatives(parent.model_fields[part].annotation)
            elif part == _tag(parent):  # pydantic names the union member it chose
                found.append(parent)
    return tuple(found)


def _unknown_key_hint(schema: Any, loc: tuple[int | str, ...]) -> str:
    """What follows "unknown key": the closest valid key, and the keys the enclosing mapping takes."""
    models = set(_models(_types_at(schema, loc[:-1])))
    if len(models) != 1:
        return ""
    model = models.pop()
    tag = _tag(model)
    keys = sorted(key for key in model.model_fields if tag is None or key != "name")
    close = difflib.get_close_matches(str(loc[-1]), keys, n=1)
    owner = tag or (_format_location(loc[:-1]) if len(loc) > 1 else "the top level")
    return (f" (did you mean {close[0]}?)" if close else "") + f"; {owner} takes: {', '.join(keys)}"


def _mapping_hint(schema: Any, loc: tuple[int | str, ...], value: Any) -> str:
    """``(write {name: X})`` when a mapping was expected and ``value`` is a name the mapping may hold."""
    names = {name for model in _models(_types_at(schema, loc)) for name in _names(model)}
    return f" (write {{name: {value}}})" if isinstance(value, str) and value in names else ""


def _format_error(error: dict[str, Any], schema: Any) -> str:
    loc = _format_location(error["loc"])
    kind = error["type"]
    value = _shown(error.get("input"))
    if kind == "extra_forbidden":
        return f"{loc}: unknown key{_unknown_key_hint(schema, error['loc'])}"
    if kind == "missing":
        return f"{loc}: required key is missing"
    if kind == "value_error":
        message = str(error["ctx"]["error"])
        # Checks on the whole scenario name the field path in their own message.
        return message if not error["loc"] else f"{loc}: {message}"
    ctx = error.get("ctx", {})
    if kind == "literal_error":
        return f"{loc}: {value} is not one of {ctx.get('expected')}"
    if kind == "union_tag_invalid":
        return f"{loc}.name: {_shown(ctx.get('tag'))} is not one of {ctx.get('expected_tags')}"
    if kind == "union_tag_not_found":
        return f"{loc}.name: required key is missing"
    if kind in ("model_type", "dict_type", "model_attributes_type"):
        hint = _mapping_hint(schema, error["loc"], error.get("input"))
        return f"{loc}: expected a mapping of keys, got {value}{hint}"
    message = error["msg"]
    return f"{loc}: {message[:1].lower()}{message[1:]} (got {value})"


def validation_lines(exc: ValidationError, schema: Any = None, limit: int | None = None) -> list[str]:
    """One human line per pydantic error, each naming the field path (the first ``limit`` errors,
    then a count of the others); given the validated ``schema`` (a model or annotation), an
    unknown key's line lists the keys its mapping takes."""
    errors = exc.errors(include_url=False)
    return _counted([_format_error(e, schema) for e in errors[:limit]], len(errors))


def _counted(lines: list[str], total: int) -> list[str]:
    """The lines of the first of ``total`` problems, and a count of the others."""
    return lines if total <= len(lines) else [*lines, f"... and {total - len(lines):,} more problems"]


def scenario_warnings(scenario: Scenario) -> list[str]:
    """Settings that are valid but defeat their purpose, one line each."""
    attack = scenario.attack
    if attack is None or attack.model is None or attack.collusion != "none":
        return []
    if not build_model_attack(attack.model).uses_benign_updates():
        return []
    return [f"warning: attack.model: {attack.model.name} is computed from the benign updates the attacker knows, "
            "and with attack.collusion: none that is only its own update, so the attack degenerates "
            "(set attack.collusion: full-knowledge)"]


def parse_override(text: str) -> tuple[list[str], Any]:
    """Split ``key.path=value``; the value is read as a YAML scalar (so 0.1, true, null work)."""
    if "=" not in text:
        raise ScenarioError([f"--set {text}: expected key.path=value"])
    key, raw = text.split("=", 1)
    path = key.strip().split(".")
    if not all(path):
        raise ScenarioError([f"--set {text}: empty key in path {key!r}"])
    return path, parse_value(raw) if raw.strip() else ""


def parse_value(text: str) -> Any:
    """A command-line value read as YAML by the scenario loader (``0.1``, ``1e-3``, ``true``,
    ``null``, ``[60, 40, 60]``); the text itself when it is not YAML the loader accepts."""
    try:
        return load_yaml_text(text)
    except yaml.YAMLError:
        return text


def load_yaml_text(text: str | bytes) -> Any:
    """``text`` (or UTF-8/16 bytes) read as YAML the way scenario files are: safely, strictly, with
    ``1e-3`` a number; yaml.YAMLError when the loader refuses it."""
    return yaml.load(text, Loader=_StrictLoader)  # noqa: S506 (a SafeLoader)


def apply_overrides(raw: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Return a copy of the raw mapping with each ``key.path=value`` set."""
    result = yaml.safe_load(yaml.safe_dump(raw)) or {}
    for text in overrides:
        path, value = parse_override(text)
        node = result
        for part in path[:-1]:
            child = node.get(part)
            if not isinstance(child, dict):
                child = {}
                node[part] = child
            node = child
        node[path[-1]] = value
    return result


class _Refused(yaml.MarkedYAMLError):
    """Well-formed YAML that :class:`_StrictLoader` refuses (it is never a scenario)."""

    def __init__(self, problem: str, mark: yaml.Mark) -> None:
        super().__init__(problem=problem, problem_mark=mark)


class _StrictLoader(yaml.SafeLoader):
    """PyYAML's safe loader, refusing duplicate keys, nesting deeper than :data:`MAX_DEPTH` (before
    the recursive composer runs out of stack), integer literals longer than :data:`MAX_NUMBER_CHARS`
    and scalars their tag cannot hold, each with its line; it also reads YAML 1.2 floats without a
    dot (``1e-3``) as numbers."""

    def __init__(self, stream: str | bytes) -> None:
        super().__init__(stream)
        self._depth = 0

    def compose_node(self, parent: yaml.Node | None, index: object) -> yaml.Node:
        if self._depth >= MAX_DEPTH:
            raise _Refused(f"nested deeper than {MAX_DEPTH} levels", self.peek_event().start_mark)
        self._depth += 1
        try:
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1

    def compose_mapping_node(self, anchor: str | None) -> yaml.MappingNode:
        node = super().compose_mapping_node(anchor)
        first: dict[tuple[str, str], yaml.Mark] = {}
        for key, _ in node.value:
            if isinstance(key, yaml.ScalarNode) and key.tag != "tag:yaml.org,2002:merge":
                mark = first.setdefault((key.tag, key.value), key.start_mark)
                if mark is not key.start_mark:
                    raise _Refused(f"duplicate key {_shown(key.value)} (first at line {mark.line + 1})",
                                   key.start_mark)
        return node

    def construct_object(self, node: yaml.Node, deep: bool = False) -> Any:
        try:
            return super().construct_object(node, deep)
        except (ValueError, OverflowError) as exc:  # text its tag cannot hold: 2024-13-45, !!int abc
            raise _Refused(f"not a valid {node.tag.rsplit(':', 1)[-1]}: {exc}", node.start_mark) from None

    def construct_yaml_int(self, node: yaml.ScalarNode) -> int:
        if len(node.value) > MAX_NUMBER_CHARS:
            raise _Refused(f"an integer of {len(node.value):,} characters is out of range", node.start_mark)
        return super().construct_yaml_int(node)


class _StrictDumper(yaml.SafeDumper):
    """PyYAML's safe dumper with the loader's float resolver, so a string such as ``1e3`` is quoted."""


_StrictLoader.add_constructor("tag:yaml.org,2002:int", _StrictLoader.construct_yaml_int)
for _yaml_class in (_StrictLoader, _StrictDumper):
    _yaml_class.add_implicit_resolver(
        "tag:yaml.org,2002:float", re.compile(r"^[-+]?[0-9][0-9_]*(?:\.[0-9_]*)?[eE][-+]?[0-9]+$"),
        list("-+0123456789"),
    )


def _walk(document: Any) -> Iterator[tuple[tuple[str | int, ...], Any]]:
    """Every value of a loaded document with its key path, containers before their items; YAML
    aliases are followed, so a small file may expand to billions of values (see :func:`_too_large`)."""
    stack: list[tuple[tuple[str | int, ...], Any]] = [((), document)]
    while stack:
        path, value = stack.pop()
        yield path, value
        if isinstance(value, dict):
            stack.extend(((*path, key), item) for key, item in reversed(value.items()))
        elif isinstance(value, (list, tuple)):
            stack.extend(((*path, i), item) for i, item in reversed(list(enumerate(value))))


def _too_large(document: Any) -> bool:
    """Whether the document holds more than :data:`MAX_VALUES` values (counting stops there)."""
    return next(islice(_walk(document), MAX_VALUES, None), None) is not None


def _value_problem(path: tuple[str | int, ...], value: Any) -> str | None:
    """Why a value cannot be in a scenario whatever its field: a key that is not a string, a number
    that is not finite or needs more than 64 bits, a type JSON does not have (dates, sets)."""
    where = _format_location(path)
    if isinstance(value, float) and not math.isfinite(value):
        return f"{where}: input should be a finite number (got {value})"
    if isinstance(value, int) and not isinstance(value, bool) and not -(2**63) <= value < 2**63:
        return f"{where}: a {value.bit_length()}-bit integer is out of range (64 bits at most)"
    if isinstance(value, dict):
        keys = [key for key in value if not isinstance(key, str)]
        if keys:
            return f"{where}: keys must be names, got {_shown(keys[0])}"
    elif value is not None and not isinstance(value, (str, int, float, bool, list, tuple)):
        return f"{where}: YAML {type(value).__name__} values are not allowed (quote it to make it a string)"
    return None


def read_yaml(path: Path) -> dict[str, Any]:
    """The file's top-level mapping; ScenarioError naming file:line:col for syntax errors, duplicate
    keys and too deep nesting, or the file for one that is too large, unreadable or not a mapping."""
    if not path.is_file():
        raise ScenarioError([f"{path}: no such file"])
    try:
        with path.open("rb") as f:
            data = f.read(MAX_FILE_BYTES + 1)
    except OSError as exc:
        raise ScenarioError([f"{path}: cannot read ({exc.strerror})"]) from None
    if len(data) > MAX_FILE_BYTES:
        raise ScenarioError([f"{path}: larger than {MAX_FILE_BYTES:,} bytes, too large for a scenario"])
    try:
        raw = load_yaml_text(data)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark
        where = f"{path}:{mark.line + 1}:{mark.column + 1}" if mark else str(path)
        label = "" if isinstance(exc, _Refused) else "YAML syntax error: "
        raise ScenarioError([f"{where}: {label}{exc.problem}"]) from None
    except yaml.YAMLError as exc:
        raise ScenarioError([f"{path}: cannot read YAML: {' '.join(str(exc).split())}"]) from None
    if raw is None:
        raise ScenarioError([f"{path}: the file is empty"])
    if not isinstance(raw, dict):
        raise ScenarioError([f"{path}: the top level must be a mapping of keys, got {type(raw).__name__}"])
    if _too_large(raw):
        raise ScenarioError([f"{path}: more than {MAX_VALUES:,} values once YAML aliases are expanded"])
    return raw


def parse_scenario(raw: dict[str, Any]) -> Scenario:
    """Validate a raw mapping; ScenarioError with one line per problem.

    Validation is strict: a bool or a string is never read as a number, nor a number as a bool
    or a string; an integer is read as a float.
    """
    if _too_large(raw):
        raise ScenarioError([f"more than {MAX_VALUES:,} values"])
    problems = [problem for path, value in _walk(raw) if (problem := _value_problem(path, value))]
    if problems:
        raise ScenarioError(_counted(problems[:MAX_PROBLEMS], len(problems)))
    try:
        # Strict JSON mode: strict Python mode would also refuse a list for a tuple field.
        return Scenario.model_validate_json(json.dumps(raw), strict=True)
    except ValidationError as exc:
        raise ScenarioError(validation_lines(exc, Scenario, MAX_PROBLEMS)) from None


def load_scenario(path: str | Path, overrides: list[str] | None = None) -> Scenario:
    """Read, override and validate a scenario file."""
    raw = read_yaml(Path(path))
    return parse_scenario(apply_overrides(raw, overrides or []))


def to_yaml(scenario: Scenario) -> str:
    """The fully resolved scenario (every default written out) as YAML."""
    return yaml.dump(scenario.model_dump(mode="json"), Dumper=_StrictDumper, sort_keys=False)
