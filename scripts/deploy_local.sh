#!/usr/bin/env bash
# Run a scenario on Flower's deployment engine on this machine: one SuperLink and N SuperNodes
# on 127.0.0.1 (SuperNode I holds partition I), the run submitted with `flwr run`; every process
# the script started is stopped again by PID, with its descendants.
#
#   scripts/deploy_local.sh [--tls DIR [--auth]] N SCENARIO [OVERRIDES]
#
# N          number of SuperNodes; must equal the scenario's data.num_clients
# OVERRIDES  ";"-separated key.path=value pairs, e.g. "rounds=3;data.num_clients=5"
# --tls DIR  serve the SuperLink over TLS with DIR/server.pem and DIR/server.key; SuperNodes and
#            the flwr CLI trust DIR/ca.crt (create DIR with scripts/make_certs.sh). Also FEDSEC_TLS_DIR.
# --auth     (with --tls) node authentication: only SuperNodes whose public key DIR/supernode-I.pub
#            was registered may connect (make_certs.sh DIR --nodes N creates the keys)
#
# Flower's state (connection config, installed app) goes to a temporary FLWR_HOME; logs of the
# SuperLink and of every SuperNode are printed when the run fails or FEDSEC_DEBUG is set.
# The SuperLink listens on a free port, or on FEDSEC_SUPERLINK_PORT when set.
# Each SuperNode asks the SuperLink for work every FEDSEC_SUPERNODE_IDLE_POLL_S seconds when it has
# none (default 1; Flower's own SuperNode waits 3) and checks for its ClientApp's reply every
# FEDSEC_SUPERNODE_REPLY_POLL_S (default 0.2; Flower: 0.5): fedsec/fl/supernode.py.
set -euo pipefail
cd "$(dirname "$0")/.."
usage="usage: scripts/deploy_local.sh [--tls DIR [--auth]] N SCENARIO [OVERRIDES]"
tls_dir=${FEDSEC_TLS_DIR:-}
auth=""
while [ $# -gt 0 ]; do
  case $1 in
    --tls) tls_dir=${2:?$usage}; shift 2 ;;
    --auth) auth=1; shift ;;
    -*) echo "$usage" >&2; exit 2 ;;
    *) break ;;
  esac
done
[ $# -ge 2 ] || { echo "$usage" >&2; exit 2; }
nodes=$1 scenario=$2 overrides=${3:-}
[ -x .venv/bin/fedsec ] || { echo "run scripts/test.sh or scripts/run.sh first (no .venv)" >&2; exit 2; }
export PATH="$PWD/.venv/bin:$PATH"
source scripts/_env.sh
source scripts/_processes.sh
source scripts/_app.sh

if [ -n "$tls_dir" ]; then
  tls_dir=$(cd "$tls_dir" 2>/dev/null && pwd) || { echo "--tls: no directory $tls_dir" >&2; exit 2; }
  for f in ca.crt server.pem server.key; do
    [ -f "$tls_dir/$f" ] || { echo "--tls: $tls_dir/$f missing (create it with scripts/make_certs.sh)" >&2; exit 2; }
  done
fi
[ -z "$auth" ] || [ -n "$tls_dir" ] || { echo "--auth needs --tls (node authentication requires TLS)" >&2; exit 2; }

# One SuperNode per client partition: validate the scenario and N first (exit 2, one line).
set_args=(); IFS=';' read -ra pairs <<< "$overrides"
for pair in "${pairs[@]}"; do [ -n "${pair// }" ] && set_args+=(--set "$pair"); done
num_clients=$(fedsec resolve "$scenario" "${set_args[@]}" --key data.num_clients)
[ "$nodes" = "$num_clients" ] || { echo "N is $nodes but the scenario's data.num_clients is $num_clients" >&2; exit 2; }
if [ -n "$auth" ]; then
  for ((i = 0; i < nodes; i++)); do
    [ -f "$tls_dir/supernode-$i" ] || { echo "--auth: $tls_dir/supernode-$i missing (make_certs.sh DIR --nodes $nodes)" >&2; exit 2; }
  done
fi

# Free loopback ports: the SuperLink's, then one Runtime API port per SuperNode.
read -ra ports <<< "$(python - "$((nodes + 1))" <<'PY'
import socket, sys
sockets = [socket.socket() for _ in range(int(sys.argv[1]))]
for s in sockets:
    s.bind(("127.0.0.1", 0))
print(" ".join(str(s.getsockname()[1]) for s in sockets))
PY
)"
superlink_port=${FEDSEC_SUPERLINK_PORT:-${ports[0]}}

