#!/usr/bin/env bash
# Command (2) of the README, and what CI runs: install with the test extras, run the tests.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh "all,test"
export UNSTRUCTURED_DISABLE_NOTICE=1 DO_NOT_TRACK=1 HF_HUB_OFFLINE=1
exec .venv/bin/python -m pytest -q "$@"
