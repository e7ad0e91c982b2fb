#!/usr/bin/env bash
# The gateway's cost, in one run against a fast upstream MCP server written with the official Rust SDK
# (rmcp, stateless, JSON answers: bench/gateway), so that the gateway is what is measured:
#   - tools/call straight to the upstream, then through Bridgekeeper's /mcp (the tenant's upstream
#     tool `fast_echo`, its key from the vault), at a fixed rate: p50/p99 and the overhead;
#   - the same without a rate limit (CONNS workers): requests/s and the gateway/direct ratio;
#   - tools/list for a tenant with 20 connections of a 50-tool upstream, served from the cache.
# Release builds; respects CARGO_TARGET_DIR (the bench tools build in $BENCH_TOOLS_TARGET, default
# ~/.cache/bk-bench-target). Knobs: BENCH_RATE=300 BENCH_SECONDS=10 BENCH_CONNS=16 BENCH_SKIP_BUILD=1.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT=$PWD
TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
TOOLS_TARGET=${BENCH_TOOLS_TARGET:-$HOME/.cache/bk-bench-target}
RATE=${BENCH_RATE:-300}
SECONDS_EACH=${BENCH_SECONDS:-10}
CONNS=${BENCH_CONNS:-16}
if [ -z "${BENCH_SKIP_BUILD:-}" ]; then
  cargo build --release --locked -p bridgekeeper
  (cd bench/gateway && CARGO_TARGET_DIR=$TOOLS_TARGET cargo build --release --locked)
fi
BIN=$TARGET_DIR/release/bridgekeeper
TOOL=$TOOLS_TARGET/release/gateway-bench
WORK=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$WORK"; }
trap cleanup EXIT
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

UP=$(free_port); UP50=$(free_port); BK=$(free_port)
"$TOOL" upstream "$UP" 0 2>"$WORK/up.log" & pids+=($!)
"$TOOL" upstream "$UP50" 49 2>"$WORK/up50.log" & pids+=($!)
P=BRIDGEKEEPER_CONNECTIONS__PROVIDERS
env BRIDGEKEEPER_LOG_LEVEL=warn \
  ${P}__FAST__NAME=Fast ${P}__FAST__AUTH=api_key ${P}__FAST__TOOLS__KIND=mcp ${P}__FAST__TOOLS__URL="http://127.0.0.1:$UP/mcp" \
  ${P}__WIDE__NAME=Wide ${P}__WIDE__AUTH=api_key ${P}__WIDE__TOOLS__KIND=mcp ${P}__WIDE__TOOLS__URL="http://127.0.0.1:$UP50/mcp" \
  BRIDGEKEEPER_CONNECTIONS__ALLOW_PRIVATE_ADDRESSES=true BRIDGEKEEPER_CONNECTIONS__ALLOW_HTTP_LOOPBACK=true \
  BRIDGEKEEPER_MCP__RATE_LIMIT_PER_MINUTE=100000000 BRIDGEKEEPER_LIMITS__CONNECTS_PER_MINUTE=1000 \
  "$BIN" serve --listen "127.0.0.1:$BK" --data-dir "$WORK/data" >"$WORK/bk.log" 2>&1 & pids+=($!)
for _ in $(seq 1 100); do curl -fsS "http://127.0.0.1:$BK/ready" >/dev/null 2>&1 && break; sleep 0.1; done
BASE="http://127.0.0.1:$BK"
# Two tenants: one with the fast upstream, one with 20 connections of the 50-tool upstream.
BENCH_SCOPE="connections universal-mcp-read-write" python3 bench/setup_tokens.py "$BASE" "$WORK/a" 1 >/dev/null
BENCH_SCOPE="connections universal-mcp-read-write" python3 bench/setup_tokens.py "$BASE" "$WORK/b" 1 >/dev/null
TA=$(cat "$WORK/a/access_token.txt"); TB=$(cat "$WORK/b/access_token.txt")
connect() { curl -fsS -o /dev/null -X POST "$BASE/api/v1/connections/initiate" -H "Authorization: Bearer $1" -H 'Content-Type: application/json' \
  -d "{\"providerId\":\"$2\",\"redirectUrl\":\"http://127.0.0.1:9/cb\",\"providerParams\":{\"apiKey\":\"k-$RANDOM\"}}"; }
connect "$TA" fast
for _ in $(seq 1 20); do connect "$TB" wide; done
sleep 2.5 # the tenants' connections are read again after 2 s

call() { echo "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"tools/call\",\"params\":{\"name\":\"$1\",\"arguments\":{\"message\":\"hi\"}}}"; }
LIST='{"jsonrpc":"2.0","id":1,"method":"tools/list","params":{}}'
# Warm up both paths (connections, clients, listings).
"$TOOL" load "$BASE/mcp" "$(call fast_echo)" 0 2 4 "$TA" >/dev/null
"$TOOL" load "http://127.0.0.1:$UP/mcp" "$(call echo)" 0 2 4 >/dev/null
"$TOOL" load "$BASE/mcp" "$LIST" 0 2 4 "$TB" >/dev/null

field() { sed -n "s/.*$1=\([0-9.]*\).*/\1/p" <<<"$2"; }
echo "== tools/call at $RATE/s for ${SECONDS_EACH}s ($CONNS workers)"
D=$("$TOOL" load "http://127.0.0.1:$UP/mcp" "$(call echo)" "$RATE" "$SECONDS_EACH" "$CONNS"); echo "direct:  $D"
G=$("$TOOL" load "$BASE/mcp" "$(call fast_echo)" "$RATE" "$SECONDS_EACH" "$CONNS" "$TA"); echo "gateway: $G"
echo "overhead p50: $(( $(field p50_us "$G") - $(field p50_us "$D") )) µs   p99: $(( $(field p99_us "$G") - $(field p99_us "$D") )) µs   (targets: ≤ 200 µs, ≤ 1000 µs)"
echo "== tools/call, as fast as $CONNS workers can, ${SECONDS_EACH}s"
D=$("$TOOL" load "http://127.0.0.1:$UP/mcp" "$(call echo)" 0 "$SECONDS_EACH" "$CONNS"); echo "direct:  $D"
G=$("$TOOL" load "$BASE/mcp" "$(call fast_echo)" 0 "$SECONDS_EACH" "$CONNS" "$TA"); echo "gateway: $G"
python3 -c "print('throughput ratio gateway/direct: %.2f (target ≥ 0.7)' % ($(field rps "$G") / $(field rps "$D")))"
echo "== tools/list for a tenant with 20 connections × 50 tools (from the cache), ${SECONDS_EACH}s"
L=$("$TOOL" load "$BASE/mcp" "$LIST" 0 "$SECONDS_EACH" "$CONNS" "$TB"); echo "gateway: $L   (target ≥ 20000 rps)"
