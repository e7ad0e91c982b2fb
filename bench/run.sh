#!/usr/bin/env bash
# Bridgekeeper throughput bench. Run from the repository root:   bash bench/run.sh
#
# Prints the machine's RS256 signing rate, refresh-token grants/s at the real token endpoint for a
# public client and for a confidential client (client_secret_basic), the ratios refresh/sign and
# confidential/public, and authenticated MCP tools/list requests/s, then a summary block.
# See bench/README.md.
#
# Environment knobs (all optional):
#   BENCH_DURATION=10        seconds per wrk run
#   BENCH_THREADS=<cores>    wrk threads
#   BENCH_CONNS="16 64"      connection counts to try (each refresh run gets its own fresh sessions)
#   BENCH_SIGN_SECONDS=3     duration of the signing-rate measurement
#   BENCH_SKIP_BUILD=1       use the existing release binaries (server and sign_rate example) as is
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT=$PWD
TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
BIN=$TARGET_DIR/release/bridgekeeper
CORES=$(nproc)
DURATION=${BENCH_DURATION:-10}
THREADS=${BENCH_THREADS:-$CORES}
read -r -a CONNS <<<"${BENCH_CONNS:-16 64}"
SIGN_SECONDS=${BENCH_SIGN_SECONDS:-3}
CLK_TCK=$(getconf CLK_TCK)

for tool in wrk python3 cargo; do
  command -v "$tool" >/dev/null || { echo "bench: '$tool' not found (wrk: apt-get install -y wrk)" >&2; exit 1; }
done

WORK=$(mktemp -d "${TMPDIR:-/tmp}/bk-bench.XXXXXX")
SERVER_PID=""
cleanup() {
  if [[ -n $SERVER_PID ]] && kill -0 "$SERVER_PID" 2>/dev/null; then
    kill "$SERVER_PID" 2>/dev/null || true
    wait "$SERVER_PID" 2>/dev/null || true
  fi
  rm -rf "$WORK"
}
trap cleanup EXIT

declare -A R # results, printed in the summary

