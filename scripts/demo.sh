#!/usr/bin/env bash
# The main job on embedded defaults: local Kafka, SQLite, the worker, an SMTP mailbox and a
# stand-in RPA bot decide the bundled sample invoices. Java 17 and Maven fetch Kafka (cached).
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
cd "$ROOT"
source scripts/bootstrap.sh
exec "$VENV/bin/invoice-automation" demo "$@"
