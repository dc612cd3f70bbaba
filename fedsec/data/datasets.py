"""Datasets as in-memory uint8 tensors, loaded once per process."""

from __future__ import annotations

import gzip
import importlib.util
import os
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import numpy as np
import torch

from fedsec.registry import Registry

FASHION_MNIST_SYSTEM_DIR = Path("/usr/share/datasets/fashion-mnist")

MAX_EXAMPLES = 10_000_000
"""Upper bound of every count of examples (sizes, samples); the dataset bounds them further at preflight."""
MAX_CLASSES = 1_000
"""Upper bound of every count of classes; the dataset bounds them further at preflight."""


class DatasetUnavailable(RuntimeError):
    """The dataset's files are not on this machine and could not be fetched."""


@dataclass(frozen=True)
class ImageDataset:
    """Train and test splits as tensors: images uint8 (N, C, H, W), labels int64 (N,).

    ``mean`` and ``std`` are per-channel statistics on the 0..1 scale, used by models
    to normalise inputs.
    """

    name: str
    train_x: torch.Tensor
    train_y: torch.Tensor
    test_x: torch.Tensor
    test_y: torch.Tensor
    num_classes: int
    mean: tuple[float, ...]
    std: tuple[float, ...]

    @property
    def image_shape(self) -> tuple[int, int, int]:
        """(channels, height, width) of one image."""
        c, h, w = self.train_x.shape[1:]
        return int(c), int(h), int(w)


DATASETS: Registry[Callable[[Path], ImageDataset]] = Registry("dataset")


def default_root() -> Path:
    """Where torchvision datasets live: $FEDSEC_DATA, else ~/.cache/fedsec/data."""
    return Path(os.environ.get("FEDSEC_DATA", Path.home() / ".cache" / "fedsec" / "data"))


@cache
def load_dataset(name: str, root: str | None = None) -> ImageDataset:
    """The named dataset, read from disk once per process and then shared."""
    return DATASETS.get(name)(Path(root) if root else default_root())


def _read_idx(path: Path) -> np.ndarray:
    """Read a (gzip) IDX file, the format of the MNIST family."""
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as f:
        data = f.read()
    ndim = data[3]
    shape = tuple(int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim).reshape(shape)


def _idx_dataset(name: str, directory: Path, stats: tuple[float, float]) -> ImageDataset:
    def read(stem: str) -> torch.Tensor:
        for candidate in (directory / f"{stem}.gz", directory / stem):
            if candidate.exists():
                return torch.from_numpy(_read_idx(candidate).copy())
        raise DatasetUnavailable(f"{name}: {directory / stem}(.gz) not found")

    return ImageDataset(
        name=name,
        train_x=read("train-images-idx3-ubyte").unsqueeze(1),
        train_y=read("train-labels-idx1-ubyte").long(),
        test_x=read("t10k-images-idx3-ubyte").unsqueeze(1),
        test_y=read("t10k-labels-idx1-ubyte").long(),
        num_classes=10,
        mean=(stats[0],),
        std=(stats[1],),
    )


def _torchvision_raw_dir(dataset_cls: type, root: Path) -> Path:
    """Download (when online and missing) through torchvision; return its raw folder."""
    try:
        dataset_cls(root=str(root), train=True, download=True)
    except Exception as exc:  # torchvision raises several kinds when offline
        raise DatasetUnavailable(
            f"{dataset_cls.__name__} is not under {root} and could not be downloaded ({exc})"
        ) from None
    return root / dataset_cls.__name__ / "raw"


@DATASETS.register("fashion-mnist")
def fashion_mnist(root: Path) -> ImageDataset:
    """Fashion-MNIST: the Debian package's files when installed, else torchvision's."""
    stats = (0.2860, 0.3530)
    if (FASHION_MNIST_SYSTEM_DIR / "train-images-idx3-ubyte.gz").exists():
        return _idx_dataset("fashion-mnist", FASHION_MNIST_SYSTEM_DIR, stats)
    from torchvision.datasets import FashionMNIST

    return _idx_dataset("fashion-mnist", _torchvision_raw_dir(FashionMNIST, root), stats)


@DATASETS.register("mnist")
def mnist(root: Path) -> ImageDataset:
    """MNIST through torchvision, from ``root``."""
    from torchvision.datasets import MNIST

    return _idx_dataset("mnist", _torchvision_raw_dir(MNIST, root), (0.1307, 0.3081))


@DATASETS.register("cifar10")
def cifar10(root: Path) -> ImageDataset:
    """CIFAR-10 through torchvision, from ``root``."""
    from torchvision.datasets import CIFAR10

    def split(train: bool) -> tuple[torch.Tensor, torch.Tensor]:
        try:
            ds = CIFAR10(root=str(root), train=train, download=True)
        except Exception as exc:
            raise DatasetUnavailable(
                f"CIFAR10 is not under {root} and could not be downloaded ({exc})"
            ) from None
        x = torch.from_numpy(ds.data).permute(0, 3, 1, 2).contiguous()
        return x, torch.tensor(ds.targets, dtype=torch.long)

    train_x, train_y = split(True)
    test_x, test_y = split(False)
    return ImageDataset(
        "cifar10", train_x, train_y, test_x, test_y, 10,
        mean=(0.4914, 0.4822, 0.4465), std=(0.2470, 0.2435, 0.2616),
    )


@DATASETS.register("digits")
def digits(root: Path) -> ImageDataset:
    """scikit-learn's 8x8 digits (1,797 images, shipped with the package); 80/20 split."""
    pixels, targets = _digits_table()
    images = torch.from_numpy((pixels.reshape(-1, 8, 8) * (255.0 / 16.0)).round().astype(np.uint8))
    labels = torch.from_numpy(targets).long()
    order = torch.randperm(len(labels), generator=torch.Generator().manual_seed(0))
    images, labels = images[order].unsqueeze(1), labels[order]
    cut = int(0.8 * len(labels))
    return ImageDataset(
        "digits", images[:cut], labels[:cut], images[cut:], labels[cut:], 10,
        mean=(0.3,), std=(0.4,),
    )


def _digits_table() -> tuple[np.ndarray, np.ndarray]:
    """The file ``sklearn.datasets.load_digits`` reads (64 pixel values 0..16 and the label per row),
    read directly: importing scikit-learn costs seconds in every process that loads the data."""
    spec = importlib.util.find_spec("sklearn")
    if spec is None or spec.origin is None:
        raise DatasetUnavailable("digits: scikit-learn is not installed")
    with gzip.open(Path(spec.origin).parent / "datasets" / "data" / "digits.csv.gz") as f:
        table = np.loadtxt(f, delimiter=",")
    return table[:, :-1], table[:, -1].astype(np.int64)


@DATASETS.register("synthetic")
def synthetic(root: Path) -> ImageDataset:
    """Learnable random data for fast tests: a fixed 1x12x12 template per class plus noise."""
    generator = torch.Generator().manual_seed(1234)
    num_classes, size = 10, 12
    templates = torch.rand(num_classes, 1, size, size, generator=generator) * 200

    def split(n: int) -> tuple[torch.Tensor, torch.Tensor]:
        y = torch.randint(0, num_classes, (n,), generator=generator)
        noise = torch.randn(n, 1, size, size, generator=generator) * 40
        return (templates[y] + noise).clamp(0, 255).to(torch.uint8), y

    train_x, train_y = split(2000)
    test_x, test_y = split(500)
    return ImageDataset("synthetic", train_x, train_y, test_x, test_y, num_classes, (0.4,), (0.3,))
