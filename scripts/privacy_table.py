"""Gradient inversion on real Fashion-MNIST client updates, in plaintext, under client-side DP-SGD
and under CKKS, as the privacy audit runs it: the acceptance table of docs/privacy.md.

The federation is ``scenarios/privacy/dlg-one-step.yaml`` (270 size-skewed clients: client 0
holds 1 image, client 2 four, client 9 sixteen, client 30 fifty). A "batch of B" row is a client
holding exactly B images that trains one local epoch with batches of B: one SGD step on a batch of
B. The "normal" row is client 30 training as fmnist-fedavg's clients do (2 epochs of batches of
32: four steps). For each row the update is computed by the client's own code
(``LocalTrainer.train``, with the scenario's DP-SGD when given) from the round-1 global model, and
handed to the privacy audit exactly as the server hands it the updates it received; the audit
inverts it and scores the reconstruction.

Under CKKS the same update is encrypted with the run's kind of key set (TenSEAL, the key
authority's public context) and the audit gets the ciphertexts, read back under the public context
as the server reads a reply: it must record ``not-invertible`` and write no image (checked here).
The attacker's best guess is then one made without the update, from the public global model
alone: a uniform image at the pixel mean that the model's input normalisation carries.

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
from fedsec.crypto.config import EncryptionConfig
from fedsec.crypto.context import Needs, ckks_parameters
from fedsec.crypto.key_authority import KeyAuthority
from fedsec.crypto.packing import deserialize_chunks, encrypt_vector, serialize_chunks
from fedsec.federated_data import federated_data
from fedsec.models import Normalize, build_model
from fedsec.params import model_vector
from fedsec.privacy.audit import IMAGE_DIR, PrivacyAudit
from fedsec.privacy.metrics import psnr, ssim
from fedsec.scenario import Scenario, apply_overrides, load_yaml_text, parse_scenario

SCENARIO = Path(__file__).resolve().parents[1] / "scenarios" / "privacy" / "dlg-one-step.yaml"
CASES = {"batch of 1": (0, 1, 1, 1), "batch of 4": (2, 4, 1, 4), "batch of 16": (9, 16, 1, 16),
         "normal (50 images, 2 epochs of 32)": (30, 50, 2, 32)}
"""Row -> (client, its images, local epochs, batch size)."""


def scenario_for(client: int, epochs: int, batch: int, iterations: int, noise: float | None) -> Scenario:
    raw = load_yaml_text(SCENARIO.read_text())
    overrides = [f"client.local_epochs={epochs}", f"client.batch_size={batch}", f"privacy.inversion.client={client}",
                 "privacy.inversion.max_images=64", "privacy.membership=null",
                 f"privacy.inversion.attacks=[{{name: inverting-gradients, iterations: {iterations}}}]"]
    if noise is not None:
        overrides.append(f"privacy.dp_sgd={{noise_multiplier: {noise}, max_grad_norm: 1.0}}")
    return parse_scenario(apply_overrides(raw, overrides))


def held_by_server(update: torch.Tensor, run_dir: Path) -> list:
    """The update as the server holds it under ``encryption: ckks``: CKKS ciphertexts (encrypted
    with the key set's public key, as a client encrypts), serialised and read back under the public
    context the server has, which holds no secret key."""
    params = ckks_parameters(EncryptionConfig(mode="ckks"), Needs(depth=1, rotations=False))
    authority = KeyAuthority(params, run_dir, model_size=len(update))
    public = authority.public_context()
    assert not public.is_private()
    blobs = serialize_chunks(encrypt_vector(public, update, params.slots))
    return deserialize_chunks(authority.public_context(), blobs)


def public_guess(model: torch.nn.Module, shape: torch.Size) -> torch.Tensor:
    """The attacker's guess of ``shape`` images from the public global model alone: every pixel
    at the mean of the model's input normalisation."""
    (normalize,) = [m for m in model.modules() if isinstance(m, Normalize)]
    return normalize.mean.view(1, -1, 1, 1).expand(shape).clone()


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
        client, images, epochs, batch = CASES[row]
        for noise in [None, *args.noise]:
            s = scenario_for(client, epochs, batch, args.iterations, noise)
            data = federated_data(s.data, s.seed)
            torch.manual_seed(s.seed)
            ds = data.dataset
            model = build_model(s.model.name, ds.image_shape, ds.num_classes, ds.mean, ds.std)
            start = model_vector(model)
            update = LocalTrainer(s, data, cpu).train(client, 1, start).update
            audit = PrivacyAudit(s.privacy, s, ds, cpu)  # type: ignore[arg-type]
            assert len(audit.client_y) == images, f"client {client} holds {len(audit.client_y)} images, not {images}"
            with tempfile.TemporaryDirectory() as run_dir:
                view = RoundView(1, False, model, start, {client: update}, frozenset(), Path(run_dir))
                records = audit(view)
            (inverted,) = [r for r in records if r["kind"] == "inversion"]
            eps = next((r["max_epsilon"] for r in records if r["kind"] == "dp-sgd"), None)
            protection = "plaintext" if noise is None else f"DP-SGD σ = {noise:g}, C = 1"
            print(f"| {row} | {protection} | {'-' if eps is None else f'{eps:.3g}'} | "
                  f"{statistics.fmean(inverted['psnr']):.1f} | {statistics.fmean(inverted['ssim']):.3f} | "
                  f"{inverted['label_recovery']:.2f} | {inverted['seconds']:.0f} |", flush=True)
            if noise is None:
                plain = (s, model, start, update)
        s, model, start, update = plain
        audit = PrivacyAudit(s.privacy, s, ds, cpu)  # type: ignore[arg-type]
        with tempfile.TemporaryDirectory() as run_dir:
            ciphertexts = held_by_server(update, Path(run_dir))
            records = audit(RoundView(1, False, model, start, {client: ciphertexts}, frozenset(), Path(run_dir)))
            assert [r["status"] for r in records] == ["not-invertible"], records
            assert not (Path(run_dir) / IMAGE_DIR).exists()
        originals = audit.client_x.float() / 255
        guess = public_guess(model, originals.shape)
        print(f"| {row} | CKKS: not-invertible; guess from the public global model | - | "
              f"{psnr(guess, originals).mean():.1f} | {ssim(guess, originals).mean():.3f} | - | - |", flush=True)


if __name__ == "__main__":
    main()
