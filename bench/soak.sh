#!/usr/bin/env bash
# Soak: a steady mix of traffic for a long time, watching what must not grow. From the repository root:
#
#   bash bench/soak.sh [sqlite|postgres]
#
# Measures the machine's tools/call capacity (5 s of wrk), then runs, for SOAK_MINUTES, at SOAK_SHARE of
# it: tools/call whoami (60%), tools/list (30%) and token introspection (10%) at fixed rates (oha, with
# latency correction), plus refresh grants on two connections (bench/soak_refresh.py, as fast as they
# go). Every SOAK_SAMPLE_SECS it prints a row: resident memory, database and write-ahead-log sizes (on
# PostgreSQL: the schema's size, dead rows, the server's connections), p50/p99 of tools/call, requests
# and errors of each stream, and the machine: the share of the window every task waited on I/O (PSI
# "io full"), CPU busy, dirty page cache. At the end it kills the server with SIGKILL in the middle of the traffic,
# starts it again on the same data and times how long until /ready answers 200.
#
# It fails (exit 1) when: the write-ahead log passes its bound (SQLite); any request fails; resident
# memory rises by more than SOAK_RSS_SLACK_PCT % (and 8 MB) from the end of the warm-up (the first
# third of the run) to the end; the restart takes longer than 5 s; or the log is not back under its
# bound after the restart.
#
# Knobs: SOAK_MINUTES=30  SOAK_SAMPLE_SECS=30  SOAK_SHARE=0.5  SOAK_WAL_LIMIT_MB=64  SOAK_RSS_SLACK_PCT=10
#        SOAK_PG_DEFAULT_AUTOVACUUM=1 (keep PostgreSQL's autovacuum defaults instead of the README's settings)
#        SOAK_BIN=<binary> (default target/release/bridgekeeper, built unless BENCH_SKIP_BUILD=1)
#        BENCH_OHA=<oha>   BENCH_PG_URL=postgres://postgres@127.0.0.1:5432/test
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT=$PWD
BACKEND=${1:-sqlite}
MINUTES=${SOAK_MINUTES:-30}
SAMPLE=${SOAK_SAMPLE_SECS:-30}
SHARE=${SOAK_SHARE:-0.5}
WAL_LIMIT_MB=${SOAK_WAL_LIMIT_MB:-64}
RSS_SLACK_PCT=${SOAK_RSS_SLACK_PCT:-10}
PG_URL=${BENCH_PG_URL:-postgres://postgres@127.0.0.1:5432/test}
BIN=${SOAK_BIN:-${CARGO_TARGET_DIR:-$ROOT/target}/release/bridgekeeper}
case $BACKEND in sqlite | postgres) ;; *) echo "usage: bench/soak.sh [sqlite|postgres]" >&2; exit 2 ;; esac
for tool in wrk python3; do
  command -v "$tool" >/dev/null || { echo "soak: '$tool' not found (wrk: apt-get install -y wrk)" >&2; exit 1; }
done
if [[ -z ${SOAK_BIN:-} && -z ${BENCH_SKIP_BUILD:-} ]]; then
  cargo build --release --locked -p bridgekeeper
fi
OHA=${BENCH_OHA:-}
for cand in "$ROOT/bench/.tools/bin/oha" "$HOME/.cargo/bin/oha" "$(command -v oha || true)"; do
  [[ -z $OHA && -n $cand && -x $cand ]] && OHA=$cand
done
[[ -n $OHA ]] || { echo "soak: needs oha (cargo install oha --locked --root bench/.tools, or BENCH_OHA=…)" >&2; exit 1; }

WORK=$(mktemp -d "${TMPDIR:-/tmp}/bk-soak.XXXXXX")
PID="" SCHEMA="" LOADERS=()
cleanup() {
  local p
  for p in "${LOADERS[@]}" $PID; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  [[ -n $SCHEMA ]] && psql "$PG_URL" -qAtX -c "DROP SCHEMA IF EXISTS $SCHEMA CASCADE" >/dev/null 2>&1
  if [[ -n ${SOAK_KEEP:-} ]]; then echo "soak: kept $WORK" >&2; else rm -rf "$WORK"; fi
}
trap cleanup EXIT
log() { echo "== soak: $*" >&2; }

