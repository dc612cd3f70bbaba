"""The ServerApp that ``flwr run`` loads; the run-config key ``scenario`` names the file.

    flwr run . --run-config 'scenario="scenarios/quickstart.yaml"'

The federation's ``num-supernodes`` must equal the scenario's ``data.num_clients``.
"""

from __future__ import annotations

from pathlib import Path

from flwr.app import Context
from flwr.serverapp import Grid, ServerApp
from flwr.superlink.grid import http_grid

from fedsec.allocator import keep_large_blocks
from fedsec.fl.environment import configure_environment
from fedsec.fl.flower_waits import FIRST_PULL_RETRY_S, prompt_object_pulls
from fedsec.fl.prompt_grid import PromptGrid
from fedsec.fl.server import FederationServer
from fedsec.results import SCENARIO_FILE, RunDirectory, write_atomic
from fedsec.scenario import ScenarioError, load_scenario, to_yaml

configure_environment()
keep_large_blocks()
prompt_object_pulls(http_grid, "pull_objects", FIRST_PULL_RETRY_S)  # the deployment engine's replies
app = ServerApp()


def _resolve(path: str, app_dir: Path) -> Path:
    """A relative scenario path is looked up in the working directory, then in the app."""
    candidate = Path(path)
    if candidate.is_absolute() or candidate.exists():
        return candidate
    return app_dir / candidate


@app.main()
def main(grid: Grid, context: Context) -> None:
    """Load the scenario named by the run config and run it."""
    app_dir = Path(__file__).resolve().parents[2]
    overrides = [o for o in str(context.run_config.get("set", "")).split(";") if o.strip()]
    try:
        scenario = load_scenario(_resolve(str(context.run_config["scenario"]), app_dir), overrides)
    except ScenarioError as exc:
        raise SystemExit("\n".join(exc.lines)) from None
    if scenario.encryption.mode == "ckks":
        raise SystemExit("encryption.mode: ckks needs `fedsec run`, whose set-up distributes the secret key to "
                         "the clients; SuperNodes started apart from the run cannot receive it")
    output = Path(scenario.output.dir)
    run_dir = RunDirectory.create(output if output.is_absolute() else app_dir / output, scenario.name)
    write_atomic(run_dir.file(SCENARIO_FILE), to_yaml(scenario))
    print(f"run directory: {run_dir.path}", flush=True)
    FederationServer(scenario, run_dir, PromptGrid(grid, scenario.server.reply_poll_s), show_progress=False).run()
