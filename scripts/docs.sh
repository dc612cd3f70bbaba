#!/usr/bin/env bash
# Build the documentation site into site/ (or DIR), offline: scripts/docs.sh [DIR] [mkdocs build options]
# --strict makes a broken link or anchor an error. The generated pages (docs/reference.md,
# docs/methods.md) come from python -m fedsec.reference --write docs/reference.md.
set -euo pipefail
source "$(dirname "$0")/_setup.sh"
site=${1:-site}
shift || true
exec mkdocs build --strict --site-dir "$site" "$@"
