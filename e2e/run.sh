#!/usr/bin/env bash
# Real-client end-to-end test: the official MCP TypeScript SDK runs its own
# OAuth flow (discovery, DCR, PKCE, refresh) against the Bridgekeeper binary.
#
#   BK_BIN=/path/to/bridgekeeper e2e/run.sh
#
# BK_BIN defaults to target/debug/bridgekeeper in this repository; build it
# first (cargo build). Needs Node.js >= 20 and npm (the npm registry is used
# once, to install e2e/ts's locked dependencies).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo_root="$(cd "$here/.." && pwd)"

BK_BIN="${BK_BIN:-$repo_root/target/debug/bridgekeeper}"
case "$BK_BIN" in
  /*) ;;
  *) BK_BIN="$PWD/$BK_BIN" ;; # relative to the caller's directory
esac
if [[ ! -x "$BK_BIN" ]]; then
  echo "e2e: server binary not found or not executable: $BK_BIN (run cargo build, or set BK_BIN)" >&2
  exit 1
fi
export BK_BIN

command -v node >/dev/null || { echo "e2e: node is not installed" >&2; exit 1; }
node_major="$(node -p 'process.versions.node.split(".")[0]')"
if (( node_major < 20 )); then
  echo "e2e: Node.js >= 20 is required (found $(node --version))" >&2
  exit 1
fi

cd "$here/ts"

# Install the locked dependencies when node_modules is missing or older than the lock.
stamp="node_modules/.e2e-lock-stamp"
if [[ ! -f "$stamp" ]] || ! cmp -s package-lock.json "$stamp"; then
  npm ci --no-audit --no-fund
  cp package-lock.json "$stamp"
fi

echo "== e2e: TypeScript SDK (OAuth flow, tools, refresh)"
node --test --test-concurrency=1 ./*.test.mjs

echo "== e2e: MCP conformance suite"
"$here/conformance/run.sh"

echo "== e2e: MCP conformance suite, protocol revision 2026-07-28 (stateless)"
"$here/conformance/v2026/run.sh"

echo "== e2e: TypeScript SDK v2 client, protocol revision 2026-07-28 (CIMD, stateless, MRTR, listen)"
"$here/sdk-v2/run.sh"

echo "== e2e: connections broker against a real OAuth server (oidc-provider: login, consent, expiry, rotation, revocation)"
"$here/connections/run.sh"

echo "== e2e: connecting OAuth-protected MCP servers (MCP conformance suite, client auth scenarios, Bridgekeeper as the client)"
"$here/mcp-auth/run.sh"

echo "== e2e: Python SDK (OAuth flow, scope step-up)"
"$here/python/run.sh"

echo "== e2e: schemathesis over the REST API's OpenAPI document (no 5xx, documented answers)"
"$here/openapi/run.sh"

echo "== e2e: MCP Inspector CLI"
"$here/inspector/run.sh"

echo "== e2e: openid-client (confidential white-label client, ID token, userinfo)"
"$here/oidc/run.sh"

echo "== e2e: Chromium on the white-label login and consent pages"
"$here/browser/run.sh"

echo "== e2e: the README's commands, run as written (server, account, tokens, white-label client, connection, Inspector, keys)"
"$here/readme/run.sh"

echo "== e2e: the official openai client on LLM access (completions, tool calls, streaming, credits) with the scripted upstream"
"$here/llm/run.sh"
