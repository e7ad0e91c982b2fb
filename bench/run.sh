#!/usr/bin/env bash
# Bridgekeeper throughput bench. Run from the repository root:   bash bench/run.sh
#
# Prints the machine's RS256 signing rate, refresh-token grants/s at the real token endpoint for a
# public client and for a confidential client (client_secret_basic), the ratios refresh/sign and
# confidential/public, refresh grants/s for bearer vs DPoP-bound refresh tokens and their ratio
# (one Node.js load generator for both: wrk cannot sign DPoP proofs), authenticated MCP tools/list
# and tools/call (whoami) requests/s, the tools/call latency at a fixed request rate (oha), and
# tools/call requests/s with the audit log on and off (a second server with
# BRIDGEKEEPER_AUDIT__ENABLED=false), then a summary block.
# See bench/README.md.
#
# Environment knobs (all optional):
#   BENCH_DURATION=10        seconds per wrk run
#   BENCH_THREADS=<cores>    wrk threads
#   BENCH_CONNS="16 64"      connection counts to try (each refresh run gets its own fresh sessions)
#   BENCH_SIGN_SECONDS=3     duration of the signing-rate measurement
#   BENCH_SKIP_BUILD=1       use the existing release binaries (server and sign_rate example) as is
#                            (and do not cargo-install oha when it is missing: skip the latency run)
#   BENCH_RATE=5000          requests/s of the fixed-rate tools/call latency run
#   BENCH_RATE_SECONDS=10    its duration
#   BENCH_RATE_CONNS=16      its connections (enough that a slow answer does not hold back the rate)
#   BENCH_AUDIT_ROUNDS=2     rounds of the audit on/off comparison (each: one wrk run per server)
#   BENCH_DPOP_CONNS=16      connections (and grant chains per kind) of the bearer vs DPoP refresh runs
#   BENCH_DPOP_SECONDS=8     seconds per bearer or DPoP refresh run
#   BENCH_DPOP_ROUNDS=2      rounds of that comparison (each: one bearer run and one DPoP run)
#   BENCH_NODE=node          Node.js >= 20 for that comparison (skipped, with a warning, without one)
#   BENCH_LLM_CONNS=16       connections of the chat-completions proxy run (bench/llm_proxy.mjs)
#   BENCH_LLM_SECONDS=5      seconds per run of it
#   BENCH_LLM_ROUNDS=2       rounds of it (each: one direct run and one through Bridgekeeper)
#   BENCH_AGENT_STEPS="1 4 8"  steps per use-agent run of the agent-loop bench (bench/agent_loop.mjs)
#   BENCH_AGENT_ITERATIONS=20  runs per round of it (one at a time)
#   BENCH_AGENT_ROUNDS=2       rounds of it (each: the use-agent runs and the by-hand runs)
#   BENCH_OHA=/path/to/oha   oha binary (default: bench/.tools/bin/oha, ~/.cargo/bin/oha, PATH;
#                            if none, `cargo install oha --locked --root bench/.tools`)
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
RATE=${BENCH_RATE:-5000}
RATE_SECONDS=${BENCH_RATE_SECONDS:-10}
RATE_CONNS=${BENCH_RATE_CONNS:-16}
AUDIT_ROUNDS=${BENCH_AUDIT_ROUNDS:-2}
CLK_TCK=$(getconf CLK_TCK)
DPOP_CONNS=${BENCH_DPOP_CONNS:-16}
DPOP_SECONDS=${BENCH_DPOP_SECONDS:-8}
DPOP_ROUNDS=${BENCH_DPOP_ROUNDS:-2}
NODE=${BENCH_NODE:-node}

for tool in wrk python3 cargo; do
  command -v "$tool" >/dev/null || { echo "bench: '$tool' not found (wrk: apt-get install -y wrk)" >&2; exit 1; }
done

WORK=$(mktemp -d "${TMPDIR:-/tmp}/bk-bench.XXXXXX")
SERVER_PID="" STARTED_PID=""
NOAUDIT_PID=""
cleanup() {
  local pid
  for pid in $SERVER_PID $NOAUDIT_PID $STARTED_PID; do # STARTED_PID: one that failed to start
    if kill -0 "$pid" 2>/dev/null; then
      kill "$pid" 2>/dev/null || true
      wait "$pid" 2>/dev/null || true
    fi
  done
  rm -rf "$WORK"
}
trap cleanup EXIT

declare -A R # results, printed in the summary

