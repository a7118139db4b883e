#!/usr/bin/env bash
# The main job on embedded defaults: validates every bundled sample invoice against its PO.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
cd "$ROOT"
source scripts/bootstrap.sh
exec "$VENV/bin/invoice-automation" validate-samples samples
