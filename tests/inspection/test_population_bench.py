"""The model population benchmark (fedsec.inspection.population): its metrics (sign of the score,
exclusion of members whose backdoor did not take, target accuracy) and its member cache, on a tiny
synthetic task with an MLP and stub inspectors."""

from __future__ import annotations

import itertools
import json
from collections.abc import Sequence
from dataclasses import asdict, replace
from pathlib import Path

import pytest
import torch
from torch import Tensor, nn

from fedsec.data.datasets import ImageDataset
from fedsec.inspection import population
from fedsec.inspection.base import Finding, Inspector, Subject
from fedsec.inspection.population import (
    MemberSpec,
    TrainingSettings,
    inspect_member,
    metrics,
    population_specs,
    run_benchmark,
)


def tiny_dataset() -> ImageDataset:
    """1x8x8 images of four classes: a fixed random template per class plus noise."""
    g = torch.Generator().manual_seed(5)
    templates = torch.rand(4, 1, 8, 8, generator=g) * 200

    def split(n: int) -> tuple[Tensor, Tensor]:
        y = torch.randint(4, (n,), generator=g)
        return (templates[y] + 30 * torch.randn(n, 1, 8, 8, generator=g)).clamp(0, 255).to(torch.uint8), y

    (train_x, train_y), (test_x, test_y) = split(400), split(200)
    return ImageDataset("tiny", train_x, train_y, test_x, test_y, 4, (0.4,), (0.3,))


def row(kind: str, suspicion: float, flagged: bool, *, took: bool | None = None, target: int | None = None,
        found: Sequence[int] = (), inspector: str = "x") -> dict[str, object]:
    backdoored = kind != "clean"
    return {"inspector": inspector, "backdoored": backdoored, "took": took if backdoored else None,
            "suspicion": suspicion, "flagged": flagged, "true_target": target, "targets": list(found),
            "queries": 10, "seconds": 0.5}


def pairwise_auc(positives: Sequence[float], negatives: Sequence[float]) -> float:
    """Probability that a positive outranks a negative (ties count half): the AUC's definition."""
    pairs = list(itertools.product(positives, negatives))
    return sum(1.0 if p > n else 0.5 if p == n else 0.0 for p, n in pairs) / len(pairs)


def test_metrics_rates_auc_and_exclusion() -> None:
    g = torch.Generator().manual_seed(0)
    positive_scores = (torch.randn(9, generator=g) + 1).tolist()
    negative_scores = torch.randn(7, generator=g).tolist()
    rows = [row("badnets", s, flagged=s > 0.8, took=True, target=i % 3, found=(i % 2,))
            for i, s in enumerate(positive_scores)]
    rows += [row("clean", s, flagged=s > 0.8) for s in negative_scores]
    m = metrics(rows)
    assert m.backdoored == 9 and m.clean == 7 and m.excluded == 0
    assert m.tpr == pytest.approx(sum(s > 0.8 for s in positive_scores) / 9)
    assert m.fpr == pytest.approx(sum(s > 0.8 for s in negative_scores) / 7)
    assert m.auc == pytest.approx(pairwise_auc(positive_scores, negative_scores))
    flagged = [i for i, s in enumerate(positive_scores) if s > 0.8]
    assert m.target_accuracy == pytest.approx(sum(i % 2 == i % 3 for i in flagged) / len(flagged))

    # a member whose backdoor did not take changes nothing but the excluded count, however it scores
    failed = row("sig", max(positive_scores) + 5, flagged=True, took=False, target=0, found=(0,))
    with_failed = metrics([*rows, failed])
    assert with_failed.excluded == 1 and with_failed.notes
    assert (with_failed.tpr, with_failed.fpr, with_failed.auc, with_failed.target_accuracy) == (
        m.tpr, m.fpr, m.auc, m.target_accuracy)

    # the sign decides the AUC: flipping every suspicion gives 1 - AUC; infinite scores are ranked
    flipped = metrics([{**r, "suspicion": -r["suspicion"]} for r in rows])
    assert flipped.auc == pytest.approx(1 - m.auc)
    separated = [row("wanet", float("inf"), True, took=True, target=1, found=(1,)), row("clean", 0.0, False),
                 row("blended", 3.0, False, took=True, target=2), row("clean", -float("inf"), False)]
    assert metrics(separated).auc == 1.0 and metrics(separated).target_accuracy == 1.0
    only_clean = metrics([row("clean", 1.0, True), row("clean", 0.0, False)])
    assert only_clean.auc is None and only_clean.tpr is None and only_clean.fpr == 0.5