log() { printf '\n== %s\n' "$*"; }
val() { sed -n "s/^$1=//p" "$2" | tail -1; }
# utime+stime of a process (all its threads), in clock ticks
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
# utime+stime of a process's SQLite threads (sqlx runs each SQLite connection on a thread of its own).
# Never fails: under pipefail, a last thread that is not a SQLite worker (or one that ended while
# being read) would otherwise fail the pipeline and end the whole bench without a word.
db_ticks() {
  local t
  for t in /proc/"$1"/task/*; do
    if [[ $(cat "$t/comm" 2>/dev/null) == sqlx-sqlite-wor* ]]; then awk '{print $14 + $15}' "$t/stat" 2>/dev/null || true; fi
  done | awk '{n += $1} END{print n + 0}'
}
# context switches (voluntary + involuntary) summed over a process's threads (a thread that ends
# while being read is skipped, not a failure)
ctx_switches() { { cat /proc/"$1"/task/*/status 2>/dev/null || true; } | awk '/ctxt_switches/{n+=$2} END{print n+0}'; }
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
# start_server DATA_DIR LOG [VAR=VALUE...]: starts a release server on an ephemeral port with the
# bench environment (plus the given variables) and waits for its "listening" line. Sets STARTED_PID
# and STARTED_BASE (the issuer URL).
STARTED_PID="" STARTED_BASE=""
start_server() {
  local dir=$1 logf=$2 base="" pid; shift 2
  mkdir -p "$dir"
  env BRIDGEKEEPER_LOG_FORMAT=json BRIDGEKEEPER_LOG_LEVEL=info \
      BRIDGEKEEPER_LIMITS__REGISTRATIONS_PER_MINUTE=1000 \
      BRIDGEKEEPER_MCP__RATE_LIMIT_PER_MINUTE=4000000000 \
      "$@" "$BIN" serve --listen 127.0.0.1:0 --data-dir "$dir" >"$logf" 2>&1 &
  pid=$!
  STARTED_PID=$pid
  for _ in $(seq 1 300); do
    base=$(python3 - "$logf" <<'EOF'
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
    [[ -n $base ]] && break
    kill -0 "$pid" 2>/dev/null || { echo "bench: server exited:" >&2; cat "$logf" >&2; exit 1; }
    sleep 0.1
  done
  [[ -n $base ]] || { echo "bench: no 'listening' line after 30s:" >&2; cat "$logf" >&2; exit 1; }
  STARTED_BASE=$base
}

# wait_idle PID...: waits (at most 15 s each) until each process uses < 5% of a core over 1 s, so
# that work left from one run (the audit writer draining its buffer) does not land in the next.
wait_idle() {
  local pid a b
  for pid in "$@"; do
    for _ in $(seq 1 15); do
      a=$(cpu_ticks "$pid"); sleep 1; b=$(cpu_ticks "$pid")
      (( (b - a) * 100 < 5 * CLK_TCK )) && break
    done
  done
}

log "starting the server"
start_server "$WORK/data" "$WORK/server.log"
SERVER_PID=$STARTED_PID BASE=$STARTED_BASE
TARGET_PID=$SERVER_PID TARGET_LOG=$WORK/server.log # the server run_wrk measures
echo "server pid $SERVER_PID at $BASE (data and log in $WORK)"

# ---------------------------------------------------------------------------------------------
# Each refresh run needs fresh sessions (the chains left in a finished wrk run are gone):
# 2 sessions per connection, so every thread holds more sessions than it has connections.
SESSIONS=0
for c in "${CONNS[@]}"; do SESSIONS=$((SESSIONS + 2 * c)); done
log "creating an operator token (admin token create, same data dir as the server)"
"$BIN" admin token create --name bench --data-dir "$WORK/data" >"$WORK/operator_token.out" 2>&1 ||
  { cat "$WORK/operator_token.out" >&2; echo "bench: admin token create failed" >&2; exit 1; }
grep -o 'bko_[A-Za-z0-9_-]*' "$WORK/operator_token.out" | tail -1 >"$WORK/operator_token.txt"
grep -q '^bko_' "$WORK/operator_token.txt" ||
  { cat "$WORK/operator_token.out" >&2; echo "bench: no bko_ token printed" >&2; exit 1; }
echo "operator token $(grep '^id: ' "$WORK/operator_token.out")"

log "setting up $SESSIONS public + $SESSIONS confidential sessions (sign-up, DCR / operator API, authorization code + PKCE, code exchange)"
python3 bench/setup_tokens.py "$BASE" "$WORK" "$SESSIONS" \
  --confidential "$SESSIONS" --operator-token-file "$WORK/operator_token.txt"

log "opening an MCP session and checking one tools/list and one tools/call whoami"
python3 bench/mcp_check.py init "$BASE" "$WORK/access_token.txt" "$WORK/mcp_session.txt"

# run_wrk NAME SCRIPT URL CONNS SCRIPT_ARGS... : runs wrk; records CPU used by the server
# ($TARGET_PID), by wrk and by everything else on the machine, and the server's CPU time and
# context switches per request.
run_wrk() {
  local name=$1 script=$2 url=$3 conns=$4; shift 4
  local out=$WORK/$name.txt s0 s1 x0 x1 d0 d1 mb0 mt0 mb1 mt1 wrk_cpu
  s0=$(cpu_ticks "$TARGET_PID"); x0=$(ctx_switches "$TARGET_PID"); d0=$(db_ticks "$TARGET_PID")
  read -r mb0 mt0 < <(machine_ticks)
  local TIMEFORMAT='%U %S'
  { time wrk -t "$THREADS" -c "$conns" -d "${DURATION}s" --timeout 10s --latency -s "$script" "$url" -- "$@" \
      >"$out" 2>&1; } 2>"$WORK/$name.time" || { cat "$out" >&2; echo "bench: wrk failed" >&2; exit 1; }
  kill -0 "$TARGET_PID" 2>/dev/null || { cat "$out"; echo "bench: the server died during $name:" >&2; tail -20 "$TARGET_LOG" >&2; exit 1; }
  s1=$(cpu_ticks "$TARGET_PID"); x1=$(ctx_switches "$TARGET_PID"); d1=$(db_ticks "$TARGET_PID")
  read -r mb1 mt1 < <(machine_ticks)
  wrk_cpu=$(awk '{print $1 + $2}' "$WORK/$name.time")
  cat "$out"
  local reqs
  reqs=$(sed -n 's/^ *\([0-9][0-9]*\) requests in .*/\1/p' "$out")
  awk -v s0="$s0" -v s1="$s1" -v hz="$CLK_TCK" -v d="$DURATION" -v w="$wrk_cpu" -v ncpu="$CORES" \
      -v mb0="$mb0" -v mb1="$mb1" -v mt0="$mt0" -v mt1="$mt1" -v x0="$x0" -v x1="$x1" -v n="${reqs:-0}" -v p="$name" \
      -v d0="$d0" -v d1="$d1" '
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
        printf "%s_db_threads_cpu_us_per_req=%.0f\n", p, 1e6 * (d1 - d0) / hz / n
        printf "%s_wrk_cpu_us_per_req=%.0f\n", p, 1e6 * w / n
      }
    }' | tee -a "$out"
}
CPU_KEYS="server_cpu_cores wrk_cpu_cores other_cpu_cores machine_busy_pct server_cpu_us_per_req server_ctx_switches_per_req db_threads_cpu_us_per_req wrk_cpu_us_per_req"

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

