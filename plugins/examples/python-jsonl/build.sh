#!/bin/sh
# Builds the Python encoder into a component against the host's WIT.
# Needs `pip install componentize-py`. Usage: ./build.sh OUT.wasm
set -eu
here=$(cd "$(dirname "$0")" && pwd)
cd "$here"
exec componentize-py -d ../../../wit -w encoder componentize app -o "${1:-python_jsonl.wasm}"