class WeightNorm(Inspector):
    """Stub: the score is the model's last weight's norm, flagged above a threshold; fitted, when
    asked, on reference models (and records which); ``suspicion_sign`` is set per instance."""

    name = "stub"
    needs_weights = True

    def __init__(self, sign: int = 1, references: int = 0) -> None:
        super().__init__()
        self.suspicion_sign = sign
        self._references = references
        self.fitted: list[nn.Module] = []

    def references(self) -> int:
        return self._references

    def fit(self, references: Sequence[nn.Module]) -> None:
        self.fitted = list(references)

    def _inspect(self, subject: Subject, x: Tensor, y: Tensor, generator: torch.Generator) -> Finding:
        assert isinstance(subject, nn.Module)
        subject(x[:4].float() / 255)  # one counted query batch
        score = float([p for p in subject.parameters() if p.dim() == 2][-1].detach().norm())
        return Finding(backdoored=score > 0, score=score, threshold=0.0, targets=(0,))


def test_suspicion_sign_orients_the_auc() -> None:
    dataset = tiny_dataset()
    settings = TrainingSettings(model="mlp", subset=64, epochs=1, batch_size=32)
    specs = population_specs(1, 1, 0, seed=3, num_classes=4, poison_fraction=0.5)
    members = [population.Member(s, population.train_member(s, settings, dataset, torch.device("cpu")), 0.9,
                                 None if s.attack is None else 0.9, cached=False) for s in specs]
    up, down = WeightNorm(sign=1), WeightNorm(sign=-1)
    x, y = dataset.train_x[:8], dataset.train_y[:8]
    for member in members:
        a, b = (inspect_member(i, member, x, y, 0, 0, 0.5) for i in (up, down))
        assert a["score"] == b["score"] and a["suspicion"] == -b["suspicion"] == a["score"]
        assert a["queries"] == 4
    rows_up = [inspect_member(up, m, x, y, 0, i, 0.5) for i, m in enumerate(members)]
    rows_down = [inspect_member(down, m, x, y, 0, i, 0.5) for i, m in enumerate(members)]
    assert metrics(rows_up).auc == pytest.approx(1 - metrics(rows_down).auc)


def test_benchmark_writes_its_files_and_reuses_the_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    torch.set_num_threads(1)
    dataset = tiny_dataset()
    settings = TrainingSettings(model="mlp", subset=200, epochs=2, batch_size=32, poison_fraction=0.5)
    inspectors = [WeightNorm(sign=1), WeightNorm(sign=-1, references=2)]
    inspectors[1].name = "stub-fitted"
    kwargs = dict(clean=2, backdoored=4, seed=1, clean_samples=16, min_asr=0.5, cache_dir=tmp_path / "cache",
                  out_dir=tmp_path / "out", device=torch.device("cpu"), echo=lambda _: None)
    first = run_benchmark(inspectors, dataset, settings, **kwargs)

    assert [m.spec.attack["name"] for m in first.members if m.spec.attack] == list(population.ATTACKS)
    assert len({m.spec.target for m in first.members if m.spec.attack}) == 4  # different targets
    assert not any(m.cached for m in first.members)
    assert len(first.rows) == 2 * 6
    for r in first.rows:  # took: the backdoor's measured ASR against the threshold
        member = next(m for m in first.members if m.spec.name == r["member"])
        assert r["took"] == (None if member.asr is None else member.asr >= 0.5)
    # the references are extra clean models, none of them a population member
    fitted = inspectors[1].fitted
    assert len(fitted) == 2
    for reference, member in itertools.product(fitted, first.members):
        assert not torch.equal(nn.utils.parameters_to_vector(reference.parameters()),
                               nn.utils.parameters_to_vector(member.model.parameters()))
    lines = (tmp_path / "out" / population.ROWS_FILE).read_text().splitlines()
    assert [json.loads(line)["member"] for line in lines] == [r["member"] for r in first.rows]
    assert (tmp_path / "out" / population.ROC_FILE).read_bytes()[:4] == b"\x89PNG"
    assert "| stub-fitted |" in (tmp_path / "out" / population.TABLE_FILE).read_text()
    assert len(list((tmp_path / "cache").glob("*.pt"))) == 6 + 2

    def no_training(*_: object) -> nn.Module:
        raise AssertionError("a cached member was trained again")

    monkeypatch.setattr(population, "train_member", no_training)
    second = run_benchmark(inspectors, dataset, settings, **kwargs)
    assert all(m.cached for m in second.members)
    for a, b in zip(first.members, second.members, strict=True):
        assert (a.ma, a.asr) == (b.ma, b.asr)
        assert all(torch.equal(p, q) for p, q in zip(a.model.state_dict().values(), b.model.state_dict().values(),
                                                     strict=True))
    assert [r["score"] for r in second.rows] == [r["score"] for r in first.rows]

    # another training setting is another key: nothing is loaded for it
    spec = MemberSpec("clean-00", "population", 1)
    assert spec.key(settings) != spec.key(TrainingSettings(model="mlp", subset=200, epochs=3, batch_size=32,
                                                           poison_fraction=0.5))
    assert spec.key(settings) == MemberSpec("renamed", "reference", 1).key(settings)


