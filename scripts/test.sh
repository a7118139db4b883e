#!/usr/bin/env bash
# The test command: sets up everything on a fresh machine, then runs every test tier.
# PostgreSQL, Chromium and unixODBC come from apt and the Kafka/Debezium jars from Maven Central on
# the first run; both are cached. The stack is started by the test fixtures and always stopped on exit.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
cd "$ROOT"
source scripts/bootstrap.sh
"$VENV/bin/invoice-automation" stack install --browser --odbc
trap '"$VENV/bin/invoice-automation" stack down >/dev/null 2>&1 || true' EXIT
# Lint and types first: any finding fails the command (set -e). mypy reads [tool.mypy] in pyproject.toml.
"$VENV/bin/ruff" check .
"$VENV/bin/mypy"
"$VENV/bin/python" -m pytest "$@"
