#!/usr/bin/env bash
# Set up (first call only) and run the test suite: scripts/test.sh [pytest options]
set -euo pipefail
source "$(dirname "$0")/_setup.sh"
exec python -m pytest "$@"
