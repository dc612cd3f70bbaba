"""Finding the processes a test started, by an environment tag they all inherit."""

from __future__ import annotations

import re
import socket
import subprocess
from pathlib import Path

LOOPBACK = re.compile(r"^(127\.\d+\.\d+\.\d+|\[::ffff:127\.\d+\.\d+\.\d+\]|\[::1\]):\d+$")


def free_port() -> int:
    """A loopback TCP port nothing listens on at the time of the call."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def live_pids_tagged(tag: str) -> set[int]:
    """Live (non-zombie) processes whose environment carries FEDSEC_TEST_TAG=tag: everything the
    script started, however deep (SuperLink, SuperExec, simulation, Ray), and nothing else."""
    marker = f"FEDSEC_TEST_TAG={tag}".encode()
    found = set()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            tagged = marker in (entry / "environ").read_bytes().split(b"\0")
            zombie = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
        except OSError:
            continue
        if tagged and not zombie:
            found.add(int(entry.name))
    return found


def listening_addresses(pids: set[int]) -> set[str]:
    """Local addresses of the TCP/UDP sockets these processes listen on."""
    lines = subprocess.run(["ss", "-ltunpH"], capture_output=True, text=True).stdout.splitlines()
    found = set()
    for line in lines:
        owners = {int(p) for p in re.findall(r"pid=(\d+)", line)}
        if owners & pids:
            found.add(line.split()[4])
    return found
