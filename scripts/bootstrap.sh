#!/usr/bin/env bash
# Creates .venv and installs the project with its test extras, at the versions of constraints.txt
# (the ones the tests passed on). Sourced by the other scripts. pip's cache (~/.cache/pip) makes
# the second run fast; the install is skipped when neither file has changed since the last one.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="$ROOT/.venv"
PYTHON="${PYTHON:-python3}"
# A venv without pip (ensurepip missing: Debian's python3-venv not installed) is made again.
if [ ! -x "$VENV/bin/pip" ]; then
    rm -rf "$VENV"
    if ! "$PYTHON" -m venv "$VENV"; then
        rm -rf "$VENV"
        echo "error: $PYTHON cannot make a virtual environment; on Debian: sudo apt-get install -y python3-venv" >&2
        exit 2
    fi
fi
stamp="$VENV/.installed-$(cat "$ROOT/pyproject.toml" "$ROOT/constraints.txt" | sha1sum | cut -c1-12)"
if [ ! -f "$stamp" ]; then
    "$VENV/bin/pip" install --quiet --upgrade pip
    # package-dir "." (pyproject.toml) makes the editable install a .pth file naming this folder:
    # new modules and packages need no reinstall, and setuptools has nothing to warn about.
    "$VENV/bin/pip" install --quiet --constraint "$ROOT/constraints.txt" -e "$ROOT[test,rocksdb,mssql]" \
        --config-settings editable_mode=lenient
    rm -f "$VENV"/.installed-* && touch "$stamp"
fi
