#!/usr/bin/env bash
# OpenID Connect end-to-end test: openid-client (v6, a certified relying-party
# library) as a confidential white-label client against the Bridgekeeper binary:
# discovery, PKCE + nonce + state + RFC 9207 iss, id_token validation (RS256 via
# JWKS), userinfo, refresh-token rotation.
#
#   BK_BIN=/path/to/bridgekeeper e2e/oidc/run.sh
#
# BK_BIN defaults to target/debug/bridgekeeper in this repository (cargo build
# first). Needs Node.js >= 20 and npm (the npm registry is used once, to install
# this folder's locked dependencies).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo_root="$(cd "$here/../.." && pwd)"

BK_BIN="${BK_BIN:-$repo_root/target/debug/bridgekeeper}"
case "$BK_BIN" in
  /*) ;;
  *) BK_BIN="$PWD/$BK_BIN" ;; # relative to the caller's directory
esac
if [[ ! -x "$BK_BIN" ]]; then
  echo "e2e/oidc: server binary not found or not executable: $BK_BIN (run cargo build, or set BK_BIN)" >&2
  exit 1
fi
export BK_BIN

command -v node >/dev/null || { echo "e2e/oidc: node is not installed" >&2; exit 1; }
node_major="$(node -p 'process.versions.node.split(".")[0]')"
if (( node_major < 20 )); then
  echo "e2e/oidc: Node.js >= 20 is required (found $(node --version))" >&2
  exit 1
fi

cd "$here"

# Install the locked dependencies when node_modules is missing or older than the lock.
stamp="node_modules/.e2e-lock-stamp"
if [[ ! -f "$stamp" ]] || ! cmp -s package-lock.json "$stamp"; then
  npm ci --no-audit --no-fund
  cp package-lock.json "$stamp"
fi

echo "== e2e: OpenID Connect with openid-client $(node -p 'require("./node_modules/openid-client/package.json").version')"
node --test --test-concurrency=1 ./*.test.mjs
