"""scripts/deploy_local.sh: a SuperLink and one SuperNode per partition on loopback (Flower's
deployment engine), plain and with TLS + node authentication; nothing is left running."""

from __future__ import annotations

import json
import os
import shutil
import socket
import ssl
import subprocess
import time
import uuid
from pathlib import Path

import pytest
from processes import LOOPBACK, free_port, listening_addresses, live_pids_tagged

ROOT = Path(__file__).parents[1]
TINY = "data.dataset=digits;model.name=mlp;data.num_clients=3;sampling.clients_per_round=3"


def tls_handshake(port: int, ca: Path) -> dict | None:
    """The SuperLink's certificate when a TLS handshake verified by ``ca`` succeeds, else None."""
    context = ssl.create_default_context(cafile=str(ca))
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=2) as raw:
            with context.wrap_socket(raw, server_hostname="localhost") as tls:
                return tls.getpeercert()
    except OSError:
        return None


def deploy(tmp_path: Path, rounds: int, options: list[str], port: int, ca: Path | None = None) -> dict:
    """Run the script; return what was observed: rc, output, listening addresses, certificate."""
    tag = uuid.uuid4().hex
    overrides = f"rounds={rounds};{TINY};output.dir={tmp_path / 'runs'}"
    process = subprocess.Popen(
        ["bash", "scripts/deploy_local.sh", *options, "3", "scenarios/quickstart.yaml", overrides],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        env={**os.environ, "FEDSEC_TEST_TAG": tag, "FEDSEC_SUPERLINK_PORT": str(port)},
    )
    seen: set[str] = set()
    certificate = None
    deadline = time.time() + 900
    while process.poll() is None and time.time() < deadline:
        seen |= listening_addresses(live_pids_tagged(tag))
        if ca is not None and certificate is None:
            certificate = tls_handshake(port, ca)
        time.sleep(0.5)
    if process.poll() is None:
        process.terminate()  # the script's trap stops everything it started
    output = process.communicate(timeout=60)[0]
    settle = time.time() + 10
    while live_pids_tagged(tag) and time.time() < settle:
        time.sleep(0.2)
    return {"rc": process.returncode, "output": output, "seen": seen, "certificate": certificate,
            "left": live_pids_tagged(tag)}


def assert_complete_run(tmp_path: Path, rounds: int, result: dict) -> None:
    assert result["rc"] == 0, result["output"][-3000:]
    (run_dir,) = (tmp_path / "runs").iterdir()
    records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert [r["round"] for r in records] == list(range(1, rounds + 1))
    assert all(r["replies"] == 3 and r["rejected"] == 0 for r in records)
    assert records[-1]["ma"] > 0.2
    assert result["seen"], "no listening socket was observed"
    assert all(LOOPBACK.match(address) for address in result["seen"]), result["seen"]
    assert result["left"] == set()


@pytest.mark.skipif(shutil.which("ss") is None, reason="needs ss (iproute2)")
def test_three_supernodes_run_two_rounds_and_leave_nothing(tmp_path: Path) -> None:
    result = deploy(tmp_path, 2, [], free_port())
    assert_complete_run(tmp_path, 2, result)


@pytest.mark.skipif(shutil.which("ss") is None or shutil.which("openssl") is None
                    or shutil.which("ssh-keygen") is None, reason="needs ss, openssl and ssh-keygen")
def test_tls_and_node_authentication(tmp_path: Path) -> None:
    certs = tmp_path / "certs"
    made = subprocess.run(["bash", "scripts/make_certs.sh", str(certs), "--nodes", "3"],
                          cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert made.returncode == 0, made.stderr
    port = free_port()
    result = deploy(tmp_path, 1, ["--tls", str(certs), "--auth"], port, ca=certs / "ca.crt")
    assert_complete_run(tmp_path, 1, result)
    assert result["certificate"] is not None, "the SuperLink did not complete a TLS handshake"
    assert ("IP Address", "127.0.0.1") in result["certificate"]["subjectAltName"]


@pytest.mark.parametrize(("arguments", "message"), [
    (["2", "scenarios/quickstart.yaml", TINY], "N is 2 but the scenario's data.num_clients is 3"),
    (["3", "scenarios/quickstart.yaml", "rounds=-1"], "rounds:"),
    (["--auth", "3", "scenarios/quickstart.yaml", TINY], "--auth needs --tls"),
    (["--tls", "/nonexistent", "3", "scenarios/quickstart.yaml", TINY], "--tls: no directory"),
])
def test_bad_arguments_exit_2_with_one_line(arguments: list[str], message: str) -> None:
    result = subprocess.run(["bash", "scripts/deploy_local.sh", *arguments], cwd=ROOT,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert message in result.stderr and "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