# ---------------------------------------------------------------------------------------------
# Refresh grants with DPoP-bound refresh tokens (RFC 9449) next to bearer ones (issue 19). A
# DPoP-bound refresh needs a fresh ES256 proof per request, which wrk's Lua cannot sign, so both
# kinds run on one other load generator (bench/dpop_refresh.mjs, Node.js standard library only)
# in alternating runs: the ratio compares like with like. Fresh codes from setup_tokens.py
# --codes-only (one public client): the generator redeems half without a proof, half with one.
DPOP_KEYS="bearer_grants_per_s bearer_runs_per_s bearer_latency_p50_ms bearer_latency_p99_ms bearer_server_cpu_us_per_grant bearer_client_cpu_us_per_grant bearer_server_cpu_cores bearer_client_cpu_cores bearer_machine_busy_pct bearer_failures bearer_first_error dpop_grants_per_s dpop_runs_per_s dpop_latency_p50_ms dpop_latency_p99_ms dpop_server_cpu_us_per_grant dpop_client_cpu_us_per_grant dpop_server_cpu_cores dpop_client_cpu_cores dpop_machine_busy_pct dpop_failures dpop_first_error dpop_vs_bearer_ratio dpop_vs_bearer_server_cpu_ratio"
node_major=$("$NODE" -p 'process.versions.node.split(".")[0]' 2>/dev/null || echo 0)
if (( node_major >= 20 )); then
  log "refresh-token grants, bearer vs DPoP-bound: $NODE bench/dpop_refresh.mjs, $DPOP_CONNS connections, ${DPOP_SECONDS}s per run, $DPOP_ROUNDS rounds"
  wait_idle $SERVER_PID
  python3 bench/setup_tokens.py "$BASE" "$WORK/dpop" $((2 * DPOP_CONNS)) --codes-only 2>"$WORK/dpop_setup.err" ||
    { cat "$WORK/dpop_setup.err" >&2; exit 1; }
  "$NODE" bench/dpop_refresh.mjs "$BASE" "$WORK/dpop/codes.txt" "$DPOP_CONNS" "$DPOP_SECONDS" "$DPOP_ROUNDS" \
    "$SERVER_PID" "$CLK_TCK" | tee "$WORK/dpop_refresh.txt" || { echo "bench: dpop_refresh.mjs failed" >&2; exit 1; }
  for k in $DPOP_KEYS; do R[dpop_refresh_$k]=$(val "dpop_refresh_$k" "$WORK/dpop_refresh.txt"); done
else
  echo "bench: no Node.js >= 20 ($NODE; BENCH_NODE=...): skipping the bearer vs DPoP refresh comparison" >&2
fi

# ---------------------------------------------------------------------------------------------
# Chat-completions proxy overhead (issue 20): bench/llm_proxy.mjs starts its own Bridgekeeper (this
# release binary, a temporary SQLite) offering one model on the scripted OpenAI-compatible server
# (e2e/lib/scripted-llm.mjs, its own process) and compares requests/s and latency through
# Bridgekeeper (auth, credit reservation and settlement, ledger row) with the same requests sent
# straight to the scripted server, in alternating runs.
LLM_KEYS="direct_per_s direct_latency_p50_ms direct_latency_p99_ms direct_failures proxied_per_s proxied_latency_p50_ms proxied_latency_p99_ms proxied_failures overhead_p50_ms proxied_vs_direct_ratio"
if (( node_major >= 20 )); then
  log "chat completions, through Bridgekeeper vs straight to the scripted upstream: $NODE bench/llm_proxy.mjs, ${BENCH_LLM_CONNS:-16} connections, ${BENCH_LLM_SECONDS:-5}s per run, ${BENCH_LLM_ROUNDS:-2} rounds"
  wait_idle $SERVER_PID
  "$NODE" bench/llm_proxy.mjs "$BIN" "${BENCH_LLM_CONNS:-16}" "${BENCH_LLM_SECONDS:-5}" "${BENCH_LLM_ROUNDS:-2}" \
    | tee "$WORK/llm_proxy.txt" || { echo "bench: llm_proxy.mjs failed" >&2; exit 1; }
  for k in $LLM_KEYS; do R[llm_proxy_$k]=$(val "llm_proxy_$k" "$WORK/llm_proxy.txt"); done
fi

