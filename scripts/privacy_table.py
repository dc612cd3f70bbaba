"""Gradient inversion on real Fashion-MNIST client updates, in plaintext and under client-side
DP-SGD, as the privacy audit runs it: the acceptance table of docs/privacy.md.

The federation is ``scenarios/privacy/dlg-one-step.yaml`` (50 size-skewed clients: client 0
holds 1 image, client 1 five, client 2 twelve, client 5 fifty). For each attacked client the
update is computed by the client's own code (``LocalTrainer.train``, with the scenario's DP-SGD
when given) from the round-1 global model, and handed to the privacy audit exactly as the server
hands it the updates it received; the audit inverts it and scores the reconstruction. The
"normal" row is client 5 training as fmnist-fedavg's clients do (2 epochs of batches of 32).
Under ``encryption: ckks`` the server holds ciphertexts: the audit reconstructs nothing (its
test), so the table gives, as the attacker's best guess without the update, a uniform image at
the client images' mean pixel value.

    .venv/bin/python scripts/privacy_table.py --iterations 500 --noise 0.01 1.0
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
from pathlib import Path

import torch

from fedsec.audit import RoundView
from fedsec.client import LocalTrainer
from fedsec.federated_data import federated_data
from fedsec.models import build_model
from fedsec.params import model_vector
from fedsec.privacy.audit import PrivacyAudit
from fedsec.privacy.metrics import psnr, ssim
from fedsec.scenario import Scenario, apply_overrides, load_yaml_text, parse_scenario

SCENARIO = Path(__file__).resolve().parents[1] / "scenarios" / "privacy" / "dlg-one-step.yaml"
CASES = {"1 image": (0, 1, 8), "5 images": (1, 1, 8), "12 images": (2, 1, 16), "normal (50 images, 2 epochs of 32)": (5, 2, 32)}
"""Row -> (client, local epochs, batch size)."""


def scenario_for(client: int, epochs: int, batch: int, iterations: int, noise: float | None) -> Scenario:
    raw = load_yaml_text(SCENARIO.read_text())
    overrides = [f"client.local_epochs={epochs}", f"client.batch_size={batch}", f"privacy.inversion.client={client}",
                 "privacy.inversion.max_images=64", "privacy.membership=null",
                 f"privacy.inversion.attacks=[{{name: inverting-gradients, iterations: {iterations}}}]"]
    if noise is not None:
        overrides.append(f"privacy.dp_sgd={{noise_multiplier: {noise}, max_grad_norm: 1.0}}")
    return parse_scenario(apply_overrides(raw, overrides))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iterations", type=int, default=500, help="Inverting Gradients iterations")
    parser.add_argument("--noise", type=float, nargs="*", default=[0.01, 1.0], help="DP-SGD noise multipliers (C = 1)")
    parser.add_argument("--rows", nargs="*", default=list(CASES), help="rows to run (default: all)")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    cpu = torch.device("cpu")
    print("| update | protection | ε (δ = 1e-5) | PSNR dB | SSIM | label recovery | seconds |")
    print("|---|---|---|---|---|---|---|")
    for row in args.rows:
        client, epochs, batch = CASES[row]
        for noise in [None, *args.noise]:
            s = scenario_for(client, epochs, batch, args.iterations, noise)
            data = federated_data(s.data, s.seed)
            torch.manual_seed(s.seed)
            ds = data.dataset
            model = build_model(s.model.name, ds.image_shape, ds.num_classes, ds.mean, ds.std)
            start = model_vector(model)
            update = LocalTrainer(s, data, cpu).train(client, 1, start).update
            audit = PrivacyAudit(s.privacy, s, ds, cpu)  # type: ignore[arg-type]
            with tempfile.TemporaryDirectory() as run_dir:
                view = RoundView(1, False, model, start, {client: update}, frozenset(), Path(run_dir))
                records = audit(view)
            (inverted,) = [r for r in records if r["kind"] == "inversion"]
            eps = next((r["max_epsilon"] for r in records if r["kind"] == "dp-sgd"), None)
            protection = "plaintext" if noise is None else f"DP-SGD σ = {noise:g}, C = 1"
            print(f"| {row} | {protection} | {'-' if eps is None else f'{eps:.3g}'} | "
                  f"{statistics.fmean(inverted['psnr']):.1f} | {statistics.fmean(inverted['ssim']):.3f} | "
                  f"{inverted['label_recovery']:.2f} | {inverted['seconds']:.0f} |", flush=True)
        originals = audit.client_x.float() / 255
        guess = torch.full_like(originals, originals.mean().item())
        print(f"| {row} | CKKS: nothing invertible; uniform guess | - | {psnr(guess, originals).mean():.1f} | "
              f"{ssim(guess, originals).mean():.3f} | - | - |", flush=True)


if __name__ == "__main__":
    main()
