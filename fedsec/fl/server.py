"""The server's round loop over a Flower Grid: sample, train, validate, aggregate, evaluate, record.

The loop is the orchestrator (it reads the whole scenario); the aggregation step sees only
validated updates and example counts, never who is malicious.
"""

from __future__ import annotations

import io
import math
import statistics
import time
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
import torch
from flwr.app import ArrayRecord, ConfigRecord, Message, MessageType, RecordDict
from flwr.serverapp import Grid

from fedsec.audit import RoundView, build_audits
from fedsec.checkpoint import (
    CHECKPOINT_FILE,
    Checkpoint,
    read_checkpoint,
    resume_problems,
    save_checkpoint,
    scenario_digest,
)
from fedsec.client import client_seed
from fedsec.defenses import BelowMinimum
from fedsec.evaluation import Evaluator
from fedsec.faults import dropped
from fedsec.federated_data import FederatedData, federated_data
from fedsec.fl.aggregation import Aggregation, Decision
from fedsec.fl.encrypted_aggregation import EncryptedAggregation
from fedsec.fl.nodes import FederationError, Nodes, QueriedNodes, VirtualClients
from fedsec.fl.plain_aggregation import PlaintextAggregation
from fedsec.fl.protocol import (
    CONFIG_RECORD,
    MODEL_RECORD,
    ROUND_KEY,
    SAMPLED_KEY,
    SCENARIO_KEY,
    UPDATE_RECORD,
    payload_bytes,
    record_vector,
    vector_record,
)
from fedsec.fl.validation import RejectedReply
from fedsec.models import build_model
from fedsec.params import load_vector, model_vector
from fedsec.plots import plot_label_histogram, plot_rounds
from fedsec.poisoned_supply import SUPPLY_ROUND, removal_scores, supplied_poisons
from fedsec.pretraining import pretrained_state
from fedsec.progress import RoundReporter
from fedsec.provenance import ENVIRONMENT_FILE, environment_record
from fedsec.results import MODEL_FILE, PARTITIONS_FILE, SUMMARY_FILE, RunDirectory, append_jsonl, read_jsonl, write_atomic
from fedsec.sampling import sample_clients
from fedsec.scenario import Scenario
from fedsec.tracking import TrackedRun, flatten
from fedsec.training import resolve_device
from fedsec.watermark.owner import OWNER_DIR, WatermarkOwner


def build_aggregation(scenario: Scenario, run_dir: RunDirectory, data: FederatedData, initial: torch.Tensor,
                      device: torch.device, breaks: Sequence[int], key_fingerprint: str | None) -> Aggregation:
    """The scenario's aggregation: on ciphertexts under ``encryption: ckks``, else in the clear.
    ``breaks``: offsets where a ciphertext must start; ``key_fingerprint``: a resumed run's keys."""
    if scenario.encryption.enabled:
        return EncryptedAggregation(scenario, run_dir.path, initial, breaks, key_fingerprint)
    return PlaintextAggregation(scenario, data, initial, device)


COUNTS = ("tp", "fp", "fn", "tn")
RATES = ("precision", "recall", "fpr", "f1")


def detection_metrics(attacked: Sequence[bool], accepted: Sequence[bool] | None, rejects: bool) -> dict[str, Any]:
    """Confusion counts and rates of one round's defense decisions (docs/metrics.md).

    ``attacked``: for each update that passed validation, whether its client attacked this
    round (positives); ``accepted``: the pipeline's decision on each, None when the round was
    skipped (nothing decided, nothing counted); ``rejects``: whether the pipeline may reject at
    all: when it cannot, every count and rate is None (not applicable). Replies rejected by
    validation and clients whose update never arrived are not counted."""
    if not rejects:
        return dict.fromkeys((*COUNTS, *RATES))
    counts = dict.fromkeys(COUNTS, 0)
    for attacker, kept in zip(attacked, accepted, strict=True) if accepted is not None else ():
        counts[("fn" if kept else "tp") if attacker else ("tn" if kept else "fp")] += 1
    return {**counts, **detection_rates(**counts)}