# Agent-loop overhead per step (issue 20): bench/agent_loop.mjs starts its own Bridgekeeper (this
# release binary) with the scripted server in its own process, and compares use-agent runs of N
# steps (N-1 whoami calls, then an answer) with the same model bodies sent straight to the scripted
# server plus N-1 direct tools/call whoami, one at a time, in alternating rounds.
AGENT_STEPS=${BENCH_AGENT_STEPS:-1 4 8}
if (( node_major >= 20 )); then
  log "agent loop, use-agent of N steps vs the same model calls and tool calls by hand: $NODE bench/agent_loop.mjs, N in ($AGENT_STEPS), ${BENCH_AGENT_ITERATIONS:-20} runs x ${BENCH_AGENT_ROUNDS:-2} rounds"
  wait_idle $SERVER_PID
  "$NODE" bench/agent_loop.mjs "$BIN" "$AGENT_STEPS" "${BENCH_AGENT_ITERATIONS:-20}" "${BENCH_AGENT_ROUNDS:-2}" \
    | tee "$WORK/agent_loop.txt" || { echo "bench: agent_loop.mjs failed" >&2; exit 1; }
  for n in $AGENT_STEPS; do
    for k in agent_n${n}_ms_p50 baseline_n${n}_ms_p50 overhead_n${n}_ms_per_step agent_vs_baseline_n${n}_ratio; do
      R[agent_loop_$k]=$(val "agent_loop_$k" "$WORK/agent_loop.txt")
    done
  done
fi

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

# ---------------------------------------------------------------------------------------------
# tools_call_run NAME CONNS TOKEN_FILE SESSION_FILE DATA_DIR: one wrk tools/call whoami run against
# $TARGET_PID (after the servers are idle), results into R[NAME_*]. Also counts the audit events
# the run wrote (after waiting for the writer to drain): one per request, unless the audit log is
# off or its buffer overflowed (the server drops events, and logs it, rather than slow requests).
TC_KEYS="per_s latency_p50_ms latency_p99_ms http_errors socket_errors"
tools_call_run() {
  local name=$1 c=$2 tok=$3 sess=$4 dir=$5 k h0 h1 reqs
  wait_idle $SERVER_PID $NOAUDIT_PID
  h0=$(python3 bench/mcp_check.py audit-head "$dir")
  run_wrk "$name" bench/tools_call.lua "$TARGET_URL" "$c" "$tok" "$sess"
  local f=$WORK/$name.txt
  for k in $TC_KEYS; do R[${name}_$k]=$(val "tools_call_$k" "$f"); done
  for k in $CPU_KEYS; do R[${name}_$k]=$(val "${name}_$k" "$f"); done
  wait_idle "$TARGET_PID"
  h1=$(python3 bench/mcp_check.py audit-head "$dir")
  reqs=$(val tools_call_requests "$f")
  R[${name}_audit_events]=$((h1 - h0))
  R[${name}_requests]=${reqs:-0}
  R[${name}_audit_events_per_req]=$(awk -v a="$((h1 - h0))" -v n="${reqs:-0}" 'BEGIN{printf "%.3f", (n > 0 ? a/n : 0)}')
  echo "${name}_audit_events=${R[${name}_audit_events]} (${R[${name}_audit_events_per_req]} per request)"
  if (( h1 > h0 )); then python3 bench/mcp_check.py audit-count "$dir" "$h0" | sed "s/^/${name}_/"; fi
}

TARGET_URL=$BASE/mcp
best_tc=0 best_tc_c=""
for c in "${CONNS[@]}"; do
  log "MCP tools/call whoami (audit log on): wrk -t$THREADS -c$c -d${DURATION}s"
  tools_call_run "tools_call_c$c" "$c" "$WORK/access_token.txt" "$WORK/mcp_session.txt" "$WORK/data"
  if awk -v a="${R[tools_call_c${c}_per_s]}" -v b="$best_tc" 'BEGIN{exit !(a > b)}'; then
    best_tc=${R[tools_call_c${c}_per_s]} best_tc_c=$c
  fi
done

# The same two requests under MCP 2026-07-28 (issue 14): no session, the protocol version and the
# client's capabilities in every request's _meta; at the connection counts that did best above.
log "MCP 2026-07-28 (stateless): tools/list at c=$best_tl_c, tools/call whoami at c=$best_tc_c"
run_wrk "tools_list_2026" bench/tools_list.lua "$BASE/mcp" "$best_tl_c" "$WORK/access_token.txt" 2026
for k in per_s latency_p50_ms latency_p99_ms http_errors socket_errors; do
  R[tools_list_2026_$k]=$(val "tools_list_$k" "$WORK/tools_list_2026.txt")
done
tools_call_run "tools_call_2026" "$best_tc_c" "$WORK/access_token.txt" 2026 "$WORK/data"
R[tools_list_2026_vs_session_ratio]=$(awk -v a="${R[tools_list_2026_per_s]}" -v b="$best_tl" 'BEGIN{printf "%.3f", (b > 0 ? a/b : 0)}')
R[tools_call_2026_vs_session_ratio]=$(awk -v a="${R[tools_call_2026_per_s]}" -v b="$best_tc" 'BEGIN{printf "%.3f", (b > 0 ? a/b : 0)}')

