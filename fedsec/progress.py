"""Live display of a run: a progress bar (round, MA, ETA) and one table row per round."""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

# (record key, column width, format of a present value)
COLUMNS = (("round", 5, "{}"), ("ma", 8, "{:.2%}"), ("asr", 8, "{:.2%}"), ("loss", 7, "{:.3f}"),
           ("replies", 7, "{}"), ("rejected", 8, "{}"), ("accepted", 8, "{}"), ("round_s", 8, "{:.2f}"))


def _cell(value: Any, width: int, fmt: str) -> str:
    return (fmt.format(value) if value is not None else "-").rjust(width)


class RoundReporter:
    """Prints a header, a row per finished round, and keeps a progress bar below them."""

    def __init__(self, total_rounds: int, title: str, enabled: bool = True) -> None:
        self.console = Console(quiet=not enabled)
        self.progress = Progress(
            TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
            TextColumn("MA {task.fields[ma]}"), TimeRemainingColumn(),
            console=self.console, transient=True,
        )
        self.task = self.progress.add_task(title, total=total_rounds, ma="-")
        self.console.print(" ".join(name.rjust(width) for name, width, _ in COLUMNS))

    def __enter__(self) -> RoundReporter:
        self.progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.progress.stop()

    def round_done(self, record: dict[str, Any]) -> None:
        """Print the round's row and move the bar."""
        row = " ".join(_cell(record.get(name), width, fmt) for name, width, fmt in COLUMNS)
        self.progress.console.print(row)
        ma = record.get("ma")
        self.progress.update(self.task, advance=1, ma=f"{ma:.2%}" if ma is not None else "-")
