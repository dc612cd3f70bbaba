"""TensorBoard: event files in the run directory (``tensorboard --logdir <run or sweep dir>``).

Scalars per round under the metric names of metrics.jsonl (step: the round), the parameters
through the HParams plugin, and at the end the plots as images and the summary as text. Written
through ``torch.utils.tensorboard.SummaryWriter``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Literal

import numpy as np
from pydantic import Field

from fedsec.tracking.base import TRACKERS, Scalar, Tracker, TrackerParams, missing_package


@TRACKERS.register("tensorboard")
class TensorBoardTracker(Tracker):
    """Event files read by TensorBoard. Opening purges every event the run's earlier writers left
    (TensorBoard's purge step 0), so a resumed run, which logs its kept records again, shows each
    round once."""

    class Params(TrackerParams):
        name: Literal["tensorboard"] = "tensorboard"
        subdir: str = Field("tensorboard", pattern=r"^[A-Za-z0-9._-]+$",
                            description="Folder of the event files, inside the run directory.")

    def __init__(self, params: Params, run_path: Path, run_name: str) -> None:
        super().__init__(params, run_path, run_name)
        missing_package("tensorboard", "tensorboard")
        from torch.utils.tensorboard import SummaryWriter

        self.log_dir = run_path / params.subdir
        self.writer = SummaryWriter(log_dir=str(self.log_dir), purge_step=0)

    def log_params(self, params: Mapping[str, Scalar]) -> None:
        from torch.utils.tensorboard.summary import hparams

        # The HParams dashboard pairs the parameters with the scalars of these tags.
        for summary in hparams(dict(params), {"ma": 0.0, "asr": 0.0}):
            self.writer.file_writer.add_summary(summary)

    def log_round(self, round_number: int, metrics: Mapping[str, float]) -> None:
        for key, value in metrics.items():
            self.writer.add_scalar(key, value, round_number)

    def log_artifacts(self, paths: Sequence[Path]) -> None:
        from PIL import Image

        for path in paths:
            if path.suffix == ".png":
                with Image.open(path) as image:
                    self.writer.add_image(path.stem, np.asarray(image.convert("RGB")), dataformats="HWC")
            elif path.suffix == ".json":
                text = json.dumps(json.loads(path.read_text()), indent=2)
                self.writer.add_text(path.stem, "    " + text.replace("\n", "\n    "))  # Markdown code block

    def close(self, finished: bool) -> None:
        self.writer.close()
