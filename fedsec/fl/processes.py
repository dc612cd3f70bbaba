"""Stopping, by PID, every process a simulation or a sweep cell started, including Ray workers whose
raylet exited.

Ray's shutdown ends its processes without waiting for them; workers orphaned by their raylet are
re-parented to PID 1, which in a container often never reaps them, so they linger as zombies.
Marking this process a child subreaper (Linux) makes such orphans its children, and
:func:`stop_new_descendants` waits for them and kills, by PID, any still running.
"""

from __future__ import annotations

import ctypes
import sys

import psutil

PR_SET_CHILD_SUBREAPER = 36


def become_subreaper() -> None:
    """Orphaned descendants become this process's children (Linux only; elsewhere nothing)."""
    if sys.platform.startswith("linux"):
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)


def descendants() -> set[int]:
    """PIDs of every live descendant of this process."""
    return {child.pid for child in psutil.Process().children(recursive=True)}


def wait_or_kill(processes: list[psutil.Process], timeout_s: float) -> None:
    """Wait up to ``timeout_s`` seconds for ``processes`` to end (reaping this process's
    children), then kill the rest by PID."""
    _, alive = psutil.wait_procs(processes, timeout=timeout_s)
    for process in alive:
        try:
            process.kill()
        except psutil.NoSuchProcess:
            pass
    psutil.wait_procs(alive, timeout=timeout_s)


def stop_new_descendants(before: set[int], timeout_s: float = 10.0) -> None:
    """Wait up to ``timeout_s`` for the descendants not in ``before`` to end (reaping them), then
    kill the rest by PID. Processes that existed before (e.g. a Ray cluster the run attached to,
    or a test's own helpers) are left alone."""
    wait_or_kill([p for p in psutil.Process().children(recursive=True) if p.pid not in before], timeout_s)


def stop_tree(pid: int, grace_s: float) -> None:
    """Terminate process ``pid`` and all its descendants (Ray's daemons and workers included), by
    PID; kill those still running after ``grace_s`` seconds."""
    try:
        root = psutil.Process(pid)
        tree = [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        return
    for process in tree:
        try:
            process.terminate()
        except psutil.NoSuchProcess:
            pass
    wait_or_kill(tree, grace_s)
