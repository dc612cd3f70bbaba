"""The privacy audit: the section's schema, inversion of what the server received in plaintext,
nothing inverted from ciphertexts, membership figures per example and per client, the DP-SGD
accountant, records and summary."""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import tenseal as ts
import torch
from torch import nn

from fedsec.audit import AUDITS, RoundView, build_audits
from fedsec.data.datasets import ImageDataset
from fedsec.params import model_vector
from fedsec.privacy import PrivacyConfig
from fedsec.privacy.audit import PrivacyAudit
from fedsec.privacy.dp_sgd import epsilon
from fedsec.results import append_jsonl, read_jsonl
from fedsec.scenario import Scenario, ScenarioError, parse_scenario
from fedsec.training import train_local

TinyModel = Callable[..., nn.Module]

DLG = {"name": "dlg", "iterations": 20}


def scenario(privacy: dict[str, Any] | None, **more: Any) -> Scenario:
    raw = {"name": "privacy-test", "rounds": 3, "data": {"num_clients": 40, "partitioner": {"name": "iid"}},
           "client": {"local_epochs": 1, "batch_size": 4, "lr": 0.1, "momentum": 0.9}, **more}
    return parse_scenario({**raw, "privacy": privacy} if privacy is not None else raw)


@pytest.fixture(scope="module")
def dataset() -> ImageDataset:
    """40 training images (one per client) and 40 test images, 8 x 8 blobs, 5 classes."""
    generator = torch.Generator().manual_seed(0)
    t = torch.arange(8.0)
    centres = torch.rand(80, 2, generator=generator) * 6 + 1
    dy = (t.view(1, 8, 1) - centres[:, :1, None]) ** 2
    dx = (t.view(1, 1, 8) - centres[:, 1:, None]) ** 2
    blobs = torch.exp(-(dy + dx) / 6)
    x = (blobs.unsqueeze(1) * 255).round().to(torch.uint8)
    y = torch.randint(0, 5, (80,), generator=generator)
    return ImageDataset("privacy-blobs", x[:40], y[:40], x[40:], y[40:], 5, (0.0,), (1.0,))


def view(model: nn.Module, round_number: int, received: dict[int, Any], run_dir: Path,
         final: bool = False) -> RoundView:
    return RoundView(round_number, final, model, model_vector(model), received, frozenset(), run_dir)


def client_update(audit: PrivacyAudit, model: nn.Module, s: Scenario) -> torch.Tensor:
    """The update client 0 sends: fedsec's local training on its partition."""
    trained = copy.deepcopy(model)
    cpu = torch.device("cpu")
    train_local(trained, audit.client_x, audit.client_y, s.client, torch.Generator().manual_seed(0), cpu)
    return model_vector(trained) - model_vector(model)


def test_no_section_no_audit(dataset: ImageDataset) -> None:
    assert "privacy" in AUDITS.names()
    assert build_audits(scenario(None), dataset, torch.device("cpu")) == []


def test_plaintext_update_is_inverted_and_scored(dataset: ImageDataset, tiny_model: TinyModel, tmp_path: Path) -> None:
    s = scenario({"inversion": {"client": 0, "rounds": [1], "attacks": [DLG]}, "membership": {"samples": 30}})
    audit = build_audits(s, dataset, torch.device("cpu"))[0]
    assert isinstance(audit, PrivacyAudit) and audit.due(1, False) and not audit.due(2, False) and audit.due(3, True)
    torch.manual_seed(0)
    model = tiny_model()
    records = audit(view(model, 1, {0: client_update(audit, model, s), 5: torch.zeros(1)}, tmp_path))
    (record,) = records
    assert record["status"] == "reconstructed" and record["attack"] == "dlg" and record["images"] == 1
    assert record["psnr"][0] > 30 and record["ssim"][0] > 0.95
    assert record["label_recovery"] == 1.0 and record["labels_recovered"] == audit.client_y.tolist()
    assert (tmp_path / record["png"]).read_bytes().startswith(b"\x89PNG")
    final = audit(view(model, 3, {}, tmp_path, final=True))
    assert [r["kind"] for r in final] == ["membership"]
    assert 0 <= final[0]["auc"] <= 1 and {"tpr_at_fpr_0.001", "tpr_at_fpr_0.01", "advantage"} <= final[0].keys()
    append_jsonl(tmp_path / audit.record_file, records + final)
    summary = audit.summary(read_jsonl(tmp_path / audit.record_file))["privacy"]
    assert summary["dlg"]["reconstructed"] == 1 and summary["dlg"]["psnr"] == pytest.approx(record["psnr"][0], rel=1e-4)
    assert summary["membership"]["loss-threshold"]["auc"] == pytest.approx(final[0]["auc"], rel=1e-4)
    json.dumps(summary)


