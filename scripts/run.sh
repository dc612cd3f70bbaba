#!/usr/bin/env bash
# Set up (first call only) and run a scenario: scripts/run.sh [SCENARIO] [fedsec run options]
set -euo pipefail
source "$(dirname "$0")/_setup.sh"
scenario=${1:-scenarios/quickstart.yaml}
shift || true
exec fedsec run "$scenario" "$@"
