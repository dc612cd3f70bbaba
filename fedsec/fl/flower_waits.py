"""Flower 1.41's fixed waits in its deployment engine, shortened.

Three waits that are not settings in Flower 1.41 set the floor of a deployment round when clients
train for a fraction of a second:

- a SuperNode with no message to run sleeps 3 s before it asks the SuperLink again;
- a SuperNode that handed a message to its ClientApp checks for the reply every 0.5 s;
- whoever pulls a message's objects (a ClientApp from its SuperNode, a SuperNode from the
  SuperLink, the ServerApp its replies) retries an object that is not there yet after 1 s, then
  2, 4, ... up to 10 s. A SuperNode offers a task to its ClientApp before it holds the message's
  objects, so the first pull of every task waited 1-3 s.

:class:`PollingClock` replaces the first two in a SuperNode's loop, :func:`prompt_object_pulls`
the first back-off of the third; everything else is Flower's.
"""

from __future__ import annotations

import functools
import time
from types import ModuleType

FLOWER_IDLE_WAIT_S = 3.0
"""What Flower's SuperNode loop sleeps when the SuperLink had no message for it."""
FLOWER_REPLY_WAIT_S = 0.5
"""What Flower's SuperNode loop sleeps between checks for its ClientApp's reply."""
FIRST_PULL_RETRY_S = 0.05
"""fedsec's first retry of a message object its sender does not hold yet (Flower: 1 s)."""


def positive_seconds(name: str, seconds: float) -> float:
    """``seconds`` if it is > 0, else ValueError naming ``name``."""
    if not seconds > 0:
        raise ValueError(f"{name} must be > 0 seconds, got {seconds}")
    return seconds


class PollingClock:
    """The ``time`` module as Flower's SuperNode loop sees it, with its two waits replaced.

    idle_s: seconds to wait before asking the SuperLink again when it had no message.
    reply_s: seconds between checks for the ClientApp's reply.
    Any other ``sleep`` and every other attribute are the real ``time`` module's.
    """

    def __init__(self, idle_s: float, reply_s: float) -> None:
        self.idle_s = positive_seconds("idle_s", idle_s)
        self.reply_s = positive_seconds("reply_s", reply_s)
        self._waits = {FLOWER_IDLE_WAIT_S: self.idle_s, FLOWER_REPLY_WAIT_S: self.reply_s}

    def sleep(self, seconds: float) -> None:
        time.sleep(self._waits.get(seconds, seconds))

    def __getattr__(self, name: str) -> object:
        return getattr(time, name)


def install_clock(loop: ModuleType, idle_s: float, reply_s: float) -> PollingClock:
    """Give Flower's SuperNode loop (the module ``loop``) a :class:`PollingClock`; returns it."""
    clock = PollingClock(idle_s, reply_s)
    loop.time = clock  # type: ignore[attr-defined]
    return clock


def prompt_object_pulls(module: ModuleType, function: str, first_retry_s: float) -> None:
    """Make ``module.function`` (Flower's ``pull_objects`` or a caller of it that takes the same
    back-off arguments) retry a missing object first after ``first_retry_s`` seconds instead of 1;
    the back-off still doubles up to Flower's cap, so the number of tries and the time limit of a
    pull are Flower's."""
    first_retry_s = positive_seconds("first_retry_s", first_retry_s)
    setattr(module, function, functools.partial(getattr(module, function), initial_backoff=first_retry_s))