log() { printf '\n== %s\n' "$*"; }
val() { sed -n "s/^$1=//p" "$2" | tail -1; }
# utime+stime of a process (all its threads), in clock ticks
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
# context switches (voluntary + involuntary) summed over a process's threads
ctx_switches() { cat /proc/"$1"/task/*/status 2>/dev/null | awk '/ctxt_switches/{n+=$2} END{print n+0}'; }
# busy and total jiffies of the whole machine
machine_ticks() { awk '/^cpu /{idle=$5+$6; t=0; for(i=2;i<=NF;i++) t+=$i; print t-idle, t}' /proc/stat; }
# machine busy % over $1 seconds (nothing of ours running: background load)
busy_pct() {
  local b0 t0 b1 t1
  read -r b0 t0 < <(machine_ticks); sleep "$1"; read -r b1 t1 < <(machine_ticks)
  awk -v a="$b0" -v b="$b1" -v x="$t0" -v y="$t1" 'BEGIN{printf "%.0f", 100*(b-a)/(y-x)}'
}
check_background() { # warn when something else is eating CPU: every figure here is CPU-bound
  local pct; pct=$(busy_pct 2)
  echo "background_busy_pct=$pct"
  if (( pct > 10 )); then
    echo "bench: WARNING: the machine is ${pct}% busy before $1 (other processes); figures will be low:" >&2
    ps -eo pid,pcpu,etime,args --sort=-pcpu | head -4 | cut -c1-160 >&2
  fi
}

# ---------------------------------------------------------------------------------------------
if [[ -z ${BENCH_SKIP_BUILD:-} ]]; then
  log "building (cargo build --release -p bridgekeeper, and the sign_rate example)"
  cargo build --release -p bridgekeeper
  cargo build --release -p bridgekeeper-crypto --example sign_rate
fi
[[ -x $BIN ]] || { echo "bench: $BIN not found" >&2; exit 1; }

# ---------------------------------------------------------------------------------------------
log "RS256 signing rate (RSA-2048, aws-lc-rs, $CORES threads, ${SIGN_SECONDS}s)"
check_background "the signing-rate run" | tee "$WORK/bg.txt"
R[background_busy_pct]=$(val background_busy_pct "$WORK/bg.txt")
SIGN_BIN=$TARGET_DIR/release/examples/sign_rate
if [[ -n ${BENCH_SKIP_BUILD:-} && -x $SIGN_BIN ]]; then # as built: no cargo (the tree may not build now)
  "$SIGN_BIN" "$SIGN_SECONDS" | tee "$WORK/sign.txt"
else
  cargo run --quiet --release -p bridgekeeper-crypto --example sign_rate -- "$SIGN_SECONDS" | tee "$WORK/sign.txt"
fi
R[sign_rate_per_s]=$(val sign_rate_per_s "$WORK/sign.txt")

# ---------------------------------------------------------------------------------------------
log "starting the server"
mkdir -p "$WORK/data"
BRIDGEKEEPER_LOG_FORMAT=json BRIDGEKEEPER_LOG_LEVEL=info \
BRIDGEKEEPER_LIMITS__REGISTRATIONS_PER_MINUTE=1000 \
BRIDGEKEEPER_MCP__RATE_LIMIT_PER_MINUTE=4000000000 \
  "$BIN" serve --listen 127.0.0.1:0 --data-dir "$WORK/data" >"$WORK/server.log" 2>&1 &
SERVER_PID=$!
BASE=""
for _ in $(seq 1 300); do
  BASE=$(python3 - "$WORK/server.log" <<'EOF'
import json, sys
for line in open(sys.argv[1], errors="replace"):
    try:
        ev = json.loads(line)
    except ValueError:
        continue
    f = ev.get("fields", {})
    if f.get("message") == "listening" or ev.get("message") == "listening":
        print(f.get("issuer") or ev.get("issuer") or "")
        break
EOF
)
  [[ -n $BASE ]] && break
  kill -0 "$SERVER_PID" 2>/dev/null || { echo "bench: server exited:" >&2; cat "$WORK/server.log" >&2; exit 1; }
  sleep 0.1
done
[[ -n $BASE ]] || { echo "bench: no 'listening' line after 30s:" >&2; cat "$WORK/server.log" >&2; exit 1; }
echo "server pid $SERVER_PID at $BASE (data and log in $WORK)"

# ---------------------------------------------------------------------------------------------
# Each refresh run needs fresh sessions (the chains left in a finished wrk run are gone):
# 2 sessions per connection, so every thread holds more sessions than it has connections.
SESSIONS=0
for c in "${CONNS[@]}"; do SESSIONS=$((SESSIONS + 2 * c)); done
log "creating an operator token (admin token create, same data dir as the server)"
"$BIN" admin token create --name bench --data-dir "$WORK/data" >"$WORK/operator_token.out" 2>&1 ||
  { cat "$WORK/operator_token.out" >&2; echo "bench: admin token create failed" >&2; exit 1; }
tail -1 "$WORK/operator_token.out" | tr -d '[:space:]' >"$WORK/operator_token.txt"
grep -q '^bko_' "$WORK/operator_token.txt" ||
  { cat "$WORK/operator_token.out" >&2; echo "bench: no bko_ token on the last line" >&2; exit 1; }
echo "operator token id $(head -1 "$WORK/operator_token.out")"

log "setting up $SESSIONS public + $SESSIONS confidential sessions (sign-up, DCR / operator API, authorization code + PKCE, code exchange)"
python3 bench/setup_tokens.py "$BASE" "$WORK" "$SESSIONS" \
  --confidential "$SESSIONS" --operator-token-file "$WORK/operator_token.txt"

log "opening an MCP session and checking one tools/list call"
python3 - "$BASE" "$WORK/access_token.txt" "$WORK/mcp_session.txt" <<'EOF'
import http.client, sys, urllib.parse
u = urllib.parse.urlsplit(sys.argv[1])
token = open(sys.argv[2]).read().strip()
hdrs = {"Authorization": "Bearer " + token, "Content-Type": "application/json",
        "Accept": "application/json, text/event-stream"}
c = http.client.HTTPConnection(u.hostname, u.port, timeout=10)
init = ('{"jsonrpc":"2.0","id":0,"method":"initialize","params":{"protocolVersion":"2025-11-25",'
        '"capabilities":{},"clientInfo":{"name":"bench","version":"1"}}}')
c.request("POST", "/mcp", body=init, headers=hdrs)
r = c.getresponse()
r.read()
sid = r.getheader("Mcp-Session-Id")
if r.status != 200 or not sid:
    print(f"bench: initialize failed: {r.status} {r.getheaders()}", file=sys.stderr)
    sys.exit(1)
open(sys.argv[3], "w").write(sid + "\n")
hdrs["Mcp-Session-Id"] = sid
hdrs["MCP-Protocol-Version"] = "2025-11-25"
body = '{"jsonrpc":"2.0","id":1,"method":"tools/list","params":{}}'
c.request("POST", "/mcp", body=body, headers=hdrs)
r = c.getresponse()
data = r.read()
print(f"POST /mcp tools/list -> {r.status} {r.getheader('Content-Type')} {len(data)} bytes: {data[:200]!r}")
if r.status != 200 or b'"tools"' not in data:
    print("bench: tools/list did not return a tool list", file=sys.stderr)
    print(f"response headers: {r.getheaders()}", file=sys.stderr)
    sys.exit(1)
EOF

# run_wrk NAME SCRIPT URL CONNS SCRIPT_ARGS... : runs wrk; records CPU used by the server, by wrk
# and by everything else on the machine, and the server's CPU time and context switches per request.
run_wrk() {
  local name=$1 script=$2 url=$3 conns=$4; shift 4
  local out=$WORK/$name.txt s0 s1 x0 x1 mb0 mt0 mb1 mt1 wrk_cpu
  s0=$(cpu_ticks "$SERVER_PID"); x0=$(ctx_switches "$SERVER_PID"); read -r mb0 mt0 < <(machine_ticks)
  local TIMEFORMAT='%U %S'
  { time wrk -t "$THREADS" -c "$conns" -d "${DURATION}s" --timeout 10s --latency -s "$script" "$url" -- "$@" \
      >"$out" 2>&1; } 2>"$WORK/$name.time" || { cat "$out" >&2; echo "bench: wrk failed" >&2; exit 1; }
  kill -0 "$SERVER_PID" 2>/dev/null || { cat "$out"; echo "bench: the server died during $name:" >&2; tail -20 "$WORK/server.log" >&2; exit 1; }
  s1=$(cpu_ticks "$SERVER_PID"); x1=$(ctx_switches "$SERVER_PID"); read -r mb1 mt1 < <(machine_ticks)
  wrk_cpu=$(awk '{print $1 + $2}' "$WORK/$name.time")
  cat "$out"
  local reqs
  reqs=$(sed -n 's/^ *\([0-9][0-9]*\) requests in .*/\1/p' "$out")
  awk -v s0="$s0" -v s1="$s1" -v hz="$CLK_TCK" -v d="$DURATION" -v w="$wrk_cpu" -v ncpu="$CORES" \
      -v mb0="$mb0" -v mb1="$mb1" -v mt0="$mt0" -v mt1="$mt1" -v x0="$x0" -v x1="$x1" -v n="${reqs:-0}" -v p="$name" '
    BEGIN {
      wall = (mt1 - mt0) / ncpu / hz            # seconds, from the machine counters
      srv = (s1 - s0) / hz                      # server CPU seconds
      busy = (mb1 - mb0) / hz                   # machine busy CPU seconds
      printf "%s_server_cpu_cores=%.2f\n", p, srv / wall
      printf "%s_wrk_cpu_cores=%.2f\n", p, w / wall
      o = (busy - srv - w) / wall; printf "%s_other_cpu_cores=%.2f\n", p, (o < 0 ? 0 : o)
      printf "%s_machine_busy_pct=%.0f\n", p, 100 * busy / (wall * ncpu)
      if (n > 0) {
        printf "%s_server_cpu_us_per_req=%.0f\n", p, 1e6 * srv / n
        printf "%s_server_ctx_switches_per_req=%.1f\n", p, (x1 - x0) / n
      }
    }' | tee -a "$out"
}
CPU_KEYS="server_cpu_cores wrk_cpu_cores other_cpu_cores machine_busy_pct server_cpu_us_per_req server_ctx_switches_per_req"

