"""Run a scenario as a Flower simulation (Ray backend) in this process."""

from __future__ import annotations

import warnings
from typing import Any

from flwr.app import Context
from flwr.serverapp import Grid, ServerApp

from fedsec.fl.environment import configure_environment, ray_init_args
from fedsec.fl.processes import become_subreaper, descendants, stop_new_descendants
from fedsec.fl.server import FederationServer
from fedsec.results import RunDirectory
from fedsec.scenario import Scenario


def backend_config(scenario: Scenario) -> dict[str, Any]:
    """Ray backend settings: per-client resources from the scenario, loopback-only Ray."""
    r = scenario.resources
    return {
        "client_resources": {"num_cpus": r.client_cpus, "num_gpus": r.client_gpus},
        "init_args": ray_init_args(r.ray_address),
    }


def simulate(scenario: Scenario, run_dir: RunDirectory, show_progress: bool = True,
             server: type[FederationServer] = FederationServer) -> dict[str, Any]:
    """Run every round of ``scenario`` in a Flower simulation; returns the run summary. ``server``:
    the server class (a subclass may record or steer rounds, e.g. scripts/he_round_error.py)."""
    configure_environment()
    import ray
    from flwr.simulation import run_simulation

    from fedsec.fl.client_app import app as client_app

    summary: dict[str, Any] = {}
    server_app = ServerApp()

    @server_app.main()
    def main(grid: Grid, context: Context) -> None:
        summary.update(server(scenario, run_dir, grid, show_progress).run())

    become_subreaper()
    before = descendants()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            run_simulation(
                server_app=server_app, client_app=client_app,
                num_supernodes=scenario.data.num_clients, backend_config=backend_config(scenario),
            )
    finally:
        if ray.is_initialized():
            ray.shutdown()
        stop_new_descendants(before)
    return summary
