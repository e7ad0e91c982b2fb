#!/usr/bin/env python3
"""MCP and audit helpers for bench/run.sh (stdlib only).

  mcp_check.py init BASE_URL ACCESS_TOKEN_FILE SESSION_FILE
      Opens an MCP session (initialize; writes the Mcp-Session-Id to SESSION_FILE), then checks
      one tools/list call (a tool list) and one tools/call whoami with X-Response-Format: json (a
      plain JSON answer with a result, not a JSON-RPC error or an isError tool result): the same
      requests the wrk scripts send. Exits 1 with the response on anything else.

  mcp_check.py audit-head DATA_DIR
      Prints the audit chain's head sequence number (the number of audit events written so far)
      read from DATA_DIR/bridgekeeper.db (the embedded SQLite database, opened read-only).

  mcp_check.py audit-count DATA_DIR AFTER_SEQ
      Prints audit_events_total=N and audit_events_by_kind=kind/outcome:n,... for the events
      with seq > AFTER_SEQ.
"""

import http.client
import json
import os
import sqlite3
import sys
import urllib.parse

PROTOCOL = "2025-11-25"


def fail(msg):
    print("mcp_check.py: " + msg, file=sys.stderr)
    sys.exit(1)


def init(base, token_file, session_file):
    u = urllib.parse.urlsplit(base)
    token = open(token_file).read().strip()
    hdrs = {"Authorization": "Bearer " + token, "Content-Type": "application/json",
            "Accept": "application/json, text/event-stream"}
    c = http.client.HTTPConnection(u.hostname, u.port, timeout=10)
    init_body = ('{"jsonrpc":"2.0","id":0,"method":"initialize","params":{"protocolVersion":"%s",'
                 '"capabilities":{},"clientInfo":{"name":"bench","version":"1"}}}' % PROTOCOL)
    c.request("POST", "/mcp", body=init_body, headers=hdrs)
    r = c.getresponse()
    r.read()
    sid = r.getheader("Mcp-Session-Id")
    if r.status != 200 or not sid:
        fail(f"initialize failed: {r.status} {r.getheaders()}")
    with open(session_file, "w") as f:
        f.write(sid + "\n")
    hdrs["Mcp-Session-Id"] = sid
    hdrs["MCP-Protocol-Version"] = PROTOCOL

    body = '{"jsonrpc":"2.0","id":1,"method":"tools/list","params":{}}'
    c.request("POST", "/mcp", body=body, headers=hdrs)
    r = c.getresponse()
    data = r.read()
    print(f"POST /mcp tools/list -> {r.status} {r.getheader('Content-Type')} {len(data)} bytes: {data[:200]!r}")
    if r.status != 200 or b'"tools"' not in data:
        fail(f"tools/list did not return a tool list\nresponse headers: {r.getheaders()}")

    # Byte for byte the request of bench/tools_call.lua and of the oha fixed-rate run.
    hdrs["X-Response-Format"] = "json"
    body = '{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"whoami","arguments":{}}}'
    c.request("POST", "/mcp", body=body, headers=hdrs)
    r = c.getresponse()
    data = r.read()
    ctype = r.getheader("Content-Type") or ""
    print(f"POST /mcp tools/call whoami -> {r.status} {ctype} {len(data)} bytes: {data[:300]!r}")
    try:
        msg = json.loads(data)
    except ValueError:
        msg = None
    if (r.status != 200 or not ctype.startswith("application/json") or not isinstance(msg, dict)
            or "result" not in msg or "error" in msg or msg["result"].get("isError")):
        fail(f"tools/call whoami did not return a plain JSON tool result\nresponse headers: {r.getheaders()}")


def db(data_dir):
    path = os.path.join(data_dir, "bridgekeeper.db")
    if not os.path.exists(path):
        fail(f"no embedded database at {path}")
    return sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=10)


def audit_head(data_dir):
    row = db(data_dir).execute("SELECT head_seq FROM audit_chain WHERE id = 1").fetchone()
    print(row[0] if row else 0)


def audit_count(data_dir, after):
    rows = db(data_dir).execute(
        "SELECT kind, outcome, count(*) FROM audit_events WHERE seq > ? GROUP BY kind, outcome ORDER BY 3 DESC",
        (int(after),)).fetchall()
    print(f"audit_events_total={sum(n for _, _, n in rows)}")
    print("audit_events_by_kind=" + ",".join(f"{k}/{o}:{n}" for k, o, n in rows))


def main():
    a = sys.argv[1:]
    if len(a) == 4 and a[0] == "init":
        init(*a[1:])
    elif len(a) == 2 and a[0] == "audit-head":
        audit_head(a[1])
    elif len(a) == 3 and a[0] == "audit-count":
        audit_count(a[1], a[2])
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main()
