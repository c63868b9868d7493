-- cfut_bench.lua: the bench workloads on cfut's thread pool and process
-- pool (2 workers each).
-- Run from the repository root: ./cfut bench/cfut_bench.lua [PART]
-- where PART is `threads` (W1..W5), `processes` (P1..P5), `mpi` (M1..M5,
-- the process workloads on mpi_pool), `growth` (W4 at three sizes),
-- `many` (W1 on 32 workers), `mapmem` (the peak memory of a plain map)
-- or nothing (threads and processes); bench/run.sh sets LUA_PATH and
-- LUA_CPATH and runs the parts separately.  Prints machine-readable
-- lines: `W1 <tasks/s>`, `W2 <items/s>`, `W3 <speedup>`, `W4 <s>`,
-- `W5 <us>`, then `P1 <tasks/s>`, `P2 <items/s>`, `P3 <speedup>`,
-- `P4 <s>`, `P5 <us>`; `G10K <s>`, `G100K <s>`, `G1M <s>`, `D1M <s>`,
-- `DP1M <s>`;
-- `T32 <tasks/s>`; `MM <MB>`.
local futures = require "cfut"

local N = 100000          -- W1, W2, P1, P2: tasks / items
local FIB_N, FIB_TASKS = 30, 8
local RECORDS = 100000    -- W4, P4
local LAT_CALLS = 10000   -- W5
local P_LAT_CALLS = 2000  -- P5
local CHUNK = 1000        -- P2: items per message
local REPS = tonumber(os.getenv("BENCH_REPS")) or 3
local W4_REPS = tonumber(os.getenv("BENCH_W4_REPS")) or 3
local MANY = 32           -- T32: workers
local MAP_ITEMS = 1000000 -- MM: items of the plain map
local PART = arg and arg[1] or "all"

local now = futures.monotonic

local function noop (x) return x end

local function fib (n)
  if n < 2 then return n end
  return fib(n - 1) + fib(n - 2)
end

local function best_of (reps, fn)
  local best = math.huge
  for _ = 1, reps do
    local dt = fn()
    if dt < best then best = dt end
  end
  return best
end

