#!/usr/bin/env bash
# Bridgekeeper scaling bench: PostgreSQL next to SQLite, two instances next to one. Run from the
# repository root:   bash bench/scale.sh
#
# Measures refresh-token grants/s (POST /api/v1/auth/token, public client, bench/refresh.lua) and
# authenticated MCP tools/list/s inside one MCP session (bench/tools_list.lua) against
#   sqlite  one server on the embedded SQLite database (fresh --data-dir, as bench/run.sh does)
#   pg1     one server on PostgreSQL (a fresh schema bk_bench_<random>, dropped at the end)
#   pg2     two servers on that same schema, the load split across them (one wrk process each,
#           half the connections and half the wrk threads each, their own refresh seeds; the rates
#           are summed)
# then a summary block with the ratios PostgreSQL/SQLite and two/one instance, the server's and
# PostgreSQL's CPU per request, and whether the refresh grant is limited by RS256 signing or by
# the database. See bench/README.md.
#
# Environment knobs (all optional):
#   BENCH_DURATION=8         seconds per wrk run
#   BENCH_CONNS=16           connections per configuration (pg2: half on each instance; even)
#   BENCH_THREADS=<cores>    wrk threads per configuration (pg2: half per wrk process, at least 1)
#   BENCH_ROUNDS=2           rounds; round 1 runs sqlite, pg1, pg2, round 2 the reverse, ...;
#                            the summary gives the mean of the rounds and each run
#   BENCH_SIGN_SECONDS=3     duration of the signing-rate measurement
#   BENCH_SKIP_BUILD=1       use target/release/bridgekeeper and examples/sign_rate as they are
#   BENCH_PG_URL=postgres://postgres@127.0.0.1:5432/test   the PostgreSQL database (trust auth)
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT=$PWD
TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
BIN=$TARGET_DIR/release/bridgekeeper
SIGN_BIN=$TARGET_DIR/release/examples/sign_rate
CORES=$(nproc)
DURATION=${BENCH_DURATION:-8}
CONNS=${BENCH_CONNS:-16}
THREADS=${BENCH_THREADS:-$CORES}
ROUNDS=${BENCH_ROUNDS:-2}
SIGN_SECONDS=${BENCH_SIGN_SECONDS:-3}
PG_URL=${BENCH_PG_URL:-postgres://postgres@127.0.0.1:5432/test}
MASTER_KEY=MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=
CLK_TCK=$(getconf CLK_TCK)
HALF_C=$((CONNS / 2))
HALF_T=$((THREADS / 2 > 0 ? THREADS / 2 : 1))
(( CONNS % 2 == 0 && HALF_C >= HALF_T )) || { echo "bench: BENCH_CONNS must be even and >= the wrk threads" >&2; exit 1; }

for tool in wrk python3 psql curl; do
  command -v "$tool" >/dev/null || { echo "bench: '$tool' not found" >&2; exit 1; }
done
[[ -n ${BENCH_SKIP_BUILD:-} ]] || command -v cargo >/dev/null || { echo "bench: 'cargo' not found" >&2; exit 1; }

WORK=$(mktemp -d "${TMPDIR:-/tmp}/bk-scale.XXXXXX")
SCHEMA=bk_bench_$(od -An -N6 -tx1 /dev/urandom | tr -d ' \n')
SCHEMA_CREATED=""
PIDS=() # every server we started
cleanup() {
  local pid
  for pid in "${PIDS[@]}"; do
    if kill -0 "$pid" 2>/dev/null; then
      kill "$pid" 2>/dev/null || true
      wait "$pid" 2>/dev/null || true
    fi
  done
  if [[ -n $SCHEMA_CREATED ]]; then
    psql "$PG_URL" -qAtX -v ON_ERROR_STOP=1 -c "DROP SCHEMA IF EXISTS $SCHEMA CASCADE" >/dev/null 2>&1 ||
      echo "bench: could not drop schema $SCHEMA (drop it by hand)" >&2
  fi
  rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

declare -A R # results, printed in the summary

log() { printf '\n== %s\n' "$*"; }
val() { sed -n "s/^$1=//p" "$2" | tail -1; }
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
ctx_switches() { cat /proc/"$1"/task/*/status 2>/dev/null | awk '/ctxt_switches/{n+=$2} END{print n+0}'; }
machine_ticks() { awk '/^cpu /{idle=$5+$6; t=0; for(i=2;i<=NF;i++) t+=$i; print t-idle, t}' /proc/stat; }
# "pid ticks" of every PostgreSQL process (postmaster, backends, WAL writer, checkpointer, ...)
pg_ticks() { { cat /proc/[0-9]*/stat 2>/dev/null || true; } | awk '$2 == "(postgres)" {print $1, $14 + $15}'; }
# PostgreSQL CPU ticks between two pg_ticks snapshots (a backend born in between counts from 0)
pg_delta() { awk 'NR == FNR {a[$1] = $2; next} {d += $2 - ($1 in a ? a[$1] : 0)} END {print d + 0}' "$1" "$2"; }
div() { awk -v a="$1" -v b="$2" -v f="${3:-%.3f}" 'BEGIN{if (b > 0) printf f, a / b; else printf "n/a"}'; }
mean() { printf '%s\n' "$@" | awk '{s+=$1; n++} END{printf "%.1f", (n ? s/n : 0)}'; }
busy_pct() {
  local b0 t0 b1 t1
  read -r b0 t0 < <(machine_ticks); sleep "$1"; read -r b1 t1 < <(machine_ticks)
  awk -v a="$b0" -v b="$b1" -v x="$t0" -v y="$t1" 'BEGIN{printf "%.0f", 100*(b-a)/(y-x)}'
}

# ---------------------------------------------------------------------------------------------
if [[ -z ${BENCH_SKIP_BUILD:-} ]]; then
  log "building (cargo build --release -p bridgekeeper, and the sign_rate example; no-ops when fresh)"
  cargo build --release -p bridgekeeper
  cargo build --release -p bridgekeeper-crypto --example sign_rate
fi
[[ -x $BIN ]] || { echo "bench: $BIN not found" >&2; exit 1; }

log "background load"
R[background_busy_pct]=$(busy_pct 2)
echo "background_busy_pct=${R[background_busy_pct]}"
if (( ${R[background_busy_pct]} > 10 )); then
  echo "bench: WARNING: the machine is ${R[background_busy_pct]}% busy before the bench; figures will be low:" >&2
  ps -eo pid,pcpu,etime,args --sort=-pcpu | head -4 | cut -c1-160 >&2
fi

log "RS256 signing rate (RSA-2048, aws-lc-rs, $CORES threads, ${SIGN_SECONDS}s)"
if [[ -x $SIGN_BIN ]]; then
  "$SIGN_BIN" "$SIGN_SECONDS" | tee "$WORK/sign.txt"
else
  cargo run --quiet --release -p bridgekeeper-crypto --example sign_rate -- "$SIGN_SECONDS" | tee "$WORK/sign.txt"
fi
R[sign_rate_per_s]=$(val sign_rate_per_s "$WORK/sign.txt")
# CPU time of one signature: all cores were signing for the whole measurement
R[sign_cpu_us]=$(awk -v r="${R[sign_rate_per_s]}" -v n="$CORES" 'BEGIN{printf "%.0f", 1e6 * n / r}')

# ---------------------------------------------------------------------------------------------
# start_server NAME DATA_DIR [VAR=VALUE...]: starts a release server with the bench environment
# (plus the given variables) on an ephemeral port, waits for its "listening" line and sets
# STARTED_PID, STARTED_ADDR (http://host:port actually bound) and STARTED_ISSUER.
start_server() {
  local name=$1 dir=$2 logf out="" pid; shift 2
  logf=$WORK/$name.log
  mkdir -p "$dir"
  env BRIDGEKEEPER_LOG_FORMAT=json \
      BRIDGEKEEPER_LIMITS__REGISTRATIONS_PER_MINUTE=1000 \
      BRIDGEKEEPER_MCP__RATE_LIMIT_PER_MINUTE=4000000000 \
      "$@" "$BIN" serve --listen 127.0.0.1:0 --data-dir "$dir" >"$logf" 2>&1 &
  pid=$!
  PIDS+=("$pid")
  for _ in $(seq 1 300); do
    out=$(python3 - "$logf" <<'EOF'
import json, sys
for line in open(sys.argv[1], errors="replace"):
    try:
        ev = json.loads(line)
    except ValueError:
        continue
    f = ev.get("fields", {})
    if f.get("message") == "listening" or ev.get("message") == "listening":
        print((f.get("addr") or ev.get("addr") or ""), (f.get("issuer") or ev.get("issuer") or ""))
        break
EOF
)
    [[ -n $out ]] && break
    kill -0 "$pid" 2>/dev/null || { echo "bench: server $name exited:" >&2; cat "$logf" >&2; exit 1; }
    sleep 0.1
  done
  [[ -n $out ]] || { echo "bench: server $name: no 'listening' line after 30s:" >&2; cat "$logf" >&2; exit 1; }
  STARTED_PID=$pid
  STARTED_ADDR=http://${out%% *}
  STARTED_ISSUER=${out#* }
  echo "server $name: pid $pid at $STARTED_ADDR (issuer $STARTED_ISSUER)"
}

# wait_idle PID...: waits (at most 15 s each) until each process uses < 5% of a core over 1 s
wait_idle() {
  local pid a b
  for pid in "$@"; do
    for _ in $(seq 1 15); do
      a=$(cpu_ticks "$pid"); sleep 1; b=$(cpu_ticks "$pid")
      (( (b - a) * 100 < 5 * CLK_TCK )) && break
    done
  done
}

# audit_head CONFIG: events written so far by the configuration's database
audit_head() {
  if [[ $1 == sqlite ]]; then
    python3 bench/mcp_check.py audit-head "$WORK/sqlite"
  else
    psql "$PG_URL" -qAtX -c "SELECT head_seq FROM $SCHEMA.audit_chain WHERE id = 1" | grep -E '^[0-9]+$' || echo 0
  fi
}

# ---------------------------------------------------------------------------------------------
log "PostgreSQL: creating schema $SCHEMA"
psql "$PG_URL" -qAtX -v ON_ERROR_STOP=1 -c "CREATE SCHEMA $SCHEMA" >/dev/null
SCHEMA_CREATED=1
DB_URL="$PG_URL?options=-c%20search_path%3D$SCHEMA"
psql "$PG_URL" -qAtX -c "SELECT 'postgresql=' || split_part(version(), ' ', 2) || ' synchronous_commit=' ||
  current_setting('synchronous_commit') || ' fsync=' || current_setting('fsync') || ' max_connections=' ||
  current_setting('max_connections')" | tee "$WORK/pg_settings.txt"
R[pg_settings]=$(cat "$WORK/pg_settings.txt")

log "starting the servers"
start_server sqlite "$WORK/sqlite"
SQLITE_PID=$STARTED_PID SQLITE_BASE=$STARTED_ADDR
start_server pg_a "$WORK/pg_a" BRIDGEKEEPER_DATABASE_URL="$DB_URL" BRIDGEKEEPER_MASTER_KEY="$MASTER_KEY"
PGA_PID=$STARTED_PID PGA_BASE=$STARTED_ADDR PG_ISSUER=$STARTED_ISSUER
# The second instance shares the database, the master key and the issuer (tokens carry the
# issuer: with the same one, either instance accepts the other's tokens).
start_server pg_b "$WORK/pg_b" BRIDGEKEEPER_DATABASE_URL="$DB_URL" BRIDGEKEEPER_MASTER_KEY="$MASTER_KEY" \
  BRIDGEKEEPER_ISSUER="$PG_ISSUER"
PGB_PID=$STARTED_PID PGB_BASE=$STARTED_ADDR
ALL_PIDS="$SQLITE_PID $PGA_PID $PGB_PID"

# Sessions: 2 per connection per refresh run, fresh for every run (a finished run's chains are gone)
N_RUN=$((2 * CONNS))
log "setting up sessions (sign-up, DCR, authorization code + PKCE, code exchange)"
mkdir -p "$WORK/tok_sqlite" "$WORK/tok_pg"
python3 bench/setup_tokens.py "$SQLITE_BASE" "$WORK/tok_sqlite" $((ROUNDS * N_RUN))
python3 bench/setup_tokens.py "$PGA_BASE" "$WORK/tok_pg" $((2 * ROUNDS * N_RUN))

log "opening MCP sessions and checking tools/list and tools/call"
python3 bench/mcp_check.py init "$SQLITE_BASE" "$WORK/tok_sqlite/access_token.txt" "$WORK/tok_sqlite/mcp_session.txt"
python3 bench/mcp_check.py init "$PGA_BASE" "$WORK/tok_pg/access_token.txt" "$WORK/tok_pg/mcp_session.txt"
# The MCP session lives in the shared database: the one opened on instance A must work on B too
# (the pg2 tools/list runs use it on both). wrk does not read bodies, so check one answer here.
code=$(curl -s -o "$WORK/b_check.json" -w '%{http_code}' -X POST "$PGB_BASE/mcp" \
  -H "Authorization: Bearer $(cat "$WORK/tok_pg/access_token.txt")" -H "Content-Type: application/json" \
  -H "Accept: application/json, text/event-stream" -H "MCP-Protocol-Version: 2025-11-25" \
  -H "Mcp-Session-Id: $(cat "$WORK/tok_pg/mcp_session.txt")" \
  -d '{"jsonrpc":"2.0","id":1,"method":"tools/list","params":{}}')
if [[ $code != 200 ]] || ! grep -q '"tools"' "$WORK/b_check.json"; then
  echo "bench: instance B did not answer tools/list in the session opened on A: $code $(head -c 300 "$WORK/b_check.json")" >&2
  exit 1
fi
echo "instance B: tools/list in the session opened on A -> $code"

# ---------------------------------------------------------------------------------------------
# measure NAME TARGET_PIDS DB WRK_SPEC...: runs the wrk processes given as "URL|CONNS|THREADS|SCRIPT|
# ARGS" (one per instance, at the same time), and records CPU used by the servers, by PostgreSQL
# (DB=pg), by wrk and by everything else, per request. Writes $WORK/NAME.<i>.txt (wrk output per
# process) and $WORK/NAME.cpu.
measure() {
  local name=$1 pids=$2 db=$3; shift 3
  local s0=0 s1=0 x0=0 x1=0 p mb0 mt0 mb1 mt1 i=0 spec url c t script args wpids=()
  for p in $pids; do s0=$((s0 + $(cpu_ticks "$p"))); x0=$((x0 + $(ctx_switches "$p"))); done
  pg_ticks >"$WORK/$name.pg0"
  read -r mb0 mt0 < <(machine_ticks)
  for spec in "$@"; do
    IFS='|' read -r url c t script args <<<"$spec"
    # shellcheck disable=SC2086 # args: space-separated files
    ( TIMEFORMAT='%U %S'; { time wrk -t "$t" -c "$c" -d "${DURATION}s" --timeout 10s --latency -s "$script" "$url" -- $args \
        >"$WORK/$name.$i.txt" 2>&1; } 2>"$WORK/$name.$i.time" ) &
    wpids+=($!)
    i=$((i + 1))
  done
  for p in "${wpids[@]}"; do wait "$p" || { cat "$WORK/$name".*.txt >&2; echo "bench: wrk failed in $name" >&2; exit 1; }; done
  read -r mb1 mt1 < <(machine_ticks)
  pg_ticks >"$WORK/$name.pg1"
  for p in $pids; do
    kill -0 "$p" 2>/dev/null || { echo "bench: server $p died during $name" >&2; exit 1; }
    s1=$((s1 + $(cpu_ticks "$p"))); x1=$((x1 + $(ctx_switches "$p")))
  done
  local pgd wrk_cpu reqs=0 f
  pgd=$(pg_delta "$WORK/$name.pg0" "$WORK/$name.pg1")
  wrk_cpu=$(cat "$WORK/$name".*.time | awk '{s += $1 + $2} END{print s + 0}')
  for f in "$WORK/$name".[0-9]*.txt; do
    cat "$f"
    reqs=$((reqs + $(sed -n 's/^ *\([0-9][0-9]*\) requests in .*/\1/p' "$f")))
  done
  awk -v s0="$s0" -v s1="$s1" -v hz="$CLK_TCK" -v w="$wrk_cpu" -v ncpu="$CORES" -v pg="$pgd" -v db="$db" \
      -v mb0="$mb0" -v mb1="$mb1" -v mt0="$mt0" -v mt1="$mt1" -v x0="$x0" -v x1="$x1" -v n="$reqs" '
    BEGIN {
      wall = (mt1 - mt0) / ncpu / hz
      srv = (s1 - s0) / hz; pgs = pg / hz; busy = (mb1 - mb0) / hz
      printf "server_cpu_cores=%.2f\n", srv / wall
      printf "pg_cpu_cores=%s\n", (db == "pg" ? sprintf("%.2f", pgs / wall) : "")
      printf "wrk_cpu_cores=%.2f\n", w / wall
      o = (busy - srv - pgs - w) / wall; printf "other_cpu_cores=%.2f\n", (o < 0 ? 0 : o)
      printf "machine_busy_pct=%.0f\n", 100 * busy / (wall * ncpu)
      if (n > 0) {
        printf "server_cpu_us_per_req=%.0f\n", 1e6 * srv / n
        printf "pg_cpu_us_per_req=%s\n", (db == "pg" ? sprintf("%.0f", 1e6 * pgs / n) : "")
        printf "server_ctx_switches_per_req=%.1f\n", (x1 - x0) / n
      }
    }' | tee "$WORK/$name.cpu"
}
CPU_KEYS="server_cpu_cores pg_cpu_cores wrk_cpu_cores other_cpu_cores machine_busy_pct server_cpu_us_per_req pg_cpu_us_per_req server_ctx_switches_per_req"

# sum_key NAME KEY: sum over NAME's wrk processes; max_key: the largest (latency percentiles: the
# slower instance's; not a merged histogram)
sum_key() { cat "$WORK/$1".[0-9]*.txt | sed -n "s/^$2=//p" | awk '{s += $1} END{printf "%.1f", s}'; }
max_key() { cat "$WORK/$1".[0-9]*.txt | sed -n "s/^$2=//p" | sort -g | tail -1; }
int_key() { cat "$WORK/$1".[0-9]*.txt | sed -n "s/^$2=//p" | awk '{s += $1} END{printf "%d", s}'; }

# occupancy NAME CONNS_PER_PROCESS: wrk's mean latency x its request rate / its connections, the
# largest over NAME's wrk processes. By Little's law it is at most ~1 (each connection has one
# request in flight); well above 1, wrk's latency figures contradict its own request count and the
# percentiles are not to be trusted for that run.
occupancy() {
  local f worst=0 o
  for f in "$WORK/$1".[0-9]*.txt; do
    o=$(awk -v c="$2" '
      /^ *Latency +[0-9.]+(us|ms|s) / { v = $2; m = (v ~ /us$/) ? 1e-6 : (v ~ /ms$/) ? 1e-3 : 1; sub(/[a-z]+$/, "", v); lat = v * m }
      /^Requests\/sec:/ { rps = $2 }
      END { printf "%.2f", lat * rps / c }' "$f")
    worst=$(awk -v a="$o" -v b="$worst" 'BEGIN{print (a > b) ? a : b}')
  done
  echo "$worst"
}

# config: name, server pids, "base[,base]" (one wrk process per base), db
config_pids() { case $1 in sqlite) echo "$SQLITE_PID" ;; pg1) echo "$PGA_PID" ;; pg2) echo "$PGA_PID $PGB_PID" ;; esac; }
config_bases() { case $1 in sqlite) echo "$SQLITE_BASE" ;; pg1) echo "$PGA_BASE" ;; pg2) echo "$PGA_BASE $PGB_BASE" ;; esac; }
config_tok() { case $1 in sqlite) echo "$WORK/tok_sqlite" ;; *) echo "$WORK/tok_pg" ;; esac; }
config_db() { case $1 in sqlite) echo sqlite ;; *) echo pg ;; esac; }

