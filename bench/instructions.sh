#!/usr/bin/env bash
# Instructions per MCP request, counted by valgrind (callgrind): repeatable for the same binary and
# inputs whatever else the machine is doing, so it settles "did this change make /mcp slower?" where
# throughput on a shared 2-core VM drifts by ±15% between runs.
#
#   bash bench/instructions.sh BASELINE_BIN [CANDIDATE_BIN]     (default candidate: target/release/bridgekeeper)
#
# For each binary: sign up, register a client and get a token from a native server (setup_tokens.py),
# open one MCP session, then restart the same data directory under callgrind three times: LOW tools/list,
# HIGH tools/list, HIGH tools/call (whoami; audit on, so the audit writer's work is counted). The
# instructions of a request are the difference between runs divided by the difference in requests
# (start-up and shutdown cancel out; a call is (call run - low list run + LOW x list) / HIGH). Prints both binaries' figures and candidate/baseline ratios.
#
# Knobs: IR_LOW=200 IR_HIGH=5200 requests (at 5,000 the background tasks' share is below ±1%; at 2,000, ±5%).
#        IR_CANDIDATE_ERA=2026: the candidate sends MCP 2026-07-28 requests (no session, _meta per request);
#        with the same binary twice this compares the stateless path with the session path.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT=$PWD
BASE_BIN=${1:?usage: bench/instructions.sh BASELINE_BIN [CANDIDATE_BIN]}
CAND_BIN=${2:-$ROOT/target/release/bridgekeeper}
LOW=${IR_LOW:-200}
HIGH=${IR_HIGH:-5200}
for tool in valgrind python3; do
  command -v "$tool" >/dev/null || { echo "instructions: '$tool' not found (apt-get install -y valgrind)" >&2; exit 1; }
done
WORK=$(mktemp -d "${TMPDIR:-/tmp}/bk-ir.XXXXXX")
PID=""
cleanup() {
  if [[ -n $PID ]] && kill -0 "$PID" 2>/dev/null; then kill "$PID" 2>/dev/null || true; wait "$PID" 2>/dev/null || true; fi
  rm -rf "$WORK"
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# start DIR PORT LOG [wrapper…] — starts `bridgekeeper serve` (through the wrapper, if any), waits until it listens.
start() {
  local dir=$1 port=$2 log=$3 bin=$4; shift 4
  env BRIDGEKEEPER_LOG_FORMAT=json BRIDGEKEEPER_MCP__RATE_LIMIT_PER_MINUTE=4000000000 \
    BRIDGEKEEPER_LIMITS__REGISTRATIONS_PER_MINUTE=1000 \
    "$@" "$bin" serve --listen "127.0.0.1:$port" --data-dir "$dir" >"$log" 2>&1 &
  PID=$!
  for _ in $(seq 1 1200); do
    grep -q '"listening"' "$log" 2>/dev/null && return 0
    kill -0 "$PID" 2>/dev/null || { echo "instructions: server exited:" >&2; cat "$log" >&2; exit 1; }
    sleep 0.1
  done
  echo "instructions: server did not start:" >&2; cat "$log" >&2; exit 1
}

stop() {
  kill -TERM "$PID" 2>/dev/null || true
  wait "$PID" 2>/dev/null || true
  PID=""
}

# requests BASE METHOD N TOKEN SESSION — N sequential requests on one keep-alive connection.
requests() {
  python3 - "$@" <<'EOF'
import http.client, json, sys, urllib.parse
base, method, n, token, session = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4], sys.argv[5]
u = urllib.parse.urlparse(base)
conn = http.client.HTTPConnection(u.hostname, u.port, timeout=600)
params = {} if method == "tools/list" else {"name": "whoami", "arguments": {}}
headers = {"Authorization": "Bearer " + token, "Content-Type": "application/json", "Accept": "application/json",
           "MCP-Protocol-Version": "2025-11-25", "Mcp-Session-Id": session, "X-Response-Format": "json"}
if session == "2026":  # MCP 2026-07-28: no session; version and capabilities in _meta, method and name in headers
    params["_meta"] = {"io.modelcontextprotocol/protocolVersion": "2026-07-28",
                       "io.modelcontextprotocol/clientCapabilities": {},
                       "io.modelcontextprotocol/clientInfo": {"name": "ir", "version": "1"}}
    del headers["Mcp-Session-Id"]
    headers.update({"MCP-Protocol-Version": "2026-07-28", "Mcp-Method": method})
    if method == "tools/call":
        headers["Mcp-Name"] = "whoami"
body = json.dumps({"jsonrpc": "2.0", "id": 1, "method": method, "params": params})
for _ in range(n):
    conn.request("POST", "/mcp", body, headers)
    r = conn.getresponse()
    data = r.read()
    if r.status != 200 or b'"result"' not in data:
        sys.exit(f"unexpected answer {r.status}: {data[:300]!r}")
EOF
}

