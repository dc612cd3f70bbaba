"""Encryption costs for the Fashion-MNIST CNN: fedsec's code paths against raw TenSEAL calls.

For one update of the CNN's size (206,922 values), the median over --repeats runs of:
  client encryption   fedsec.fl.encrypted_transport.client_update_record (scale, encrypt with the secret
                      key, serialize into a Flower record) vs raw ts.ckks_vector + serialize per
                      4096-value chunk in TenSEAL's symmetric mode, and vs the same with the public key;
  server aggregation  validation (deserialize) + sum of --clients updates + add to the global model
                      vs raw ts.ckks_vector_from + '+';
  client decryption   fedsec.fl.encrypted_transport.client_global_vector vs raw ts.ckks_vector_from + decrypt;
  evaluator decryption
                      the global model decrypted through the evaluator's grant (serialized to the key
                      authority's process, decrypted there, values sent back) vs the same raw decryption;
and ciphertext bytes per parameter. With --whitebox, one FedCrypt embedding step on the CNN's last
linear layer (1,280 values, 32 bits, N = 8192, chain [50, 33, 33, 33, 50]): fedsec.crypto.whitebox's
EncryptedEmbedder.step (refreshes by the key authority's process, logged) vs the same TenSEAL calls with a private
context (decrypt and encrypt in place of the refreshes). With --plain-run and --ckks-run (run directories of the same
scenario with encryption off and on) it also prints the median round time of both and their ratio.

    .venv/bin/python scripts/bench_he.py --repeats 5
    .venv/bin/python scripts/bench_he.py --plain-run runs/fedsec-plain-... --ckks-run runs/fedsec-ckks-...
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import tenseal as ts
import torch
from flwr.app import ArrayRecord, ConfigRecord, MetricRecord, RecordDict

from fedsec.crypto.aggregation import add, encrypted_sum
from fedsec.crypto.config import EncryptionConfig
from fedsec.crypto.context import ckks_parameters
from fedsec.crypto.custody import KeyCustody
from fedsec.crypto.key_authority import (
    EMBEDDER,
    EVALUATOR,
    KEY_FILE_ENV,
    KEYS_DIR,
    SECRET_CONTEXT_FILE,
    KeyAuthority,
    secret_key_encryptor,
)
from fedsec.crypto.layout import CiphertextLayout
from fedsec.crypto.packing import chunk_bounds, encrypt_vector
from fedsec.crypto.whitebox import STEP_NEEDS, U_SCALE, Detector, EncryptedEmbedder
from fedsec.fl.encrypted_transport import (
    HE_BREAKS_KEY,
    HE_COEFFICIENTS_KEY,
    HE_FINGERPRINT_KEY,
    HE_SLOTS_KEY,
    client_global_vector,
    client_update_record,
    validate_encrypted_reply,
)
from fedsec.fl.protocol import (
    METRICS_RECORD,
    NUM_EXAMPLES_KEY,
    PARTITION_KEY,
    SAMPLED_KEY,
    UPDATE_RECORD,
)
from fedsec.fl.validation import TRAIN_SECONDS_KEY, RejectedReply
from fedsec.fl.encrypted_aggregation import operation_needs
from fedsec.results import RunDirectory
from fedsec.scenario import load_scenario

CNN_PARAMETERS = 206_922
ROOT = Path(__file__).resolve().parent.parent


def median_s(function: Callable[[], object], repeats: int) -> float:
    """Median wall seconds of ``function`` over ``repeats`` calls (after one warm-up call)."""
    function()
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        function()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


class TrainReply:
    """The parts of a Flower train reply that server-side validation reads (no Flower run needed)."""

    def __init__(self, record: ArrayRecord, partition: int) -> None:
        self.content = RecordDict({
            UPDATE_RECORD: record,
            METRICS_RECORD: MetricRecord({PARTITION_KEY: partition, NUM_EXAMPLES_KEY: 600, TRAIN_SECONDS_KEY: 1.0}),
        })

    def has_error(self) -> bool:
        return False


def whitebox_step_s(repeats: int) -> tuple[float, float]:
    """Median seconds of one encrypted embedding step: fedsec's and raw TenSEAL calls."""
    config = EncryptionConfig(mode="ckks", poly_modulus_degree=8192, coeff_mod_bit_sizes=[50, 33, 33, 33, 50],
                              global_scale_bits=33)
    run_dir = Path(tempfile.mkdtemp())
    custody = KeyCustody(ckks_parameters(config, STEP_NEEDS), run_dir, CNN_PARAMETERS, {EMBEDDER: "benchmark"})
    detector = Detector.random(32, 1280, torch.Generator().manual_seed(0))
    embedder = EncryptedEmbedder(detector, 2.0, 0.15, custody.take(EMBEDDER))
    secret = ts.context_from((run_dir / KEYS_DIR / SECRET_CONTEXT_FILE).read_bytes())
    layer = ts.ckks_vector(secret, (torch.randn(1280, generator=torch.Generator().manual_seed(1)) * 0.05).tolist())
    rows = (U_SCALE * detector.projection).tolist()
    backward = (2.0 * detector.projection).tolist()
    shift = (0.47 - detector.targets(0.15)).tolist()

    def raw_step() -> None:
        projections = [layer.dot(row) for row in rows]
        gradients = [(u * u + u * (0.5 / U_SCALE) + s) * (u * (2 * 0.09 / U_SCALE) + 0.5)
                     for u, s in zip(projections, shift, strict=True)]
        gradient = ts.ckks_vector(secret, [g.decrypt()[0] for g in gradients])
        ts.ckks_vector(secret, (layer - gradient.mm(backward)).decrypt())

    try:
        # A fresh ciphertext each time (its copy counted against fedsec): the embedder reuses the
        # projections of the ciphertext it last saw, which a real step never sees twice.
        return median_s(lambda: embedder.step(layer.copy()), repeats), median_s(raw_step, repeats)
    finally:
        custody.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--clients", type=int, default=10, help="updates summed by the server")
    parser.add_argument("--whitebox", action="store_true", help="also time one white-box embedding step")
    parser.add_argument("--plain-run", type=Path)
    parser.add_argument("--ckks-run", type=Path)
    args = parser.parse_args()
    torch.set_num_threads(1)

    fedavg = load_scenario(ROOT / "scenarios/encryption/fedavg-ckks.yaml")
    params = ckks_parameters(fedavg.encryption, operation_needs(fedavg))
    authority = KeyAuthority(params, Path(tempfile.mkdtemp()), CNN_PARAMETERS)
    public, secret = authority.public_context(), authority._context
    update = torch.randn(CNN_PARAMETERS, generator=torch.Generator().manual_seed(0)) * 0.01
    values = update.double().numpy()
    bounds = chunk_bounds(CNN_PARAMETERS, params.slots)
    os.environ[KEY_FILE_ENV] = str(authority.secret_context_file)
    config = ConfigRecord({HE_FINGERPRINT_KEY: authority.fingerprint, HE_SLOTS_KEY: params.slots,
                           HE_BREAKS_KEY: [], SAMPLED_KEY: [0], HE_COEFFICIENTS_KEY: [0.1]})
    print(f"N={params.poly_modulus_degree} chain={list(params.coeff_mod_bit_sizes)} scale=2^{params.scale_bits} "
          f"d={CNN_PARAMETERS} ciphertexts={len(bounds)} repeats={args.repeats}")

    symmetric = secret_key_encryptor(secret)  # the same keys in TenSEAL's symmetric mode

    def raw_encrypt(context: ts.Context) -> list[bytes]:
        return [ts.ckks_vector(context, values[a:b]).serialize() for a, b in bounds]

    ours_enc = median_s(lambda: client_update_record(update, 0, config), args.repeats)
    raw_enc = median_s(lambda: raw_encrypt(symmetric), args.repeats)
    raw_public_enc = median_s(lambda: raw_encrypt(secret), args.repeats)
    record, _ = client_update_record(update, 0, config)
    blobs = raw_encrypt(symmetric)
    bytes_per_param = sum(len(b) for b in blobs) / CNN_PARAMETERS

    replies = [TrainReply(record, 0) for _ in range(args.clients)]
    global_chunks = encrypt_vector(public, update, params.slots)
    layout = CiphertextLayout(bounds, 2 * max(len(b) for b in blobs), 2.0**params.scale_bits,
                              len(params.coeff_mod_bit_sizes) - 1)

    def ours_aggregate() -> None:
        valid = [validate_encrypted_reply(r, 0, public, layout) for r in replies]
        rejected = [v.reason for v in valid if isinstance(v, RejectedReply)]
        assert not rejected, rejected[:1]
        add(global_chunks, encrypted_sum([v.update for v in valid]))

    def raw_aggregate() -> None:
        vectors = [[ts.ckks_vector_from(public, b) for b in blobs] for _ in range(args.clients)]
        total = vectors[0]
        for vector in vectors[1:]:
            total = [x + y for x, y in zip(total, vector, strict=True)]
        [g + t for g, t in zip(global_chunks, total, strict=True)]

    ours_agg = median_s(ours_aggregate, args.repeats)
    raw_agg = median_s(raw_aggregate, args.repeats)
    ours_dec = median_s(lambda: client_global_vector(record, config), args.repeats)
    raw_dec = median_s(lambda: [ts.ckks_vector_from(secret, b).decrypt() for b in blobs], args.repeats)
    with KeyCustody(params, Path(tempfile.mkdtemp()), CNN_PARAMETERS, {EVALUATOR: "benchmark"}) as custody:
        evaluator = custody.take(EVALUATOR)
        model = encrypt_vector(custody.public_context, update, params.slots)
        ours_eval = median_s(lambda: evaluator.decrypt(model, "global model"), args.repeats)
    error = (client_global_vector(record, config)[0].double() - 0.1 * update.double()).abs().max().item()

    print(f"{'phase':<34}{'fedsec s':>10}{'raw s':>10}{'ratio':>8}")
    for name, ours, raw in (("client encryption (1 update)", ours_enc, raw_enc),
                            ("  against public-key encryption", ours_enc, raw_public_enc),
                            (f"server aggregation ({args.clients} updates)", ours_agg, raw_agg),
                            ("client decryption (global model)", ours_dec, raw_dec),
                            ("evaluator decryption via authority", ours_eval, raw_dec)):
        print(f"{name:<34}{ours:>10.3f}{raw:>10.3f}{ours / raw:>8.2f}")
    print(f"ciphertext bytes per parameter: {bytes_per_param:.1f}  (float32: 4)")
    print(f"max abs error after encrypt/decrypt: {error:.2e}")
    if args.whitebox:
        ours_step, raw_step = whitebox_step_s(args.repeats)
        print(f"{'white-box step (1,280 values)':<34}{ours_step:>10.3f}{raw_step:>10.3f}{ours_step / raw_step:>8.2f}")
    if args.plain_run and args.ckks_run:
        plain = statistics.median(r["round_s"] for r in RunDirectory(args.plain_run).rounds())
        ckks = statistics.median(r["round_s"] for r in RunDirectory(args.ckks_run).rounds())
        print(f"median round: plaintext {plain:.2f} s, encrypted {ckks:.2f} s, ratio {ckks / plain:.2f}")


if __name__ == "__main__":
    main()
