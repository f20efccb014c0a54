-- wrk script: POST an OpenAI chat completion request, print a JSON summary at the end.
--
--   wrk -t1 -c16 -d5s --latency -s bench/post.lua http://127.0.0.1:PORT -- \
--       <path> <plain|stream> [key] [model]
--
-- path  defaults to /v1/chat/completions
-- kind  "plain" or "stream" (stream adds "stream":true)
-- key   bearer token; defaults to $BENCH_KEY, then "sk-bench"
-- model defaults to "bench-<kind>"
--
-- The request is static (built once in init), so wrk does no Lua work per request.
-- With $WRK_MAX_REQUESTS set, each thread stops after that many responses (used by the
-- soak; wrk then hands every response to Lua, which costs wrk some CPU).
--
-- done() prints one line: WRK_JSON {...} with requests, duration_us, bytes, errors and
-- latency_us percentiles (p50, p90, p99, max, mean), all latencies in microseconds.

local function chat_body(model, stream)
   local body = '{"model":"' .. model .. '","messages":[{"role":"user","content":"Say hello"}]'
   if stream then
      body = body .. ',"stream":true'
   end
   return body .. "}"
end

function init(args)
   local kind = args[2] or "plain"
   if kind ~= "plain" and kind ~= "stream" then
      error("kind must be plain or stream, got " .. kind)
   end
   local key = args[3] or os.getenv("BENCH_KEY") or "sk-bench"
   wrk.method = "POST"
   wrk.path = args[1] or "/v1/chat/completions"
   wrk.body = chat_body(args[4] or ("bench-" .. kind), kind == "stream")
   wrk.headers["Authorization"] = "Bearer " .. key
   wrk.headers["Content-Type"] = "application/json"
end

local max_requests = tonumber(os.getenv("WRK_MAX_REQUESTS") or "")
if max_requests then
   local seen = 0
   function response(status, headers, body)
      seen = seen + 1
      if seen >= max_requests then
         wrk.thread:stop()
      end
   end
end

function done(summary, latency, requests)
   local e = summary.errors
   io.write(string.format(
      'WRK_JSON {"requests":%d,"duration_us":%d,"bytes":%d,'
         .. '"errors":{"connect":%d,"read":%d,"write":%d,"status":%d,"timeout":%d},'
         .. '"latency_us":{"p50":%d,"p90":%d,"p99":%d,"max":%d,"mean":%.1f}}\n',
      summary.requests, summary.duration, summary.bytes,
      e.connect, e.read, e.write, e.status, e.timeout,
      latency:percentile(50), latency:percentile(90), latency:percentile(99),
      latency.max, latency.mean
   ))
end