def test_pretrained_members_start_from_one_shared_model(tmp_path: Path) -> None:
    torch.set_num_threads(1)
    dataset = tiny_dataset()
    scratch = TrainingSettings(model="mlp", subset=200, epochs=1, batch_size=32, poison_fraction=0.5)
    shared = replace(scratch, pretrain_epochs=3, pretrain_seed=7)
    specs = population_specs(2, 1, 0, seed=1, num_classes=4, poison_fraction=0.5)
    seen: list[str] = []

    def vectors(settings: TrainingSettings) -> list[Tensor]:
        members = population.materialise(specs, settings, dataset, tmp_path / "cache", torch.device("cpu"),
                                         on_member=lambda m: seen.append(m.spec.name))
        return [nn.utils.parameters_to_vector(m.model.parameters()).detach() for m in members]

    apart = vectors(scratch)
    together = vectors(shared)
    assert seen.count("pretrained") == 1  # trained once, before the members
    assert (together[0] - together[1]).norm() < 0.5 * (apart[0] - apart[1]).norm()
    assert (together[0] - together[2]).norm() < 0.5 * (apart[0] - apart[2]).norm()
    # without pre-training, the settings add nothing to the key: caches made before the option stay valid
    assert set(scratch.cache_fields()) == set(asdict(scratch)) - {"pretrain_epochs", "pretrain_seed"}
    assert specs[0].key(shared) != specs[0].key(scratch) != specs[0].key(replace(shared, pretrain_seed=8))


@pytest.mark.parametrize(("arguments", "message"), [
    (["--clean", "0"], "--clean 0: expected 1..1000"),
    (["--pretrain-epochs", "-1"], "--pretrain-epochs -1: expected 0..1000"),
    (["--epochs", "0"], "--epochs 0: expected 1..1000"),
    (["--poison-fraction", "1.5"], "--poison-fraction 1.5: expected a share in (0, 1]"),
    (["--inspector", "nope"], "--inspector nope: no such inspector"),
    (["--param", "restore"], "--param restore: expected inspector.key=value"),
    (["--inspector", "restore", "--param", "tabor.epochs=3"], "tabor is not an inspector of this benchmark"),
    (["--param", "neural-cleanse.epochs=-1"], "--param neural-cleanse.epochs: Input should be greater"),
    (["--model", "nope"], "--model nope: no such model"),
])
def test_command_refuses_bad_input_in_one_line(arguments: list[str], message: str, tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from fedsec.cli import app

    result = CliRunner().invoke(app, ["inspect-bench", *arguments, "--cache-dir", str(tmp_path / "c"),
                                      "--out", str(tmp_path / "o")])
    assert result.exit_code == 2
    assert message in result.output and len(result.output.strip().splitlines()) == 1
    assert not (tmp_path / "c").exists()  # nothing trained


def test_each_registered_inspector_says_which_way_its_score_points() -> None:
    from fedsec.inspection import INSPECTORS

    signs = {name: INSPECTORS.get(name).suspicion_sign for name in INSPECTORS.names()}
    assert set(signs.values()) <= {1, -1}
    assert signs["weight-space"] == -1  # flagged below its log-likelihood threshold
    assert signs["neural-cleanse"] == signs["tabor"] == signs["restore"] == signs["deep-inspect"] == 1