# measure NAME BIN — prints "NAME list=<Ir/request> call=<Ir/request>".
measure() {
  local name=$1 bin=$2 dir=$WORK/$1 port base token session
  mkdir -p "$dir/tok"
  port=$(free_port)
  base="http://127.0.0.1:$port"
  start "$dir/data" "$port" "$dir/native.log" "$bin"
  python3 bench/setup_tokens.py "$base" "$dir/tok" 1 >/dev/null
  token=$(head -1 "$dir/tok/access_token.txt")
  session=$(python3 - "$base" "$token" <<'EOF'
import http.client, json, sys, urllib.parse
u = urllib.parse.urlparse(sys.argv[1])
c = http.client.HTTPConnection(u.hostname, u.port)
c.request("POST", "/mcp", json.dumps({"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {
    "protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "ir", "version": "1"}}}),
    {"Authorization": "Bearer " + sys.argv[2], "Content-Type": "application/json", "Accept": "application/json"})
r = c.getresponse(); r.read()
print(r.getheader("Mcp-Session-Id"))
EOF
)
  stop
  # IR_CANDIDATE_ERA=2026: the candidate's requests are MCP 2026-07-28 (stateless) instead.
  [[ $name == candidate && ${IR_CANDIDATE_ERA:-} == 2026 ]] && session=2026
  local run method n ir
  declare -A IR
  for run in "list $LOW" "list $HIGH" "call $HIGH"; do
    read -r method n <<<"$run"
    start "$dir/data" "$port" "$dir/cg-$method-$n.log" "$bin" valgrind --tool=callgrind --callgrind-out-file="$dir/cg.$method.$n" -q
    requests "$base" "tools/$method" "$n" "$token" "$session"
    stop
    ir=$(grep -h '^summary:\|^totals:' "$dir"/cg."$method"."$n"* | awk '{s += $2} END {print s}')
    IR[$method.$n]=$ir
  done
  awk -v n="$name" -v a="${IR[list.$LOW]}" -v b="${IR[list.$HIGH]}" -v c="${IR[call.$HIGH]}" -v d="$((HIGH - LOW))" \
    -v low="$LOW" -v high="$HIGH" \
    'BEGIN { list = (b - a) / d; printf "%s list=%.0f call=%.0f\n", n, list, (c - a + low * list) / high }'
}

echo "instructions per request (callgrind; runs of $LOW and $HIGH requests)"
B=$(measure baseline "$BASE_BIN"); echo "$B"
C=$(measure candidate "$CAND_BIN"); echo "$C"
python3 - "$B" "$C" <<'EOF'
import sys
def parse(line):
    return {k: float(v) for k, v in (p.split("=") for p in line.split()[1:])}
b, c = parse(sys.argv[1]), parse(sys.argv[2])
for k in ("list", "call"):
    print(f"tools_{k}_instructions_ratio={c[k] / b[k]:.3f} (candidate/baseline; < 1 is fewer instructions)")
EOF