# ---------------------------------------------------------------------------------------------
# refresh_run PREFIX C SEEDS [BASIC_AUTH_FILE]: one refresh wrk run, results into R[PREFIX_cC_*].
REFRESH_KEYS="grants_per_s latency_p50_ms latency_p99_ms non200 non200_statuses starved 200_without_token socket_errors first_error"
refresh_run() {
  local p=$1 c=$2 seeds=$3 k; shift 3
  run_wrk "${p}_c$c" bench/refresh.lua "$BASE/api/v1/auth/token" "$c" "$seeds" "$THREADS" "$@"
  local f=$WORK/${p}_c$c.txt
  for k in $REFRESH_KEYS; do R[${p}_c${c}_$k]=$(val "refresh_$k" "$f"); done
  for k in $CPU_KEYS; do R[${p}_c${c}_$k]=$(val "${p}_c${c}_$k" "$f"); done
}
line=1
best_refresh=0 best_refresh_c=""
best_conf=0 best_conf_c=""
for c in "${CONNS[@]}"; do
  n=$((2 * c))
  sed -n "${line},$((line + n - 1))p" "$WORK/seeds.txt" >"$WORK/seeds_c$c.txt"
  sed -n "${line},$((line + n - 1))p" "$WORK/seeds_confidential.txt" >"$WORK/seeds_confidential_c$c.txt"
  line=$((line + n))
  log "refresh-token grants, public client: wrk -t$THREADS -c$c -d${DURATION}s ($n sessions)"
  refresh_run refresh "$c" "$WORK/seeds_c$c.txt"
  if awk -v a="${R[refresh_c${c}_grants_per_s]}" -v b="$best_refresh" 'BEGIN{exit !(a > b)}'; then
    best_refresh=${R[refresh_c${c}_grants_per_s]} best_refresh_c=$c
  fi
  log "refresh-token grants, confidential client (client_secret_basic): wrk -t$THREADS -c$c -d${DURATION}s ($n sessions)"
  refresh_run refresh_conf "$c" "$WORK/seeds_confidential_c$c.txt" "$WORK/basic_auth.txt"
  if awk -v a="${R[refresh_conf_c${c}_grants_per_s]}" -v b="$best_conf" 'BEGIN{exit !(a > b)}'; then
    best_conf=${R[refresh_conf_c${c}_grants_per_s]} best_conf_c=$c
  fi
  R[refresh_conf_c${c}_vs_public_ratio]=$(awk -v a="${R[refresh_conf_c${c}_grants_per_s]}" \
    -v b="${R[refresh_c${c}_grants_per_s]}" 'BEGIN{printf "%.3f", (b > 0 ? a/b : 0)}')
