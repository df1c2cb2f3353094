#!/usr/bin/env bash
# Command (1) of the README: install, ingest sample_corpora/ on the embedded default
# (Qdrant Edge + the bundled offline embedder: no server, no network, no API key), search it.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh "formats,server"
export UNSTRUCTURED_DISABLE_NOTICE=1 DO_NOT_TRACK=1
# The demo's corpus is 'sample'. One left by a checkout that is gone (its sample_corpora no
# longer exists) is replaced; one another checkout still uses is left alone, and this one
# gets its own name (ingest refuses the same paths from a second root into one corpus).
here="$PWD/sample_corpora"
corpus=$(.venv/bin/docmem corpora --json | .venv/bin/python -c '
import hashlib, json, os, sys
here = sys.argv[1]
for c in json.load(sys.stdin):
    roots = c.get("roots") or []
    if c["name"] != "sample" or not roots or here in roots:
        continue
    if all(os.path.basename(r) == "sample_corpora" and not os.path.isdir(r) for r in roots):
        print("sample replace " + " ".join(roots))
    else:
        print("sample-" + hashlib.sha256(here.encode()).hexdigest()[:6])
    break
else:
    print("sample")' "$here")
if [ "${corpus#sample replace }" != "$corpus" ]; then
    echo "replacing corpus 'sample', ingested from ${corpus#sample replace } (no longer there)"
    .venv/bin/docmem corpora --delete sample
    corpus=sample
elif [ "$corpus" != sample ]; then
    echo "corpus 'sample' holds another checkout's sample_corpora: this one is '$corpus'"
fi
.venv/bin/docmem ingest sample_corpora --corpus "$corpus"
.venv/bin/docmem search "how do I fit a linear regression model" --corpus "$corpus" --page-size 3
.venv/bin/docmem search "write-ahead log checkpoint" --corpus "$corpus" --page-size 3 --page 2
