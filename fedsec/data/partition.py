"""Non-IID splits of a label vector into client index sets, through flwr-datasets."""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path

import numpy as np

from fedsec.data.partitioners import Partitioner


class PartitionError(ValueError):
    """The partitioner cannot split this data as asked (e.g. too many clients)."""


def compute_partitions(
    labels: np.ndarray, spec: Partitioner, num_clients: int, seed: int
) -> list[np.ndarray]:
    """Index arrays into ``labels``, one per client, as flwr-datasets' partitioner splits them.

    The table is shuffled with ``seed`` first, because the IID and size-based partitioners
    cut contiguous slices.
    """
    from datasets import Dataset

    order = np.random.default_rng(seed).permutation(len(labels))
    table = Dataset.from_dict({"label": labels[order].tolist(), "index": order.tolist()})
    partitioner = spec.flwr_partitioner(num_clients, seed)
    partitioner.dataset = table
    try:
        return [
            np.sort(np.asarray(partitioner.load_partition(i)["index"], dtype=np.int64))
            for i in range(num_clients)
        ]
    except ValueError as exc:
        raise PartitionError(f"data.partitioner: {exc}") from None


def _cache_dir() -> Path:
    return Path(os.environ.get("FEDSEC_CACHE", Path.home() / ".cache" / "fedsec")) / "partitions"


def cached_partitions(
    dataset: str, labels: np.ndarray, spec: Partitioner, num_clients: int, seed: int
) -> list[np.ndarray]:
    """``compute_partitions`` behind a disk cache keyed by every input, shared by processes.

    Importing flwr-datasets costs seconds; the cache lets simulated clients skip it once the
    server has split the data.
    """
    key_text = json.dumps(
        [dataset, spec.model_dump(mode="json"), num_clients, seed, hashlib.sha256(labels).hexdigest()]
    )
    path = _cache_dir() / f"{hashlib.sha256(key_text.encode()).hexdigest()[:32]}.npz"
    if path.exists():
        with np.load(path) as stored:
            return [stored[f"c{i}"] for i in range(num_clients)]
    parts = compute_partitions(labels, spec, num_clients, seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile(dir=path.parent, suffix=".npz", delete=False) as tmp:
        np.savez(tmp, **{f"c{i}": p for i, p in enumerate(parts)})
    os.replace(tmp.name, path)
    return parts


def label_histogram(labels: np.ndarray, parts: list[np.ndarray], num_classes: int) -> np.ndarray:
    """(num_clients, num_classes) counts of each label in each client's partition."""
    return np.stack([np.bincount(labels[p], minlength=num_classes) for p in parts])