# One access token serves the whole run: it must outlive it (the default 15 minutes would end it midway).
ENV=(BRIDGEKEEPER_LOG_FORMAT=json BRIDGEKEEPER_LIMITS__REGISTRATIONS_PER_MINUTE=1000
  BRIDGEKEEPER_TOKENS__ACCESS_TOKEN_TTL_SECS=$((MINUTES * 60 + 3600))
  BRIDGEKEEPER_MCP__RATE_LIMIT_PER_MINUTE=4000000000 BRIDGEKEEPER_DATABASE__SQLITE_WAL_LIMIT_MB="$WAL_LIMIT_MB")
if [[ $BACKEND == postgres ]]; then
  SCHEMA=bk_soak_$(python3 -c 'import secrets; print(secrets.token_hex(6))')
  psql "$PG_URL" -qAtX -c "CREATE SCHEMA $SCHEMA" >/dev/null
  ENV+=(BRIDGEKEEPER_DATABASE_URL="$PG_URL?options=-c%20search_path%3D$SCHEMA&application_name=$SCHEMA"
    BRIDGEKEEPER_MASTER_KEY=MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=)
fi
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
BASE=http://127.0.0.1:$PORT
DATA=$WORK/data

start_server() {
  env "${ENV[@]}" "$BIN" serve --listen "127.0.0.1:$PORT" --data-dir "$DATA" >>"$WORK/server.log" 2>&1 &
  PID=$!
}
wait_ready() { # prints seconds until /ready answers 200
  python3 - "$BASE" <<'EOF'
import sys, time, urllib.request, urllib.error
start = time.time()
while time.time() - start < 120:
    try:
        if urllib.request.urlopen(sys.argv[1] + "/ready", timeout=2).status == 200:
            print(f"{time.time() - start:.2f}"); sys.exit(0)
    except (urllib.error.URLError, OSError):
        pass
    time.sleep(0.05)
sys.exit("not ready within 120 s")
EOF
}

log "$BACKEND, $MINUTES min at ${SHARE} of capacity, sampled every ${SAMPLE}s; binary $BIN"
start_server
wait_ready >/dev/null
env "${ENV[@]}" "$BIN" admin token create --name soak --data-dir "$DATA" >"$WORK/op.out" 2>&1 </dev/null
grep -o 'bko_[A-Za-z0-9_-]*' "$WORK/op.out" | tail -1 >"$WORK/op.txt"
[[ -s $WORK/op.txt ]] || { cat "$WORK/op.out" >&2; echo "soak: admin token create printed no token" >&2; exit 1; }
python3 bench/setup_tokens.py "$BASE" "$WORK" 2 --confidential 1 --operator-token-file "$WORK/op.txt" >/dev/null
# The introspecting client's own access token (one refresh of its seed), and an MCP session.
python3 - "$BASE" "$WORK" <<'EOF'
import http.client, json, sys, urllib.parse
base, work = sys.argv[1], sys.argv[2]
u = urllib.parse.urlparse(base)
c = http.client.HTTPConnection(u.hostname, u.port)
basic = open(f"{work}/basic_auth.txt").read().strip()
cid, rt = open(f"{work}/seeds_confidential.txt").read().split()[:2]
c.request("POST", "/api/v1/auth/token", urllib.parse.urlencode({"grant_type": "refresh_token", "refresh_token": rt}),
          {"Authorization": basic, "Content-Type": "application/x-www-form-urlencoded"})
