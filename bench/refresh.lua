-- wrk script: refresh-token grants at POST /api/v1/auth/token.
--
--   wrk -t T -c C -d 10s -s bench/refresh.lua URL -- SEEDS_FILE T [BASIC_AUTH_FILE]
--
-- Public clients (no BASIC_AUTH_FILE): the form carries client_id (token_endpoint_auth_method none).
-- Confidential clients (client_secret_basic): BASIC_AUTH_FILE holds the Authorization header value
-- ("Basic base64(client_id:client_secret)", one line); it is the same for every request of the run,
-- so it is set once in init and the form has no client_id. All seeds must belong to that client.
-- SEEDS_FILE has one "client_id refresh_token" line per session (bench/setup_tokens.py writes it).
-- Lines are split round-robin between wrk threads; each thread needs at least as many sessions as
-- it has connections. A refresh token is single use and each exchange returns a new one, so each
-- thread keeps a queue of tokens: request() pops one, response() pushes the new one back. A token
-- is therefore never in two in-flight requests (that would be a replay and revoke the session).
-- A non-200 loses that session's chain; non-200s are counted and reported. If a thread runs out
-- of tokens it sends GET /health instead and counts it as "starved".

local threads = {}
local next_id = 0

function setup(thread)
  thread:set("tid", next_id)
  next_id = next_id + 1
  table.insert(threads, thread)
end

-- Per-thread state (each wrk thread has its own Lua environment).
local queue = {} -- ring buffer of {client_id, refresh_token}
local head, tail = 1, 0
-- Counters are globals so that done() can read them with thread:get().
ok, bad, starved, unparsed, sent, seeded = 0, 0, 0, 0, 0, 0
statuses = {}
first_error = ""
local in_flight_client = nil
local headers = { ["Content-Type"] = "application/x-www-form-urlencoded" }
basic = false -- client_secret_basic (Authorization header) instead of client_id in the form

local function urlencode(s)
  return (s:gsub("[^%w%-%._~]", function(ch) return string.format("%%%02X", string.byte(ch)) end))
end

local function push(cid, rt)
  tail = tail + 1
  queue[tail] = { cid, rt }
end

local function pop()
  if head > tail then return nil end
  local item = queue[head]
  queue[head] = nil
  head = head + 1
  return item
end

function init(args)
  local path = args[1]
  if not path then error("refresh.lua: pass the seeds file after --") end
  local nthreads = tonumber(args[2] or "")
  if not nthreads then error("refresh.lua: pass the wrk thread count after the seeds file") end
  local auth_file = args[3]
  if auth_file and auth_file ~= "" then
    local ah = assert(io.open(auth_file, "r"))
    local value = ah:read("*l")
    ah:close()
    if not value or not value:match("^Basic %S+$") then
      error("refresh.lua: " .. auth_file .. " must hold one 'Basic <base64>' line")
    end
    -- request() passes its own header table to wrk.format (which then ignores wrk.headers), so the
    -- header goes into that table; wrk.headers is set too for anything formatted without one.
    headers["Authorization"] = value
    wrk.headers["Authorization"] = value
    basic = true
  end
  local i = 0
  local fh = assert(io.open(path, "r"))
  for line in fh:lines() do
    local cid, rt = line:match("^(%S+)%s+(%S+)")
    if cid then
      if i % nthreads == tid then
        push(cid, rt)
        seeded = seeded + 1
        -- With no way to tell which request a response answers, a thread's sessions must share
        -- one client_id (the setup registers a single client).
        if in_flight_client and in_flight_client ~= cid then
          error("refresh.lua: a wrk thread's seeds must share one client_id")
        end
        in_flight_client = cid
      end
      i = i + 1
    end
  end
  fh:close()
end

function request()
  local item = pop()
  if not item then
    starved = starved + 1
    return wrk.format("GET", "/health", {}, nil)
  end
  sent = sent + 1
  local body = "grant_type=refresh_token&refresh_token=" .. urlencode(item[2])
  if not basic then body = body .. "&client_id=" .. urlencode(item[1]) end
  return wrk.format("POST", "/api/v1/auth/token", headers, body)
end

function response(status, hdrs, body)
  local rt = body and body:match('"refresh_token"%s*:%s*"([^"]+)"')
  if status == 200 and rt then
    ok = ok + 1
    push(in_flight_client, rt)
  elseif status == 200 and body and body:match('"status"%s*:%s*"ok"') then
    -- a /health sent while starved
  else
    if status == 200 then unparsed = unparsed + 1 else bad = bad + 1 end
    statuses[status] = (statuses[status] or 0) + 1
    if first_error == "" then first_error = status .. " " .. (body or ""):sub(1, 300) end
  end
end

function done(summary, latency, requests)
  local t_ok, t_bad, t_starved, t_unparsed, t_sent, t_seeded = 0, 0, 0, 0, 0, 0
  local all_status, err = {}, ""
  for _, t in ipairs(threads) do
    t_ok = t_ok + t:get("ok")
    t_bad = t_bad + t:get("bad")
    t_starved = t_starved + t:get("starved")
    t_unparsed = t_unparsed + t:get("unparsed")
    t_sent = t_sent + t:get("sent")
    t_seeded = t_seeded + t:get("seeded")
    for s, n in pairs(t:get("statuses")) do all_status[s] = (all_status[s] or 0) + n end
    if err == "" then err = t:get("first_error") end
  end
  local secs = summary.duration / 1e6
  local e = summary.errors
  local status_list = {}
  for s, n in pairs(all_status) do table.insert(status_list, s .. ":" .. n) end
  io.write(string.format("refresh_client_auth=%s\n", threads[1] and threads[1]:get("basic") and "client_secret_basic" or "none"))
  io.write(string.format("refresh_seeded=%d\n", t_seeded))
  io.write(string.format("refresh_ok=%d\n", t_ok))
  io.write(string.format("refresh_grants_per_s=%.1f\n", t_ok / secs))
  io.write(string.format("refresh_non200=%d\n", t_bad))
  io.write(string.format("refresh_non200_statuses=%s\n", table.concat(status_list, ",")))
  io.write(string.format("refresh_200_without_token=%d\n", t_unparsed))
  io.write(string.format("refresh_starved=%d\n", t_starved))
  io.write(string.format("refresh_socket_errors=%d\n", e.connect + e.read + e.write + e.timeout))
  io.write(string.format("refresh_latency_p50_ms=%.2f\n", latency:percentile(50) / 1000))
  io.write(string.format("refresh_latency_p99_ms=%.2f\n", latency:percentile(99) / 1000))
  if err ~= "" then io.write("refresh_first_error=" .. err:gsub("\n", " ") .. "\n") end
end
