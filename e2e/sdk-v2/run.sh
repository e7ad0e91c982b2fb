#!/usr/bin/env bash
# The official MCP TypeScript SDK v2 client (@modelcontextprotocol/client, pinned) against the
# Bridgekeeper binary under protocol revision 2026-07-28 (stateless): OAuth from a bare /mcp URL
# with a Client ID Metadata Document as the client's identity (served over HTTPS by the test,
# from a throwaway CA the binary is told to trust), then server/discover, tools/list and
# tools/call; the restrict-access (multi round-trip elicitation) and subscriptions/listen tests
# run when the binary offers the restrict-access tool, and are reported skipped otherwise.
#
#   BK_BIN=/abs/path/to/bridgekeeper e2e/sdk-v2/run.sh
#
# BK_BIN defaults to target/debug/bridgekeeper in this repository (build it first: cargo build).
# Needs Node.js >= 20, npm (the registry is used once, to install the locked dependencies) and
# the openssl CLI. Reuses ../ts/lib (server, browser, OAuth provider).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo_root="$(cd "$here/../.." && pwd)"

BK_BIN="${BK_BIN:-$repo_root/target/debug/bridgekeeper}"
case "$BK_BIN" in
  /*) ;;
  *) BK_BIN="$PWD/$BK_BIN" ;; # relative to the caller's directory
esac
if [[ ! -x "$BK_BIN" ]]; then
  echo "sdk-v2: server binary not found or not executable: $BK_BIN (run cargo build, or set BK_BIN)" >&2
  exit 1
fi
export BK_BIN

command -v node >/dev/null || { echo "sdk-v2: node is not installed" >&2; exit 1; }
command -v openssl >/dev/null || { echo "sdk-v2: the openssl CLI is not installed" >&2; exit 1; }
node_major="$(node -p 'process.versions.node.split(".")[0]')"
if (( node_major < 20 )); then
  echo "sdk-v2: Node.js >= 20 is required (found $(node --version))" >&2
  exit 1
fi

cd "$here"

# Install the locked dependencies when node_modules is missing or older than the lock.
stamp="node_modules/.e2e-lock-stamp"
if [[ ! -f "$stamp" ]] || ! cmp -s package-lock.json "$stamp"; then
  npm ci --no-audit --no-fund --loglevel=error
  cp package-lock.json "$stamp"
fi

node --test --test-concurrency=1 ./*.test.mjs