r = c.getresponse(); body = json.loads(r.read())
assert r.status == 200, body
open(f"{work}/introspect_body.txt", "w").write(urllib.parse.urlencode({"token": body["access_token"]}))
token = open(f"{work}/access_token.txt").read().strip()
c.request("POST", "/mcp", json.dumps({"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {
    "protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "soak", "version": "1"}}}),
    {"Authorization": "Bearer " + token, "Content-Type": "application/json", "Accept": "application/json"})
r = c.getresponse(); r.read()
open(f"{work}/mcp_session.txt", "w").write(r.getheader("Mcp-Session-Id") + "\n")
EOF
if [[ $BACKEND == postgres && -z ${SOAK_PG_DEFAULT_AUTOVACUUM:-} ]]; then
  # The autovacuum settings the README recommends for a steady load (SOAK_PG_DEFAULT_AUTOVACUUM=1: PostgreSQL's).
  psql "$PG_URL" -qAtX -c "ALTER TABLE $SCHEMA.refresh_tokens SET (autovacuum_vacuum_scale_factor = 0.02, autovacuum_vacuum_threshold = 1000);
    ALTER TABLE $SCHEMA.audit_events SET (autovacuum_vacuum_insert_scale_factor = 0.05)" >/dev/null
  log "PostgreSQL: the README's autovacuum settings on refresh_tokens and audit_events"
fi
TOKEN=$(head -1 "$WORK/access_token.txt")
SESSION=$(head -1 "$WORK/mcp_session.txt")
BASIC=$(head -1 "$WORK/basic_auth.txt")

log "measuring capacity (5 s of tools/call, 16 connections)"
wrk -t 2 -c 16 -d 5s -s bench/tools_call.lua "$BASE/mcp" -- "$WORK/access_token.txt" "$WORK/mcp_session.txt" >"$WORK/cap.txt" 2>&1
CAP=$(sed -n 's/^Requests\/sec: *\([0-9.]*\).*/\1/p' "$WORK/cap.txt")
read -r R_CALL R_LIST R_INTRO < <(awk -v c="$CAP" -v s="$SHARE" 'BEGIN {printf "%d %d %d\n", c*s*0.6, c*s*0.3, c*s*0.1}')
log "capacity ${CAP}/s: tools/call ${R_CALL}/s, tools/list ${R_LIST}/s, introspection ${R_INTRO}/s, refresh on 2 connections"

MCP_H=(-H "Authorization: Bearer $TOKEN" -H "Content-Type: application/json" -H "Accept: application/json"
  -H "MCP-Protocol-Version: 2025-11-25" -H "Mcp-Session-Id: $SESSION" -H "X-Response-Format: json")
window() { # window SECONDS N: one sampling window of fixed-rate traffic, oha results in $WORK/w$N.*.json
  local secs=$1 n=$2 common=(-z "${1}s" --latency-correction --no-tui --output-format json -c 8)
  "$OHA" "${common[@]}" -q "$R_CALL" -m POST "${MCP_H[@]}" \
    -d '{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"whoami","arguments":{}}}' \
    "$BASE/mcp" >"$WORK/w$n.call.json" 2>/dev/null &
  LOADERS+=($!)
  "$OHA" "${common[@]}" -q "$R_LIST" -m POST "${MCP_H[@]}" -d '{"jsonrpc":"2.0","id":1,"method":"tools/list"}' \
    "$BASE/mcp" >"$WORK/w$n.list.json" 2>/dev/null &
  LOADERS+=($!)
  "$OHA" "${common[@]}" -q "$R_INTRO" -m POST -H "Authorization: $BASIC" \
    -H "Content-Type: application/x-www-form-urlencoded" -D "$WORK/introspect_body.txt" \
    "$BASE/api/v1/auth/introspect" >"$WORK/w$n.intro.json" 2>/dev/null &
  LOADERS+=($!)
}
sample() { # sample N ELAPSED: one table row (and the figures for the verdict) from window N
  local rss db wal extra=""
  rss=$(awk '/^VmRSS/ {print $2}' "/proc/$PID/status" 2>/dev/null || echo 0)
  if [[ $BACKEND == sqlite ]]; then
    db=$(stat -c %s "$DATA/bridgekeeper.db" 2>/dev/null || echo 0)
    wal=$(stat -c %s "$DATA/bridgekeeper.db-wal" 2>/dev/null || echo 0)
  else
    read -r db extra < <(psql "$PG_URL" -qAtX -F ' ' -c "SELECT
        (SELECT COALESCE(sum(pg_total_relation_size(format('%I.%I', schemaname, relname))), 0) FROM pg_stat_user_tables WHERE schemaname = '$SCHEMA'),
        (SELECT COALESCE(sum(n_dead_tup), 0) FROM pg_stat_user_tables WHERE schemaname = '$SCHEMA') || '/' ||
        (SELECT count(*) FROM pg_stat_activity WHERE application_name = '$SCHEMA')")
    wal=0
  fi
  python3 - "$WORK" "$1" "$2" "$rss" "$db" "$wal" "$extra" <<'EOF'
import json, os, sys
work, n, elapsed, rss, db, wal, extra = sys.argv[1:8]
row = {"t_s": int(float(elapsed)), "rss_mb": int(rss) / 1024, "db_mb": int(db) / 2**20, "wal_mb": int(wal) / 2**20}
# The machine, for reading latency: the share of the window in which every task waited on I/O (PSI
# "io full"), the share of CPU time busy, and dirty page-cache memory not yet written back.
def machine():
    m = {"t": float(elapsed)}
    try:
        full = [l for l in open("/proc/pressure/io") if l.startswith("full")][0]
        m["io_us"] = int(full.split("total=")[1])
    except (OSError, IndexError, ValueError):
        m["io_us"] = None
    cpu = [int(x) for x in open("/proc/stat").readline().split()[1:]]
    m["cpu_busy"], m["cpu_all"] = sum(cpu) - cpu[3] - cpu[4], sum(cpu)
    mem = dict(l.split(":", 1) for l in open("/proc/meminfo"))
    m["dirty_mb"] = int(mem["Dirty"].split()[0]) / 1024
    return m
now, prev_path = machine(), f"{work}/machine.json"
prev = json.load(open(prev_path)) if os.path.exists(prev_path) else None
json.dump(now, open(prev_path, "w"))
row["dirty_mb"] = now["dirty_mb"]
row["io_pct"] = row["cpu_pct"] = None
if prev:
    if now["io_us"] is not None and prev["io_us"] is not None:
        row["io_pct"] = 100 * (now["io_us"] - prev["io_us"]) / max((now["t"] - prev["t"]) * 1e6, 1)
    row["cpu_pct"] = 100 * (now["cpu_busy"] - prev["cpu_busy"]) / max(now["cpu_all"] - prev["cpu_all"], 1)
errors, p = 0, {}
for stream in ("call", "list", "intro"):
    try:
        d = json.load(open(f"{work}/w{n}.{stream}.json"))
    except (OSError, ValueError):
        d = {}
    codes = d.get("statusCodeDistribution", {})
    ok = codes.get("200", 0)
    # Requests still in flight when a window's time is up are cut off by oha, not failed by the server.
    cut = {"aborted due to deadline"}
    bad = sum(v for k, v in codes.items() if k != "200")
    bad += sum(v for k, v in d.get("errorDistribution", {}).items() if k not in cut)
    errors += bad
    row[f"{stream}_per_s"] = ok / max(float(d.get("summary", {}).get("total", 1) or 1), 1e-9)
    if stream == "call":
        lp = d.get("latencyPercentiles", {})
        p = {"p50_ms": (lp.get("p50") or 0) * 1000, "p99_ms": (lp.get("p99") or 0) * 1000}
row.update(p)
row["errors"] = errors
row["extra"] = extra
json.dump(row, open(f"{work}/row{n}.json", "w"))
EOF
}

WINDOWS=$(((MINUTES * 60 + SAMPLE - 1) / SAMPLE))
python3 bench/soak_refresh.py "$BASE" "$WORK/seeds.txt" $((WINDOWS * SAMPLE + 3600)) "$WORK/refresh.txt" &
REFRESH_PID=$!
LOADERS+=("$REFRESH_PID")
START=$(date +%s.%N)
for n in $(seq 1 "$WINDOWS"); do
  window "$SAMPLE" "$n"
  wait "${LOADERS[@]: -3}" || true
  LOADERS=("$REFRESH_PID")
  sample "$n" "$(awk -v s="$START" -v e="$(date +%s.%N)" 'BEGIN {print e - s}')"
  kill -0 "$PID" 2>/dev/null || { tail -20 "$WORK/server.log" >&2; echo "soak: the server died" >&2; exit 1; }
done

log "SIGKILL in the middle of the traffic, then restart on the same data"
window 6 kill
sleep 3
kill -9 "$PID"
wait "$PID" 2>/dev/null || true
wait "${LOADERS[@]: -3}" 2>/dev/null || true
LOADERS=("$REFRESH_PID")
WAL_AT_KILL=$(stat -c %s "$DATA/bridgekeeper.db-wal" 2>/dev/null || echo 0)
RESTARTED=$(date +%s.%N)
start_server
wait_ready >/dev/null
RESTART_S=$(awk -v s="$RESTARTED" -v e="$(date +%s.%N)" 'BEGIN {printf "%.2f", e - s}')
sleep 2
WAL_AFTER=$(stat -c %s "$DATA/bridgekeeper.db-wal" 2>/dev/null || echo 0)
kill "$REFRESH_PID" 2>/dev/null || true

python3 - "$WORK" "$WINDOWS" "$SAMPLE" "$BACKEND" "$WAL_LIMIT_MB" "$RSS_SLACK_PCT" "$RESTART_S" "$WAL_AT_KILL" "$WAL_AFTER" "$CAP" <<'EOF'
import json, os, sys
work, windows, sample, backend, wal_limit, slack, restart_s, wal_kill, wal_after, cap = sys.argv[1:11]
windows, sample, wal_limit, slack = int(windows), int(sample), float(wal_limit), float(slack)
rows = [json.load(open(f"{work}/row{n}.json")) for n in range(1, windows + 1)]
ticks = [l.split() for l in open(f"{work}/refresh.txt")] if os.path.exists(f"{work}/refresh.txt") else []
def refresh_between(t0, t1):
    inside = [(int(a), int(b), int(c)) for a, b, c in ticks]
    if not inside: return (0, 0)
    start = inside[0][0]
    sel = [x for x in inside if t0 <= x[0] - start < t1]
    if len(sel) < 2: return (0, 0)
    return ((sel[-1][1] - sel[0][1]) / max(sel[-1][0] - sel[0][0], 1), sel[-1][2] - sel[0][2])
extra_name = "dead rows/conns" if backend == "postgres" else ""
print(f"\nsoak on {backend}: capacity {cap}/s; {windows} windows of {sample} s")
print(f"{'t (s)':>6} {'RSS MB':>7} {'db MB':>8} {'log MB':>7} {'call/s':>7} {'list/s':>7} {'intro/s':>7} {'refr/s':>7} {'p50 ms':>7} {'p99 ms':>7} {'errors':>6} {'io%':>5} {'cpu%':>5} {'dirty MB':>8} {extra_name}")
pct = lambda v: f"{v:>5.1f}" if v is not None else f"{'-':>5}"
refresh_errors = 0
for i, r in enumerate(rows):
    rate, rerr = refresh_between(i * sample, (i + 1) * sample)
    refresh_errors += rerr
    print(f"{r['t_s']:>6} {r['rss_mb']:>7.1f} {r['db_mb']:>8.1f} {r['wal_mb']:>7.1f} {r['call_per_s']:>7.0f} {r['list_per_s']:>7.0f} "
          f"{r['intro_per_s']:>7.0f} {rate:>7.0f} {r['p50_ms']:>7.2f} {r['p99_ms']:>7.2f} {r['errors'] + rerr:>6} "
          f"{pct(r.get('io_pct'))} {pct(r.get('cpu_pct'))} {r.get('dirty_mb', 0):>8.0f} {r['extra']}")
fails = []
errors = sum(r["errors"] for r in rows) + refresh_errors
if errors:
    fails.append(f"{errors} failed requests")
if backend == "sqlite":
    worst = max(r["wal_mb"] for r in rows)
    if worst > wal_limit:
        fails.append(f"the write-ahead log reached {worst:.1f} MB (bound {wal_limit:.0f} MB)")
warm = rows[max(len(rows) // 3, 1) - 1]["rss_mb"] if len(rows) >= 3 else rows[0]["rss_mb"]
end = rows[-1]["rss_mb"]
if end > warm * (1 + slack / 100) and end - warm > 8:
    fails.append(f"resident memory kept rising after warm-up: {warm:.1f} -> {end:.1f} MB")
print(f"memory after warm-up {warm:.1f} MB, at the end {end:.1f} MB")
busy = sorted(r["cpu_pct"] for r in rows if r.get("cpu_pct") is not None)
if busy and busy[len(busy) // 2] > 90:
    print(f"note: the machine's CPU was {busy[len(busy) // 2]:.0f}% busy in the median window (server and load generators "
          "share it): latency then measures queueing for CPU; lower SOAK_SHARE to read the server's own latency")
print(f"SIGKILL under load: log at the kill {int(wal_kill) / 2**20:.1f} MB; ready again after {restart_s} s; log 2 s later {int(wal_after) / 2**20:.1f} MB")
if float(restart_s) > 5:
    fails.append(f"restart to ready took {restart_s} s (> 5 s)")
if backend == "sqlite" and int(wal_after) / 2**20 > wal_limit:
    fails.append("the log was not under its bound after the restart")
err = f"{work}/refresh.txt.err"
if refresh_errors and os.path.exists(err):
    print("first refresh failure:", open(err).read().strip())
print("soak: " + ("FAILED: " + "; ".join(fails) if fails else "passed"))
sys.exit(1 if fails else 0)
EOF
