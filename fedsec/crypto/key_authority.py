"""The key authority: creates the CKKS keys, hands out the public context, decrypts for its grants.

Roles (docs/security.md): clients and the owner hold the secret key; the aggregation server
holds the public context only. Nobody asks the authority by name: the run's set-up creates
one :class:`Grant` per role, each bound to a role and a purpose, and hands it to the party
that plays that role. A grant's role fixes what it may have decrypted (the server and the
white-box embedder: a few scalars per request, never a model-sized vector). In a run the
authority lives in a process of its own (:mod:`fedsec.crypto.custody`), so the secret key is
never in the memory of the process that aggregates. Every request, granted or refused, is
one JSON line in ``decryptions.jsonl`` of the run directory, with a full-precision time.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from functools import lru_cache
from pathlib import Path
from typing import Protocol

import numpy as np
import tenseal as ts

from fedsec.crypto.context import CkksParameters, make_context
from fedsec.results import append_jsonl, write_atomic

KEYS_DIR = "keys"
SECRET_CONTEXT_FILE = "secret.ctx"
PARAMETERS_FILE = "parameters.json"
DECRYPTIONS_FILE = "decryptions.jsonl"
KEY_FILE_ENV = "FEDSEC_KEY_FILE"
"""Where a key holder (a client) finds the secret context: the stand-in for key distribution,
set by the run's set-up in the clients' environment, never carried by a message."""
SECRET_KEY_ENCRYPTION = b"\x20\x01"
"""Field 4 of TenSEAL's context message (``encryption_type``) set to 1 (symmetric), in protobuf's
wire format; appended to a serialized context it overrides the value there (the last one wins)."""

SERVER = "server"
EMBEDDER = "watermark-embedder"
EVALUATOR = "evaluator"
OWNER = "owner"


@dataclass(frozen=True)
class RoleRights:
    """What a role may ask of the authority.

    Attributes
    ----------
    scalars_only : bool
        Only small plaintexts: at most ``server_value_limit`` values per ciphertext and fewer
        than a model's worth in one request.
    refresh : bool
        May have ciphertexts re-encrypted (fresh modulus chain, values optionally times a public
        factor) without seeing their values.
    """

    scalars_only: bool
    refresh: bool


RIGHTS = {
    # The server's refreshes renormalise a FedAvg sum when replies are missing: its chain has no level
    # for a plaintext factor (fedsec.fl.encrypted_aggregation.operation_needs).
    SERVER: RoleRights(scalars_only=True, refresh=True),
    EMBEDDER: RoleRights(scalars_only=True, refresh=True),  # holds the detector, works on ciphertexts
    EVALUATOR: RoleRights(scalars_only=False, refresh=False),
    OWNER: RoleRights(scalars_only=False, refresh=False),
}


class DecryptionRefused(PermissionError):
    """A grant asked for more than its role allows (e.g. the server, a model-sized plaintext)."""


class KeyMismatch(ValueError):
    """The keys in a run directory are not the ones its records were made with."""


class Decryptor(Protocol):
    """A grant as its holder sees it: bound to one role and one purpose."""

    role: str
    purpose: str

    def decrypt(self, ciphertexts: Sequence[ts.CKKSVector], what: str) -> list[np.ndarray]:
        """Plaintexts (float64 arrays) of ``ciphertexts``; ``what`` names them in the log."""
        ...

    def refresh(self, ciphertexts: Sequence[ts.CKKSVector], what: str, factor: float = 1.0) -> list[ts.CKKSVector]:
        """Fresh ciphertexts (full modulus chain) of the same values times ``factor`` (public)."""
        ...

    def refresh_packed(self, ciphertexts: Sequence[ts.CKKSVector], what: str) -> ts.CKKSVector:
        """One fresh ciphertext holding the values of ``ciphertexts`` one after another."""
        ...


def public_key_fingerprint(context: ts.Context) -> str:
    """SHA-256 (hex) of the context's public key: names a key set without revealing anything."""
    public = context.serialize(save_public_key=True, save_secret_key=False, save_galois_keys=False,
                               save_relin_keys=False)
    return hashlib.sha256(public).hexdigest()


