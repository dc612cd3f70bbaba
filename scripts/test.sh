#!/usr/bin/env bash
# Set up (first call only) and run the test suite: scripts/test.sh [pytest options]
# One pytest-xdist worker per core (at most 8; FEDSEC_TEST_WORKERS or "-n 0" to change it): the
# tests that start whole process trees spend much of their time waiting, and the other tests
# fill that time.
set -euo pipefail
source "$(dirname "$0")/_setup.sh"
workers=${FEDSEC_TEST_WORKERS:-$(( $(nproc) < 8 ? $(nproc) : 8 ))}
exec python -m pytest -n "$workers" --dist load "$@"
