#!/usr/bin/env bash
# Create .venv (if needed) and install docmem into it with the given extras.
# Usage: bash scripts/setup.sh [EXTRAS]   e.g. "formats,server" or "all,test"
set -euo pipefail
cd "$(dirname "$0")/.."
extras="${1:-formats,server}"
python="${PYTHON:-python3}"
if [ ! -x .venv/bin/python ]; then
    "$python" -m venv .venv
fi
.venv/bin/python -m pip install --quiet --disable-pip-version-check --upgrade pip
# The build backend warns about editable installs in general; nothing to act on here.
PYTHONWARNINGS=ignore .venv/bin/python -m pip install --quiet --disable-pip-version-check -e ".[${extras}]"
