"""The scenario section's schema, the audit family's builder, and the audit's records on a
watermarked digits victim."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import torch

from fedsec.audit import AUDITS, RoundView, build_audits
from fedsec.extraction.audit import ExtractionAudit
from fedsec.scenario import ScenarioError, parse_scenario

SECTION = {"holdout": 200, "attacks": [{"name": "knockoff", "budget": 200, "epochs": 30}],
           "prada": {"delta": 0.9, "benign_streams": 2}}


def scenario(extraction: dict | None = SECTION, **more: object):
    raw = {"name": "extraction-test", "rounds": 2, "data": {"dataset": "digits", "num_clients": 4},
           "model": {"name": "cnn"}, **more}
    return parse_scenario(raw if extraction is None else {**raw, "extraction": extraction})


@pytest.mark.parametrize(("section", "problem"), [
    ({**SECTION, "colour": 1}, "extraction.colour: unknown key"),
    ({**SECTION, "attacks": []}, "extraction.attacks"),
    ({**SECTION, "attacks": [{"name": "copycat"}]}, "extraction.attacks.0.name"),
    ({**SECTION, "attacks": [{"name": "knockoff", "budget": 0}]}, "budget"),
    ({**SECTION, "attacks": [{"name": "knockoff", "thief_data": "imagenet"}]}, "thief_data"),
    ({**SECTION, "attacks": [{"name": "knockoff", "output": "logits"}]}, "output"),
    ({**SECTION, "attacks": [{"name": "jacobian", "step": 2.0}]}, "step"),
    ({**SECTION, "attacks": [{"name": "knockoff", "budget": True}]}, "budget"),
    ({**SECTION, "prada": {"delta": 1.5}}, "extraction.prada.delta"),
    ({**SECTION, "rounds": [0]}, "extraction.rounds.0"),
    ({**SECTION, "at_end": False}, "else the thieves never attack"),
    ({**SECTION, "substitute": "vgg"}, "extraction.substitute"),
])
def test_schema_errors_name_the_field(section: dict, problem: str) -> None:
    with pytest.raises(ScenarioError) as info:
        scenario(section)
    assert any(problem in line for line in info.value.lines), info.value.lines


def test_the_section_is_frozen_and_the_builder_skips_scenarios_without_it() -> None:
    s = scenario()
    with pytest.raises(ValueError):
        s.extraction.holdout = 10
    assert "extraction" in AUDITS.names()
    device = torch.device("cpu")
    from fedsec.data.datasets import load_dataset
    digits = load_dataset("digits")
    assert AUDITS.get("extraction")(scenario(None), digits, device) is None
    assert any(isinstance(a, ExtractionAudit) for a in build_audits(s, digits, device))
    with pytest.raises(ValueError, match="extraction.holdout"):
        AUDITS.get("extraction")(scenario({**SECTION, "holdout": 360}), digits, device)


def test_due_after_the_named_rounds_and_at_the_end(victim) -> None:
    audit = AUDITS.get("extraction")(scenario({**SECTION, "rounds": [1]}), victim.dataset, torch.device("cpu"))
    assert audit.due(1, False) and not audit.due(2, False) and audit.due(5, True)


def test_records_on_a_watermarked_victim_whose_mark_does_not_survive(victim, tmp_path: Path) -> None:
    s = scenario(watermark={"scheme": {"name": "keyed-labels", "triggers": 50}, "key": "seeded",
                            "owner_samples": 300, "embedding": {"max_steps": 300, "lr": 0.05}})
    from fedsec.watermark.owner import OWNER_DIR, WatermarkOwner
    device = torch.device("cpu")
    owner = WatermarkOwner(s.watermark, s, victim.dataset, device, tmp_path / OWNER_DIR)
    marked = copy.deepcopy(victim.model)
    owner.after_aggregation(1, marked)
    audit = AUDITS.get("extraction")(s, victim.dataset, device)
    state = torch.get_rng_state()
    view = RoundView(2, True, marked.eval(), torch.zeros(1), {}, frozenset(), tmp_path)
    records = audit(view)
    assert torch.equal(torch.get_rng_state(), state)  # the federation's random state is untouched
    stolen, benign = records
    assert stolen["attack"] == "knockoff" and stolen["queries"] == 200 and stolen["round"] == 2
    assert stolen["fidelity"] > 0.6 and 0 <= stolen["accuracy"] <= 1
    assert stolen["victim_wm_verified"] == 1 and stolen["victim_wm_match"] > 0.9
    assert stolen["wm_verified"] == 0 and stolen["wm_match"] < 0.5  # the copy learns the task, not the triggers
    assert benign["attack"] == "benign" and len(benign["prada_detected_at"]) == 2 and benign["prada_fpr"] == 0
    summary = audit.summary(records)["extraction"]
    assert summary["round"] == 2 and summary["knockoff"]["wm_verified"] == 0 and summary["benign"]["prada_fpr"] == 0