def recorded_fingerprint(run_dir: Path) -> str | None:
    """The fingerprint ``keys/parameters.json`` records for the run's keys; None when absent or unreadable."""
    try:
        return str(json.loads((Path(run_dir) / KEYS_DIR / PARAMETERS_FILE).read_text())["fingerprint"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


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
        Values in the model vector; a scalars-only role never gets that many decrypted in one request.
    server_value_limit : int
        Largest ciphertext (in values) a scalars-only role may have decrypted: per-client scalars
        are single values, detector outputs a few hundred; a chunk of a model (N/2) is refused.
    expected_fingerprint : str or None
        When given, the keys found in ``run_dir/keys`` must have this public-key fingerprint and
        new keys are never made (a resumed run); KeyMismatch otherwise.
    round_budget : Mapping[str, int] or None
        Values a scalars-only role may have decrypted per round (see :meth:`new_round`), by role;
        a role without an entry is bounded per request only. A scalar can be any linear function
        of the model (a server may shrink a ciphertext with a matrix product), so without a
        budget a curious server could read the model a few hundred values at a time.
    """

    def __init__(self, params: CkksParameters, run_dir: Path, model_size: int, server_value_limit: int = 1024,
                 expected_fingerprint: str | None = None, round_budget: Mapping[str, int] | None = None) -> None:
        self.params = params
        self.model_size = model_size
        self.server_value_limit = server_value_limit
        self.round_budget = dict(round_budget or {})
        self._spent: Counter[str] = Counter()
        self.log_path = Path(run_dir) / DECRYPTIONS_FILE
        keys = Path(run_dir) / KEYS_DIR
        self.secret_context_file = keys / SECRET_CONTEXT_FILE
        if self.secret_context_file.exists():
            self._context = self._load_keys(keys)
        elif expected_fingerprint is not None:
            raise KeyMismatch(f"{keys}: no keys, but the run's checkpoint was encrypted under keys "
                              f"{expected_fingerprint[:16]}...; the run cannot be resumed without them")
        else:
            keys.mkdir(mode=0o700, exist_ok=True)
            os.chmod(keys, 0o700)
            self._context = make_context(params)
            self.fingerprint = public_key_fingerprint(self._context)
            write_atomic(self.secret_context_file, self._context.serialize(save_secret_key=True), mode=0o600)
            described = {**asdict(params), "fingerprint": self.fingerprint}
            write_atomic(keys / PARAMETERS_FILE, json.dumps(described) + "\n", mode=0o600)
        self._public = self.public_context()
        if expected_fingerprint is not None and self.fingerprint != expected_fingerprint:
            raise KeyMismatch(f"{keys}: keys {self.fingerprint[:16]}... are not the run's keys "
                              f"{expected_fingerprint[:16]}...")

    def _load_keys(self, keys: Path) -> ts.Context:
        """The kept keys of a resumed run, checked against the parameters and fingerprint recorded with them."""
        try:
            recorded = json.loads((keys / PARAMETERS_FILE).read_text())
            context = ts.context_from(self.secret_context_file.read_bytes())
        except (OSError, ValueError, RuntimeError) as exc:
            raise KeyMismatch(f"{keys}: unreadable keys ({type(exc).__name__})") from None
        if {k: recorded.get(k) for k in asdict(self.params)} != json.loads(json.dumps(asdict(self.params))):
            raise KeyMismatch(f"{keys}: the keys there were made for other CKKS parameters")
        if not context.has_secret_key():
            raise KeyMismatch(f"{keys}: {SECRET_CONTEXT_FILE} holds no secret key")
        self.fingerprint = public_key_fingerprint(context)
        if recorded.get("fingerprint") != self.fingerprint:
            raise KeyMismatch(f"{keys}: {SECRET_CONTEXT_FILE} does not match the fingerprint in {PARAMETERS_FILE}")
        return context

    def public_context(self) -> ts.Context:
        """A copy of the context without the secret key (``is_private()`` is False)."""
        public = self._context.copy()
        public.make_context_public()
        return public

    def ciphertexts_from(self, blobs: Sequence[bytes]) -> list[ts.CKKSVector]:
        """Ciphertexts sent as bytes (by a grant in another process), linked to a public context."""
        return [ts.ckks_vector_from(self._public, blob) for blob in blobs]

    def public_context_bytes(self) -> bytes:
        """The public context serialized (public, relinearization and Galois keys only)."""
        return self._context.serialize(save_secret_key=False)

    def new_round(self) -> None:
        """Start a round: every role's per-round budget is full again (called by the run's set-up only)."""
        self._spent.clear()

    def grant(self, role: str, purpose: str) -> Grant:
        """The capability of ``role`` (one of RIGHTS) for ``purpose`` (logged with every request)."""
        if role not in RIGHTS:
            raise ValueError(f"unknown role {role!r}; roles: {sorted(RIGHTS)}")
        return Grant(self, role, purpose)

    def encrypt(self, values: np.ndarray) -> ts.CKKSVector:
        """One ciphertext of ``values`` (at most N/2 of them)."""
        return ts.ckks_vector(self._context, np.asarray(values, dtype=np.float64).tolist())

    def decrypt(self, ciphertexts: Sequence[ts.CKKSVector], what: str, why: str, requester: str) -> list[np.ndarray]:
        """Plaintexts of ``ciphertexts`` (float64 arrays) for ``requester``'s role, after logging the request.

        Raises DecryptionRefused (also logged) when the role is scalars-only and the request holds
        a ciphertext of more than ``server_value_limit`` values, ``model_size`` values in all, or
        more than what is left of the role's round budget.
        """
        sizes = [ct.size() for ct in ciphertexts]
        reason = self._refusal(requester, sizes)
        self._log("decrypt", what, why, requester, len(sizes), sum(sizes), reason is not None)
        if reason is not None:
            raise DecryptionRefused(f"{requester} asked to decrypt {what!r} ({sum(sizes)} values in "
                                    f"{len(sizes)} ciphertexts); {reason}")
        self._spent[requester] += sum(sizes)
        return [np.asarray(self._values(ct), dtype=np.float64) for ct in ciphertexts]

    def _refusal(self, role: str, sizes: list[int]) -> str | None:
        """Why a scalars-only role may not have ciphertexts of ``sizes`` values decrypted; None if it may."""
        if not RIGHTS[role].scalars_only:
            return None
        if max(sizes, default=0) > self.server_value_limit or sum(sizes) >= self.model_size:
            return f"it may only have scalars decrypted (at most {self.server_value_limit} values per ciphertext)"
        budget = self.round_budget.get(role)
        if budget is not None and self._spent[role] + sum(sizes) > budget:
            return f"its budget of {budget} values this round is spent ({self._spent[role]} decrypted)"
        return None

    def refresh(self, ciphertexts: Sequence[ts.CKKSVector], what: str, why: str, requester: str,
                factor: float = 1.0) -> list[ts.CKKSVector]:
        """Fresh ciphertexts (full modulus chain) of the same values times ``factor`` (a public
        number, e.g. a renormalisation); the requester sees no plaintext."""
        self._check_refresh(ciphertexts, what, why, requester)
        return [ts.ckks_vector(self._context, (np.asarray(self._values(ct)) * factor).tolist()) for ct in ciphertexts]

    def refresh_packed(self, ciphertexts: Sequence[ts.CKKSVector], what: str, why: str, requester: str) -> ts.CKKSVector:
        """One fresh ciphertext holding the values of ``ciphertexts`` one after another (e.g. T
        scalars packed into a vector); the requester sees no plaintext."""
        self._check_refresh(ciphertexts, what, why, requester)
        return ts.ckks_vector(self._context, [value for ct in ciphertexts for value in self._values(ct)])

    def _check_refresh(self, ciphertexts: Sequence[ts.CKKSVector], what: str, why: str, requester: str) -> None:
        refused = not RIGHTS[requester].refresh
        self._log("refresh", what, why, requester, len(ciphertexts), sum(ct.size() for ct in ciphertexts), refused)
        if refused:
            raise DecryptionRefused(f"{requester} may not have ciphertexts refreshed")

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
        now = time.time()
        append_jsonl(self.log_path, [{
            "time": datetime.fromtimestamp(now, UTC).isoformat(timespec="microseconds"), "unix_time": now,
            "action": action, "requester": requester, "what": what, "why": why,
            "ciphertexts": ciphertexts, "values": values, "refused": refused,
        }], digits=None)


@dataclass(frozen=True)
class Grant:
    """An in-process capability: one role, one purpose, over an authority in the same process
    (the custody process's side, and tests of the rules)."""

    authority: KeyAuthority
    role: str
    purpose: str

    def decrypt(self, ciphertexts: Sequence[ts.CKKSVector], what: str) -> list[np.ndarray]:
        """See :class:`Decryptor`."""
        return self.authority.decrypt(ciphertexts, what, self.purpose, self.role)

    def refresh(self, ciphertexts: Sequence[ts.CKKSVector], what: str, factor: float = 1.0) -> list[ts.CKKSVector]:
        """See :class:`Decryptor`."""
        return self.authority.refresh(ciphertexts, what, self.purpose, self.role, factor)

    def refresh_packed(self, ciphertexts: Sequence[ts.CKKSVector], what: str) -> ts.CKKSVector:
        """See :class:`Decryptor`."""
        return self.authority.refresh_packed(ciphertexts, what, self.purpose, self.role)


def secret_key_encryptor(context: ts.Context) -> ts.Context:
    """The key set of the private ``context``, encrypting with its secret key (SEAL's
    ``encrypt_symmetric``) instead of the public key. The ciphertexts are the same kind (two
    polynomials at the top level, the same scale) and any holder of the key set decrypts them; a
    public-key encryption takes twice as long and adds ten times the noise (docs/performance.md)."""
    return ts.context_from(context.serialize(save_secret_key=True) + SECRET_KEY_ENCRYPTION)


@lru_cache(maxsize=2)
def load_secret_context(path: str, fingerprint: str) -> ts.Context:
    """A key holder's (client's) private context, read once per process from the file the run's
    set-up distributed; it encrypts with the secret key (:func:`secret_key_encryptor`). ValueError
    when the file is missing or not the key set named by ``fingerprint``."""
    try:
        context = ts.context_from(Path(path).read_bytes())
    except (OSError, ValueError, RuntimeError) as exc:
        raise ValueError(f"no usable secret key at {path!r} ({type(exc).__name__}); "
                         f"the run's set-up distributes it through ${KEY_FILE_ENV}") from None
    if public_key_fingerprint(context) != fingerprint:
        raise ValueError(f"the secret key at {path!r} is not the run's key set {fingerprint[:16]}...")
    return secret_key_encryptor(context)
