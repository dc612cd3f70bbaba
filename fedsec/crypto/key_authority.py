"""The key authority: creates the CKKS keys, hands out the public context, decrypts on request.

Roles (DESIGN §2): clients and the owner hold the secret key (in this simulation they load
it from the authority's key file, the stand-in for a key-distribution step); the
aggregation server gets the public context only and asks the authority to decrypt the few
scalars a defense needs. Every request, granted or refused, is one JSON line in
``decryptions.jsonl`` of the run directory.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Sequence
from dataclasses import asdict
from functools import lru_cache
from pathlib import Path

import numpy as np
import tenseal as ts

from fedsec.crypto.context import CkksParameters, make_context
from fedsec.results import append_jsonl, write_atomic

KEYS_DIR = "keys"
SECRET_CONTEXT_FILE = "secret.ctx"
PARAMETERS_FILE = "parameters.json"
DECRYPTIONS_FILE = "decryptions.jsonl"
SERVER = "server"
EMBEDDER = "watermark-embedder"
SCALARS_ONLY = (SERVER, EMBEDDER)
"""Requesters without the secret key: the aggregation server and the owner's white-box embedder
(it holds the detector, works on ciphertexts next to the server and needs detector outputs only)."""


class DecryptionRefused(PermissionError):
    """A requester without the key asked for more than scalars (a model-sized or vector-sized plaintext)."""


class KeyAuthority:
    """Owns the secret key of one run.

    Parameters
    ----------
    params : CkksParameters
        The context's parameters.
    run_dir : Path
        Run directory; keys go to ``run_dir/keys`` (0o700, files 0o600; reused when there, so a
        resumed run can decrypt its checkpoint), the audit log to ``run_dir/decryptions.jsonl``.
    model_size : int
        Values in the model vector; the server never gets that many decrypted in one request.
    server_value_limit : int
        Largest ciphertext (in values) the server may have decrypted: per-client scalars are
        single values, detector outputs a few hundred; a chunk of a model (N/2) is refused.
    """

    def __init__(self, params: CkksParameters, run_dir: Path, model_size: int, server_value_limit: int = 1024) -> None:
        self.params = params
        self.model_size = model_size
        self.server_value_limit = server_value_limit
        self.log_path = Path(run_dir) / DECRYPTIONS_FILE
        keys = Path(run_dir) / KEYS_DIR
        keys.mkdir(mode=0o700, exist_ok=True)
        os.chmod(keys, 0o700)
        self.secret_context_file = keys / SECRET_CONTEXT_FILE
        described = json.dumps(asdict(params)) + "\n"
        if self.secret_context_file.exists():  # a resumed run keeps its keys (its checkpoint is encrypted)
            if (keys / PARAMETERS_FILE).read_text() != described:
                raise ValueError(f"{keys}: the keys there were made for other CKKS parameters")
            self._context = ts.context_from(self.secret_context_file.read_bytes())
        else:
            self._context = make_context(params)
            write_atomic(self.secret_context_file, self._context.serialize(save_secret_key=True), mode=0o600)
            write_atomic(keys / PARAMETERS_FILE, described, mode=0o600)

    def public_context(self) -> ts.Context:
        """A copy of the context without the secret key (``is_private()`` is False)."""
        public = self._context.copy()
        public.make_context_public()
        return public

    def public_context_bytes(self) -> bytes:
        """The public context serialized (public, relinearization and Galois keys only)."""
        return self._context.serialize(save_secret_key=False)

    def encrypt(self, values: np.ndarray) -> ts.CKKSVector:
        """One ciphertext of ``values`` (at most N/2 of them)."""
        return ts.ckks_vector(self._context, np.asarray(values, dtype=np.float64).tolist())

    def decrypt(self, ciphertexts: Sequence[ts.CKKSVector], what: str, why: str, requester: str) -> list[np.ndarray]:
        """Plaintexts of ``ciphertexts`` (float64 arrays), after logging the request.

        Raises DecryptionRefused (also logged) when ``requester`` is in SCALARS_ONLY and the request
        holds a ciphertext of more than ``server_value_limit`` values or ``model_size`` values in all.
        """
        sizes = [ct.size() for ct in ciphertexts]
        refused = requester in SCALARS_ONLY and (
            max(sizes, default=0) > self.server_value_limit or sum(sizes) >= self.model_size
        )
        self._log("decrypt", what, why, requester, len(sizes), sum(sizes), refused)
        if refused:
            raise DecryptionRefused(
                f"{requester} asked to decrypt {what!r} ({sum(sizes)} values in {len(sizes)} ciphertexts); "
                f"it may only have scalars decrypted (at most {self.server_value_limit} values per ciphertext)"
            )
        return [np.asarray(self._values(ct), dtype=np.float64) for ct in ciphertexts]

    def refresh(self, ciphertexts: Sequence[ts.CKKSVector], what: str, why: str, requester: str) -> list[ts.CKKSVector]:
        """Fresh ciphertexts (full modulus chain) of the same values; the requester sees no plaintext."""
        self._log("refresh", what, why, requester, len(ciphertexts), sum(ct.size() for ct in ciphertexts), False)
        return [ts.ckks_vector(self._context, self._values(ct)) for ct in ciphertexts]

    def refresh_packed(self, ciphertexts: Sequence[ts.CKKSVector], what: str, why: str, requester: str) -> ts.CKKSVector:
        """One fresh ciphertext holding the values of ``ciphertexts`` one after another (e.g. T
        scalars packed into a vector); the requester sees no plaintext."""
        self._log("refresh", what, why, requester, len(ciphertexts), sum(ct.size() for ct in ciphertexts), False)
        return ts.ckks_vector(self._context, [value for ct in ciphertexts for value in self._values(ct)])

    def _values(self, ciphertext: ts.CKKSVector) -> list[float]:
        """The plaintext of ``ciphertext``, which stays linked to its holder's (public) context:
        the requester never ends up with a ciphertext it could decrypt itself."""
        linked = ciphertext.context()
        ciphertext.link_context(self._context)
        try:
            return ciphertext.decrypt()
        finally:
            ciphertext.link_context(linked)

    def _log(self, action: str, what: str, why: str, requester: str, ciphertexts: int, values: int, refused: bool) -> None:
        append_jsonl(self.log_path, [{
            "time": time.time(), "action": action, "requester": requester, "what": what, "why": why,
            "ciphertexts": ciphertexts, "values": values, "refused": refused,
        }])


@lru_cache(maxsize=2)
def load_secret_context(path: str) -> ts.Context:
    """A key holder's (client's, owner's) private context, read once per process from the authority's file."""
    return ts.context_from(Path(path).read_bytes())
