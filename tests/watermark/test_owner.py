"""The owner: secret files and permissions, reproducible seeded keys, schedules, records without secrets."""

from __future__ import annotations

import copy
import json
import stat
from pathlib import Path

import pytest
import torch

from fedsec.results import RunDirectory
from fedsec.watermark.owner import WatermarkOwner
from fedsec.watermark.settings import WatermarkSchedule


def test_secrets_are_owner_only_files(scenario_with, digits, owner_dir: Path) -> None:
    scenario = scenario_with({"name": "keyed-labels", "triggers": 20}, key="random")
    WatermarkOwner(scenario.watermark, scenario, digits, torch.device("cpu"), owner_dir)
    assert stat.S_IMODE(owner_dir.stat().st_mode) == 0o700
    files = sorted(p.name for p in owner_dir.iterdir())
    assert files == ["key", "secrets.pt"]
    for path in owner_dir.iterdir():
        assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_seeded_keys_reproduce_and_random_keys_do_not(scenario_with, digits, tmp_path: Path) -> None:
    def owner(key: str, where: str) -> WatermarkOwner:
        scenario = scenario_with({"name": "uchida", "bits": 16}, key=key)
        return WatermarkOwner(scenario.watermark, scenario, digits, torch.device("cpu"), tmp_path / where)

    a, b = owner("seeded", "a"), owner("seeded", "b")
    assert a.key == b.key and torch.equal(a.secrets["projection"], b.secrets["projection"])
    c, d = owner("random", "c"), owner("random", "d")
    assert c.key != d.key and not torch.equal(c.secrets["projection"], d.secrets["projection"])
    again = owner("random", "c")  # an existing owner folder is reused (resume, verify)
    assert again.key == c.key and torch.equal(again.secrets["projection"], c.secrets["projection"])


def test_schedules(scenario_with, ) -> None:
    assert [WatermarkSchedule().active(r) for r in (1, 5)] == [True, True]
    once = WatermarkSchedule(mode="once", start_round=3)
    assert [once.active(r) for r in (2, 3, 4)] == [False, True, False]
    window = WatermarkSchedule(mode="window", start_round=2, end_round=3)
    assert [window.active(r) for r in (1, 2, 3, 4)] == [False, True, True, False]
    with pytest.raises(ValueError):
        WatermarkSchedule(mode="window")


def test_round_records_hold_statistics_only(scenario_with, digits, clean_models, tmp_path: Path) -> None:
    run = RunDirectory(tmp_path)
    scenario = scenario_with({"name": "keyed-labels", "triggers": 30},
                             schedule={"mode": "once", "start_round": 1}, embedding={"max_steps": 20})
    owner = WatermarkOwner(scenario.watermark, scenario, digits, torch.device("cpu"), run.file("owner"))
    model = copy.deepcopy(clean_models[0])
    for round_number in (1, 2):
        record = owner.after_aggregation(round_number, model)
        assert set(record) == {"wm_embedded", "wm_steps", "wm_s", "wm_match", "wm_p_value", "wm_bits", "wm_verified"}
        assert all(isinstance(v, (int, float)) for v in record.values())
        run.append_round({"round": round_number, **record})
    assert [r["wm_embedded"] for r in run.rounds()] == [1, 0]
    text = run.file("metrics.jsonl").read_text()
    assert owner.key.hex() not in text
    labels = "".join(str(int(v)) for v in owner.secrets["y"])
    assert labels not in text and len(text) < 600
    assert json.loads(text.splitlines()[0])["wm_steps"] <= 20


def test_shipped_scenarios_use_random_owner_keys() -> None:
    """A seeded key is derivable from scenario.yaml, which every client receives: shipped scenarios
    use random keys, except where a line says why it must be reproducible (and that it is insecure)."""
    from fedsec.scenario import load_scenario

    for path in sorted((Path(__file__).parents[2] / "scenarios").rglob("*.yaml")):
        if path.name.endswith(".sweep.yaml"):  # grids over a scenario, not scenarios
            continue
        scenario = load_scenario(path)
        if scenario.watermark is None or scenario.watermark.key == "random":
            continue
        line = next(line for line in path.read_text().splitlines() if line.strip().startswith("key:"))
        assert "insecure" in line, f"{path}: {line.strip()}"


@pytest.mark.parametrize("breakage", ["blow-up", "nan"])
def test_a_diverged_embedding_is_undone_when_asked(scenario_with, digits, clean_models, tmp_path: Path,
                                                   breakage: str) -> None:
    def diverging_embed(model, *_):  # what a diverged fine-tuning leaves: huge or non-finite weights
        with torch.no_grad():
            for parameter in model.parameters():
                parameter.mul_(1e4) if breakage == "blow-up" else parameter.fill_(float("nan"))
        return 7

    for ratio in (10.0, None):
        scenario = scenario_with({"name": "uchida", "bits": 16}, embedding={"rollback_loss_ratio": ratio})
        owner = WatermarkOwner(scenario.watermark, scenario, digits, torch.device("cpu"), tmp_path / str(ratio))
        model = copy.deepcopy(clean_models[0])
        before = copy.deepcopy(model.state_dict())
        owner.scheme.embed = diverging_embed
        record = owner.after_aggregation(1, model)
        undone = all(torch.equal(before[k], v) for k, v in model.state_dict().items())
        assert record["wm_steps"] == 7 and undone == (ratio is not None)
        assert record.get("wm_rolled_back") == (1 if ratio else None)


def test_a_sound_embedding_is_kept(scenario_with, digits, clean_models, tmp_path: Path) -> None:
    scenario = scenario_with({"name": "uchida", "bits": 32},
                             embedding={"max_steps": 20, "lr": 0.05, "rollback_loss_ratio": 10.0})
    owner = WatermarkOwner(scenario.watermark, scenario, digits, torch.device("cpu"), tmp_path / "owner")
    model = copy.deepcopy(clean_models[0])
    before = copy.deepcopy(model.state_dict())
    record = owner.after_aggregation(1, model)
    assert record["wm_rolled_back"] == 0 and record["wm_steps"] > 0
    assert not all(torch.equal(before[k], v) for k, v in model.state_dict().items())  # the embedding stays
