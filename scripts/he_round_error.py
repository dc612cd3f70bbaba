"""Per-round error that CKKS adds to the global model, told apart from the drift of training.

Runs the scenario encrypted (its own encryption section, which must be ``mode: ckks``) and
records, for every round, the model the clients decrypt from the broadcast and the global model
after the round; then its plaintext twin (``mode: off``) twice:

  forced  every round starts from the model the encrypted run's clients decrypted in that round
          (same clients, same seeds), so the difference after the round is that round's
          encryption error alone (aggregation and the broadcast's encoding);
  free    the ordinary twin: both runs start from the same model and drift apart.

With ``--control`` a third plaintext run starts from the initial model plus uniform noise of
``--control-noise`` (1e-7, the size of a CKKS error) and runs free: the drift that training itself
makes of such a difference, with no encryption involved. Prints one row per round (max |Δ|).

    .venv/bin/python scripts/he_round_error.py scenarios/encryption/fedavg-ckks.yaml --rounds 5 --control
"""

from __future__ import annotations

import argparse
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from fedsec.fl.nodes import Nodes
from fedsec.fl.server import FederationServer
from fedsec.fl.simulation import simulate
from fedsec.results import RunDirectory
from fedsec.scenario import Scenario, load_scenario

Steer = Callable[[int, torch.Tensor], torch.Tensor]
"""(round, global model at its start) -> the model the round starts from instead."""


def recorded_run(scenario: Scenario, out: Path, steer: Steer | None = None) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """Run ``scenario`` (each round's start model passed through ``steer``); the model clients
    start each round from (decrypted from the broadcast when encrypted) and the global model after it."""
    starts: list[torch.Tensor] = []
    ends: list[torch.Tensor] = []

    class Recording(FederationServer):
        def run_round(self, round_number: int, nodes: Nodes) -> dict[str, Any]:
            if steer is not None:  # only the plaintext control is steered: its aggregation holds a tensor
                aggregation = self.aggregation
                aggregation.global_vector = steer(round_number, aggregation.global_vector.detach().cpu()).to(self.device)
            start = self.aggregation.evaluator_view()
            starts.append(start.detach().cpu().clone())
            record = super().run_round(round_number, nodes)
            ends.append(self.global_vector.detach().cpu().clone())
            return record

    simulate(scenario, RunDirectory.create(out, scenario.name), show_progress=False, server=Recording)
    return starts, ends


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("scenario", type=Path)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--control", action="store_true", help="also run the perturbed plaintext control")
    parser.add_argument("--control-noise", type=float, default=1e-7, help="max |perturbation| of the control's start")
    args = parser.parse_args()
    encrypted_scenario = load_scenario(args.scenario, [f"rounds={args.rounds}", "output.plots=false",
                                                      "output.save_model=false"])
    if not encrypted_scenario.encryption.enabled:
        raise SystemExit(f"{args.scenario}: encryption.mode must be ckks")
    plain_scenario = load_scenario(args.scenario, [f"rounds={args.rounds}", "output.plots=false",
                                                  "output.save_model=false", "encryption.mode=off"])
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp)
        broadcast, encrypted = recorded_run(encrypted_scenario, out)
        _, forced = recorded_run(plain_scenario, out, lambda r, model: broadcast[r - 1])
        _, free = recorded_run(plain_scenario, out)
        control: list[torch.Tensor] = []
        if args.control:
            def perturb(r: int, model: torch.Tensor) -> torch.Tensor:
                noise = torch.rand(model.shape, generator=torch.Generator().manual_seed(1)) * 2 - 1
                return model + noise * args.control_noise if r == 1 else model

            _, control = recorded_run(plain_scenario, out, perturb)
    print(f"{args.scenario}: max |global model difference| after each round")
    header = "round  ckks vs forced plaintext  ckks vs free plaintext"
    print(header + ("  plaintext vs perturbed plaintext" if control else ""))
    for r in range(args.rounds):
        row = f"{r + 1:5d}  {(encrypted[r] - forced[r]).abs().max().item():24.3e}  {(encrypted[r] - free[r]).abs().max().item():22.3e}"
        if control:
            row += f"  {(free[r] - control[r]).abs().max().item():32.3e}"
        print(row)


if __name__ == "__main__":
    main()
