"""The key authority in a process of its own, reached only through the grants made at start.

The run's set-up starts :class:`KeyCustody` with the roles that will exist and their purposes;
the authority process loads or makes the keys and keeps one pipe per role. The set-up hands
each :class:`RemoteGrant` to the party that plays the role (the server gets the ``server``
grant and the public context, nothing else). A grant's role is fixed on the authority's side
of its pipe: no argument a holder sends can change what it may have decrypted, no more grants
can be made after start, and the secret key never enters the caller's process.
"""

from __future__ import annotations

import os
import pickle
import signal
import socket
import subprocess
import sys
from collections.abc import Mapping, Sequence
from multiprocessing.connection import Connection, wait
from pathlib import Path
from typing import Any

import numpy as np
import tenseal as ts

from fedsec.crypto.context import CkksParameters
from fedsec.crypto.key_authority import DecryptionRefused, Grant, KeyAuthority, KeyMismatch

START_TIMEOUT_S = 120.0
"""Seconds the set-up waits for the authority process to make or load the keys."""


class KeyCustodyError(RuntimeError):
    """The authority process could not start, or stopped answering."""


def _serve(params: CkksParameters, run_dir: str, model_size: int, purposes: dict[str, str],
           round_budget: dict[str, int], expected_fingerprint: str | None, control: Connection,
           pipes: dict[str, Connection]) -> None:
    """The authority process: answer each pipe with the rights of the role it was created for; the
    control pipe (the set-up's) starts rounds and stops the process."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the caller stops it (Ctrl-C reaches the whole group)
    try:
        authority = KeyAuthority(params, Path(run_dir), model_size, expected_fingerprint=expected_fingerprint,
                                 round_budget=round_budget)
    except (KeyMismatch, OSError) as exc:
        control.send(("error", str(exc)))
        return
    control.send(("ready", authority.public_context_bytes(), authority.fingerprint))
    grants = {pipes[role]: authority.grant(role, purpose) for role, purpose in purposes.items()}
    while grants:
        for conn in wait([control, *grants]):
            if conn is control:
                if _control_message(control) != "round":
                    return
                authority.new_round()
                continue
            try:
                request = conn.recv()
            except EOFError:
                del grants[conn]
                continue
            conn.send(_answer(grants[conn], authority, request))


def _control_message(control: Connection) -> str:
    try:
        return str(control.recv()[0])
    except EOFError:
        return "stop"


def _answer(grant: Grant, authority: KeyAuthority, request: tuple[str, str, list[bytes], float]) -> tuple[str, Any]:
    """One request (operation, what, ciphertext bytes, factor of a refresh) -> ("ok", result) or
    ("refused", reason)."""
    operation, what, blobs, factor = request
    ciphertexts = authority.ciphertexts_from(blobs)
    try:
        if operation == "decrypt":
            return "ok", grant.decrypt(ciphertexts, what)
        if operation == "refresh":
            return "ok", [ct.serialize() for ct in grant.refresh(ciphertexts, what, float(factor))]
        if operation == "refresh_packed":
            return "ok", grant.refresh_packed(ciphertexts, what).serialize()
    except DecryptionRefused as exc:
        return "refused", str(exc)
    return "refused", f"unknown operation {operation!r}"


class RemoteGrant:
    """A role's capability held outside the authority: a pipe whose far end knows the role.

    Implements :class:`fedsec.crypto.key_authority.Decryptor`; ``role`` and ``purpose`` here are
    labels for the holder, the authority uses its own copy.
    """

    def __init__(self, conn: Connection, role: str, purpose: str) -> None:
        self._conn = conn
        self.role = role
        self.purpose = purpose

    def _ask(self, operation: str, ciphertexts: Sequence[ts.CKKSVector], what: str, factor: float = 1.0) -> Any:
        try:
            self._conn.send((operation, what, [ct.serialize() for ct in ciphertexts], factor))
            status, result = self._conn.recv()
        except (EOFError, OSError, BrokenPipeError) as exc:
            raise KeyCustodyError(f"the key authority stopped answering ({type(exc).__name__})") from None
        if status == "refused":
            raise DecryptionRefused(result)
        return result

    def decrypt(self, ciphertexts: Sequence[ts.CKKSVector], what: str) -> list[np.ndarray]:
        """See :class:`fedsec.crypto.key_authority.Decryptor`."""
        return self._ask("decrypt", ciphertexts, what)

    def refresh(self, ciphertexts: Sequence[ts.CKKSVector], what: str, factor: float = 1.0) -> list[ts.CKKSVector]:
        """See :class:`fedsec.crypto.key_authority.Decryptor`."""
        context = ciphertexts[0].context()
        return [ts.ckks_vector_from(context, blob) for blob in self._ask("refresh", ciphertexts, what, factor)]

    def refresh_packed(self, ciphertexts: Sequence[ts.CKKSVector], what: str) -> ts.CKKSVector:
        """See :class:`fedsec.crypto.key_authority.Decryptor`."""
        return ts.ckks_vector_from(ciphertexts[0].context(), self._ask("refresh_packed", ciphertexts, what))


class KeyCustody:
    """Starts the key authority process and holds the grants until the set-up hands them out.

    Parameters
    ----------
    params : CkksParameters
        The context's parameters.
    run_dir : Path
        Run directory (keys in ``keys/``, audit log ``decryptions.jsonl``).
    model_size : int
        Values in the model vector (bounds what scalars-only roles may have decrypted).
    purposes : Mapping[str, str]
        Role -> purpose, one grant each (roles from ``fedsec.crypto.key_authority.RIGHTS``).
    round_budget : Mapping[str, int] or None
        Role -> values it may have decrypted per round (scalars-only roles; see KeyAuthority).
    expected_fingerprint : str or None
        A resumed run's key fingerprint: the kept keys must match, no new keys are made.

    Raises KeyMismatch when the keys are missing or not the expected ones, KeyCustodyError when
    the process does not start.
    """

    def __init__(self, params: CkksParameters, run_dir: Path, model_size: int, purposes: Mapping[str, str],
                 round_budget: Mapping[str, int] | None = None, expected_fingerprint: str | None = None) -> None:
        # A fresh interpreter (not a fork): no copy of the caller's memory, threads or handles.
        control, child_control = socket.socketpair()
        ends = {role: socket.socketpair() for role in purposes}
        far = {"control": child_control.fileno(), **{role: b.fileno() for role, (_, b) in ends.items()}}
        self._process = subprocess.Popen(
            [sys.executable, "-m", "fedsec.crypto.custody"], stdin=subprocess.PIPE, pass_fds=tuple(far.values()),
        )
        assert self._process.stdin is not None
        self._process.stdin.write(pickle.dumps((params, str(run_dir), model_size, dict(purposes),
                                                dict(round_budget or {}), expected_fingerprint, far)))
        self._process.stdin.close()
        for sock in (child_control, *(b for _, b in ends.values())):
            sock.close()
        self._control = Connection(control.detach())
        if not self._control.poll(START_TIMEOUT_S):
            self.close()
            raise KeyCustodyError(f"the key authority did not start within {START_TIMEOUT_S:.0f} s")
        try:
            message = self._control.recv()
        except EOFError:
            self.close()
            raise KeyCustodyError("the key authority process exited during start-up") from None
        if message[0] == "error":
            self.close()
            raise KeyMismatch(message[1])
        _, public_bytes, self.fingerprint = message
        self.public_context: ts.Context = ts.context_from(public_bytes)
        self._grants = {role: RemoteGrant(Connection(near.detach()), role, purposes[role])
                        for role, (near, _) in ends.items()}

    @property
    def pid(self) -> int | None:
        """The authority process's id (None once stopped)."""
        return self._process.pid if self._process.poll() is None else None

    def new_round(self) -> None:
        """Refill every role's per-round budget (the run's set-up calls this as a round starts)."""
        self._control.send(("round",))

    def take(self, role: str) -> RemoteGrant:
        """The grant of ``role``; each grant is handed out once."""
        return self._grants.pop(role)

    def close(self) -> None:
        """Stop the authority process (by its PID when it does not stop by itself)."""
        try:
            self._control.send(("stop",))
        except OSError:
            pass
        try:
            self._process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.kill(self._process.pid, signal.SIGKILL)
            self._process.wait(timeout=10)

    def __enter__(self) -> KeyCustody:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _main() -> None:
    """Entry point of the authority process: its settings come pickled on stdin from the set-up."""
    params, run_dir, model_size, purposes, budget, expected, fds = pickle.load(sys.stdin.buffer)
    pipes = {role: Connection(fd) for role, fd in fds.items() if role != "control"}
    _serve(params, run_dir, model_size, purposes, budget, expected, Connection(fds["control"]), pipes)


if __name__ == "__main__":
    _main()
