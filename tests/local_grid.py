"""A Flower Grid that runs the ClientApp in this process: the server's round loop without Ray.

For tests that need many short runs of the real server and client apps (killed and resumed at
many points, encrypted runs compared with plaintext ones): a Ray start costs 15-25 s per run on
two cores. Results of the product always come from the Ray simulation, which the tests of
fedsec.fl.simulation exercise, encryption included.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from typing import Any

from flwr.app import Context, Error, Message, RecordDict
from flwr.clientapp import ClientApp
from flwr.serverapp import Grid
from flwr.supercore.task_identity import TaskIdentity

from fedsec.crypto.key_authority import KEY_FILE_ENV, KEYS_DIR, SECRET_CONTEXT_FILE
from fedsec.fl.client_app import app as fedsec_client_app
from fedsec.fl.environment import scoped_environment
from fedsec.fl.protocol import PARTITION_KEY
from fedsec.fl.server import FederationServer
from fedsec.results import RunDirectory
from fedsec.scenario import Scenario

SERVER_NODE = 1
FIRST_CLIENT_NODE = 1000
CLIENT_ERROR = 1


class LocalGrid(Grid):
    """One node per partition (node id 1000 + partition), answered in order by ``client_app``.

    ``sent`` counts the messages delivered by type, ``node_id_calls`` the calls of get_node_ids."""

    def __init__(self, client_app: ClientApp, num_nodes: int) -> None:
        TaskIdentity.run_id, TaskIdentity.task_id, TaskIdentity.node_id = 1, 1, SERVER_NODE
        self.client_app = client_app
        self.contexts = {
            FIRST_CLIENT_NODE + p: Context(run_id=1, node_id=FIRST_CLIENT_NODE + p, state=RecordDict(), run_config={},
                                           node_config={PARTITION_KEY: p, "num-partitions": num_nodes})
            for p in range(num_nodes)
        }
        self.sent: Counter[str] = Counter()
        self.node_id_calls = 0

    def get_node_ids(self) -> Iterable[int]:
        self.node_id_calls += 1
        return list(self.contexts)

    def send_and_receive(self, messages: Iterable[Message], *, timeout: float | None = None) -> Iterable[Message]:
        replies = []
        for message in messages:
            node = message.metadata.dst_node_id
            self.sent[message.metadata.message_type] += 1
            try:
                reply = self.client_app(message, self.contexts[node])
            except Exception as exc:  # a crashing client becomes an error reply, as in Flower
                reply = Message(Error(code=CLIENT_ERROR, reason=f"{type(exc).__name__}: {exc}"), reply_to=message)
            replies.append(reply)
        TaskIdentity.node_id = SERVER_NODE
        return replies

    def create_message(self, *args: object, **kwargs: object) -> Message:
        raise NotImplementedError

    def get_nodes(self) -> Iterable[object]:
        raise NotImplementedError

    def push_messages(self, messages: Iterable[Message]) -> Iterable[str]:
        raise NotImplementedError

    def pull_messages(self, message_ids: Iterable[str]) -> Iterable[Message]:
        raise NotImplementedError

    def set_run(self, run: object) -> None:
        raise NotImplementedError

    @property
    def run(self) -> object:
        raise NotImplementedError


def run_locally(scenario: Scenario, run_dir: RunDirectory,
                server: type[FederationServer] = FederationServer) -> dict[str, Any]:
    """Every round of ``scenario`` with the real server and client apps over a LocalGrid; the run
    summary. Under encryption the clients find the secret key as in a simulation, through
    ``$FEDSEC_KEY_FILE``."""
    with scoped_environment({KEY_FILE_ENV: str(run_dir.file(KEYS_DIR) / SECRET_CONTEXT_FILE)}):
        return server(scenario, run_dir, LocalGrid(fedsec_client_app, scenario.data.num_clients), False).run()
