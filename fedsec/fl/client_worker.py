"""A long-lived ClientApp process for one SuperNode of Flower's deployment engine.

In Flower 1.41 a SuperNode in ``subprocess`` isolation starts a new ``flwr-clientapp`` process
for every message: each one imports torch and fedsec and loads its partition again (4-8 s on two
cores) before it trains for a fraction of a second. A SuperNode started with ``--isolation
process`` instead waits for an executor to claim its tasks through its Runtime API; this module
is that executor. It claims each task with the same request Flower's SuperExec makes, then runs
it in this process exactly as ``flwr-clientapp`` would (pull the message and context, call the
ClientApp, push the reply and the context, heartbeat while it works), and waits for the next.
Data and model set-up are built once per scenario (``fedsec.fl.client_app._trainer``).

It runs fedsec's own ClientApp, installed beside it, not the code in the run's FAB: a task of a
run whose app is not fedsec's is refused with an error reply.

    python -m fedsec.fl.client_worker --runtime-api-address 127.0.0.1:9094 [--parent-pid PID]
"""

from __future__ import annotations

import argparse
import time

from flwr.app import Context, Error, Message
from flwr.common.constant import ErrorCode, SubStatus
from flwr.proto.runtime_pb2 import AcquireTaskRequest  # pylint: disable=E0611
from flwr.supercore.app_utils import start_parent_process_monitor
from flwr.supercore.constant import TaskType
from flwr.supercore.heartbeat import HeartbeatSender, make_task_heartbeat_fn_http
from flwr.supercore.interceptors import RuntimeTokenHttpInterceptor, RuntimeVersionHttpInterceptor
from flwr.supercore.retry import make_simple_http_retry_invoker
from flwr.supercore.runtime import RuntimeHttpClient
from flwr.supernode.runtime import run_clientapp
from flwr.supernode.runtime.run_clientapp import pull_task_input, push_message, push_task_output

from fedsec.fl.client_app import app as fedsec_client_app
from fedsec.fl.environment import configure_environment
from fedsec.fl.flower_waits import FIRST_PULL_RETRY_S, prompt_object_pulls

FEDSEC_FAB_ID = "fedsec/fedsec"
"""The FAB id (publisher/name in pyproject.toml's [tool.flwr.app]) of the app this worker runs."""


def runtime_client(address: str, *interceptors: object) -> RuntimeHttpClient:
    """An insecure HTTP client of a SuperNode's Runtime API on this machine."""
    return RuntimeHttpClient.from_server_address(
        server_address=address, insecure=True, root_certificates=None,
        interceptors=[RuntimeVersionHttpInterceptor(component_name="flwr-clientapp"), *interceptors],
        retry_invoker=make_simple_http_retry_invoker(),
    )


def run_task(address: str, token: str) -> None:
    """Run the ClientApp task ``token`` grants, as ``flwr-clientapp`` does, in this process."""
    client = runtime_client(address, RuntimeTokenHttpInterceptor(token))
    heartbeat = HeartbeatSender(make_task_heartbeat_fn_http(client))
    heartbeat.start()
    context: Context | None = None
    message = reply = None
    status, details = SubStatus.FAILED, "ClientApp task failed"
    try:
        message, context, run, _ = pull_task_input(client)
        if run.fab_id != FEDSEC_FAB_ID:
            raise PermissionError(f"this worker runs {FEDSEC_FAB_ID}, not {run.fab_id}")
        reply = fedsec_client_app(message=message, context=context)
        status, details = SubStatus.COMPLETED, ""
    except Exception as exc:  # a failing task becomes an error reply, as in flwr-clientapp
        details = f"{type(exc)}:<'{exc}'>"
        if message is not None:
            reply = Message(Error(code=ErrorCode.CLIENT_APP_RAISED_EXCEPTION, reason=details), reply_to=message)
    finally:
        try:
            if reply is not None and context is not None:
                push_message(client, reply, context)
            push_task_output(client=client, context=context, sub_status=status, details=details)
        finally:
            heartbeat.stop()
            client.close()


def serve(address: str, poll_s: float) -> None:
    """Claim and run this SuperNode's ClientApp tasks, one at a time, until stopped."""
    client = runtime_client(address)
    request = AcquireTaskRequest(supported_task_types=[TaskType.CLIENT_APP])
    while True:
        claimed = client.AcquireTask(request)
        if claimed.HasField("task") and claimed.token:
            run_task(address, claimed.token)
        else:
            time.sleep(poll_s)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runtime-api-address", required=True, help="the SuperNode's Runtime API, host:port")
    parser.add_argument("--poll-s", type=float, default=0.1, help="seconds between checks for a new task")
    parser.add_argument("--parent-pid", type=int, help="exit when this process (the SuperNode) exits")
    args = parser.parse_args()
    configure_environment()
    # The SuperNode offers a task before it holds the message's objects (fedsec.fl.flower_waits).
    prompt_object_pulls(run_clientapp, "pull_and_inflate_object_from_tree", FIRST_PULL_RETRY_S)
    if args.parent_pid is not None:
        start_parent_process_monitor(args.parent_pid)
    serve(args.runtime_api_address, args.poll_s)


if __name__ == "__main__":
    main()
