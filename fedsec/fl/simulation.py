"""Run a scenario as a Flower simulation (Ray backend) in this process."""

from __future__ import annotations

import warnings
from typing import Any

from flwr.app import Context
from flwr.serverapp import Grid, ServerApp

from fedsec.allocator import keep_large_blocks
from fedsec.crypto.key_authority import KEY_FILE_ENV, KEYS_DIR, SECRET_CONTEXT_FILE
from fedsec.fl.environment import configure_environment, ray_init_args, scoped_environment
from fedsec.fl.processes import become_subreaper, descendants, stop_new_descendants
from fedsec.fl.protocol import VIRTUAL_CLIENTS_ENV
from fedsec.fl.server import FederationError, FederationServer
from fedsec.results import RunDirectory
from fedsec.scenario import Scenario


class RunFailed(RuntimeError):
    """The run stopped before its end; the message is one line (records written so far are kept)."""


class RunRefused(RunFailed):
    """The run could not start from what it was given (a run directory that cannot be resumed, keys
    that are not the run's, nodes that do not match the scenario)."""


def backend_config(scenario: Scenario, environment: dict[str, str]) -> dict[str, Any]:
    """Ray backend settings: per-client resources from the scenario, loopback-only Ray. ``environment``
    reaches the client workers: inherited from this process by a private cluster, through the job's
    runtime environment on an attached one."""
    r = scenario.resources
    init_args = ray_init_args(r.ray_address)
    if r.client_actors is not None:
        init_args["num_cpus"] = round(r.client_actors * r.client_cpus)
    if environment and r.ray_address:
        init_args["runtime_env"] = {"env_vars": environment}
    return {"client_resources": {"num_cpus": r.client_cpus, "num_gpus": r.client_gpus}, "init_args": init_args}


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return (text if isinstance(exc, FederationError) else f"{type(exc).__name__}: {text}")[:500]


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
    server_app = ServerApp()

    @server_app.main()
    def main(grid: Grid, context: Context) -> None:
        try:
            summary.update(server(scenario, run_dir, grid, show_progress, virtual_clients=virtual).run())
        except Exception as exc:  # reported by simulate() in one line; Flower would only log it
            failures.append(exc)

    # Key distribution: the key holders (clients) find the secret context the authority writes here.
    virtual = scenario.resources.ray_address is None
    environment = {**({VIRTUAL_CLIENTS_ENV: "1"} if virtual else {}),
                   **({KEY_FILE_ENV: str(run_dir.file(KEYS_DIR) / SECRET_CONTEXT_FILE)}
                      if scenario.encryption.enabled else {})}
    become_subreaper()
    before = descendants()
    try:
        with warnings.catch_warnings(), scoped_environment(environment):
            warnings.simplefilter("ignore", DeprecationWarning)
            run_simulation(
                server_app=server_app, client_app=client_app,
                num_supernodes=scenario.clients_per_round if virtual else scenario.data.num_clients,
                backend_config=backend_config(scenario, environment),
            )
    finally:
        if ray.is_initialized():
            ray.shutdown()
        stop_new_descendants(before)
    if failures:
        refused = isinstance(failures[0], (FederationError, KeyMismatch, CheckpointError))
        raise (RunRefused if refused else RunFailed)(_one_line(failures[0])) from failures[0]
    if not summary:
        raise RunFailed("the simulation ended without running the server (Ray or Flower failed to start)")
    return summary
