"""Run a scenario as a Flower simulation (Ray backend) in this process."""

from __future__ import annotations

import logging
import threading
import warnings
from typing import Any

from flwr.app import Context
from flwr.serverapp import Grid, ServerApp

from fedsec.allocator import keep_large_blocks
from fedsec.crypto.key_authority import KEY_FILE_ENV, KEYS_DIR, SECRET_CONTEXT_FILE
from fedsec.fl.environment import LOOPBACK, configure_environment, scoped_environment, worker_pythonpath
from fedsec.fl.processes import become_subreaper, descendants, stop_new_descendants
from fedsec.fl.prompt_grid import PromptGrid
from fedsec.fl.protocol import VIRTUAL_CLIENTS_ENV
from fedsec.fl.server import FederationError, FederationServer
from fedsec.results import RunDirectory
from fedsec.scenario import Scenario


class RunFailed(RuntimeError):
    """The run stopped before its end; the message is one line (records written so far are kept)."""


class RunRefused(RunFailed):
    """The run could not start from what it was given (a run directory that cannot be resumed, keys
    that are not the run's, nodes that do not match the scenario)."""


SIMULATION_POLL_S = 0.1
"""Seconds between the server's checks for replies in the simulation (the interval of Flower's
in-memory grid)."""


def ray_init_kwargs(scenario: Scenario, environment: dict[str, str]) -> dict[str, Any]:
    """``ray.init`` arguments: a private loopback-only cluster (``resources.client_actors`` sets its
    CPUs), or the existing one at ``resources.ray_address``. ``environment`` reaches the client
    workers through the job's runtime environment.

    fedsec starts Ray itself, before Flower's backend would: Flower's ``ray.init`` passes a runtime
    environment of its own (the import path only), so one more in its ``init_args`` would be a
    duplicate argument, and the key holders of an encrypted run on an attached cluster would never
    learn where the key is.

    A private cluster starts no idle workers: Ray would start one per CPU when the driver connects,
    and the client actors never use them (each starts a worker of its own), so each cost its
    start-up (about 0.9 CPU-seconds) for nothing."""
    r = scenario.resources
    kwargs: dict[str, Any] = {"include_dashboard": False, "logging_level": logging.WARNING}
    if r.ray_address:
        kwargs["address"] = r.ray_address
    else:
        kwargs |= {"_node_ip_address": LOOPBACK, "log_to_driver": False,
                   "_system_config": {"prestart_worker_first_driver": False}}
    if r.client_actors is not None:
        kwargs["num_cpus"] = round(r.client_actors * r.client_cpus)
    kwargs["runtime_env"] = {"env_vars": environment}
    return kwargs


def backend_config(scenario: Scenario) -> dict[str, Any]:
    """Flower's Ray backend settings: per-client resources from the scenario."""
    r = scenario.resources
    return {"client_resources": {"num_cpus": r.client_cpus, "num_gpus": r.client_gpus}}


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return (text if isinstance(exc, FederationError) else f"{type(exc).__name__}: {text}")[:500]


def _root_cause(exc: BaseException) -> BaseException:
    while exc.__cause__ is not None:
        exc = exc.__cause__
    return exc


def simulate(scenario: Scenario, run_dir: RunDirectory, show_progress: bool = True,
             server: type[FederationServer] = FederationServer) -> dict[str, Any]:
    """Run every round of ``scenario`` in a Flower simulation; returns the run summary. ``server``:
    the server class (a subclass may record or steer rounds, e.g. scripts/he_round_error.py).

    On a private Ray cluster the simulation's SuperNodes are virtual clients, one per client
    sampled in a round: each train message names the partition its node loads (fedsec.fl.nodes),
    so that no per-client cost grows with ``data.num_clients``. Attached to an existing cluster
    (``resources.ray_address``) there is one SuperNode per partition, found by the discovery query:
    the flag that lets a node load a named partition would have to travel in a Ray runtime
    environment, which such a cluster may not serve.

    Raises RunRefused or RunFailed (one-line messages) when the run cannot start or stops early.
    """
    configure_environment()
    keep_large_blocks()
    import ray
    from flwr.simulation import run_simulation

    from fedsec.checkpoint import CheckpointError
    from fedsec.crypto.key_authority import KeyMismatch
    from fedsec.fl.client_app import app as client_app

    summary: dict[str, Any] = {}
    failures: list[BaseException] = []
    runtime_stopped = threading.Event()
    server_app = ServerApp()

    @server_app.main()
    def main(grid: Grid, context: Context) -> None:
        try:
            waiting = PromptGrid(grid, SIMULATION_POLL_S, stop=runtime_stopped)
            summary.update(server(scenario, run_dir, waiting, show_progress, virtual_clients=virtual).run())
        except Exception as exc:  # reported by simulate() in one line; Flower would only log it
            failures.append(exc)

    # What the client workers need: this process's import path, the virtual-clients flag and, under
    # encryption, where the key holders find the secret context the authority writes (key distribution).
    virtual = scenario.resources.ray_address is None
    environment = {"PYTHONPATH": worker_pythonpath(),
                   **({VIRTUAL_CLIENTS_ENV: "1"} if virtual else {}),
                   **({KEY_FILE_ENV: str(run_dir.file(KEYS_DIR) / SECRET_CONTEXT_FILE)}
                      if scenario.encryption.enabled else {})}
    runtime_failure: Exception | None = None
    become_subreaper()
    before = descendants()
    try:
        with warnings.catch_warnings(), scoped_environment(environment):
            warnings.simplefilter("ignore", DeprecationWarning)
            ray.init(**ray_init_kwargs(scenario, environment))
            run_simulation(
                server_app=server_app, client_app=client_app,
                num_supernodes=scenario.clients_per_round if virtual else scenario.data.num_clients,
                backend_config=backend_config(scenario),
            )
    except Exception as exc:  # Ray did not start, or Flower's runtime crashed (its cause is the first in the chain)
        runtime_failure = exc
    finally:
        runtime_stopped.set()  # a server still waiting for replies stops (its thread would keep the process alive)
        if ray.is_initialized():
            ray.shutdown()
        stop_new_descendants(before)
    if runtime_failure is not None:
        raise RunFailed(f"the simulation runtime stopped: {_one_line(_root_cause(runtime_failure))}") from runtime_failure
    if failures:
        refused = isinstance(failures[0], (FederationError, KeyMismatch, CheckpointError))
        raise (RunRefused if refused else RunFailed)(_one_line(failures[0])) from failures[0]
    if not summary:
        raise RunFailed("the simulation ended without running the server (Ray or Flower failed to start)")
    return summary