def malicious_share(attacked: Sequence[bool], contributions: torch.Tensor | None) -> float | None:
    """Share of a round's aggregate that came from clients that attacked: the sum of their
    ``contributions`` (per valid update, summing to 1). None when no attacker's update reached the
    pipeline, nothing was aggregated, or the contributions are unknown."""
    if contributions is None or not any(attacked) or not float(contributions.sum()) > 0:
        return None
    return float(sum(c for c, attacker in zip(contributions.tolist(), attacked, strict=True) if attacker))


def detection_rates(tp: int, fp: int, fn: int, tn: int) -> dict[str, float | None]:
    """Precision, recall (TPR), FPR and F1 from confusion counts; None where undefined."""
    precision = tp / (tp + fp) if tp + fp else None
    recall = tp / (tp + fn) if tp + fn else None
    fpr = fp / (fp + tn) if fp + tn else None
    f1 = 2 * tp / (2 * tp + fp + fn) if tp + fp + fn else None
    return {"precision": precision, "recall": recall, "fpr": fpr, "f1": f1}


def _update_bytes(reply: Message) -> int:
    if not reply.has_content() or UPDATE_RECORD not in reply.content.array_records:
        return 0
    return payload_bytes(reply.content.array_records[UPDATE_RECORD])


class FederationServer:
    """Runs one scenario's rounds over ``grid`` and writes the run directory.

    The aggregation (plaintext or encrypted, chosen once by :func:`build_aggregation`) holds the
    global state; the server orchestrates rounds, plays the evaluator and keeps the records.
    ``virtual_clients``: the grid's nodes are the simulation's interchangeable virtual clients (at
    least as many as a round samples), else each node holds its own partition (fedsec.fl.nodes).
    """

    def __init__(self, scenario: Scenario, run_dir: RunDirectory, grid: Grid, show_progress: bool = True,
                 virtual_clients: bool = False) -> None:
        self.scenario = scenario
        self.run_dir = run_dir
        self.grid = grid
        self.show_progress = show_progress
        self.virtual_clients = virtual_clients
        if scenario.resources.server_threads is not None:
            torch.set_num_threads(scenario.resources.server_threads)
        self.device = resolve_device(scenario.resources.device)
        self.data: FederatedData = federated_data(scenario.data, scenario.seed, scenario.held_out_examples)
        dataset = self.data.dataset
        torch.manual_seed(scenario.seed)
        self.model = build_model(
            scenario.model.name, dataset.image_shape, dataset.num_classes, dataset.mean, dataset.std
        ).to(self.device)
        if scenario.pretraining is not None:
            self.model.load_state_dict(pretrained_state(scenario.pretraining, scenario.model.name, dataset,
                                                        scenario.seed, self.device))
        self.supply_poisons = {  # evaluator knowledge: poisons each client of a poisoned data supply holds
            p: supplied_poisons(scenario, self.data, p, client_seed(scenario.seed, SUPPLY_ROUND, p))
            for p in (scenario.data_supply.clients(scenario.data.num_clients, scenario.seed)
                      if scenario.data_supply is not None else ())
        }
        self.evaluator = Evaluator(dataset, scenario, self.device)
        self.audits = build_audits(scenario, dataset, self.device)
        self.scenario_json = scenario.model_dump_json()
        self.scenario_sha256 = scenario_digest(self.scenario_json)
        self.resumed_from = read_checkpoint(run_dir.file(CHECKPOINT_FILE))
        self.owner = None if scenario.watermark is None else WatermarkOwner(
            scenario.watermark, scenario, dataset, self.device, run_dir.file(OWNER_DIR))
        self.aggregation = build_aggregation(
            scenario, run_dir, self.data, model_vector(self.model), self.device,
            self.owner.ciphertext_breaks(self.model) if self.owner else (),
            self.resumed_from.key_fingerprint if self.resumed_from else None,
        )
        self.global_vector = model_vector(self.model)
        """The evaluator's copy of the global model after the last round (the public initial model before)."""
        self.tracked: TrackedRun | None = None

    # -- set-up -----------------------------------------------------------------------------

    def write_partitions(self) -> None:
        """Label histogram of every client, as JSON and PNG."""
        histogram = self.data.histogram()
        self.run_dir.write_json(PARTITIONS_FILE, {
            "num_clients": len(histogram),
            "sizes": histogram.sum(1).tolist(),
            "label_counts": histogram.tolist(),
        })
        if self.scenario.output.plots:
            plot_label_histogram(histogram, self.run_dir.file("partitions.png"))

    def discover_nodes(self) -> Nodes:
        """The connected nodes, ready to route rounds: virtual clients cost no message, nodes that
        hold their own partitions are each asked which one."""
        s = self.scenario
        nodes = (VirtualClients(self.grid, self.aggregation, s.data.num_clients, s.clients_per_round)
                 if self.virtual_clients else QueriedNodes(self.grid, self.aggregation, s.data.num_clients))
        nodes.discover()
        return nodes

    # -- one round ----------------------------------------------------------------------------

    def train_round(self, round_number: int, partitions: list[int], nodes: Nodes) -> tuple[list[Message], dict[int, int], int]:
        """Send the global model to the sampled clients (less the injected dropouts); their
        replies, the node each partition was sent to and the bytes sent."""
        s = self.scenario
        routes = nodes.route(partitions)  # first: the broadcast may need what the clients declared
        model_record, extra = self.aggregation.broadcast(partitions)
        sent = self.models_sent(partitions, model_record)
        config = ConfigRecord({ROUND_KEY: round_number, SCENARIO_KEY: self.scenario_json, SAMPLED_KEY: partitions,
                               **extra})
        messages = [
            Message(
                RecordDict({MODEL_RECORD: sent[p], CONFIG_RECORD: config, **nodes.address(p)}),
                dst_node_id=routes[p], message_type=MessageType.TRAIN,
            )
            for p in partitions
            if not dropped(s.faults, s.seed, round_number, p)
        ]
        replies = list(self.grid.send_and_receive(messages, timeout=self.scenario.server.round_timeout_s))
        return replies, routes, payload_bytes(model_record) * len(messages)

    def models_sent(self, partitions: list[int], model_record: ArrayRecord) -> dict[int, ArrayRecord]:
        """The model each sampled client receives: the broadcast record, or under per-client
        fingerprints its own copy. A client's update is its trained model less the copy it
        received, so the fingerprints never enter the global model."""
        if self.owner is None or self.owner.fingerprints is None:
            return dict.fromkeys(partitions, model_record)
        load_vector(self.model, record_vector(model_record).to(self.device))
        return {p: vector_record(model_vector(self.owner.copy_for(self.model, p))) for p in partitions}

    def validate(self, replies: Iterable[Message], routes: dict[int, int]) -> tuple[list, list[RejectedReply], list[RejectedReply]]:
        """Split replies into aggregatable updates, rejected updates and client failures (error
        replies), each sorted by partition; ``routes``: the node each partition was sent to."""
        partition_of = {node: p for p, node in routes.items()}
        max_examples = len(self.data.dataset.train_y)
        valid, rejected, failed = [], [], []
        for reply in replies:
            checked = self.aggregation.validate(reply, partition_of[reply.metadata.src_node_id], max_examples)
            if not isinstance(checked, RejectedReply):
                valid.append(checked)
            else:
                (failed if reply.has_error() else rejected).append(checked)
        return tuple(sorted(group, key=lambda r: r.partition) for group in (valid, rejected, failed))

    def run_round(self, round_number: int, nodes: Nodes) -> dict[str, Any]:
        """One full round; returns its record (also appended to metrics.jsonl)."""
        s = self.scenario
        started = time.perf_counter()
        self.aggregation.start_round(round_number)
        partitions = sample_clients(s.seed, round_number, s.data.num_clients, s.clients_per_round)
        replies, routes, bytes_down = self.train_round(round_number, partitions, nodes)
        train_s = time.perf_counter() - started
        previous_vector = self.global_vector
        valid, rejected, failed = self.validate(replies, routes)
        replied = {r.partition for r in (*valid, *rejected, *failed)}
        lost = [p for p in partitions if p not in replied]
        dropouts = sum(dropped(s.faults, s.seed, round_number, p) for p in lost)
        record: dict[str, Any] = {
            "round": round_number,
            "clients": len(partitions),
            "replies": len(valid),
            "rejected": len(rejected),
            "failed": len(failed),
            "dropped": dropouts,
            "missing": len(lost) - dropouts,
            "train_s": train_s,
            "client_train_s": float(np.mean([r.metrics["train_s"] for r in valid])) if valid else None,
            "bytes_down": bytes_down,
            "bytes_up": sum(_update_bytes(m) for m in replies),
        }
        decided: Decision | None = None
        if len(valid) < s.sampling.min_clients:
            record["skipped"] = f"{len(valid)} valid replies, fewer than sampling.min_clients={s.sampling.min_clients}"
        else:
            t = time.perf_counter()
            generator = torch.Generator().manual_seed(client_seed(s.seed, round_number, -2))
            try:
                decided = self.aggregation.aggregate(
                    round_number, valid, [self.sender_handles[r.partition] for r in valid], generator)
            except BelowMinimum as exc:  # raised before the aggregation changes the global model
                record["skipped"] = f"defense: {exc}"
            else:
                record["aggregate_s"] = time.perf_counter() - t
                record["accepted"] = int(decided.accepted.sum())
            record.update(self.aggregation.round_costs(valid, record["bytes_up"]))
        sample_rate = s.clients_per_round / s.data.num_clients
        if (epsilon := self.aggregation.pipeline.client_level_epsilon(round_number, sample_rate)) is not None:
            record["client_dp_epsilon"] = epsilon if math.isfinite(epsilon) else None  # null: infinite
        if self.owner is not None:
            record.update(self.aggregation.owner_step(self.owner, round_number, self.model))
        self.global_vector = self.aggregation.evaluator_view()
        if round_number % s.evaluation.every == 0 or round_number == s.rounds:
            t = time.perf_counter()
            load_vector(self.model, self.global_vector)
            record.update(self.evaluator(self.model))
            record["eval_s"] = time.perf_counter() - t
        attackers = self.attacked(round_number)
        self.run_audits(round_number, previous_vector, valid, attackers)
        attacked = [r.partition in attackers for r in valid]
        record.update(detection_metrics(attacked, None if decided is None else decided.accepted.tolist(),
                                        self.aggregation.rejects))
        record["malicious_share"] = malicious_share(attacked, None if decided is None else decided.contributions)
        record.update(self.sanitization_record(valid))
        clients = self.client_records(round_number, valid, rejected, decided, attackers)
        clients += self.failure_records(round_number, failed, lost)
        record["round_s"] = time.perf_counter() - started
        self.run_dir.append_round(record)
        self.run_dir.append_clients(clients)
        return record

    def attacked(self, round_number: int) -> frozenset[int]:
        """Partitions that attack in ``round_number`` (evaluator knowledge)."""
        s = self.scenario
        if s.attack is None or not s.attack.schedule.active(round_number):
            return frozenset()
        return s.attack.malicious(s.data.num_clients, s.seed, round_number)

    def run_audits(self, round_number: int, previous_vector: torch.Tensor, valid: list,
                   attackers: frozenset[int]) -> None:
        """Every audit due after this round, on the new global model; records to their files.
        ``attackers``: the partitions that attacked this round (for scoring only)."""
        final = round_number == self.scenario.rounds
        due = [audit for audit in self.audits if audit.due(round_number, final)]
        if not due:
            return
        load_vector(self.model, self.global_vector)
        view = RoundView(round_number, final, self.model, previous_vector,
                         {r.partition: r.update for r in valid}, attackers, self.run_dir.path)
        for audit in due:
            append_jsonl(self.run_dir.file(audit.record_file), audit(view))

    def client_records(
        self, round_number: int, valid: list, rejected: list[RejectedReply], decided: Decision | None,
        attackers: frozenset[int],
    ) -> list[dict[str, Any]]:
        """Per-client lines of clients.jsonl: the defense's decision and scores, and the evaluator's
        view of each client's role (added here, after the defense has decided); ``attackers``: the
        partitions that attacked this round."""
        s = self.scenario
        malicious = s.attack.malicious(s.data.num_clients, s.seed, round_number) if s.attack else frozenset()

        def role(partition: int) -> dict[str, Any]:
            poisons = {"poisons": self.poisons_held(partition)} if partition in attackers else {}
            return {"role": "malicious" if partition in malicious else "benign", "attacked": partition in attackers,
                    **poisons}

        records = []
        for i, r in enumerate(valid):
            record = {"round": round_number, "client": r.partition, **role(r.partition),
                      "num_examples": r.num_examples, "train_loss": r.metrics.get("train_loss"),
                      "train_s": r.metrics.get("train_s"), **self.sanitization_record([r])}
            if decided is not None:
                record["accepted"] = bool(decided.accepted[i])
                if decided.contributions is not None:
                    record["contribution"] = float(decided.contributions[i])
                record["scores"] = {stage: float(score[i]) for stage, score in decided.scores.items()}
            records.append(record)
        records += [
            {"round": round_number, "client": r.partition, **role(r.partition), "accepted": False, "reason": r.reason}
            for r in rejected
        ]
        return records

    def poisons_held(self, partition: int) -> int | None:
        """Poisons an attacking ``partition`` holds (crafted, or poisoned per pass over its data; None
        without a data attack), from its labels (evaluator knowledge)."""
        if self.evaluator.attack is None:
            return None
        return self.evaluator.attack.poison_count(self.data.client(partition)[1])

    def failure_records(self, round_number: int, failed: list[RejectedReply], lost: list[int]) -> list[dict[str, Any]]:
        """clients.jsonl lines of sampled clients whose update never arrived: ``failure`` is
        ``error`` (the client raised), ``dropped`` (injected dropout) or ``missing`` (no reply
        before the round's timeout)."""
        s = self.scenario
        records = [{"round": round_number, "client": r.partition, "failure": "error", "reason": r.reason}
                   for r in failed]
        for partition in lost:
            failure = "dropped" if dropped(s.faults, s.seed, round_number, partition) else "missing"
            records.append({"round": round_number, "client": partition, "failure": failure})
        return records

    # -- whole run ----------------------------------------------------------------------------

    def run(self) -> dict[str, Any]:
        """All rounds (after the last checkpointed one, if the run directory has a checkpoint),
        then the summary, the final model and the plots. Returns the summary."""
        try:
            return self._run()
        finally:
            self.aggregation.close()
            if self.tracked is not None:
                self.tracked.close(finished=self.run_dir.file(SUMMARY_FILE).exists())

    def _run(self) -> dict[str, Any]:
        started = time.perf_counter()
        self.clean_baseline = self.evaluator.clean_baseline(self.model)  # the model still holds its initial weights
        checkpoint = self.resumed_from
        if checkpoint is not None and (problems := resume_problems(
            checkpoint, self.scenario_sha256, self.scenario.rounds, self.aggregation.key_fingerprint,
            [r["round"] for r in self.run_dir.rounds()],
        )):
            raise FederationError(f"{self.run_dir.path}: cannot resume: " + "; ".join(problems))
        append_jsonl(self.run_dir.file(ENVIRONMENT_FILE), [environment_record(
            self.device, self.scenario.resources.client_threads, checkpoint.round if checkpoint else 0)])
        self.write_partitions()
        nodes = self.discover_nodes()
        if checkpoint is None:
            # Defenses that keep per-sender history (FoolsGold) get small opaque handles instead
            # of client ids or transport node ids.
            handles = nodes.sender_handles()
            first_round = 1
        else:
            checkpoint.restore_generators()
            self.aggregation.load_state_dict(checkpoint.aggregation)
            self.global_vector = self.aggregation.evaluator_view()
            if self.owner is not None:
                self.owner.load_state_dict(checkpoint.components["owner"])
            handles = checkpoint.senders
            first_round = checkpoint.round + 1
        # Records of rounds after the checkpoint (a kill between a round's records and its
        # checkpoint) are dropped: that round runs again and is recorded once.
        self.run_dir.drop_records_after(first_round - 1, [audit.record_file for audit in self.audits])
        self.sender_handles = handles
        records = self.run_dir.rounds()
        # A resumed run's trackers start over from the kept records: each round is tracked once.
        self.tracked = TrackedRun(self.scenario.output.trackers, self.run_dir.path, self.scenario.name,
                                  flatten(self.scenario.model_dump(mode="json", exclude={"output": {"trackers"}})),
                                  [{"round": 0, **self.clean_baseline}, *records])
        with RoundReporter(self.scenario.rounds, self.scenario.name, enabled=self.show_progress) as reporter:
            for round_number in range(first_round, self.scenario.rounds + 1):
                record = self.run_round(round_number, nodes)
                save_checkpoint(self.run_dir.file(CHECKPOINT_FILE), self.checkpoint(round_number, handles))
                records.append(record)
                self.tracked.log_round(record)
                reporter.round_done(record)
        return self.finish(records, time.perf_counter() - started)

    def checkpoint(self, round_number: int, handles: dict[int, int]) -> Checkpoint:
        """The server's state after ``round_number``: the aggregation's (under encryption the
        global model as ciphertexts only, no plaintext copy), the owner's, the sender handles."""
        components = {"owner": self.owner.state_dict()} if self.owner is not None else {}
        return Checkpoint(round_number, self.aggregation.state_dict(), handles, self.scenario_sha256,
                          self.aggregation.key_fingerprint, components)

    def attack_summary(self, evaluated: list[dict[str, Any]]) -> dict[str, Any]:
        """Final and peak targeted success (instance-targeted attacks), final and peak ASR, and
        backdoor durability: rounds from the end of the attack window until ASR first falls below
        50% (null when it never does within the run)."""
        summary: dict[str, Any] = {}
        if evaluated and "targeted_success" in evaluated[-1]:
            summary = {"targeted_success": evaluated[-1]["targeted_success"],
                       "max_targeted_success": max(r["targeted_success"] for r in evaluated)}
        if not evaluated or "asr" not in evaluated[-1]:
            return summary
        summary.update({"asr": evaluated[-1]["asr"], "max_asr": max(r["asr"] for r in evaluated)})
        schedule = self.scenario.attack.schedule if self.scenario.attack else None
        end = schedule.single_shot or schedule.end_round if schedule else None
        if end is not None:
            fallen = [r["round"] for r in evaluated if r["round"] > end and r["asr"] < 0.5]
            summary["durability"] = fallen[0] - end if fallen else None
        return summary

    def sanitization_record(self, replies: list) -> dict[str, Any]:
        """The supply's poisons the ``replies``' clients held (``supply_poisons``) and, for those that
        sanitized, the rows removed, the poisons among them, and the evaluator's scores of the removal."""
        record: dict[str, Any] = {}
        if self.supply_poisons:
            record["supply_poisons"] = sum(self.supply_poisons.get(r.partition, 0) for r in replies)
        sanitized = [r for r in replies if "sanitized" in r.metrics]
        if sanitized:
            counts = {"sanitized": sum(int(r.metrics["sanitized"]) for r in sanitized),
                      "sanitized_poisons": sum(int(r.metrics["sanitized_poisons"]) for r in sanitized),
                      "sanitization_held": sum(r.num_examples + int(r.metrics["sanitized"]) for r in sanitized),
                      "sanitization_poisons_held": sum(self.supply_poisons.get(r.partition, 0) for r in sanitized)}
            record.update(counts, **removal_scores(*counts.values()))
        return record

    def sanitization_summary(self, records: list[dict[str, Any]]) -> dict[str, Any]:
        """Poisons each client of the poisoned data supply held, and sanitization's scores over the run."""
        summary: dict[str, Any] = {}
        if self.supply_poisons:
            summary["supply_poisons_per_client"] = {str(p): n for p, n in sorted(self.supply_poisons.items())}
        keys = ("sanitized", "sanitized_poisons", "sanitization_held", "sanitization_poisons_held")
        if self.scenario.sanitization is not None:
            totals = [sum(r.get(key, 0) for r in records) for key in keys]
            summary.update(dict(zip(keys, totals, strict=True)), **removal_scores(*totals))
        return summary

    def poison_budget(self, records: list[dict[str, Any]]) -> dict[str, Any]:
        """``poisons_per_client``: poisons each client that attacked in the run held (by partition)."""
        attackers = sorted({p for r in records for p in self.attacked(r["round"])})
        if self.evaluator.attack is None or not attackers:
            return {}
        return {"poisons_per_client": {str(p): self.poisons_held(p) for p in attackers}}

    def finish(self, records: list[dict[str, Any]], wall_s: float) -> dict[str, Any]:
        """Write model.pt, the accuracy plot and, last (it marks the run finished), summary.json."""
        evaluated = [r for r in records if "ma" in r]
        last = evaluated[-1] if evaluated else {}
        shares = [r["malicious_share"] for r in records if r.get("malicious_share") is not None]
        rates = (detection_rates(**{k: sum(r[k] for r in records) for k in COUNTS}) if self.aggregation.rejects
                 else dict.fromkeys(RATES))
        summary = {
            "name": self.scenario.name,
            "rounds": len(records),
            "ma": last.get("ma"),
            "loss": last.get("loss"),
            "best_ma": max((r["ma"] for r in evaluated), default=None),
            **self.attack_summary(evaluated),
            **self.clean_baseline,
            **self.poison_budget(records),
            **self.sanitization_summary(records),
            **rates,
            "malicious_share": statistics.fmean(shares) if shares else None,
            "malicious_share_rounds": len(shares),
            **({"malicious_share_unavailable": self.aggregation.contributions_unavailable}
               if self.aggregation.contributions_unavailable else {}),
            **({"client_dp_epsilon": records[-1]["client_dp_epsilon"]}
               if records and "client_dp_epsilon" in records[-1] else {}),
            "skipped_rounds": sum(1 for r in records if "skipped" in r),
            "rejected": sum(r["rejected"] for r in records),
            **{key: sum(r.get(key, 0) for r in records) for key in ("failed", "dropped", "missing")},
            "bytes_down": sum(r["bytes_down"] for r in records),
            "bytes_up": sum(r["bytes_up"] for r in records),
            "train_s": sum(r["train_s"] for r in records),
            "aggregate_s": sum(r.get("aggregate_s", 0.0) for r in records),
            "eval_s": sum(r.get("eval_s", 0.0) for r in records),
            "wall_s": wall_s,
        }
        for audit in self.audits:
            summary.update(audit.summary(read_jsonl(self.run_dir.file(audit.record_file))))
        if self.scenario.output.save_model:
            load_vector(self.model, self.global_vector)
            state = {k: v.cpu() for k, v in self.model.state_dict().items()}
            buffer = io.BytesIO()
            torch.save({"model": self.scenario.model.name, "dataset": self.scenario.data.dataset,
                        "state_dict": state}, buffer)
            write_atomic(self.run_dir.file(MODEL_FILE), buffer.getvalue())
        if self.scenario.output.plots:
            plot_rounds(records, {"ma": "main accuracy (MA)", "asr": "attack success rate (ASR)",
                                  "targeted_success": "targeted success rate"},
                        self.run_dir.file("accuracy.png"), self.scenario.name)
        self.run_dir.write_json(SUMMARY_FILE, summary)
        self.tracked.log_artifacts([*sorted(self.run_dir.path.glob("*.png")), self.run_dir.file(SUMMARY_FILE)])
        return summary
