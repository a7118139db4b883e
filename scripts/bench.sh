#!/usr/bin/env bash
# The benchmarks: each prints its figures beside a baseline measured in the same run.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
cd "$ROOT"
source scripts/bootstrap.sh
"$VENV/bin/python" bench/evaluate_bench.py
"$VENV/bin/python" bench/pipeline_bench.py
"$VENV/bin/python" bench/growth_bench.py
"$VENV/bin/python" bench/replay_bench.py
"$VENV/bin/python" bench/kpi_bench.py
