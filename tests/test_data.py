"""Datasets, partitioners and label histograms."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from fedsec.data.datasets import load_dataset
from fedsec.data.partition import cached_partitions, compute_partitions, label_histogram
from fedsec.data.partitioners import (
    DirichletPartitioner,
    IidPartitioner,
    PathologicalPartitioner,
    ShardPartitioner,
    SizeSkewedPartitioner,
)

LABELS = np.repeat(np.arange(10), 200)  # 2,000 examples, 200 per class


@pytest.mark.parametrize("name", ["synthetic", "digits"])
def test_datasets_are_uint8_nchw_tensors(name: str) -> None:
    data = load_dataset(name)
    assert data.train_x.dtype == torch.uint8 and data.train_x.ndim == 4
    assert data.train_y.dtype == torch.long and len(data.train_y) == len(data.train_x)
    assert data.test_x.shape[1:] == data.train_x.shape[1:]
    assert set(data.train_y.unique().tolist()) == set(range(data.num_classes))
    assert load_dataset(name) is data  # loaded once per process


def test_digits_are_scikit_learns_digits() -> None:
    from sklearn.datasets import load_digits

    from fedsec.data.datasets import _digits_table

    pixels, labels = _digits_table()
    reference = load_digits()
    assert np.array_equal(pixels, reference.data) and np.array_equal(labels, reference.target)


def test_fashion_mnist_from_debian_package() -> None:
    from fedsec.data.datasets import FASHION_MNIST_SYSTEM_DIR

    if not (FASHION_MNIST_SYSTEM_DIR / "train-images-idx3-ubyte.gz").exists():
        pytest.skip("dataset-fashion-mnist is not installed")
    data = load_dataset("fashion-mnist")
    assert data.train_x.shape == (60000, 1, 28, 28)
    assert data.test_x.shape == (10000, 1, 28, 28)
    assert torch.bincount(data.test_y).tolist() == [1000] * 10


@pytest.mark.parametrize(
    "spec",
    [IidPartitioner(), DirichletPartitioner(alpha=0.5), PathologicalPartitioner(classes_per_client=2),
     ShardPartitioner(shards_per_client=2), SizeSkewedPartitioner()],
    ids=lambda s: s.name,
)
def test_partitions_are_disjoint_and_deterministic(spec) -> None:  # noqa: ANN001
    parts = compute_partitions(LABELS, spec, 20, seed=3)
    assert len(parts) == 20
    joined = np.concatenate(parts)
    assert len(joined) == len(np.unique(joined))
    assert all(len(p) > 0 for p in parts)
    again = compute_partitions(LABELS, spec, 20, seed=3)
    assert all(np.array_equal(a, b) for a, b in zip(parts, again))


def _label_skew(alpha: float) -> float:
    """Mean total-variation distance between client label distributions and the global one."""
    hist = label_histogram(LABELS, compute_partitions(LABELS, DirichletPartitioner(alpha=alpha), 20, 0), 10)
    shares = hist / hist.sum(1, keepdims=True)
    return float(np.abs(shares - 0.1).sum(1).mean() / 2)


def test_smaller_dirichlet_alpha_is_more_skewed() -> None:
    assert _label_skew(0.1) > _label_skew(1.0) > _label_skew(100.0)


def test_pathological_clients_hold_few_classes() -> None:
    parts = compute_partitions(LABELS, PathologicalPartitioner(classes_per_client=2), 10, 0)
    assert all(len(np.unique(LABELS[p])) <= 2 for p in parts)


def test_iid_partition_is_shuffled() -> None:
    parts = compute_partitions(LABELS, IidPartitioner(), 10, 0)
    assert all(len(np.unique(LABELS[p])) == 10 for p in parts)


def test_size_skewed_sizes_grow() -> None:
    sizes = [len(p) for p in compute_partitions(LABELS, SizeSkewedPartitioner(growth="linear"), 10, 0)]
    assert sizes == sorted(sizes) and sizes[-1] > 5 * sizes[0]


def test_partitioners_state_the_examples_and_classes_they_need() -> None:
    assert IidPartitioner().min_examples_per_client() == 1
    assert DirichletPartitioner(min_partition_size=0).min_examples_per_client() == 1
    assert DirichletPartitioner(min_partition_size=12).min_examples_per_client() == 12
    assert ShardPartitioner(shards_per_client=3, shard_size=5).min_examples_per_client() == 15
    assert PathologicalPartitioner(classes_per_client=10).check(10, "digits") == []
    assert PathologicalPartitioner(classes_per_client=12).check(10, "digits") == [
        "classes_per_client: 12 is more than the 10 classes of digits"]


def test_partition_cache_round_trips() -> None:
    spec = DirichletPartitioner(alpha=0.3)
    first = cached_partitions("test", LABELS, spec, 8, 1)
    second = cached_partitions("test", LABELS, spec, 8, 1)
    assert all(np.array_equal(a, b) for a, b in zip(first, second))
    assert all(np.array_equal(a, b) for a, b in zip(first, compute_partitions(LABELS, spec, 8, 1)))


def test_histogram_counts_every_example() -> None:
    parts = compute_partitions(LABELS, DirichletPartitioner(alpha=0.5), 10, 0)
    hist = label_histogram(LABELS, parts, 10)
    assert hist.sum() == len(LABELS)
    assert (hist.sum(0) == 200).all()


def _write_idx(path, array: np.ndarray) -> None:  # noqa: ANN001
    header = bytes([0, 0, 8, array.ndim]) + b"".join(int(n).to_bytes(4, "big") for n in array.shape)
    path.write_bytes(header + array.astype(np.uint8).tobytes())


def test_mnist_reads_a_local_torchvision_root(tmp_path) -> None:  # noqa: ANN001
    raw = tmp_path / "MNIST" / "raw"
    raw.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for split, n in (("train", 30), ("t10k", 10)):
        _write_idx(raw / f"{split}-images-idx3-ubyte", rng.integers(0, 256, (n, 28, 28)))
        _write_idx(raw / f"{split}-labels-idx1-ubyte", np.arange(n) % 10)
    data = load_dataset("mnist", str(tmp_path))
    assert data.train_x.shape == (30, 1, 28, 28) and data.test_y.tolist() == list(range(10))