# ---------------------------------------------------------------------------------------------
# Latency at a fixed rate: wrk is closed-loop (a slow answer delays the next request, so its
# percentiles hide queueing: coordinated omission). oha -q sends at a constant rate and, with
# --latency-correction, measures each request from when it was due, not from when it was sent.
OHA=${BENCH_OHA:-}
if [[ -z $OHA ]]; then
  for cand in "$ROOT/bench/.tools/bin/oha" "$HOME/.cargo/bin/oha" "$(command -v oha || true)"; do
    [[ -n $cand && -x $cand ]] && { OHA=$cand; break; }
  done
fi
if [[ -z $OHA && -z ${BENCH_SKIP_BUILD:-} ]]; then
  log "installing oha (cargo install oha --locked --root bench/.tools)"
  cargo install oha --locked --root "$ROOT/bench/.tools" && OHA=$ROOT/bench/.tools/bin/oha || true
fi
FR_KEYS="tool target_per_s achieved_per_s duration_s conns requests latency_p50_ms latency_p90_ms latency_p99_ms latency_p999_ms latency_max_ms non2xx errors"
if [[ -n $OHA && -x $OHA ]]; then
  log "MCP tools/call whoami at a fixed $RATE req/s for ${RATE_SECONDS}s ($OHA -q $RATE -c $RATE_CONNS --latency-correction)"
  wait_idle $SERVER_PID
  h0=$(python3 bench/mcp_check.py audit-head "$WORK/data")
  s0=$(cpu_ticks "$SERVER_PID"); read -r mb0 mt0 < <(machine_ticks)
  "$OHA" -z "${RATE_SECONDS}s" -q "$RATE" -c "$RATE_CONNS" --latency-correction -w --no-tui \
    --output-format json -m POST \
    -H "Authorization: Bearer $(cat "$WORK/access_token.txt")" \
    -H "Content-Type: application/json" \
    -H "Accept: application/json, text/event-stream" \
    -H "Mcp-Session-Id: $(cat "$WORK/mcp_session.txt")" \
    -H "MCP-Protocol-Version: 2025-11-25" \
    -H "X-Response-Format: json" \
    -d '{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"whoami","arguments":{}}}' \
    "$BASE/mcp" >"$WORK/fixed_rate.json" 2>"$WORK/fixed_rate.err" ||
    { cat "$WORK/fixed_rate.err" >&2; echo "bench: oha failed" >&2; exit 1; }
  s1=$(cpu_ticks "$SERVER_PID"); read -r mb1 mt1 < <(machine_ticks)
  python3 - "$WORK/fixed_rate.json" "$RATE" "$RATE_CONNS" "$("$OHA" --version | head -1)" <<'EOF' | tee "$WORK/fixed_rate.txt"
import json, sys
d = json.load(open(sys.argv[1]))
s, p = d["summary"], d.get("latencyPercentiles", {})
codes = {int(k): v for k, v in d.get("statusCodeDistribution", {}).items()}
errors = d.get("errorDistribution", {})
ms = lambda v: "%.3f" % (1000 * v) if v is not None else ""
print("fixed_rate_tool=" + sys.argv[4].replace(" ", "-"))
print("fixed_rate_target_per_s=" + sys.argv[2])
print("fixed_rate_achieved_per_s=%.1f" % s["requestsPerSec"])
print("fixed_rate_duration_s=%.1f" % s["total"])
print("fixed_rate_conns=" + sys.argv[3])
print("fixed_rate_requests=%d" % sum(codes.values()))
for k, key in (("p50", "p50"), ("p90", "p90"), ("p99", "p99"), ("p999", "p99.9")):
    print(f"fixed_rate_latency_{k}_ms=" + ms(p.get(key)))
print("fixed_rate_latency_max_ms=" + ms(s.get("slowest")))
print("fixed_rate_non2xx=%d" % sum(v for k, v in codes.items() if not 200 <= k < 300))
print("fixed_rate_errors=%d" % sum(errors.values()))
for k, v in list(errors.items())[:3]:
    print(f"fixed_rate_error: {v} x {k}")
EOF
  for k in $FR_KEYS; do R[fixed_rate_$k]=$(val "fixed_rate_$k" "$WORK/fixed_rate.txt"); done
  R[fixed_rate_server_cpu_cores]=$(awk -v a="$s0" -v b="$s1" -v x="$mt0" -v y="$mt1" -v n="$CORES" \
    'BEGIN{printf "%.2f", (b - a) / ((y - x) / n)}')
  R[fixed_rate_machine_busy_pct]=$(awk -v a="$mb0" -v b="$mb1" -v x="$mt0" -v y="$mt1" 'BEGIN{printf "%.0f", 100 * (b - a) / (y - x)}')
  echo "fixed_rate_server_cpu_cores=${R[fixed_rate_server_cpu_cores]}"
  echo "fixed_rate_machine_busy_pct=${R[fixed_rate_machine_busy_pct]}"
  wait_idle $SERVER_PID
  h1=$(python3 bench/mcp_check.py audit-head "$WORK/data")
  R[fixed_rate_audit_events_per_req]=$(awk -v a="$((h1 - h0))" -v n="${R[fixed_rate_requests]:-0}" \
    'BEGIN{printf "%.3f", (n > 0 ? a/n : 0)}')
  echo "fixed_rate_audit_events_per_req=${R[fixed_rate_audit_events_per_req]}"
else
  echo "bench: no oha (cargo install oha --locked --root bench/.tools, or BENCH_OHA=...): skipping the fixed-rate latency run" >&2
  R[fixed_rate_tool]=none
fi