done

best_tl=0 best_tl_c=""
for c in "${CONNS[@]}"; do
  log "MCP tools/list: wrk -t$THREADS -c$c -d${DURATION}s"
  run_wrk "tools_list_c$c" bench/tools_list.lua "$BASE/mcp" "$c" "$WORK/access_token.txt" "$WORK/mcp_session.txt"
  f=$WORK/tools_list_c$c.txt
  for k in per_s latency_p50_ms latency_p99_ms http_errors socket_errors; do
    R[tools_list_c${c}_$k]=$(val "tools_list_$k" "$f")
  done
  for k in $CPU_KEYS; do R[tools_list_c${c}_$k]=$(val "tools_list_c${c}_$k" "$f"); done
  if awk -v a="${R[tools_list_c${c}_per_s]}" -v b="$best_tl" 'BEGIN{exit !(a > b)}'; then
    best_tl=${R[tools_list_c${c}_per_s]} best_tl_c=$c
  fi
done

# Warnings and errors the server logged after it started listening (the load must cause none).
sed -n '/"message":"listening"/,$p' "$WORK/server.log" | grep -E '"level":"(WARN|ERROR)"' >"$WORK/server_problems.log" || true
server_errors=$(grep -c '"level":"ERROR"' "$WORK/server_problems.log" || true)
server_warns=$(grep -c '"level":"WARN"' "$WORK/server_problems.log" || true)
if [[ -s $WORK/server_problems.log ]]; then
  log "server warnings/errors during the bench (first 5)"
  head -5 "$WORK/server_problems.log"
