#!/usr/bin/env bash
# Command (1) of the README: install, ingest sample_corpora/ on the embedded default
# (Qdrant Edge + the bundled offline embedder: no server, no network, no API key), search it.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh "formats,server"
export UNSTRUCTURED_DISABLE_NOTICE=1 DO_NOT_TRACK=1
# A 'sample' corpus left by a checkout that is gone (its sample_corpora folder no longer
# exists) is the demo's own: replace it, or ingest would refuse the same paths from here.
stale=$(.venv/bin/docmem corpora --json | .venv/bin/python -c '
import json, os, sys
for c in json.load(sys.stdin):
    roots = c.get("roots") or []
    if c["name"] == "sample" and roots and all(
            os.path.basename(r) == "sample_corpora" and not os.path.isdir(r) for r in roots):
        print(" ".join(roots))')
if [ -n "$stale" ]; then
    echo "replacing corpus 'sample' ingested from $stale (no longer there)"
    .venv/bin/docmem corpora --delete sample
fi
.venv/bin/docmem ingest sample_corpora --corpus sample
.venv/bin/docmem search "how do I fit a linear regression model" --corpus sample --page-size 3
.venv/bin/docmem search "write-ahead log checkpoint" --corpus sample --page-size 3 --page 2