# ---------------------------------------------------------------------------------------------
# Audit log on vs off: a second server with BRIDGEKEEPER_AUDIT__ENABLED=false, its own data dir and
# its own account, client, token and MCP session. The two servers are measured alternately (on,
# off, off, on, ...) at the tools/call connection count that did best, each after both are idle.
log "starting a second server with the audit log off (BRIDGEKEEPER_AUDIT__ENABLED=false)"
start_server "$WORK/noaudit" "$WORK/server_noaudit.log" BRIDGEKEEPER_AUDIT__ENABLED=false
NOAUDIT_PID=$STARTED_PID NOAUDIT_BASE=$STARTED_BASE
echo "server (audit off) pid $NOAUDIT_PID at $NOAUDIT_BASE"
mkdir -p "$WORK/noaudit_tokens"
python3 bench/setup_tokens.py "$NOAUDIT_BASE" "$WORK/noaudit_tokens" 1
python3 bench/mcp_check.py init "$NOAUDIT_BASE" "$WORK/noaudit_tokens/access_token.txt" "$WORK/noaudit_tokens/mcp_session.txt"

AUDIT_C=${best_tc_c:-${CONNS[0]}}
on_runs=() off_runs=()
for r in $(seq 1 "$AUDIT_ROUNDS"); do
  if (( r % 2 )); then order="on off"; else order="off on"; fi
  for side in $order; do
    log "audit $side, round $r: MCP tools/call whoami, wrk -t$THREADS -c$AUDIT_C -d${DURATION}s"
    if [[ $side == on ]]; then
      TARGET_PID=$SERVER_PID TARGET_LOG=$WORK/server.log TARGET_URL=$BASE/mcp
      tools_call_run "audit_on_r$r" "$AUDIT_C" "$WORK/access_token.txt" "$WORK/mcp_session.txt" "$WORK/data"
      on_runs+=("${R[audit_on_r${r}_per_s]}")
    else
      TARGET_PID=$NOAUDIT_PID TARGET_LOG=$WORK/server_noaudit.log TARGET_URL=$NOAUDIT_BASE/mcp
      tools_call_run "audit_off_r$r" "$AUDIT_C" "$WORK/noaudit_tokens/access_token.txt" \
        "$WORK/noaudit_tokens/mcp_session.txt" "$WORK/noaudit"
      off_runs+=("${R[audit_off_r${r}_per_s]}")
    fi
  done
done
TARGET_PID=$SERVER_PID TARGET_LOG=$WORK/server.log TARGET_URL=$BASE/mcp
mean() { printf '%s\n' "$@" | awk '{s+=$1; n++} END{printf "%.1f", (n ? s/n : 0)}'; }
mean3() { printf '%s\n' "$@" | awk '{s+=$1; n++} END{printf "%.3f", (n ? s/n : 0)}'; }
audit_on=$(mean "${on_runs[@]}") audit_off=$(mean "${off_runs[@]}")
audit_ratio=$(awk -v a="$audit_on" -v b="$audit_off" 'BEGIN{printf "%.3f", (b > 0 ? a/b : 0)}')
audit_ratio_ok=$(awk -v r="$audit_ratio" 'BEGIN{print (r >= 0.90) ? "yes" : "no"}')
audit_sum() { # audit_sum SIDE KEY: sum of R[audit_SIDE_rN_KEY] over the rounds
  local r t=0; for r in $(seq 1 "$AUDIT_ROUNDS"); do t=$((t + ${R[audit_$1_r${r}_$2]:-0})); done; echo "$t"
}
audit_mean() { # audit_mean SIDE KEY
  local r v=(); for r in $(seq 1 "$AUDIT_ROUNDS"); do v+=("${R[audit_$1_r${r}_$2]}"); done; mean3 "${v[@]}"
}
sed -n '/"message":"listening"/,$p' "$WORK/server_noaudit.log" | grep -E '"level":"(WARN|ERROR)"' |
  grep -v 'the audit log is disabled' >"$WORK/server_noaudit_problems.log" || true
noaudit_errors=$(grep -c '"level":"ERROR"' "$WORK/server_noaudit_problems.log" || true)
noaudit_warns=$(grep -c '"level":"WARN"' "$WORK/server_noaudit_problems.log" || true)
if [[ -s $WORK/server_noaudit_problems.log ]]; then
  log "audit-off server warnings/errors during the bench (first 5)"
  head -5 "$WORK/server_noaudit_problems.log"
fi

# Warnings and errors the server logged after it started listening (the load must cause none).
sed -n '/"message":"listening"/,$p' "$WORK/server.log" | grep -E '"level":"(WARN|ERROR)"' >"$WORK/server_problems.log" || true
server_errors=$(grep -c '"level":"ERROR"' "$WORK/server_problems.log" || true)
server_warns=$(grep -c '"level":"WARN"' "$WORK/server_problems.log" || true)
# The audit log logs "audit buffer full: event dropped" when dropped_total reaches a power of two:
# the largest logged value is a lower bound of the events the server dropped.
audit_dropped_logged=$(sed -n 's/.*"dropped_total":\([0-9]*\).*/\1/p' "$WORK/server.log" | sort -n | tail -1)
audit_dropped_logged=${audit_dropped_logged:-0}
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
tc_ok=$(awk -v a="$best_tc" 'BEGIN{print (a >= 15000) ? "yes" : "no"}')
fr_ok=$(awk -v p="${R[fixed_rate_latency_p99_ms]:-}" -v a="${R[fixed_rate_achieved_per_s]:-0}" -v q="$RATE" \
  'BEGIN{if (p == "") print "not measured"; else print (p + 0 <= 2 && a >= 0.98 * q) ? "yes" : "no"}')
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
for c in "${CONNS[@]}"; do
  for k in $TC_KEYS audit_events_per_req $CPU_KEYS; do
    echo "tools_call_c${c}_$k=${R[tools_call_c${c}_$k]}"
  done
