"""A Grid that collects replies as soon as they arrive.

Flower's deployment grid (the ServerApp's connection to the SuperLink) checks for replies every
3 s in ``send_and_receive``, which is not a setting in Flower 1.41: a round whose clients answer
in 1 s still waits 3 s, and a round of query, training and evaluation messages pays it three
times. ``PromptGrid`` sends through the same grid's ``push_messages`` and checks with its
``pull_messages`` every ``poll_s`` seconds instead; every other call goes to the wrapped grid.

In the simulation the same loop also watches a ``stop`` event: when Flower's simulation runtime
crashes (a backend that cannot start, a Ray cluster that went away), no reply will ever come, and
a server left waiting would keep its process alive for ever.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable

from flwr.app import Message, RecordDict
from flwr.serverapp import Grid
from flwr.supercore.run import Run


class GridStopped(RuntimeError):
    """The grid's ``stop`` event was set while the server waited for replies."""


class PromptGrid(Grid):
    """``grid`` with a reply check every ``poll_s`` seconds (seconds, > 0); once ``stop`` is set,
    waiting for replies raises :class:`GridStopped`."""

    def __init__(self, grid: Grid, poll_s: float, stop: threading.Event | None = None) -> None:
        if not poll_s > 0:
            raise ValueError(f"poll_s must be > 0 seconds, got {poll_s}")
        self.grid = grid
        self.poll_s = poll_s
        self.stop = stop

    def send_and_receive(self, messages: Iterable[Message], *, timeout: float | None = None) -> Iterable[Message]:
        """Push ``messages``, then pull until each has a reply or ``timeout`` seconds have passed."""
        waiting = set(self.grid.push_messages(messages))
        deadline = None if timeout is None else time.monotonic() + timeout
        replies: list[Message] = []
        while waiting:
            if self.stop is not None and self.stop.is_set():
                raise GridStopped(f"stopped waiting for {len(waiting)} replies: the runtime that delivers them has stopped")
            arrived = list(self.grid.pull_messages(waiting))
            replies.extend(arrived)
            waiting.difference_update(m.metadata.reply_to_message_id for m in arrived)
            if not waiting or (deadline is not None and time.monotonic() >= deadline):
                break
            time.sleep(self.poll_s if deadline is None else max(0.0, min(self.poll_s, deadline - time.monotonic())))
        return replies

    def set_run(self, run: Run) -> None:
        self.grid.set_run(run)

    @property
    def run(self) -> Run:
        return self.grid.run

    def create_message(self, content: RecordDict, message_type: str, dst_node_id: int, group_id: str,
                       ttl: float | None = None) -> Message:
        return self.grid.create_message(content, message_type, dst_node_id, group_id, ttl)

    def get_node_ids(self) -> Iterable[int]:
        return self.grid.get_node_ids()

    def push_messages(self, messages: Iterable[Message]) -> Iterable[str]:
        return self.grid.push_messages(messages)

    def pull_messages(self, message_ids: Iterable[str]) -> Iterable[Message]:
        return self.grid.pull_messages(message_ids)
