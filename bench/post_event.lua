-- wrk script: POST one unique RecordAccessed per request, spread over a set of records.
-- Usage: wrk ... -s bench/post_event.lua URL -- <api key> <records> <run nonce> [batch size]
-- done() prints one JSON line (prefixed "WRK-JSON ") that bench/load.py parses.
local threads = {}
local counter = 0
local key, records, nonce, batch

local template = '{"event_id":"%s","type":"RecordAccessed","occurred_at":"2026-03-02T15:04:05-05:00",'
  .. '"actor":{"id":"clin-17","name":"Dr. A. Rivera","role":"treating_clinician"},'
  .. '"source":{"system":"ehr-main"},"categories":["progress_notes"],"action":"view",'
  .. '"purpose_of_use":"TREAT"%s}'

function setup(thread)
  thread:set("tid", #threads + 1)
  table.insert(threads, thread)
end

function init(args)
  key = args[1]
  records = tonumber(args[2])
  nonce = tonumber(args[3])
  batch = tonumber(args[4] or "0")
end

local function next_id()
  counter = counter + 1
  return string.format("%08x-%04x-4000-8000-%012x", nonce, tid, counter)
end

function request()
  local headers = { ["Authorization"] = "Bearer " .. key, ["Content-Type"] = "application/json" }
  if batch > 0 then
    local items = {}
    for i = 1, batch do
      local id = next_id()
      local ref = string.format(',"record_ref":"r-%d"', (counter * 7919 + tid) % records)
      items[i] = string.format(template, id, ref)
    end
    return wrk.format("POST", "/v1/events:batch", headers, '{"events":[' .. table.concat(items, ",") .. ']}')
  end
  local id = next_id()
  local path = string.format("/v1/records/r-%d/events", (counter * 7919 + tid) % records)
  return wrk.format("POST", path, headers, string.format(template, id, ""))
end

local statuses = {}
function response(status, headers, body)
  statuses[status] = (statuses[status] or 0) + 1
end

function done(summary, latency, requests)
  local bad = summary.errors.status
  print(string.format(
    'WRK-JSON {"requests":%d,"duration_us":%d,"connect_errors":%d,"read_errors":%d,'
      .. '"write_errors":%d,"timeouts":%d,"non_2xx":%d,"p50_us":%d,"p90_us":%d,"p99_us":%d,"max_us":%d}',
    summary.requests, summary.duration, summary.errors.connect, summary.errors.read,
    summary.errors.write, summary.errors.timeout, bad,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max))
end