done
for k in per_s latency_p50_ms latency_p99_ms http_errors socket_errors vs_session_ratio; do
  echo "tools_list_2026_$k=${R[tools_list_2026_$k]}"
done
for k in $TC_KEYS audit_events_per_req vs_session_ratio; do
  echo "tools_call_2026_$k=${R[tools_call_2026_$k]}"
done
for k in $FR_KEYS server_cpu_cores machine_busy_pct audit_events_per_req; do
  [[ -n ${R[fixed_rate_$k]:-} ]] && echo "tools_call_fixed_rate_$k=${R[fixed_rate_$k]}"
done
echo "audit_conns=$AUDIT_C"
echo "audit_rounds=$AUDIT_ROUNDS"
echo "audit_on_runs_per_s=$(IFS=,; echo "${on_runs[*]}")"
echo "audit_off_runs_per_s=$(IFS=,; echo "${off_runs[*]}")"
for side in on off; do
  for k in latency_p50_ms latency_p99_ms server_cpu_cores server_cpu_us_per_req server_ctx_switches_per_req db_threads_cpu_us_per_req wrk_cpu_us_per_req; do
    echo "audit_${side}_$k=$(audit_mean "$side" "$k")"
  done
  echo "audit_${side}_http_errors=$(audit_sum "$side" http_errors)"
  echo "audit_${side}_socket_errors=$(audit_sum "$side" socket_errors)"
  echo "audit_${side}_events_written=$(audit_sum "$side" audit_events)"
done
audit_on_reqs=$(audit_sum on requests)
audit_on_events=$(audit_sum on audit_events)
audit_on_epr=$(awk -v a="$audit_on_events" -v n="$audit_on_reqs" 'BEGIN{printf "%.3f", (n > 0 ? a/n : 0)}')
echo "audit_on_requests=$audit_on_reqs"
echo "audit_on_events_per_req=$audit_on_epr"
echo "server_log_errors=$server_errors"
echo "server_log_warnings=$server_warns"
echo "server_audit_dropped_total_logged=$audit_dropped_logged"
echo "server_audit_off_log_errors=$noaudit_errors"
echo "server_audit_off_log_warnings=$noaudit_warns"
echo "--- headline (best connection count) ---"
echo "refresh_grants_per_s=$best_refresh (c=$best_refresh_c)"
echo "refresh_failures=$refresh_failures"
echo "refresh_vs_sign_ratio=$ratio (target >= 0.8: $ratio_ok)"
# Where a grant's CPU goes (best public run): one signature's CPU at the measured signing rate, the
# server's SQLite threads, the rest of the server, and wrk. The ceiling is the ratio this machine could
# reach if the server did nothing but sign (wrk still runs on the same cores).
awk -v cores="$CORES" -v sr="${R[sign_rate_per_s]}" -v srv="${R[refresh_c${best_refresh_c}_server_cpu_us_per_req]:-0}" \
    -v db="${R[refresh_c${best_refresh_c}_db_threads_cpu_us_per_req]:-0}" -v w="${R[refresh_c${best_refresh_c}_wrk_cpu_us_per_req]:-0}" \
    -v http="${R[tools_list_c${best_tl_c}_server_cpu_us_per_req]:-0}" '
  BEGIN {
    sign = (sr > 0 ? 1e6 * cores / sr : 0)
    printf "refresh_cpu_us_per_grant=sign %.0f + sqlite threads %.0f + rest of server %.0f + wrk %.0f\n", sign, db, srv - sign - db, w
    if (sign > 0) printf "refresh_vs_sign_ceiling_if_server_only_signed=%.3f\n", sign / (sign + w)
    # ...and if it did nothing but sign, its SQLite work, and the HTTP handling of an authenticated
    # tools/list (its whole server CPU per request: parsing, bearer check, JSON in and out).
    if (sign > 0) printf "refresh_vs_sign_ceiling_with_sqlite_and_http=%.3f (http floor %.0f us: tools/list)\n", sign / (sign + db + http + w), http
  }'
