"""The model population benchmark (``fedsec inspect-bench``): inspectors on many centrally trained
models whose history is known.

A population is ``clean`` models (different seeds) and ``backdoored`` ones (BadNets, Blended,
SIG and WaNet in turn, with different target classes and, for BadNets, patch corners), each
trained on its own seeded subset of the training set, from scratch or, with ``pretrain_epochs``,
from one shared clean model (the thesis' setting for the weight-space detector: its networks are
fine-tuned from the same pre-trained weights, so a neuron of one is comparable with the same
neuron of another), the backdoored ones with
``poison_fraction`` of every batch poisoned by the attack's train trigger (the clean-label SIG
gets the same share of the batch from its target-class rows).
Each member's main accuracy (MA) and attack success rate (ASR) are measured on the test set; a
backdoored member whose ASR is below ``min_asr`` did not take the backdoor: it is reported and
left out of the true-positive rate, the AUC and the target accuracy. Trained members are cached
in a directory, one file per member named by a hash of its spec and the training settings.

Every inspector then examines every member with the same clean images, a seeded sample of the
training set (never the test set); an inspector fitted on clean reference models (weight-space)
is fitted on extra clean members that are not in the evaluated population. Per inspector: TPR,
FPR, AUC of the score signed by :attr:`~fedsec.inspection.base.Inspector.suspicion_sign`
(scikit-learn's ``roc_auc_score``), target accuracy (flagged backdoored members whose most
suspect class is the true target), and the mean queries and seconds per model.
"""

from __future__ import annotations

import copy
import hashlib
import json
import math
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from fedsec.attacks.data.base import DataAttack, build_data_attack
from fedsec.data.datasets import ImageDataset
from fedsec.inspection.audit import clean_sample
from fedsec.inspection.base import INSPECTORS, Inspector, QueryFunction, build_inspector
from fedsec.models import MODELS, build_model
from fedsec.training import ClientConfig, TrainingHooks, evaluate, predict, train_local

ATTACKS = ("badnets", "blended", "sig", "wanet")
"""The data attacks of the backdoored members, in turn."""
CORNERS = ("bottom-right", "top-left", "top-right", "bottom-left")
"""BadNets patch positions, in turn over the BadNets members."""
CLEAN_LABEL = ("sig",)
"""Attacks that poison only rows of the target class (their ``eligible``)."""
CACHE_VERSION = 1
"""Part of every cache key: bump it when training changes so old files are not reused."""
ROWS_FILE = "members.jsonl"
TABLE_FILE = "table.md"
ROC_FILE = "roc.png"


@dataclass(frozen=True)
class TrainingSettings:
    """How every member is trained (centrally); part of each member's cache key."""

    dataset: str = "fashion-mnist"
    model: str = "cnn"
    subset: int = 10_000
    """Training images per member (count): a seeded draw from the training set."""
    epochs: int = 3
    batch_size: int = 64
    optimizer: str = "sgd"
    lr: float = 0.05
    momentum: float = 0.9
    poison_fraction: float = 0.1
    """Share (0..1) of each batch a backdoored member's attack poisons (of its eligible rows; the
    clean-label SIG gets ``num_classes`` times it of its target-class rows, see :func:`population_specs`)."""
    pretrain_epochs: int = 0
    """Epochs of the shared clean model every member starts from (0: each member starts from its own
    random initialisation)."""
    pretrain_seed: int = 3000
    """Seed of the shared model's initialisation, training subset and batch order."""

    def cache_fields(self) -> dict[str, Any]:
        """The settings in a cache key; without pre-training, the keys of members trained before the
        option existed."""
        fields = asdict(self)
        if not self.pretrain_epochs:
            del fields["pretrain_epochs"], fields["pretrain_seed"]
        return fields

    def problems(self, train_size: int | None = None) -> list[str]:
        """One line per bad value, naming the option; empty when the settings are usable."""
        out = []
        if self.model not in MODELS:
            out.append(f"--model {self.model}: no such model; one of {', '.join(MODELS.names())}")
        if not 1 <= self.epochs <= 1_000:
            out.append(f"--epochs {self.epochs}: expected 1..1000")
        if not 0 <= self.pretrain_epochs <= 1_000:
            out.append(f"--pretrain-epochs {self.pretrain_epochs}: expected 0..1000")
        if self.subset < 1 or (train_size is not None and self.subset > train_size):
            out.append(f"--subset {self.subset}: expected 1..{train_size or 'the training set size'}")
        if not 1 <= self.batch_size <= 65_536:
            out.append(f"--batch-size {self.batch_size}: expected 1..65536")
        if not (self.lr > 0 and math.isfinite(self.lr)):
            out.append(f"--lr {self.lr}: expected a finite number above 0")
        if not 0 < self.poison_fraction <= 1:
            out.append(f"--poison-fraction {self.poison_fraction}: expected a share in (0, 1]")
        return out


