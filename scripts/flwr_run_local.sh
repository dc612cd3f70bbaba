#!/usr/bin/env bash
# Run a scenario through `flwr run` (Flower's local simulation runtime) on a SuperLink this
# script starts on 127.0.0.1 and stops again, with every process it started, by PID.
#
#   scripts/flwr_run_local.sh [SCENARIO] [OVERRIDES]
#
# OVERRIDES: ";"-separated key.path=value pairs, e.g. "rounds=3;data.partitioner.alpha=0.1".
# Flower's own state (config, SuperLink database, installed app) goes to a temporary FLWR_HOME.
set -euo pipefail
cd "$(dirname "$0")/.."
scenario=${1:-scenarios/quickstart.yaml}
overrides=${2:-}
[ -x .venv/bin/fedsec ] || { echo "run scripts/test.sh or scripts/run.sh first (no .venv)" >&2; exit 2; }
export PATH="$PWD/.venv/bin:$PATH"
source scripts/_env.sh
source scripts/_processes.sh
source scripts/_app.sh

# The federation needs one SuperNode per client partition; validate the scenario first (exit 2).
set_args=(); IFS=';' read -ra pairs <<< "$overrides"
for pair in "${pairs[@]}"; do [ -n "${pair// }" ] && set_args+=(--set "$pair"); done
num_clients=$(fedsec resolve "$scenario" "${set_args[@]}" --key data.num_clients)

port=${FEDSEC_SUPERLINK_PORT:-39191}  # Flower 1.41 serves every SuperLink API over HTTP here
export FLWR_HOME
FLWR_HOME=$(mktemp -d -t fedsec-flwr-XXXXXX)
cat > "$FLWR_HOME/config.toml" <<TOML
[superlink]
default = "fedsec-local"

[superlink.fedsec-local]
address = "127.0.0.1:$port"
insecure = true
TOML

superlink_pid=""
stop_all() {
  [ -n "$superlink_pid" ] && stop_trees "$superlink_pid"
  rm -rf "$FLWR_HOME"
}
trap stop_all EXIT INT TERM
[ -n "${FEDSEC_DEBUG:-}" ] && trap 'cat "$FLWR_HOME"/superlink.*; stop_all' EXIT

flower-superlink --insecure --simulation --isolation subprocess \
  --host 127.0.0.1 --port "$port" --database ":flwr-in-memory:" \
  --log-file "$FLWR_HOME/superlink.log" >"$FLWR_HOME/superlink.out" 2>&1 &
superlink_pid=$!
for _ in $(seq 100); do
  (echo >"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break
  kill -0 "$superlink_pid" 2>/dev/null || { echo "flower-superlink exited; see its log" >&2; cat "$FLWR_HOME/superlink.log" >&2; exit 1; }
  sleep 0.2
done

stage_app "$FLWR_HOME/app"
flwr run "$FLWR_HOME/app" fedsec-local --stream \
  --federation-config "num-supernodes=$num_clients" \
  --run-config "scenario=\"$scenario\" set=\"$overrides\""