echo "refresh_confidential_grants_per_s=$best_conf (c=$best_conf_c; client_secret_basic)"
echo "refresh_confidential_failures=$conf_failures"
echo "refresh_confidential_vs_public_ratio=$conf_ratio (target >= 0.70: $conf_ratio_ok)"
if [[ -n ${R[dpop_refresh_dpop_vs_bearer_ratio]:-} ]]; then
  for k in $DPOP_KEYS; do
    [[ -n ${R[dpop_refresh_$k]:-} ]] && echo "refresh_dpop_cmp_$k=${R[dpop_refresh_$k]}"
  done
  # The same bearer grants through wrk (refresh.lua) at the same connection count, when measured:
  # how much the Node.js generator itself holds back compared with wrk.
  if [[ -n ${R[refresh_c${DPOP_CONNS}_grants_per_s]:-} ]]; then
    echo "refresh_dpop_cmp_bearer_vs_wrk_ratio=$(awk -v a="${R[dpop_refresh_bearer_grants_per_s]}" \
      -v b="${R[refresh_c${DPOP_CONNS}_grants_per_s]}" 'BEGIN{printf "%.3f", (b > 0 ? a/b : 0)}') (node bearer / wrk refresh_c$DPOP_CONNS)"
  fi
  echo "refresh_dpop_grants_per_s=${R[dpop_refresh_dpop_grants_per_s]} (bearer ${R[dpop_refresh_bearer_grants_per_s]}/s; c=$DPOP_CONNS, node bench/dpop_refresh.mjs, mean of $DPOP_ROUNDS runs each)"
  echo "refresh_dpop_failures=$(( ${R[dpop_refresh_bearer_failures]:-0} + ${R[dpop_refresh_dpop_failures]:-0} ))"
  echo "refresh_dpop_vs_bearer_ratio=${R[dpop_refresh_dpop_vs_bearer_ratio]} (server CPU per grant: ${R[dpop_refresh_dpop_vs_bearer_server_cpu_ratio]} x, ${R[dpop_refresh_dpop_server_cpu_us_per_grant]} vs ${R[dpop_refresh_bearer_server_cpu_us_per_grant]} us)"
else
  echo "refresh_dpop_vs_bearer_ratio= (not measured: no Node.js >= 20)"
fi
echo "tools_list_per_s=$best_tl (c=$best_tl_c; target >= 20000: $tl_ok)"
echo "tools_call_per_s=$best_tc (c=$best_tc_c; whoami, audit log on; target >= 15000: $tc_ok)"
if [[ -n ${R[fixed_rate_latency_p99_ms]:-} ]]; then
  echo "tools_call_fixed_rate_latency_p50_ms=${R[fixed_rate_latency_p50_ms]}"
  echo "tools_call_fixed_rate_latency_p99_ms=${R[fixed_rate_latency_p99_ms]} (${R[fixed_rate_achieved_per_s]}/s of $RATE/s for ${R[fixed_rate_duration_s]}s, c=$RATE_CONNS, ${R[fixed_rate_tool]} --latency-correction; target p99 <= 2: $fr_ok)"
else
  echo "tools_call_fixed_rate_latency_p99_ms= (not measured: no oha; target p99 <= 2: $fr_ok)"
fi
echo "audit_on_per_s=$audit_on"
echo "audit_off_per_s=$audit_off"
echo "audit_on_vs_off_ratio=$audit_ratio (c=$AUDIT_C, mean of $AUDIT_ROUNDS runs each; target >= 0.90: $audit_ratio_ok)"
# What an audit event costs (server CPU on vs off per request), how much of it is SQLite's own work
# (the audit-on server's SQLite threads: tools/call touches the database for nothing else), and the
# ratio this machine would show if an event cost only that SQLite work.
awk -v on="$(audit_mean on server_cpu_us_per_req)" -v off="$(audit_mean off server_cpu_us_per_req)" \
    -v db="$(audit_mean on db_threads_cpu_us_per_req)" -v w="$(audit_mean off wrk_cpu_us_per_req)" '
  BEGIN {
    printf "audit_event_cpu_us=%.1f (server CPU per request on %.1f - off %.1f; of it SQLite threads %.1f)\n", on - off, on, off, db
    if (off + w > 0) printf "audit_on_vs_off_ceiling_if_event_cost_only_sqlite=%.3f\n", (off + w) / (off + w + db)
  }'
echo "audit_on_events_per_req=$audit_on_epr (must be 1.000: $(awk -v r="$audit_on_epr" 'BEGIN{exit !(r >= 0.999)}' && echo "yes" || echo "no, the audit buffer overflowed and >= $audit_dropped_logged events were dropped"))"
if [[ -n ${R[llm_proxy_proxied_vs_direct_ratio]:-} ]]; then
  echo "llm_proxy_direct_per_s=${R[llm_proxy_direct_per_s]} (p50 ${R[llm_proxy_direct_latency_p50_ms]} ms, p99 ${R[llm_proxy_direct_latency_p99_ms]} ms)"
  echo "llm_proxy_proxied_per_s=${R[llm_proxy_proxied_per_s]} (p50 ${R[llm_proxy_proxied_latency_p50_ms]} ms, p99 ${R[llm_proxy_proxied_latency_p99_ms]} ms; failures ${R[llm_proxy_proxied_failures]})"
  echo "llm_proxy_overhead_p50_ms=${R[llm_proxy_overhead_p50_ms]}"
  echo "llm_proxy_proxied_vs_direct_ratio=${R[llm_proxy_proxied_vs_direct_ratio]} (node bench/llm_proxy.mjs, c=${BENCH_LLM_CONNS:-16})"
fi
for n in $AGENT_STEPS; do
  if [[ -n ${R[agent_loop_agent_vs_baseline_n${n}_ratio]:-} ]]; then
    echo "agent_loop_overhead_n${n}_ms_per_step=${R[agent_loop_overhead_n${n}_ms_per_step]} (use-agent p50 ${R[agent_loop_agent_n${n}_ms_p50]} ms vs by hand ${R[agent_loop_baseline_n${n}_ms_p50]} ms)"
    echo "agent_loop_agent_vs_baseline_n${n}_ratio=${R[agent_loop_agent_vs_baseline_n${n}_ratio]} (node bench/agent_loop.mjs, N=$n)"
  fi
done
echo "======================================================="
