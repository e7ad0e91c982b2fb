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
SUITE=sdk-v2
# shellcheck source=../lib/suite.sh
source "$here/../lib/suite.sh"
suite_bin

suite_node 20
command -v openssl >/dev/null || { echo "sdk-v2: the openssl CLI is not installed" >&2; exit 1; }

cd "$here"

suite_npm_ci "$here"

node --test --test-concurrency=1 ./*.test.mjs