-- W1, P1: submit N no-op tasks taking and returning one integer, then
-- collect every result.
local function w1 (ex)
  local fs = {}
  local t0 = now()
  for i = 1, N do fs[i] = ex:submit(noop, i) end
  local sum = 0
  for i = 1, N do sum = sum + fs[i]:result() end
  local dt = now() - t0
  assert(sum == N * (N + 1) // 2, "W1: wrong results")
  return dt
end

-- W2, P2: an ordered map of the no-op over N integers (P2 with
-- chunksize = CHUNK).
local function w2 (ex, chunksize)
  local xs = {}
  for i = 1, N do xs[i] = i end
  local t0 = now()
  local sum = 0
  if chunksize then
    for _, v in ex:map{noop, xs, chunksize = chunksize} do sum = sum + v end
  else
    for _, v in ex:map(noop, xs) do sum = sum + v end
  end
  local dt = now() - t0
  assert(sum == N * (N + 1) // 2, "W2: wrong results")
  return dt
end

-- W3, P3: FIB_TASKS fib(FIB_N) on the pool against the same in sequence
-- in this state.
local function w3 (ex)
  local seq = best_of(REPS, function ()
    local t0 = now()
    for _ = 1, FIB_TASKS do fib(FIB_N) end
    return now() - t0
  end)
  local par = best_of(REPS, function ()
    local t0 = now()
    local fs = {}
    for i = 1, FIB_TASKS do fs[i] = ex:submit(fib, FIB_N) end
    for i = 1, FIB_TASKS do assert(fs[i]:result() == 832040) end
    return now() - t0
  end)
  return seq / par
end

-- W4, P4: a table of RECORDS records to a task and back (seconds a trip).
local function records (n)
  local t = {}
  for i = 1, n or RECORDS do
    t[i] = {id = i, name = "item" .. i, tags = {"a", "b"}}
  end
  return t
end

local function w4 (ex, t, reps)
  local n = #t
  return best_of(reps or W4_REPS, function ()
    -- Start each trip without the garbage of earlier workloads and trips
    -- (Python's reference counting frees those at once; Lua's collector
    -- would make this trip pay for them).
    collectgarbage()
    local t0 = now()
    local back = ex:submit(noop, t):result()
    local dt = now() - t0
    assert(#back == n and back[n].name == "item" .. n
           and back[1].tags[2] == "b", "W4: wrong copy")
    return dt
  end)
end

-- W5, P5: one submit -> result round trip, `calls` times in a row
-- (median, µs).
local function w5 (ex, calls)
  local samples = {}
  for i = 1, calls do
    local t0 = now()
    local r = ex:submit(noop, i):result()
    samples[i] = now() - t0
    assert(r == i, "W5: wrong result")
  end
  table.sort(samples)
  return samples[calls // 2 + 1] * 1e6
end

-- Start both workers of 'ex' before timing anything.
local function warm (ex)
  local fs = {}
  for i = 1, 100 do fs[i] = ex:submit(noop, i) end
  for i = 1, 100 do fs[i]:result() end
end

local function threads ()
  local ex <close> = futures.thread_pool(2)
  warm(ex)
  print(string.format("W1 %.0f", N / best_of(REPS, function ()
    return w1(ex)
  end)))
  print(string.format("W2 %.0f", N / best_of(REPS, function ()
    return w2(ex)
  end)))
  print(string.format("W3 %.3f", w3(ex)))
  print(string.format("W4 %.4f", w4(ex, records())))
  print(string.format("W5 %.1f", w5(ex, LAT_CALLS)))
end

local function processes ()
  local ex <close> = futures.process_pool(2)
  warm(ex)
  print(string.format("P1 %.0f", N / best_of(REPS, function ()
    return w1(ex)
  end)))
  print(string.format("P2 %.0f", N / best_of(REPS, function ()
    return w2(ex, CHUNK)
  end)))
  print(string.format("P3 %.3f", w3(ex)))
  print(string.format("P4 %.4f", w4(ex, records())))
  print(string.format("P5 %.1f", w5(ex, P_LAT_CALLS)))
end

-- W4 at 10k, 100k and 1M records on the thread pool (issue 12: a cost
-- linear in the size, so G1M <= 11 x G100K).  Each size gets a fresh
-- pool (as W4 does) and its best of W4_REPS trips, one for 1M (about
-- 3 s a trip; the rounds of bench/run.sh still give a best of several).
local function growth ()
  for _, size in ipairs{{"G10K", 10000}, {"G100K", 100000},
                        {"G1M", 1000000}} do
    local ex <close> = futures.thread_pool(2)
    warm(ex)
    local t = records(size[2])
    local reps = size[2] >= 1000000 and 1 or W4_REPS
    print(string.format("%s %.4f", size[1], w4(ex, t, reps)))
    t = nil
    collectgarbage()
  end
  -- D1M, DP1M: a linked list of a million nodes ({next = {next = ...}})
  -- to a task and back, on the thread and the process pool (issue 11: no
  -- depth limit, a trip under 1 s).  One trip each, seconds.
  for _, p in ipairs{{"D1M", futures.thread_pool},
                     {"DP1M", futures.process_pool}} do
    local ex <close> = p[2](2)
    warm(ex)
    local l
    for _ = 1, 1000000 do l = {next = l} end
    collectgarbage()
    local t0 = now()
    local back = ex:submit(noop, l):result()
    local dt = now() - t0
    local n = 0
    while back do
      n = n + 1
      back = back.next
    end
    assert(n == 1000000, p[1] .. ": wrong copy")
    print(string.format("%s %.4f", p[1], dt))
    l = nil
    collectgarbage()
  end
end

-- W1 on MANY thread workers (issue 12: keep >= 85 % of the 2-worker W1).
local function many ()
  local ex <close> = futures.thread_pool(MANY)
  warm(ex)
  print(string.format("T32 %.0f", N / best_of(REPS, function ()
    return w1(ex)
  end)))
end

-- The peak resident memory (VmHWM, MB) of a program that runs a plain
-- map over MAP_ITEMS integers on a thread pool and consumes it, as a new
-- user would (issue 12: under 150 MB).  Run alone: the peak is this
-- process's.
local function mapmem ()
  local xs = {}
  for i = 1, MAP_ITEMS do xs[i] = i end
  local sum = 0
  do
    local ex <close> = futures.thread_pool(2)
    for _, v in ex:map(noop, xs) do sum = sum + v end
  end
  assert(sum == MAP_ITEMS * (MAP_ITEMS + 1) // 2, "MM: wrong results")
  local f = assert(io.open("/proc/self/status"))
  local st = f:read("a")
  f:close()
  local kb = assert(tonumber(st:match("VmHWM:%s*(%d+) kB")), "no VmHWM")
  print(string.format("MM %.1f", kb / 1024))
end

-- M1..M5: the process pool's workloads on an MPI pool of 2 (spawn
-- mode; needs lib/cfut/mpi.so from `make mpi`, docs/mpi.md).
-- Under `mpiexec -n 3 ./cfut -l cfut.mpi bench/cfut_bench.lua mpi` (static
-- mode: ranks 1 and 2 are the workers) the lines are S1..S5 instead.
local function mpi ()
  local static = require("cfut.mpi").info().mode == "static"
  local k = static and "S" or "M"
  local ex <close> = futures.mpi_pool(2)
  warm(ex)
  print(string.format("%s1 %.0f", k, N / best_of(REPS, function ()
    return w1(ex)
  end)))
  print(string.format("%s2 %.0f", k, N / best_of(REPS, function ()
    return w2(ex, CHUNK)
  end)))
  print(string.format("%s3 %.3f", k, w3(ex)))
  print(string.format("%s4 %.4f", k, w4(ex, records())))
  print(string.format("%s5 %.1f", k, w5(ex, P_LAT_CALLS)))
end

io.stdout:setvbuf("line")
if PART == "threads" then threads()
elseif PART == "processes" then processes()
elseif PART == "growth" then growth()
elseif PART == "many" then many()
elseif PART == "mapmem" then mapmem()
elseif PART == "mpi" then mpi()
elseif PART == "all" then threads(); processes()
else
  error("usage: cfut_bench.lua [threads|processes|growth|many|mapmem|mpi]", 0)
end
