"""The server's state after a round, saved atomically so that ``fedsec run --resume`` continues.

Every random draw of a round is seeded by (scenario seed, round, client), so the global
model, the defenses' state and the sender handles are all a resumed run needs; the global
torch and numpy generator states are saved too, for code that draws from them.
"""

from __future__ import annotations

import io
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from fedsec.results import write_atomic

CHECKPOINT_FILE = "checkpoint.pt"


@dataclass
class Checkpoint:
    """What the server holds after ``round`` (the last finished round).

    Attributes
    ----------
    round : int
        Rounds finished; the resumed run starts at ``round + 1``.
    global_vector : torch.Tensor
        (d,) flattened global model after that round; empty under encryption, where the
        ``encrypted`` component holds the model as ciphertexts.
    defenses : dict
        The defense pipeline's ``state_dict()``.
    senders : dict[int, int]
        Partition -> opaque sender handle the defenses saw (kept across a resume).
    components : dict
        Further state by component name (e.g. the watermark owner's), each a ``state_dict()``.
    torch_rng, numpy_rng
        The global generators' states.
    """

    round: int
    global_vector: torch.Tensor
    defenses: dict[str, Any]
    senders: dict[int, int]
    components: dict[str, Any] = field(default_factory=dict)
    torch_rng: torch.Tensor = field(default_factory=torch.get_rng_state)
    numpy_rng: dict[str, Any] = field(default_factory=lambda: np.random.get_state(legacy=False))


def save_checkpoint(path: Path, checkpoint: Checkpoint) -> None:
    """Replace the checkpoint at ``path`` (atomic: a crash leaves the previous one)."""
    buffer = io.BytesIO()
    state = asdict(checkpoint)
    state["global_vector"] = checkpoint.global_vector.detach().cpu()
    torch.save(state, buffer)
    write_atomic(path, buffer.getvalue())


def load_checkpoint(path: Path) -> Checkpoint | None:
    """The checkpoint at ``path``, with the global generators restored; None when there is none."""
    if not path.exists():
        return None
    checkpoint = Checkpoint(**torch.load(path, weights_only=False))
    torch.set_rng_state(checkpoint.torch_rng)
    np.random.set_state(checkpoint.numpy_rng)
    return checkpoint
