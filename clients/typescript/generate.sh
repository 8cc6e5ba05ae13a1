#!/usr/bin/env bash
# Regenerates src/gen from the repository's proto/ with the buf and protoc-gen-es pinned in
# package-lock.json. `.ci/run` runs it and fails when the committed files differ, so the client
# never drifts from the proto.
set -euo pipefail
cd "$(dirname "$0")"
[ -x node_modules/.bin/buf ] && [ -x node_modules/.bin/protoc-gen-es ] || npm ci --no-audit --no-fund
rm -rf src/gen
node_modules/.bin/buf generate ../../proto --template buf.gen.yaml
