-- wrk script: POST Alertmanager v4 payloads with a fresh fingerprint per alert.
--
-- bench/wrk.py prepends the globals PREFIX, ALERT, SUFFIX, PLACEHOLDER (payload text
-- pieces made by bench/payloads.py), NALERTS (alerts per payload), NONCE (per run)
-- and DUPSET (0: every fingerprint distinct; N: fingerprints cycle over N per thread,
-- the duplicate-heavy mode). done() prints one line "BENCH_JSON {...}".

wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"

local threads = {}
local nthreads = 0

function setup(thread)
   thread:set("tid", nthreads)
   nthreads = nthreads + 1
   table.insert(threads, thread)
end

function init(args)
   counter = 0
   non202 = 0
   journaled = 0
   duplicates = 0
end

local format = string.format
local concat = table.concat

-- ALERT cut around each PLACEHOLDER once, so a request is one table.concat.
local pieces = {}
do
   local start = 1
   while true do
      local i, j = string.find(ALERT, PLACEHOLDER, start, true)
      if not i then break end
      table.insert(pieces, string.sub(ALERT, start, i - 1))
      start = j + 1
   end
   table.insert(pieces, string.sub(ALERT, start))
end
local npieces = #pieces

function request()
   local buf = {PREFIX}
   local b = 1
   for k = 1, NALERTS do
      local n = counter
      if DUPSET > 0 then
         n = counter % DUPSET
      end
      counter = counter + 1
      local fp = format("%08x%02x%06x", NONCE, tid, n % 16777216)
      if k > 1 then
         b = b + 1
         buf[b] = ","
      end
      for p = 1, npieces - 1 do
         buf[b + 1] = pieces[p]
         buf[b + 2] = fp
         b = b + 2
      end
      b = b + 1
      buf[b] = pieces[npieces]
   end
   buf[b + 1] = SUFFIX
   return wrk.format(nil, nil, nil, concat(buf))
end

function response(status, headers, body)
   if status ~= 202 then
      non202 = non202 + 1
      return
   end
   local j = body:match('"journaled":%s*(%d+)')
   local d = body:match('"duplicates":%s*(%d+)')
   if j then journaled = journaled + tonumber(j) end
   if d then duplicates = duplicates + tonumber(d) end
end

function done(summary, latency, requests)
   local bad, jour, dups = 0, 0, 0
   for _, t in ipairs(threads) do
      bad = bad + t:get("non202")
      jour = jour + t:get("journaled")
      dups = dups + t:get("duplicates")
   end
   local e = summary.errors
   io.write(format(
      'BENCH_JSON {"requests":%d,"duration_us":%d,"bytes":%d,' ..
      '"errors":{"connect":%d,"read":%d,"write":%d,"status":%d,"timeout":%d},' ..
      '"non202":%d,"journaled":%d,"duplicates":%d,' ..
      '"latency_us":{"mean":%.1f,"p50":%d,"p90":%d,"p99":%d,"max":%d}}\n',
      summary.requests, summary.duration, summary.bytes,
      e.connect, e.read, e.write, e.status, e.timeout,
      bad, jour, dups,
      latency.mean, latency:percentile(50.0), latency:percentile(90.0),
      latency:percentile(99.0), latency.max))
end