export FLWR_HOME
FLWR_HOME=$(mktemp -d -t fedsec-deploy-XXXXXX)
if [ -n "$tls_dir" ]; then
  connection="root-certificates = \"$tls_dir/ca.crt\""
  superlink_security=(--ssl-certfile "$tls_dir/server.pem" --ssl-keyfile "$tls_dir/server.key" --ssl-ca-certfile "$tls_dir/ca.crt")
  supernode_security=(--root-certificates "$tls_dir/ca.crt")
else
  connection="insecure = true"
  superlink_security=(--insecure)
  supernode_security=(--insecure)
fi
[ -n "$auth" ] && superlink_security+=(--enable-supernode-auth)
cat > "$FLWR_HOME/config.toml" <<TOML
[superlink]
default = "fedsec-local"

[superlink.fedsec-local]
address = "127.0.0.1:$superlink_port"
$connection
TOML

started=()
show_logs() {
  for log in "$FLWR_HOME"/*.log; do echo "== $log" >&2; tail -n 40 "$log" >&2; done
}
stop_all() {
  local status=$?
  trap - EXIT INT TERM
  { [ "$status" -ne 0 ] || [ -n "${FEDSEC_DEBUG:-}" ]; } && show_logs
  stop_trees "${started[@]}"
  rm -rf "$FLWR_HOME"
  exit "$status"
}
trap stop_all EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

flower-superlink "${superlink_security[@]}" --isolation subprocess \
  --host 127.0.0.1 --port "$superlink_port" --database ":flwr-in-memory:" \
  --log-file "$FLWR_HOME/superlink.log" >"$FLWR_HOME/superlink.out" 2>&1 &
started+=($!)
for _ in $(seq 100); do
  (echo >"/dev/tcp/127.0.0.1/$superlink_port") 2>/dev/null && break
  kill -0 "${started[0]}" 2>/dev/null || { echo "flower-superlink exited" >&2; exit 1; }
  sleep 0.2
done

for ((i = 0; i < nodes; i++)); do
  node_auth=()
  if [ -n "$auth" ]; then
    flwr supernode register "$tls_dir/supernode-$i.pub" fedsec-local >/dev/null
    node_auth=(--auth-supernode-private-key "$tls_dir/supernode-$i")
  fi
  python -m fedsec.fl.supernode --idle-poll-s "${FEDSEC_SUPERNODE_IDLE_POLL_S:-1}" \
    --reply-poll-s "${FEDSEC_SUPERNODE_REPLY_POLL_S:-0.2}" \
    "${supernode_security[@]}" "${node_auth[@]}" --isolation process \
    --superlink "127.0.0.1:$superlink_port" --host 127.0.0.1 --port "${ports[i + 1]}" \
    --node-config "partition-id=$i num-partitions=$nodes" \
    >"$FLWR_HOME/supernode-$i.log" 2>&1 &
  started+=($!)
  # The SuperNode's one long-lived ClientApp process (fedsec/fl/client_worker.py).
  python -m fedsec.fl.client_worker --runtime-api-address "127.0.0.1:${ports[i + 1]}" --parent-pid $! \
    >"$FLWR_HOME/client-worker-$i.log" 2>&1 &
  started+=($!)
done

# The server maps partitions to the nodes connected when it starts: wait until all are online.
online() {
  flwr supernode list fedsec-local --format json 2>/dev/null | python -c \
    'import json, sys; print(sum(n["status"] == "online" for n in json.load(sys.stdin)["nodes"]))' 2>/dev/null \
    || echo 0
}
for ((waited = 0; ; waited++)); do
  [ "$(online)" -ge "$nodes" ] && break
  for pid in "${started[@]}"; do kill -0 "$pid" 2>/dev/null || { echo "a Flower process exited early" >&2; exit 1; }; done
  [ "$waited" -lt 300 ] || { echo "only $(online) of $nodes SuperNodes online after 300 s" >&2; exit 1; }
  sleep 1
done

# In the background and waited for, so that a TERM or INT reaches the trap at once.
stage_app "$FLWR_HOME/app"
flwr run "$FLWR_HOME/app" fedsec-local --stream --run-config "scenario=\"$scenario\" set=\"$overrides\"" &
started+=($!)
wait $!
