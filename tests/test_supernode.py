"""fedsec.fl.flower_waits and fedsec.fl.supernode: Flower's fixed deployment waits shortened,
nothing else changed."""

from __future__ import annotations

import inspect
import sys
import time
from types import ModuleType

import pytest

import flwr.supercore.inflatable.inflatable_utils as inflatable_utils
import flwr.supernode.start_client_internal as supernode_loop
from flwr.superlink.grid import http_grid
from flwr.supernode.runtime import run_clientapp
from fedsec.fl import flower_waits, supernode
from fedsec.fl.flower_waits import PollingClock, install_clock, prompt_object_pulls


def test_flowers_code_still_has_the_waits_fedsec_replaces():
    # A Flower release that changes these would leave fedsec's replacements replacing nothing.
    loop_source = inspect.getsource(supernode_loop)
    assert "time.sleep(3)" in loop_source and "time.sleep(0.5)" in loop_source
    assert (flower_waits.FLOWER_IDLE_WAIT_S, flower_waits.FLOWER_REPLY_WAIT_S) == (3, 0.5)
    for module in (supernode_loop, http_grid):
        assert "pull_objects(" in inspect.getsource(module)
    assert "pull_and_inflate_object_from_tree(" in inspect.getsource(run_clientapp)
    for function in (inflatable_utils.pull_objects, inflatable_utils.pull_and_inflate_object_from_tree):
        assert inspect.signature(function).parameters["initial_backoff"].default == 1


def test_the_clock_shortens_the_two_waits_and_passes_everything_else(monkeypatch):
    slept: list[float] = []
    monkeypatch.setattr(time, "sleep", slept.append)
    clock = PollingClock(idle_s=0.2, reply_s=0.1)
    clock.sleep(3)
    clock.sleep(0.5)
    clock.sleep(1.0)
    assert slept == [0.2, 0.1, 1.0]
    assert clock.monotonic is time.monotonic


def test_install_clock_replaces_the_loops_time_module():
    loop = ModuleType("loop")
    loop.time = time
    clock = install_clock(loop, 0.3, 0.05)
    assert loop.time is clock and (clock.idle_s, clock.reply_s) == (0.3, 0.05)


def test_a_pull_retries_a_missing_object_first_after_the_shorter_wait(monkeypatch):
    module = ModuleType("puller")
    module.pull_objects = inflatable_utils.pull_objects
    prompt_object_pulls(module, "pull_objects", 0.05)
    calls: list[float] = []

    def pull_object(object_id: str) -> bytes:
        calls.append(time.monotonic())
        if len(calls) < 3:
            raise inflatable_utils.ObjectUnavailableError(object_id)
        return b"content"

    assert module.pull_objects(["a"], pull_object) == {"a": b"content"}
    waits = [later - earlier for earlier, later in zip(calls, calls[1:])]
    assert 0.03 < waits[0] < 0.5 and waits[1] < 0.6  # Flower's first two waits: about 1 s and 2 s


@pytest.mark.parametrize("idle_s, reply_s", [(0, 0.1), (0.2, -1.0)])
def test_a_wait_that_is_not_positive_is_refused(idle_s, reply_s):
    with pytest.raises(ValueError, match="must be > 0 seconds"):
        PollingClock(idle_s, reply_s)
    with pytest.raises(ValueError, match="first_retry_s must be > 0 seconds"):
        prompt_object_pulls(ModuleType("puller"), "pull_objects", 0)


def test_the_command_refuses_a_bad_wait_with_exit_2(monkeypatch, capsys):
    monkeypatch.setattr(sys, "argv", ["supernode", "--idle-poll-s", "0", "--insecure"])
    with pytest.raises(SystemExit) as exited:
        supernode.main()
    assert exited.value.code == 2
    assert capsys.readouterr().err.strip() == "fedsec.fl.supernode: --idle-poll-s must be > 0 seconds, got 0.0"
    assert supernode_loop.time is time
