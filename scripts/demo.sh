#!/usr/bin/env bash
# Command (1) of the README: install, ingest sample_corpora/ on the embedded default
# (Qdrant Edge + the bundled offline embedder: no server, no network, no API key), search it.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh "formats,server"
export UNSTRUCTURED_DISABLE_NOTICE=1 DO_NOT_TRACK=1
.venv/bin/docmem ingest sample_corpora --corpus sample
.venv/bin/docmem search "how do I fit a linear regression model" --corpus sample --page-size 3
.venv/bin/docmem search "write-ahead log checkpoint" --corpus sample --page-size 3 --page 2
