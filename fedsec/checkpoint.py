"""The server's state after a round, saved atomically so that ``fedsec run --resume`` continues.

Every random draw of a round is seeded by (scenario seed, round, client), so the aggregation's
state (global model, defenses), the sender handles and the owner's history are all a resumed
run needs; the global
torch and numpy generator states are saved too, for code that draws from them.

A checkpoint holds tensors and plain data only (numbers, strings, bytes, lists, dicts) and is
read with ``torch.load(weights_only=True)``: a file planted in a run directory cannot run code.
It names the scenario it belongs to (a hash of the resolved scenario) and, under encryption,
the key set its ciphertexts were made with; :func:`resume_problems` refuses a run directory
whose scenario, keys or records do not match it.
"""

from __future__ import annotations

import hashlib
import io
import pickle
import warnings
import zipfile
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np
import torch

from fedsec.results import write_atomic

CHECKPOINT_FILE = "checkpoint.pt"


class CheckpointError(ValueError):
    """A checkpoint file that cannot be used (truncated, not a checkpoint, unsafe content)."""


def scenario_digest(scenario_json: str) -> str:
    """SHA-256 (hex) of a resolved scenario's canonical JSON: names the experiment a run belongs to."""
    return hashlib.sha256(scenario_json.encode()).hexdigest()


def _numpy_state() -> dict[str, Any]:
    """numpy's global generator state as plain data (the key array as a list of ints)."""
    state = np.random.get_state(legacy=False)
    return {**state, "state": {**state["state"], "key": state["state"]["key"].tolist()}}


@dataclass
class Checkpoint:
    """What the server holds after ``round`` (the last finished round).

    Attributes
    ----------
    round : int
        Rounds finished; the resumed run starts at ``round + 1``.
    aggregation : dict
        The aggregation's ``state_dict()``: the global model (a tensor, or ciphertexts only under
        encryption) and the defense pipeline's state.
    senders : dict[int, int]
        Partition -> opaque sender handle the defenses saw (kept across a resume).
    scenario_sha256 : str
        :func:`scenario_digest` of the scenario the run was started with.
    key_fingerprint : str or None
        Public fingerprint of the CKKS keys the encrypted state was made with; None without encryption.
    components : dict
        Further state by component name (e.g. the watermark owner's), each a ``state_dict()``.
    torch_rng, numpy_rng
        The global generators' states.
    """

    round: int
    aggregation: dict[str, Any]
    senders: dict[int, int]
    scenario_sha256: str
    key_fingerprint: str | None = None
    components: dict[str, Any] = field(default_factory=dict)
    torch_rng: torch.Tensor = field(default_factory=torch.get_rng_state)
    numpy_rng: dict[str, Any] = field(default_factory=_numpy_state)

    def restore_generators(self) -> None:
        """Set the global torch and numpy generators to the saved states."""
        torch.set_rng_state(self.torch_rng)
        state = self.numpy_rng
        np.random.set_state({**state, "state": {**state["state"], "key": np.asarray(state["state"]["key"], np.uint32)}})


def save_checkpoint(path: Path, checkpoint: Checkpoint) -> None:
    """Replace the checkpoint at ``path`` (atomic: a crash leaves the previous one)."""
    buffer = io.BytesIO()
    torch.save(asdict(checkpoint), buffer)
    write_atomic(path, buffer.getvalue())


def read_checkpoint(path: Path) -> Checkpoint | None:
    """The checkpoint at ``path`` (tensors and plain data only); None when there is none.

    Raises CheckpointError, with a one-line reason, for a file that is not a readable checkpoint.
    """
    if not path.exists():
        return None
    try:
        with warnings.catch_warnings():  # torch warns about legacy pickles before refusing them
            warnings.simplefilter("ignore")
            state = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:
        raise CheckpointError(f"{path}: not a readable checkpoint (it holds objects other than tensors and plain "
                              "data; refused without running them)") from None
    except (zipfile.BadZipFile, RuntimeError, EOFError, OSError, ValueError, TypeError, AttributeError, KeyError,
            IndexError) as exc:
        reason = str(exc).strip().splitlines()[0][:160] if str(exc).strip() else type(exc).__name__
        raise CheckpointError(f"{path}: not a readable checkpoint ({reason})") from None
    names = {f.name for f in fields(Checkpoint)}
    if not isinstance(state, dict) or set(state) != names:
        raise CheckpointError(f"{path}: not a checkpoint of this version of fedsec (fields differ)")
    checkpoint = Checkpoint(**state)
    if not isinstance(checkpoint.round, int) or checkpoint.round < 1 or not isinstance(checkpoint.aggregation, dict):
        raise CheckpointError(f"{path}: not a checkpoint (round {checkpoint.round!r})")
    return checkpoint


def resume_problems(checkpoint: Checkpoint, scenario_sha256: str, rounds: int, key_fingerprint: str | None,
                    recorded_rounds: list[int]) -> list[str]:
    """Why a run directory with ``checkpoint`` cannot be resumed; empty when it can.

    Parameters
    ----------
    checkpoint : Checkpoint
        The run directory's checkpoint.
    scenario_sha256 : str
        :func:`scenario_digest` of the scenario the resumed run would use.
    rounds : int
        That scenario's number of rounds.
    key_fingerprint : str or None
        Fingerprint of the keys in the run directory (None: no keys there, or no encryption).
    recorded_rounds : list[int]
        Round numbers in the run directory's metrics records.
    """
    problems = []
    if checkpoint.scenario_sha256 != scenario_sha256:
        problems.append("scenario.yaml: changed since the run started (its checkpoint belongs to another "
                        "scenario); start a new run instead")
    if checkpoint.round > rounds:
        problems.append(f"checkpoint.pt: after round {checkpoint.round}, but the scenario has {rounds} rounds")
    if checkpoint.key_fingerprint is not None and key_fingerprint != checkpoint.key_fingerprint:
        problems.append("keys: missing; an encrypted run cannot be resumed without the keys of its checkpoint"
                        if key_fingerprint is None else
                        "keys: not the keys the checkpoint's ciphertexts were made with")
    missing = sorted(set(range(1, checkpoint.round + 1)) - set(recorded_rounds))
    if missing:
        problems.append(f"metrics.jsonl: no record of round(s) {missing[:10]} before the checkpoint's round "
                        f"{checkpoint.round}")
    return problems