def test_ciphertexts_are_not_inverted(dataset: ImageDataset, tiny_model: TinyModel, tmp_path: Path) -> None:
    s = scenario({"inversion": {"client": 0, "attacks": [DLG, {"name": "inverting-gradients"}]}})
    audit = build_audits(s, dataset, torch.device("cpu"))[0]
    context = ts.context(ts.SCHEME_TYPE.CKKS, 8192, coeff_mod_bit_sizes=[60, 40, 60])
    context.global_scale = 2**40
    held = [ts.ckks_vector(context, [0.5] * 16)]
    context.make_context_public()  # what the server holds: ciphertexts under a public context
    records = audit(view(tiny_model(), 2, {0: held}, tmp_path))
    assert [(r["attack"], r["status"]) for r in records] == [("dlg", "not-invertible"),
                                                             ("inverting-gradients", "not-invertible")]
    assert all("ciphertexts" in r["reason"] and "psnr" not in r for r in records)
    assert not (tmp_path / "privacy").exists()
    assert audit.summary(records)["privacy"]["dlg"] == {"reconstructed": 0, "not_invertible": 1, "skipped": 0}


def test_under_ckks_the_attacker_reads_only_what_the_server_holds(
    dataset: ImageDataset, tiny_model: TinyModel, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Client 0's real update goes the way of an encrypted round: the client's code encrypts it,
    the server's reply check reads it back under the public context, and the audit gets the round
    as the server builds it. What arrives is ciphertexts the held context cannot decrypt; no attack
    is run on it and no image is written."""
    from flwr.app import ConfigRecord, Message, MessageType, MetricRecord, RecordDict
    from flwr.supercore.task_identity import TaskIdentity

    from fedsec.crypto.config import EncryptionConfig
    from fedsec.crypto.context import Needs, ckks_parameters
    from fedsec.crypto.key_authority import KEY_FILE_ENV, KeyAuthority
    from fedsec.crypto.layout import CiphertextLayout
    from fedsec.crypto.packing import chunk_bounds, encrypt_vector
    from fedsec.fl import encrypted_transport as transport
    from fedsec.fl.protocol import METRICS_RECORD, NUM_EXAMPLES_KEY, PARTITION_KEY, SAMPLED_KEY, UPDATE_RECORD
    from fedsec.fl.validation import ValidReply
    from fedsec.privacy.dlg import DeepLeakage
    from fedsec.privacy.inverting_gradients import InvertingGradients

    for field, value in (("_run_id", 1), ("_node_id", 0), ("_task_id", 1)):  # Flower stamps messages with these
        monkeypatch.setattr(TaskIdentity, field, value)
    for attack in (DeepLeakage, InvertingGradients):
        monkeypatch.setattr(attack, "reconstruct", lambda *_: pytest.fail("an attack ran on ciphertexts"))
    s = scenario({"inversion": {"client": 0, "rounds": [1], "attacks": [DLG, {"name": "inverting-gradients"}]}})
    audit = build_audits(s, dataset, torch.device("cpu"))[0]
    torch.manual_seed(0)
    model = tiny_model()
    update = client_update(audit, model, s)
    params = ckks_parameters(EncryptionConfig(mode="ckks"), Needs(depth=1, rotations=False))
    authority = KeyAuthority(params, tmp_path, model_size=len(update))
    monkeypatch.setenv(KEY_FILE_ENV, str(authority.secret_context_file))
    config = ConfigRecord({transport.HE_FINGERPRINT_KEY: authority.fingerprint, SAMPLED_KEY: [0],
                           transport.HE_COEFFICIENTS_KEY: [1.0], transport.HE_SLOTS_KEY: params.slots,
                           transport.HE_BREAKS_KEY: []})
    record, _ = transport.client_update_record(update, 0, config)
    content = RecordDict({UPDATE_RECORD: record, METRICS_RECORD: MetricRecord(
        {PARTITION_KEY: 0, NUM_EXAMPLES_KEY: 1, "train_s": 0.1})})
    reply = Message(content, reply_to=Message(RecordDict(), dst_node_id=7, message_type=MessageType.TRAIN))
    public = authority.public_context()
    fresh = encrypt_vector(public, torch.zeros(len(update)), params.slots)
    layout = CiphertextLayout(chunk_bounds(len(update), params.slots), 2 * max(len(c.serialize()) for c in fresh),
                              2.0**params.scale_bits, len(params.coeff_mod_bit_sizes) - 1)
    valid = transport.validate_encrypted_reply(reply, 0, public, layout, max_examples=100)
    assert isinstance(valid, ValidReply)
    received = {r.partition: r.update for r in [valid]}  # as the server builds the round's view

    held = received[0]
    assert held and all(isinstance(c, ts.CKKSVector) for c in held)
    assert not any(c.context().is_private() for c in held)
    with pytest.raises(ValueError):  # TenSEAL refuses to decrypt without the secret key
        held[0].decrypt()
    records = audit(view(model, 1, received, tmp_path / "run"))
    assert [(r["attack"], r["status"]) for r in records] == [("dlg", "not-invertible"),
                                                             ("inverting-gradients", "not-invertible")]
    assert not any({"psnr", "png", "labels_recovered"} & r.keys() for r in records)
    assert not (tmp_path / "run" / "privacy").exists()


def test_absent_client(dataset: ImageDataset, tiny_model: TinyModel, tmp_path: Path) -> None:
    every = build_audits(scenario({"inversion": {"client": 3, "attacks": [DLG]}}), dataset, torch.device("cpu"))[0]
    assert every(view(tiny_model(), 1, {}, tmp_path)) == []
    named = build_audits(scenario({"inversion": {"client": 3, "rounds": [1], "attacks": [DLG]}}),
                         dataset, torch.device("cpu"))[0]
    (record,) = named(view(tiny_model(), 1, {}, tmp_path))
    assert record["status"] == "skipped" and "no update from client 3" in record["reason"]


def test_more_examples_than_max_images_are_skipped(
    dataset: ImageDataset, tiny_model: TinyModel, tmp_path: Path
) -> None:
    s = scenario({"inversion": {"client": 0, "max_images": 1, "attacks": [DLG]}},
                 data={"num_clients": 10, "partitioner": {"name": "iid"}})
    audit = build_audits(s, dataset, torch.device("cpu"))[0]
    (record,) = audit(view(tiny_model(), 1, {0: torch.zeros(3)}, tmp_path))
    assert record["status"] == "skipped" and "4 examples, more than max_images (1)" in record["reason"]


@pytest.mark.parametrize(("privacy", "message"), [
    ({}, "privacy: give inversion, membership, dp_sgd or several"),
    ({"inversion": {"attacks": [DLG], "extra": 1}}, "privacy.inversion.extra: unknown key"),
    ({"inversion": {"attacks": []}}, "privacy.inversion.attacks"),
    ({"inversion": {"attacks": [{"name": "gradient-magic"}]}}, "privacy.inversion.attacks.0.name"),
    ({"inversion": {"attacks": [{"name": "dlg", "iterations": 0}]}}, "iterations"),
    ({"inversion": {"attacks": [{"name": "loss-threshold"}]}}, "privacy.inversion.attacks.0.name"),
    ({"membership": {"attacks": [{"name": "dlg"}]}}, "privacy.membership.attacks.0.name"),
    ({"membership": {"attacks": [{"name": "lira", "shadow_models": 1}]}}, "shadow_models"),
    ({"dp_sgd": {"noise_multiplier": 1.0}}, "privacy.dp_sgd.max_grad_norm"),
    ({"dp_sgd": {"noise_multiplier": -1, "max_grad_norm": 1}}, "privacy.dp_sgd.noise_multiplier"),
    ({"membership": {"rounds": [0]}}, "privacy.membership.rounds.0"),
])
def test_schema_errors(privacy: dict[str, Any], message: str) -> None:
    with pytest.raises(ScenarioError) as error:
        scenario(privacy)
    assert any(line.startswith(message) or message in line for line in error.value.lines), error.value.lines


def test_section_is_frozen() -> None:
    section = scenario({"membership": {}}).privacy
    with pytest.raises(ValueError):
        section.membership = None  # type: ignore[misc,union-attr]


def test_problems_with_the_rest_of_the_scenario() -> None:
    section = PrivacyConfig.model_validate({"inversion": {"client": 40, "rounds": [4], "attacks": [DLG]}})
    assert section.problems(3, 40, "adam") == [
        "privacy.inversion.rounds: [4] are after the last round (3)",
        "privacy.inversion.client: 40 is not a client id 0..39",
        "privacy.inversion: the attacker replays SGD, the clients train with adam",
    ]
    with pytest.raises(ScenarioError, match="privacy.inversion.rounds: \\[4\\] are after the last round"):
        scenario({"inversion": {"client": 3, "rounds": [4], "attacks": [DLG]}})


def test_summary_of_an_exact_reconstruction(dataset: ImageDataset) -> None:
    """An identical image has infinite PSNR, which JSON holds as null; the mean stays infinite."""
    audit = build_audits(scenario({"inversion": {"attacks": [DLG]}}), dataset, torch.device("cpu"))[0]
    record = {"round": 1, "kind": "inversion", "attack": "dlg", "status": "reconstructed",
              "psnr": [None, 30.0], "ssim": [1.0, 0.5], "label_recovery": 1.0}
    entry = audit.summary([record])["privacy"]["dlg"]
    assert entry["psnr"] == float("inf") and entry["ssim"] == 0.75 and entry["reconstructed"] == 1


def test_members_are_the_sampled_clients_examples(dataset: ImageDataset, tiny_model: TinyModel, tmp_path: Path) -> None:
    """10 of 40 clients (one image each) trained in round 1: their 10 candidates are the members,
    the other 30 clients are the client-level non-members."""
    s = scenario({"membership": {"rounds": [1], "samples": 30}}, sampling={"clients_per_round": 10})
    audit = build_audits(s, dataset, torch.device("cpu"))[0]
    torch.manual_seed(0)
    (record,) = audit(view(tiny_model(), 1, {}, tmp_path))
    assert (record["members"], record["nonmembers"]) == (10, 30)
    assert (record["member_clients"], record["nonmember_clients"]) == (10, 30)
    assert 0 <= record["client_auc"] <= 1 and "client_tpr_at_fpr_0.01" in record


def test_dp_sgd_epsilon_composes_a_clients_rounds(dataset: ImageDataset, tiny_model: TinyModel, tmp_path: Path) -> None:
    """Every client holds one image and takes one full-batch step per round; a fresh audit (a
    resumed run) reads the earlier rounds back from the record file."""
    s = scenario({"dp_sgd": {"noise_multiplier": 1.0, "max_grad_norm": 1.0}})
    assert s.privacy is not None and s.privacy.dp_sgd is not None
    audit = build_audits(s, dataset, torch.device("cpu"))[0]
    assert audit.due(1, False) and audit.due(2, False)
    first = audit(view(tiny_model(), 1, {0: torch.zeros(1), 3: torch.zeros(1)}, tmp_path))
    append_jsonl(tmp_path / audit.record_file, first)
    resumed = build_audits(s, dataset, torch.device("cpu"))[0]
    second = resumed(view(tiny_model(), 2, {0: torch.zeros(1)}, tmp_path))
    append_jsonl(tmp_path / audit.record_file, second)
    once, twice = epsilon(s.privacy.dp_sgd, 1.0, 1), epsilon(s.privacy.dp_sgd, 1.0, 2)
    assert first[0]["clients"] == [0, 3] and first[0]["steps"] == [1, 1] and first[0]["epsilon"] == [once, once]
    assert second[0]["epsilon"] == [twice] and second[0]["max_epsilon"] == twice > once
    summary = resumed.summary(read_jsonl(tmp_path / audit.record_file))["privacy"]["dp_sgd"]
    assert summary["epsilon"] == pytest.approx(twice, rel=1e-5) and summary["clients"] == 2 and summary["delta"] == 1e-5
