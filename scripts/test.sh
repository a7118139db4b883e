#!/usr/bin/env bash
# The test command: sets up everything on a fresh machine, then runs every test tier.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
cd "$ROOT"
source scripts/bootstrap.sh
exec "$VENV/bin/python" -m pytest "$@"
