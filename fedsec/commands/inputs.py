"""How the commands read what they are given: ``--set`` options, a run directory's model and the
owner's secrets, each failure as one line and exit 2 (nothing run, nothing written)."""

from __future__ import annotations

import pickle
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import torch
import typer
from torch import nn

from fedsec.data.datasets import ImageDataset, load_dataset
from fedsec.models import build_model
from fedsec.results import SCENARIO_FILE
from fedsec.scenario import Scenario, ScenarioError, load_scenario, parse_value
from fedsec.watermark.owner import OWNER_DIR, SECRETS_FILE, WatermarkOwner

EXIT_BAD_INPUT = 2


def bad_input(message: str) -> typer.Exit:
    typer.echo(message, err=True)
    return typer.Exit(EXIT_BAD_INPUT)


def parse_settings(items: list[str] | None) -> dict[str, Any]:
    """``--set key=value`` options as a mapping (values parsed as YAML scalars); a one-line exit 2
    for an item without ``=``."""
    settings: dict[str, Any] = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        if not sep:
            raise bad_input(f"--set {item}: expected key=value")
        settings[key.strip()] = parse_value(value)
    return settings


T = TypeVar("T")


def read_or_exit(load: Callable[[], T], source: Path, torch_file: Path) -> T:
    """``load()``, or a one-line exit 2 naming ``source`` (``torch_file`` when that file is not a
    weights-only PyTorch archive) when what it reads is missing, corrupt or of the wrong shape."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # torch warns about the pickles it refuses to load
            return load()
    except (pickle.UnpicklingError, EOFError):
        raise bad_input(f"{torch_file}: empty, truncated, or not a weights-only PyTorch file "
                         "(nothing in it was run)") from None
    except (ValueError, OSError, RuntimeError, KeyError, TypeError, AttributeError) as exc:
        text = " ".join(str(exc).split()) or type(exc).__name__
        raise bad_input(text if text.startswith(str(source)) else f"{source}: {text}") from None


def load_owner(run_dir: Path, device: torch.device) -> tuple[WatermarkOwner, Scenario, ImageDataset]:
    """The owner of a finished (or running) run directory, with its scenario and dataset.

    ValueError when the run has no watermark or its secrets are missing.
    """
    try:
        scenario = load_scenario(run_dir / SCENARIO_FILE)
    except ScenarioError as exc:
        raise ValueError(exc.lines[0]) from None
    if scenario.watermark is None:
        raise ValueError(f"{run_dir}: the scenario has no watermark section")
    if not (run_dir / OWNER_DIR / SECRETS_FILE).exists():
        raise ValueError(f"{run_dir}: no {OWNER_DIR}/{SECRETS_FILE} (not a watermarked run, or not readable)")
    dataset = load_dataset(scenario.data.dataset, scenario.data.root)
    return WatermarkOwner(scenario.watermark, scenario, dataset, device, run_dir / OWNER_DIR), scenario, dataset


def load_model(path: Path, dataset: ImageDataset, device: torch.device) -> nn.Module:
    """A model file written by a run (``{"model", "dataset", "state_dict"}``) or by a removal attack,
    built with the dataset's shape. ValueError when it does not fit."""
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
        model = build_model(payload["model"], dataset.image_shape, dataset.num_classes, dataset.mean, dataset.std)
        model.load_state_dict(payload["state_dict"])
    except (OSError, KeyError, RuntimeError, TypeError, ValueError, AttributeError) as exc:
        raise ValueError(f"{path}: not a model file of this run ({type(exc).__name__}: {str(exc)[:120]})") from None
    return model.to(device).eval()