@dataclass(frozen=True)
class MemberSpec:
    """One member: ``role`` is ``population`` (evaluated), ``reference`` (fits inspectors that
    need clean reference models, never evaluated) or ``base`` (the shared pre-trained model);
    ``attack`` the data attack's parameters (None: clean)."""

    name: str
    role: str
    seed: int
    attack: Mapping[str, Any] | None = None

    @property
    def backdoored(self) -> bool:
        return self.attack is not None

    @property
    def target(self) -> int | None:
        return None if self.attack is None else int(self.attack["target_label"])

    def key(self, settings: TrainingSettings) -> str:
        """Cache key: a hash of everything that decides the trained weights (the name and role are
        labels only and left out)."""
        text = json.dumps({"version": CACHE_VERSION, "seed": self.seed, "attack": self.attack,
                           "training": settings.cache_fields()}, sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:20]


def population_specs(clean: int, backdoored: int, references: int, seed: int, num_classes: int,
                     poison_fraction: float) -> list[MemberSpec]:
    """The population's members then the reference ones. Clean member ``i`` has seed ``seed + i``;
    backdoored member ``j`` has seed ``seed + 1000 + j``, attack ``ATTACKS[j % 4]``, target
    ``(j + j // 4) % num_classes`` (so one attack's members differ in target) and, for BadNets,
    corner ``CORNERS[(j // 4) % 4]``; the attack's own random pattern or warp uses the member's
    seed. ``poison_fraction`` is a share of every batch: the clean-label SIG, which poisons only
    target-class rows (about one in ``num_classes``), gets ``num_classes`` times it of those rows
    (at most all of them). Reference ``r`` has seed ``seed + 2000 + r``."""
    specs = [MemberSpec(f"clean-{i:02d}", "population", seed + i) for i in range(clean)]
    for j in range(backdoored):
        name, member_seed = ATTACKS[j % len(ATTACKS)], seed + 1000 + j
        # clean-label SIG poisons only target-class rows: the same share of the whole batch is
        # num_classes times that share of its eligible rows
        share = min(1.0, poison_fraction * num_classes) if name in CLEAN_LABEL else poison_fraction
        attack: dict[str, Any] = {"name": name, "target_label": (j + j // len(ATTACKS)) % num_classes,
                                  "poison_fraction": share, "num_classes": num_classes}
        if name == "badnets":
            attack["position"] = CORNERS[(j // len(ATTACKS)) % len(CORNERS)]
        if name in ("blended", "wanet"):
            attack["seed"] = member_seed
        specs.append(MemberSpec(f"{name}-{j:02d}", "population", member_seed, attack))
    specs += [MemberSpec(f"reference-{r:02d}", "reference", seed + 2000 + r) for r in range(references)]
    return specs


@dataclass
class Member:
    """A trained (or loaded) member and its measured figures: ``ma`` (0..1) and, backdoored,
    ``asr`` (0..1); ``cached`` says it was loaded rather than trained."""

    spec: MemberSpec
    model: nn.Module
    ma: float
    asr: float | None
    cached: bool
    train_seconds: float = 0.0


def _attack(spec: MemberSpec) -> DataAttack | None:
    return None if spec.attack is None else build_data_attack(dict(spec.attack))


def attack_success(model: nn.Module, attack: DataAttack, dataset: ImageDataset, batch_size: int,
                   device: torch.device) -> float:
    """Share (0..1) of the test rows the attack counts (``asr_mask``) sent to its target by the
    test trigger."""
    chosen = attack.asr_mask(dataset.test_y)
    x, y = attack.apply_test_trigger(dataset.test_x[chosen]), dataset.test_y[chosen]
    predicted = predict(model, x, batch_size, device).argmax(1).cpu()
    return float((predicted == attack.target_labels(y)).float().mean())


def train_member(spec: MemberSpec, settings: TrainingSettings, dataset: ImageDataset,
                 device: torch.device, start: nn.Module | None = None) -> nn.Module:
    """A fresh model, or a copy of ``start``, trained on the member's seeded subset (poisoned batch
    by batch for a backdoored member)."""
    torch.manual_seed(spec.seed)
    model = build_model(settings.model, dataset.image_shape, dataset.num_classes, dataset.mean,
                        dataset.std).to(device)
    if start is not None:
        model.load_state_dict(start.state_dict())
    chosen = np.random.default_rng([spec.seed, 7]).choice(len(dataset.train_y), size=settings.subset,
                                                         replace=False)
    index = torch.from_numpy(chosen)
    generator = torch.Generator().manual_seed(spec.seed)
    attack = _attack(spec)
    hooks = TrainingHooks() if attack is None else TrainingHooks(
        transform=lambda xb, yb: attack.poison(xb, yb, generator)[:2])
    config = ClientConfig(local_epochs=settings.epochs, batch_size=settings.batch_size,
                          optimizer=settings.optimizer, lr=settings.lr, momentum=settings.momentum)
    train_local(model, dataset.train_x[index], dataset.train_y[index], config, generator, device, hooks)
    return model.eval()


def materialise(specs: Sequence[MemberSpec], settings: TrainingSettings, dataset: ImageDataset,
                cache_dir: Path, device: torch.device, eval_batch: int = 1024,
                on_member: Callable[[Member], None] | None = None) -> list[Member]:
    """Every member, loaded from ``cache_dir/<key>.pt`` when there, else trained (from the shared
    pre-trained model, itself cached the same way, when ``settings.pretrain_epochs``), measured and
    written there (atomically)."""
    cache_dir.mkdir(parents=True, exist_ok=True)
    start = None
    if settings.pretrain_epochs:
        shared = replace(settings, epochs=settings.pretrain_epochs, pretrain_epochs=0)
        start = materialise([MemberSpec("pretrained", "base", settings.pretrain_seed)], shared, dataset, cache_dir,
                            device, eval_batch, on_member)[0].model
    members = []
    for spec in specs:
        path = cache_dir / f"{spec.key(settings)}.pt"
        if path.is_file():
            model = build_model(settings.model, dataset.image_shape, dataset.num_classes, dataset.mean,
                                dataset.std).to(device)
            saved = torch.load(path, map_location=device, weights_only=True)
            model.load_state_dict(saved["state_dict"])
            member = Member(spec, model.eval(), float(saved["ma"]),
                            None if saved["asr"] is None else float(saved["asr"]), cached=True,
                            train_seconds=float(saved["train_seconds"]))
        else:
            started = time.perf_counter()
            model = train_member(spec, settings, dataset, device, start)
            seconds = time.perf_counter() - started
            ma = evaluate(model, dataset.test_x, dataset.test_y, eval_batch, device).accuracy
            attack = _attack(spec)
            asr = None if attack is None else attack_success(model, attack, dataset, eval_batch, device)
            partial = path.with_suffix(".part")
            torch.save({"state_dict": {k: v.cpu() for k, v in model.state_dict().items()}, "ma": ma, "asr": asr,
                        "train_seconds": seconds, "spec": json.dumps(asdict(spec), default=dict),
                        "training": json.dumps(asdict(settings))}, partial)
            partial.replace(path)
            member = Member(spec, model, ma, asr, cached=False, train_seconds=seconds)
        members.append(member)
        if on_member is not None:
            on_member(member)
    return members


def parse_overrides(texts: Iterable[str], names: Sequence[str]) -> dict[str, dict[str, Any]]:
    """``inspector.key=value`` texts (value read as YAML) -> parameters by inspector; ValueError
    with a one-line message naming the text."""
    import yaml

    out: dict[str, dict[str, Any]] = {}
    for text in texts:
        target, sep, value = text.partition("=")
        inspector, dot, key = target.partition(".")
        if not sep or not dot or not key:
            raise ValueError(f"--param {text}: expected inspector.key=value")
        if inspector not in names:
            raise ValueError(f"--param {text}: {inspector} is not an inspector of this benchmark "
                             f"({', '.join(names)})")
        try:
            parsed = yaml.safe_load(value)
        except yaml.YAMLError:
            parsed = value
        out.setdefault(inspector, {})[key] = parsed
    return out


def build_inspectors(names: Sequence[str], overrides: Mapping[str, Mapping[str, Any]]) -> list[Inspector]:
    """The named inspectors with their overrides; ValueError (one line) for an unknown name or a
    bad parameter."""
    from pydantic import ValidationError

    inspectors = []
    for name in names:
        if name not in INSPECTORS:
            raise ValueError(f"--inspector {name}: no such inspector; one of {', '.join(INSPECTORS.names())}")
        try:
            inspectors.append(build_inspector({"name": name, **overrides.get(name, {})}))
        except ValidationError as exc:
            error = exc.errors()[0]
            where = ".".join(str(part) for part in error["loc"])
            raise ValueError(f"--param {name}.{where}: {error['msg']}") from None
    return inspectors


def inspect_member(inspector: Inspector, member: Member, x: torch.Tensor, y: torch.Tensor, seed: int,
                   index: int, min_asr: float) -> dict[str, Any]:
    """One inspector's row for one member (the model is copied; black-box inspectors get its
    query function)."""
    generator = torch.Generator().manual_seed(seed * 1_000_003 + index)
    model = copy.deepcopy(member.model)
    budget = inspector.query_budget()
    subject = model if budget is None else QueryFunction.of_model(model, budget)
    report = inspector.inspect(subject, x, y, generator)
    spec = member.spec
    return {
        "member": spec.name, "seed": spec.seed, "attack": None if spec.attack is None else spec.attack["name"],
        "attack_params": None if spec.attack is None else dict(spec.attack),
        "backdoored": spec.backdoored, "true_target": spec.target, "ma": member.ma, "asr": member.asr,
        "took": None if not spec.backdoored else bool(member.asr is not None and member.asr >= min_asr),
        "inspector": inspector.name, "flagged": report.backdoored, "score": report.score,
        "threshold": report.threshold, "suspicion": inspector.suspicion_sign * report.score,
        "targets": list(report.targets), "queries": report.queries, "seconds": report.seconds,
    }


@dataclass(frozen=True)
class InspectorMetrics:
    """One inspector over the population: rates in 0..1 (None where undefined), ``notes`` why."""

    inspector: str
    backdoored: int
    clean: int
    excluded: int
    tpr: float | None
    fpr: float | None
    auc: float | None
    target_accuracy: float | None
    queries: float
    seconds: float
    notes: tuple[str, ...] = field(default_factory=tuple)


def metrics(rows: Sequence[Mapping[str, Any]]) -> InspectorMetrics:
    """TPR, FPR, AUC and target accuracy of one inspector's rows (see :func:`inspect_member`).

    Backdoored rows whose backdoor did not take (``took`` false) count nowhere but in
    ``excluded``. The AUC is scikit-learn's ``roc_auc_score`` of the ranks of ``suspicion`` (the
    score signed so larger is more suspect; ranks keep the AUC and accept infinite scores),
    positives the backdoored rows; None when either side is empty or a score is NaN. Target
    accuracy: flagged backdoored rows whose first suspected class is the true target, over the
    flagged backdoored rows. Queries and seconds: means over every row.
    """
    from scipy.stats import rankdata
    from sklearn.metrics import roc_auc_score

    names = {r["inspector"] for r in rows}
    if len(names) != 1:
        raise ValueError(f"metrics of one inspector's rows, got {sorted(names)}")
    positives = [r for r in rows if r["backdoored"] and r["took"]]
    negatives = [r for r in rows if not r["backdoored"]]
    excluded = sum(1 for r in rows if r["backdoored"] and not r["took"])
    notes = []
    if excluded:
        notes.append(f"{excluded} backdoored member(s) with ASR below the threshold left out")
    scores = [float(r["suspicion"]) for r in positives + negatives]
    auc = None
    if positives and negatives and not any(math.isnan(s) for s in scores):
        labels = [1] * len(positives) + [0] * len(negatives)
        auc = float(roc_auc_score(labels, rankdata(scores)))
    elif positives and negatives:
        notes.append("a score is NaN: no AUC")
    flagged = [r for r in positives if r["flagged"]]
    hits = sum(1 for r in flagged if r["targets"] and r["targets"][0] == r["true_target"])
    return InspectorMetrics(
        inspector=names.pop(), backdoored=len(positives), clean=len(negatives), excluded=excluded,
        tpr=len(flagged) / len(positives) if positives else None,
        fpr=sum(1 for r in negatives if r["flagged"]) / len(negatives) if negatives else None,
        auc=auc, target_accuracy=hits / len(flagged) if flagged else None,
        queries=float(np.mean([r["queries"] for r in rows])) if rows else 0.0,
        seconds=float(np.mean([r["seconds"] for r in rows])) if rows else 0.0, notes=tuple(notes))


def _rate(value: float | None) -> str:
    return "–" if value is None else f"{100 * value:.1f}"


def markdown_table(results: Sequence[InspectorMetrics]) -> str:
    """The benchmark table (rates in %), one row per inspector, then its notes."""
    lines = ["| inspector | backdoored | clean | TPR % | FPR % | AUC | target acc. % | queries / model | s / model |",
             "|---|---|---|---|---|---|---|---|---|"]
    for m in results:
        auc = "–" if m.auc is None else f"{m.auc:.3f}"
        lines.append(f"| {m.inspector} | {m.backdoored} | {m.clean} | {_rate(m.tpr)} | {_rate(m.fpr)} | {auc} | "
                     f"{_rate(m.target_accuracy)} | {m.queries:,.0f} | {m.seconds:.1f} |")
    notes = sorted({note for m in results for note in m.notes})
    return "\n".join(lines + ([""] + [f"Note: {n}." for n in notes] if notes else [])) + "\n"


def attack_table(rows: Sequence[Mapping[str, Any]], inspectors: Sequence[str]) -> str:
    """Flagged / taken backdoored members per inspector and attack (and flagged / clean members)."""
    attacks = [a for a in ATTACKS if any(r["attack"] == a for r in rows)]
    lines = ["| inspector | " + " | ".join([*attacks, "clean"]) + " |", "|---" * (len(attacks) + 2) + "|"]
    for name in inspectors:
        mine = [r for r in rows if r["inspector"] == name]
        cells = []
        for attack in attacks:
            taken = [r for r in mine if r["attack"] == attack and r["took"]]
            cells.append(f"{sum(r['flagged'] for r in taken)}/{len(taken)}")
        clean = [r for r in mine if not r["backdoored"]]
        cells.append(f"{sum(r['flagged'] for r in clean)}/{len(clean)}")
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def population_table(members: Sequence[Member], min_asr: float) -> str:
    """Per attack (and clean): members, mean MA, mean ASR, and those whose backdoor did not take."""
    groups: dict[str, list[Member]] = {}
    for m in members:
        groups.setdefault("clean" if m.spec.attack is None else m.spec.attack["name"], []).append(m)
    lines = ["| members | count | mean MA % | mean ASR % | ASR below threshold |", "|---|---|---|---|---|"]
    for name, group in groups.items():
        asrs = [m.asr for m in group if m.asr is not None]
        failed = [m.spec.name for m in group if m.asr is not None and m.asr < min_asr]
        lines.append(f"| {name} | {len(group)} | {100 * float(np.mean([m.ma for m in group])):.2f} | "
                     f"{f'{100 * float(np.mean(asrs)):.2f}' if asrs else '–'} | {', '.join(failed) or '–'} |")
    return "\n".join(lines) + "\n"


def plot_roc(rows: Sequence[Mapping[str, Any]], inspectors: Sequence[str], path: Path) -> None:
    """ROC curves (of the signed scores' ranks) of the inspectors that have an AUC, in one PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from scipy.stats import rankdata
    from sklearn.metrics import roc_curve

    fig, ax = plt.subplots(figsize=(5, 5))
    for name in inspectors:
        mine = [r for r in rows if r["inspector"] == name and (not r["backdoored"] or r["took"])]
        labels = [int(r["backdoored"]) for r in mine]
        scores = [float(r["suspicion"]) for r in mine]
        if len(set(labels)) < 2 or any(math.isnan(s) for s in scores):
            continue
        fpr, tpr, _ = roc_curve(labels, rankdata(scores))
        ax.plot(fpr, tpr, label=f"{name} (AUC {metrics(mine).auc:.2f})")
    ax.plot([0, 1], [0, 1], color="grey", linestyle=":", linewidth=1)
    ax.set_xlabel("false-positive rate (clean members)")
    ax.set_ylabel("true-positive rate (backdoored members)")
    ax.set_title("Model population benchmark")
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


@dataclass(frozen=True)
class BenchmarkResult:
    """What :func:`run_benchmark` measured: the members, per-inspector rows and metrics, and the
    Markdown it printed."""

    members: list[Member]
    rows: list[dict[str, Any]]
    results: list[InspectorMetrics]
    markdown: str


def run_benchmark(inspectors: Sequence[Inspector], dataset: ImageDataset, settings: TrainingSettings, *,
                  clean: int, backdoored: int, seed: int, clean_samples: int, min_asr: float, cache_dir: Path,
                  out_dir: Path, device: torch.device, echo: Callable[[str], None] = print) -> BenchmarkResult:
    """Train or load the population and the references, run every inspector on every member,
    write ``members.jsonl``, ``table.md`` and ``roc.png`` in ``out_dir`` and return the figures."""
    references = max((inspector.references() for inspector in inspectors), default=0)
    specs = population_specs(clean, backdoored, references, seed, dataset.num_classes, settings.poison_fraction)

    def report(member: Member) -> None:
        asr = "" if member.asr is None else f", ASR {100 * member.asr:.2f}%"
        how = "loaded" if member.cached else f"trained in {member.train_seconds:.1f} s"
        echo(f"{member.spec.name}: MA {100 * member.ma:.2f}%{asr} ({how})")

    everyone = materialise(specs, settings, dataset, cache_dir, device, on_member=report)
    population = [m for m in everyone if m.spec.role == "population"]
    reference_models = [m.model for m in everyone if m.spec.role == "reference"]
    x, y = clean_sample(dataset, clean_samples, seed)
    x, y = x.to(device), y.to(device)
    rows: list[dict[str, Any]] = []
    out_dir.mkdir(parents=True, exist_ok=True)
    for inspector in inspectors:
        if inspector.references():
            inspector.fit(reference_models[: inspector.references()])
        for index, member in enumerate(population):
            row = inspect_member(inspector, member, x, y, seed, index, min_asr)
            rows.append(row)
            echo(f"{inspector.name} on {member.spec.name}: {'flagged' if row['flagged'] else 'not flagged'}, "
                 f"score {row['score']:.3g} / {row['threshold']:.3g}, {row['seconds']:.1f} s")
    names = [inspector.name for inspector in inspectors]
    pretrained = (f" from one clean model trained {settings.pretrain_epochs} epochs"
                  if settings.pretrain_epochs else " from scratch")
    results = [metrics([r for r in rows if r["inspector"] == name]) for name in names]
    with (out_dir / ROWS_FILE).open("w") as handle:
        for row in rows:
            handle.write(json.dumps(row) + "\n")
    markdown = "\n".join([
        f"Population: {clean} clean + {backdoored} backdoored {settings.model} models on {dataset.name} "
        f"({settings.subset} training images, {settings.epochs} epochs{pretrained}, poison fraction "
        f"{settings.poison_fraction}; "
        f"{references} extra clean reference models; {clean_samples} clean training images for the inspectors; "
        f"ASR threshold {100 * min_asr:.0f}%).", "", population_table(population, min_asr),
        markdown_table(results), "Flagged members per attack (backdoor taken) and clean:", "",
        attack_table(rows, names)])
    (out_dir / TABLE_FILE).write_text(markdown)
    plot_roc(rows, names, out_dir / ROC_FILE)
    return BenchmarkResult(population, rows, results, markdown)
