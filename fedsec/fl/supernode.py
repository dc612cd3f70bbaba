"""Flower's SuperNode with shorter waits between its checks for work (fedsec.fl.flower_waits).

Every argument but the two below is Flower's ``flower-supernode``'s, unchanged.

    python -m fedsec.fl.supernode [--idle-poll-s 1] [--reply-poll-s 0.2] FLOWER-SUPERNODE-ARGS...
"""

from __future__ import annotations

import argparse
import sys

import flwr.supernode.start_client_internal as supernode_loop
from flwr.supernode.cli import flower_supernode

from fedsec.fl.flower_waits import FIRST_PULL_RETRY_S, install_clock, positive_seconds, prompt_object_pulls


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0], add_help=False)
    parser.add_argument("--idle-poll-s", type=float, default=1.0,
                        help="seconds before asking the SuperLink again when it had no message (Flower: 3)")
    parser.add_argument("--reply-poll-s", type=float, default=0.2,
                        help="seconds between checks for the ClientApp's reply (Flower: 0.5)")
    ours, flowers = parser.parse_known_args()
    try:
        positive_seconds("--idle-poll-s", ours.idle_poll_s)
        positive_seconds("--reply-poll-s", ours.reply_poll_s)
    except ValueError as exc:
        parser.exit(2, f"fedsec.fl.supernode: {exc}\n")
    install_clock(supernode_loop, ours.idle_poll_s, ours.reply_poll_s)
    prompt_object_pulls(supernode_loop, "pull_objects", FIRST_PULL_RETRY_S)
    sys.argv = ["flower-supernode", *flowers]
    flower_supernode()


if __name__ == "__main__":
    main()
