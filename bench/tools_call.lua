-- wrk script: authenticated MCP tools/call of the whoami tool at POST /mcp.
--
--   wrk -t T -c C -d 10s -s bench/tools_call.lua URL/mcp -- ACCESS_TOKEN_FILE MCP_SESSION_FILE
--
-- Requests are sent inside one MCP session (Mcp-Session-Id from initialize), as SDK clients do,
-- with X-Response-Format: json so that the answer is one plain JSON body (no SSE stream).
--
-- The request is built once per thread (no request()/response() functions, so wrk sends a
-- pre-formatted request and does not hand responses to Lua). Responses with status > 399 are
-- counted by wrk itself (summary.errors.status) and reported as tools_call_http_errors. wrk does
-- not look at the bodies: run.sh checks one answer before the run (a whoami result, not a JSON-RPC
-- error) and, on the audited server, counts the audit events the run wrote.

local threads = {}

function setup(thread)
  table.insert(threads, thread)
end

function init(args)
  local path = args[1]
  if not path then error("tools_call.lua: pass the access token file after --") end
  local fh = assert(io.open(path, "r"))
  local token = fh:read("*l")
  fh:close()
  wrk.method = "POST"
  wrk.body = '{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"whoami","arguments":{}}}'
  wrk.headers["Authorization"] = "Bearer " .. token
  wrk.headers["Content-Type"] = "application/json"
  wrk.headers["Accept"] = "application/json, text/event-stream"
  wrk.headers["MCP-Protocol-Version"] = "2025-11-25"
  wrk.headers["X-Response-Format"] = "json"
  local sfile = args[2]
  if not sfile then error("tools_call.lua: pass the MCP session file (or 2026) after the token file") end
  if sfile == "2026" then
    -- MCP 2026-07-28: no session; the protocol version and client capabilities in _meta.
    wrk.body = '{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"whoami","arguments":{},"_meta":{'
      .. '"io.modelcontextprotocol/protocolVersion":"2026-07-28",'
      .. '"io.modelcontextprotocol/clientCapabilities":{},'
      .. '"io.modelcontextprotocol/clientInfo":{"name":"bench","version":"1"}}}}'
    wrk.headers["MCP-Protocol-Version"] = "2026-07-28"
    wrk.headers["Mcp-Method"] = "tools/call"
    wrk.headers["Mcp-Name"] = "whoami"
    return
  end
  local sh = assert(io.open(sfile, "r"))
  wrk.headers["Mcp-Session-Id"] = sh:read("*l")
  sh:close()
end

function done(summary, latency, requests)
  local secs = summary.duration / 1e6
  local e = summary.errors
  local good = summary.requests - e.status
  io.write(string.format("tools_call_requests=%d\n", summary.requests))
  io.write(string.format("tools_call_per_s=%.1f\n", good / secs))
  io.write(string.format("tools_call_http_errors=%d\n", e.status))
  io.write(string.format("tools_call_socket_errors=%d\n", e.connect + e.read + e.write + e.timeout))
  io.write(string.format("tools_call_latency_p50_ms=%.3f\n", latency:percentile(50) / 1000))
  io.write(string.format("tools_call_latency_p99_ms=%.3f\n", latency:percentile(99) / 1000))
end