NEXT_SQLITE=1 NEXT_PG=1 # next unused line of each seeds file
REFRESH_INT="non200 200_without_token starved socket_errors"
refresh_run() { # refresh_run CONFIG ROUND
  local cfg=$1 r=$2 name="refresh_$1_r$2" bases tok seeds line n specs=() i=0 b k h0 h1
  read -r -a bases <<<"$(config_bases "$cfg")"
  tok=$(config_tok "$cfg")
  n=$((N_RUN / ${#bases[@]})) # seeds per wrk process: 2 per connection
  for b in "${bases[@]}"; do
    if [[ $cfg == sqlite ]]; then line=$NEXT_SQLITE; NEXT_SQLITE=$((line + n)); else line=$NEXT_PG; NEXT_PG=$((line + n)); fi
    seeds=$WORK/seeds_${name}_$i.txt
    sed -n "${line},$((line + n - 1))p" "$tok/seeds.txt" >"$seeds"
    (( $(wc -l <"$seeds") == n )) || { echo "bench: ran out of seeds" >&2; exit 1; }
    if (( ${#bases[@]} == 1 )); then
      specs+=("$b/api/v1/auth/token|$CONNS|$THREADS|bench/refresh.lua|$seeds $THREADS")
    else
      specs+=("$b/api/v1/auth/token|$HALF_C|$HALF_T|bench/refresh.lua|$seeds $HALF_T")
    fi
    i=$((i + 1))
  done
  wait_idle $ALL_PIDS
  h0=$(audit_head "$cfg")
  log "round $r, $cfg: refresh-token grants, ${#bases[@]} wrk process(es), $CONNS connections in all, ${DURATION}s"
  measure "$name" "$(config_pids "$cfg")" "$(config_db "$cfg")" "${specs[@]}"
  R[${name}_per_s]=$(sum_key "$name" refresh_grants_per_s)
  R[${name}_p50_ms]=$(max_key "$name" refresh_latency_p50_ms)
  R[${name}_p99_ms]=$(max_key "$name" refresh_latency_p99_ms)
  R[${name}_ok]=$(int_key "$name" refresh_ok)
  R[${name}_wrk_occupancy]=$(occupancy "$name" $((CONNS / ${#bases[@]})))
  for k in $REFRESH_INT; do R[${name}_$k]=$(int_key "$name" "refresh_$k"); done
  R[${name}_first_error]=$(cat "$WORK/$name".[0-9]*.txt | sed -n 's/^refresh_first_error=//p' | head -1)
  for k in $CPU_KEYS; do R[${name}_$k]=$(val "$k" "$WORK/$name.cpu"); done
  # one token.refreshed audit event per grant, once the writers have drained
  wait_idle $(config_pids "$cfg")
  h1=$(audit_head "$cfg")
  R[${name}_audit_per_grant]=$(div "$((h1 - h0))" "${R[${name}_ok]}")
  echo "$name: ${R[${name}_per_s]} grants/s, audit events per grant ${R[${name}_audit_per_grant]}"
}

tools_list_run() { # tools_list_run CONFIG ROUND
  local cfg=$1 r=$2 name="tools_list_$1_r$2" bases tok specs=() b k
  read -r -a bases <<<"$(config_bases "$cfg")"
  tok=$(config_tok "$cfg")
  for b in "${bases[@]}"; do
    if (( ${#bases[@]} == 1 )); then
      specs+=("$b/mcp|$CONNS|$THREADS|bench/tools_list.lua|$tok/access_token.txt $tok/mcp_session.txt")
    else
      specs+=("$b/mcp|$HALF_C|$HALF_T|bench/tools_list.lua|$tok/access_token.txt $tok/mcp_session.txt")
    fi
  done
  wait_idle $ALL_PIDS
  log "round $r, $cfg: MCP tools/list, ${#bases[@]} wrk process(es), $CONNS connections in all, ${DURATION}s"
  measure "$name" "$(config_pids "$cfg")" "$(config_db "$cfg")" "${specs[@]}"
  R[${name}_per_s]=$(sum_key "$name" tools_list_per_s)
  R[${name}_p50_ms]=$(max_key "$name" tools_list_latency_p50_ms)
  R[${name}_p99_ms]=$(max_key "$name" tools_list_latency_p99_ms)
  R[${name}_http_errors]=$(int_key "$name" tools_list_http_errors)
  R[${name}_wrk_occupancy]=$(occupancy "$name" $((CONNS / ${#bases[@]})))
  R[${name}_socket_errors]=$(int_key "$name" tools_list_socket_errors)
  for k in $CPU_KEYS; do R[${name}_$k]=$(val "$k" "$WORK/$name.cpu"); done
}

CONFIGS="sqlite pg1 pg2"
for r in $(seq 1 "$ROUNDS"); do
  if (( r % 2 )); then order=$CONFIGS; else order=$(echo "$CONFIGS" | tr ' ' '\n' | tac | tr '\n' ' '); fi
  for cfg in $order; do
    refresh_run "$cfg" "$r"
    tools_list_run "$cfg" "$r"
  done
done

# Warnings and errors each server logged after it started listening (the load must cause none).
server_problems=0
for s in sqlite pg_a pg_b; do
  sed -n '/"message":"listening"/,$p' "$WORK/$s.log" | grep -E '"level":"(WARN|ERROR)"' >"$WORK/$s.problems" || true
  n=$(wc -l <"$WORK/$s.problems")
  R[server_${s}_log_problems]=$n
  server_problems=$((server_problems + n))
  if (( n > 0 )); then log "server $s: warnings/errors during the bench (first 5)"; head -5 "$WORK/$s.problems"; fi
done

# ---------------------------------------------------------------------------------------------
# Per configuration: the mean over the rounds of each key.
rmean() { # rmean KIND CONFIG KEY [FORMAT]
  local r v=()
  for r in $(seq 1 "$ROUNDS"); do v+=("${R[$1_$2_r${r}_$3]}"); done
  printf '%s\n' "${v[@]}" | awk -v f="${4:-%.1f}" '$1 != "" && $1 != "n/a" {s += $1; n++} END{if (n) printf f, s/n}'
}
rlist() { local r v=(); for r in $(seq 1 "$ROUNDS"); do v+=("${R[$1_$2_r${r}_$3]}"); done; (IFS=,; echo "${v[*]}"); }
rsum() { local r t=0; for r in $(seq 1 "$ROUNDS"); do t=$((t + ${R[$1_$2_r${r}_$3]:-0})); done; echo "$t"; }

for cfg in $CONFIGS; do
  for kind in refresh tools_list; do
    R[${kind}_${cfg}_per_s]=$(rmean "$kind" "$cfg" per_s)
    R[${kind}_${cfg}_runs]=$(rlist "$kind" "$cfg" per_s)
    for k in p50_ms p99_ms wrk_occupancy; do R[${kind}_${cfg}_$k]=$(rmean "$kind" "$cfg" "$k" %.2f); done
    for k in server_cpu_cores pg_cpu_cores wrk_cpu_cores other_cpu_cores server_ctx_switches_per_req; do
      R[${kind}_${cfg}_$k]=$(rmean "$kind" "$cfg" "$k" %.2f)
    done
    for k in machine_busy_pct server_cpu_us_per_req pg_cpu_us_per_req; do
      R[${kind}_${cfg}_$k]=$(rmean "$kind" "$cfg" "$k" %.0f)
    done
  done
  R[refresh_${cfg}_audit_per_grant]=$(rmean refresh "$cfg" audit_per_grant %.3f)
  R[refresh_${cfg}_failures]=$(( $(rsum refresh "$cfg" non200) + $(rsum refresh "$cfg" 200_without_token) ))
  R[refresh_${cfg}_starved]=$(rsum refresh "$cfg" starved)
  R[refresh_${cfg}_socket_errors]=$(rsum refresh "$cfg" socket_errors)
  R[tools_list_${cfg}_http_errors]=$(rsum tools_list "$cfg" http_errors)
  R[tools_list_${cfg}_socket_errors]=$(rsum tools_list "$cfg" socket_errors)
  R[refresh_${cfg}_vs_sign_ratio]=$(div "${R[refresh_${cfg}_per_s]}" "${R[sign_rate_per_s]}")
  first=""
  for r in $(seq 1 "$ROUNDS"); do [[ -z $first ]] && first=${R[refresh_${cfg}_r${r}_first_error]}; done
  R[refresh_${cfg}_first_error]=$first
done

# What limits the refresh grant in each configuration. One grant signs one access token (its CPU
# cost is sign_cpu_us); the rest of the server's CPU per grant, and PostgreSQL's, is database and
# HTTP work. A machine that is not saturated means the requests wait (on commits, locks) rather than
# compute.
limit_of() {
  local cfg=$1 busy srv pg sign=${R[sign_cpu_us]}
  busy=${R[refresh_${cfg}_machine_busy_pct]} srv=${R[refresh_${cfg}_server_cpu_us_per_req]}
  pg=${R[refresh_${cfg}_pg_cpu_us_per_req]:-}
  awk -v busy="$busy" -v srv="$srv" -v pg="$pg" -v sign="$sign" -v cfg="$cfg" 'BEGIN {
    if (busy < 85) {
      printf "waiting, not CPU (machine %d%% busy): requests queue on database commits/locks%s", busy,
        (pg == "" ? " (SQLite: one writer at a time)" : ""); exit
    }
    if (pg == "") {
      # SQLite runs in the server process: its cost is in the server CPU beyond the signature
      rest = srv - sign
      if (rest > sign) printf "database and HTTP (server %d us/grant, of which signing %d us; SQLite is in-process)", srv, sign
      else printf "signing (server %d us/grant, of which signing %d us)", srv, sign
      exit
    }
    dbcost = pg + (srv - sign > 0 ? srv - sign : 0)
    if (pg > sign) printf "database (PostgreSQL %d us/grant > one RS256 signature %d us; server %d us/grant)", pg, sign, srv
    else if (dbcost > sign) printf "database + server non-signing work (PostgreSQL %d us + server %d us/grant vs signature %d us)", pg, srv, sign
    else printf "signing (signature %d us of server %d us + PostgreSQL %d us per grant)", sign, srv, pg
  }'
}

refresh_failures=0 tl_errors=0 sock=0
for cfg in $CONFIGS; do
  refresh_failures=$((refresh_failures + ${R[refresh_${cfg}_failures]} + ${R[refresh_${cfg}_starved]}))
  tl_errors=$((tl_errors + ${R[tools_list_${cfg}_http_errors]}))
  sock=$((sock + ${R[refresh_${cfg}_socket_errors]} + ${R[tools_list_${cfg}_socket_errors]}))
done

echo
echo "==================== scale summary ===================="
echo "machine_cores=$CORES"
echo "duration_s=$DURATION"
echo "conns=$CONNS (pg2: $HALF_C per instance)"
echo "wrk_threads=$THREADS (pg2: $HALF_T per wrk process)"
echo "rounds=$ROUNDS"
echo "background_busy_pct_before=${R[background_busy_pct]}"
echo "${R[pg_settings]}"
echo "pg_schema=$SCHEMA (dropped at exit)"
echo "sign_rate_per_s=${R[sign_rate_per_s]}"
echo "sign_cpu_us_per_signature=${R[sign_cpu_us]}"
for kind in refresh tools_list; do
  for cfg in $CONFIGS; do
    p=${kind}_${cfg}
    echo "${p}_per_s=${R[${p}_per_s]} (runs: ${R[${p}_runs]})"
    for k in p50_ms p99_ms wrk_occupancy server_cpu_us_per_req pg_cpu_us_per_req server_cpu_cores pg_cpu_cores wrk_cpu_cores \
        other_cpu_cores machine_busy_pct server_ctx_switches_per_req; do
      [[ $cfg == sqlite && $k == pg_* ]] && continue
      echo "${p}_$k=${R[${p}_$k]}"
    done
    if [[ $kind == refresh ]]; then
      echo "${p}_vs_sign_ratio=${R[${p}_vs_sign_ratio]}"
      echo "${p}_audit_events_per_grant=${R[${p}_audit_per_grant]}"
      echo "${p}_failures=${R[${p}_failures]} starved=${R[${p}_starved]} socket_errors=${R[${p}_socket_errors]}"
      [[ -n ${R[${p}_first_error]} ]] && echo "${p}_first_error=${R[${p}_first_error]}"
    else
      echo "${p}_http_errors=${R[${p}_http_errors]} socket_errors=${R[${p}_socket_errors]}"
    fi
  done
done
for s in sqlite pg_a pg_b; do echo "server_${s}_log_warnings_errors=${R[server_${s}_log_problems]}"; done
echo "--- headline (mean of $ROUNDS round(s); pg2 = two instances on one PostgreSQL, same machine) ---"
echo "refresh_grants_per_s: sqlite=${R[refresh_sqlite_per_s]} pg1=${R[refresh_pg1_per_s]} pg2=${R[refresh_pg2_per_s]}"
echo "refresh_p99_ms: sqlite=${R[refresh_sqlite_p99_ms]} pg1=${R[refresh_pg1_p99_ms]} pg2=${R[refresh_pg2_p99_ms]}"
echo "tools_list_per_s: sqlite=${R[tools_list_sqlite_per_s]} pg1=${R[tools_list_pg1_per_s]} pg2=${R[tools_list_pg2_per_s]}"
echo "tools_list_p99_ms: sqlite=${R[tools_list_sqlite_p99_ms]} pg1=${R[tools_list_pg1_p99_ms]} pg2=${R[tools_list_pg2_p99_ms]}"
echo "refresh_pg_vs_sqlite_ratio=$(div "${R[refresh_pg1_per_s]}" "${R[refresh_sqlite_per_s]}")"
echo "tools_list_pg_vs_sqlite_ratio=$(div "${R[tools_list_pg1_per_s]}" "${R[tools_list_sqlite_per_s]}")"
echo "refresh_two_vs_one_instance_ratio=$(div "${R[refresh_pg2_per_s]}" "${R[refresh_pg1_per_s]}")"
echo "tools_list_two_vs_one_instance_ratio=$(div "${R[tools_list_pg2_per_s]}" "${R[tools_list_pg1_per_s]}")"
echo "refresh_vs_sign_ratio: sqlite=${R[refresh_sqlite_vs_sign_ratio]} pg1=${R[refresh_pg1_vs_sign_ratio]} pg2=${R[refresh_pg2_vs_sign_ratio]}"
cpu_line() { # cpu_line KIND: server (+ PostgreSQL) CPU us per request for each configuration
  local cfg out=""
  for cfg in $CONFIGS; do
    out+=" $cfg=${R[$1_${cfg}_server_cpu_us_per_req]}"
    [[ $cfg != sqlite ]] && out+="+pg:${R[$1_${cfg}_pg_cpu_us_per_req]}"
  done
  echo "${out# }"
}
echo "refresh_cpu_us_per_grant (server+pg): $(cpu_line refresh)"
echo "tools_list_cpu_us_per_req (server+pg): $(cpu_line tools_list)"
for cfg in $CONFIGS; do echo "refresh_${cfg}_limit=$(limit_of "$cfg")"; done
for kind in refresh tools_list; do
  for cfg in $CONFIGS; do
    if awk -v o="${R[${kind}_${cfg}_wrk_occupancy]}" 'BEGIN{exit !(o > 1.5)}'; then
      echo "WARNING: ${kind}_${cfg}: wrk's latency percentiles contradict its request rate (occupancy ${R[${kind}_${cfg}_wrk_occupancy]} > 1): do not trust its p50/p99"
    fi
  done
done
echo "refresh_failures=$refresh_failures tools_list_http_errors=$tl_errors socket_errors=$sock (must be 0)"
echo "server_log_warnings_errors=$server_problems (must be 0; slow statements: $(cat "$WORK"/*.problems | grep -c 'slow statement' || true))"
echo "======================================================="
