-- stress/million.lua: a million tasks through each kind of pool (issue 4,
-- "Load and leaks").  Every result is checked; the resident memory
-- (VmRSS) is printed at the start, after a warm-up and at the end, and
-- the run fails if it grew by 10 MB or more after the warm-up.
--
--   cfut stress/million.lua [tasks [kind]]     kind: thread, process, both
--
-- CFUT_STRESS_NORSS=1 checks the results only (for sanitized builds);
-- CFUT_STRESS_TRACE=1 prints VmRSS every 100 000 tasks.
--
-- Tasks go in batches of BATCH: submit them all, then take every result,
-- so that at most one batch of futures is alive at a time.

local futures = require "cfut"

local TOTAL = math.tointeger(tonumber(arg[1] or "")) or 1000000
local KIND = arg[2] or "both"
local BATCH = 10000
-- Warm-up: the first fifth, while the heap grows to the size that the
-- collector's cycles need (CFUT_STRESS_TRACE=1 shows it level off).
local WARMUP = TOTAL // 5
local LIMIT_KB = 10 * 1024
local TRACE = os.getenv("CFUT_STRESS_TRACE")
local NORSS = (os.getenv("CFUT_STRESS_NORSS") or "") ~= ""

local function rss_kb ()
  local fh = assert(io.open("/proc/self/status"))
  local s = fh:read("a")
  fh:close()
  return math.tointeger(tonumber(s:match("VmRSS:%s*(%d+)")))
end

local function task (i)
  return i * 3 + 1
end

-- Run n tasks through ex in batches, checking each result; returns the
-- index of the last task run.
local function run (ex, first, n)
  local fs = {}
  local i = first
  while i < first + n do
    local k = math.min(BATCH, first + n - i)
    for j = 1, k do fs[j] = ex:submit(task, i + j - 1) end
    for j = 1, k do
      local v = fs[j]:result(60)
      if v ~= (i + j - 1) * 3 + 1 then
        error(string.format("task %d returned %s", i + j - 1, tostring(v)))
      end
      fs[j] = nil
    end
    i = i + k
    if TRACE and (i - 1) % 100000 == 0 then
      io.stderr:write(string.format("  %d tasks: VmRSS %d KB, Lua %.0f KB\n",
                                    i - 1, rss_kb(), collectgarbage("count")))
    end
  end
  return i
end

-- A million tasks through a pool of 'kind'; true if memory stayed within
-- the bound.
local function stress (kind, make)
  collectgarbage()
  local ex = make()
  local t0 = futures.monotonic()
  local start = rss_kb()
  local i = run(ex, 1, WARMUP)
  collectgarbage()
  local warm = rss_kb()
  run(ex, i, TOTAL - WARMUP)
  collectgarbage()
  local finish = rss_kb()
  local secs = futures.monotonic() - t0
  ex:shutdown()
  local grown = finish - warm
  print(string.format(
    "%-7s pool: %d tasks in %.1f s (%.0f tasks/s), all results right; "
    .. "VmRSS start %d KB, after warm-up (%d tasks) %d KB, end %d KB, "
    .. "growth after warm-up %d KB (bound %d KB): %s",
    kind, TOTAL, secs, TOTAL / secs, start, WARMUP, warm, finish, grown,
    LIMIT_KB, grown < LIMIT_KB and "PASS" or "FAIL"))
  io.stdout:flush()
  return NORSS or grown < LIMIT_KB
end

local ok = true
if KIND == "thread" or KIND == "both" then
  ok = stress("thread", futures.thread_pool) and ok
end
if KIND == "process" or KIND == "both" then
  ok = stress("process", futures.process_pool) and ok
end
if not ok then
  io.stderr:write("million: resident memory grew too much\n")
  os.exit(1)
end
