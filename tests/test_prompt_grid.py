"""PromptGrid: replies are collected as they arrive, every poll_s seconds, up to the timeout."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable
from types import SimpleNamespace

import pytest

from fedsec.fl.prompt_grid import GridStopped, PromptGrid


class DelayedGrid:
    """Push/pull only: the reply to the i-th pushed message becomes available ``delays[i]``
    seconds after the push. Messages and replies are stand-ins carrying what PromptGrid reads."""

    def __init__(self, delays: list[float]) -> None:
        self.delays = delays
        self.ready_at: dict[str, float] = {}
        self.pulls = 0

    def push_messages(self, messages: Iterable[object]) -> Iterable[str]:
        ids = [f"m{i}" for i, _ in enumerate(messages)]
        self.ready_at = {i: time.monotonic() + delay for i, delay in zip(ids, self.delays, strict=True)}
        return ids

    def pull_messages(self, message_ids: Iterable[str]) -> Iterable[SimpleNamespace]:
        self.pulls += 1
        now = time.monotonic()
        return [SimpleNamespace(metadata=SimpleNamespace(reply_to_message_id=i))
                for i in message_ids if self.ready_at[i] <= now]


def replied(replies: Iterable[SimpleNamespace]) -> list[str]:
    return sorted(r.metadata.reply_to_message_id for r in replies)


def test_replies_are_collected_within_a_poll_of_arriving() -> None:
    grid = DelayedGrid([0.0, 0.1, 0.3])
    started = time.monotonic()
    replies = PromptGrid(grid, poll_s=0.05).send_and_receive([object()] * 3)  # type: ignore[arg-type]
    elapsed = time.monotonic() - started
    assert replied(replies) == ["m0", "m1", "m2"]
    assert 0.3 <= elapsed < 0.3 + 0.5  # Flower's deployment grid would have waited 3 s
    assert grid.pulls >= 3


def test_the_timeout_returns_what_has_arrived() -> None:
    grid = DelayedGrid([0.0, 60.0])
    started = time.monotonic()
    replies = PromptGrid(grid, poll_s=0.05).send_and_receive([object()] * 2, timeout=0.3)  # type: ignore[arg-type]
    assert replied(replies) == ["m0"]
    assert 0.3 <= time.monotonic() - started < 1.0


@pytest.mark.parametrize("poll_s", [0.0, -1.0])
def test_the_poll_interval_must_be_positive(poll_s: float) -> None:
    with pytest.raises(ValueError, match="poll_s"):
        PromptGrid(DelayedGrid([]), poll_s)  # type: ignore[arg-type]


def test_waiting_stops_once_the_runtime_has_stopped() -> None:
    """A reply that never comes (its runtime crashed) is waited for until ``stop`` is set, not for ever."""
    stop = threading.Event()
    grid = PromptGrid(DelayedGrid([0.0, 3600.0]), poll_s=0.05, stop=stop)  # type: ignore[arg-type]
    threading.Timer(0.3, stop.set).start()
    started = time.monotonic()
    with pytest.raises(GridStopped, match="1 replies"):
        grid.send_and_receive([object(), object()])
    assert 0.3 <= time.monotonic() - started < 1.0