fi

# ---------------------------------------------------------------------------------------------
ratio=$(awk -v a="$best_refresh" -v b="${R[sign_rate_per_s]}" 'BEGIN{printf "%.3f", a/b}')
ratio_ok=$(awk -v r="$ratio" 'BEGIN{print (r >= 0.8) ? "yes" : "no"}')
conf_ratio=$(awk -v a="$best_conf" -v b="$best_refresh" 'BEGIN{printf "%.3f", (b > 0 ? a/b : 0)}')
conf_ratio_ok=$(awk -v r="$conf_ratio" 'BEGIN{print (r >= 0.7) ? "yes" : "no"}')
tl_ok=$(awk -v a="$best_tl" 'BEGIN{print (a >= 20000) ? "yes" : "no"}')
refresh_failures=0
for c in "${CONNS[@]}"; do
  refresh_failures=$((refresh_failures + ${R[refresh_c${c}_non200]:-0} + ${R[refresh_c${c}_200_without_token]:-0}))
done
conf_failures=0
for c in "${CONNS[@]}"; do
  conf_failures=$((conf_failures + ${R[refresh_conf_c${c}_non200]:-0} + ${R[refresh_conf_c${c}_200_without_token]:-0}))
done

echo
echo "==================== bench summary ===================="
echo "machine_cores=$CORES"
echo "wrk_threads=$THREADS"
echo "duration_s=$DURATION"
echo "background_busy_pct_before=${R[background_busy_pct]}"
echo "sign_rate_per_s=${R[sign_rate_per_s]}"
for c in "${CONNS[@]}"; do
  for k in grants_per_s latency_p50_ms latency_p99_ms non200 non200_statuses starved socket_errors $CPU_KEYS; do
    echo "refresh_c${c}_$k=${R[refresh_c${c}_$k]}"
  done
  [[ -n ${R[refresh_c${c}_first_error]} ]] && echo "refresh_c${c}_first_error=${R[refresh_c${c}_first_error]}"
done
for c in "${CONNS[@]}"; do
  for k in grants_per_s vs_public_ratio latency_p50_ms latency_p99_ms non200 non200_statuses starved socket_errors $CPU_KEYS; do
    echo "refresh_conf_c${c}_$k=${R[refresh_conf_c${c}_$k]}"
  done
  [[ -n ${R[refresh_conf_c${c}_first_error]} ]] && echo "refresh_conf_c${c}_first_error=${R[refresh_conf_c${c}_first_error]}"
done
for c in "${CONNS[@]}"; do
  for k in per_s latency_p50_ms latency_p99_ms http_errors socket_errors $CPU_KEYS; do
    echo "tools_list_c${c}_$k=${R[tools_list_c${c}_$k]}"
  done
done
echo "server_log_errors=$server_errors"
echo "server_log_warnings=$server_warns"
echo "--- headline (best connection count) ---"
echo "refresh_grants_per_s=$best_refresh (c=$best_refresh_c)"
echo "refresh_failures=$refresh_failures"
echo "refresh_vs_sign_ratio=$ratio (target >= 0.8: $ratio_ok)"
echo "refresh_confidential_grants_per_s=$best_conf (c=$best_conf_c; client_secret_basic)"
echo "refresh_confidential_failures=$conf_failures"
echo "refresh_confidential_vs_public_ratio=$conf_ratio (target >= 0.70: $conf_ratio_ok)"
echo "tools_list_per_s=$best_tl (c=$best_tl_c; target >= 20000: $tl_ok)"
echo "======================================================="
