-- bench/put.lua: wrk script. PUT with a JSON body, a distinct object id per
-- request (so that the outbox's per-object ordering never serialises the
-- events of the run). Environment:
--   ET_PATH   path before the id   (default /console/member/)
--   ET_QUERY  text after the id    (default none)
--   ET_BODY   the JSON body        (default: a member of ~100 bytes)
--   ET_ID     one object id for every request (default: a new id each;
--             figure 14 updates one hot object again and again)
-- done() prints one line: WRK requests=... rps=... p50_us=... p99_us=...

local prefix = os.getenv("ET_PATH") or "/console/member/"
local suffix = os.getenv("ET_QUERY") or ""
local body = os.getenv("ET_BODY") or
    '{"username":"partner1_dev1","email":"dev1@example.com","phone":"+1 555 0100","status":"active"}'
local fixed_id = os.getenv("ET_ID")
local nthreads = 0

function setup(thread)
    nthreads = nthreads + 1
    thread:set("tid", nthreads)
end

function init(args)
    counter = 0
    hdrs = {
        ["Content-Type"] = "application/json",
        ["Accept"] = "application/json",
        ["User-Agent"] = "Mashery Event Trigger 1.0",
    }
end

function request()
    counter = counter + 1
    local id = fixed_id or ("w" .. tid .. "-" .. counter)
    return wrk.format("PUT", prefix .. id .. suffix, hdrs, body)
end

function done(summary, latency, requests)
    local e = summary.errors
    io.write(string.format(
        "WRK requests=%d duration_us=%d rps=%.1f p50_us=%d p90_us=%d " ..
        "p99_us=%d max_us=%d errors=%d non2xx=%d\n",
        summary.requests, summary.duration,
        summary.requests / (summary.duration / 1e6),
        latency:percentile(50), latency:percentile(90),
        latency:percentile(99), latency.max,
        e.connect + e.read + e.write + e.timeout, e.status))
end
