-- luv_bench.lua: the cfut bench workloads on luv's work queue (libuv's
-- thread pool, one Lua state per pool thread), for comparison.
-- Run: UV_THREADPOOL_SIZE=2 lua5.4 bench/luv_bench.lua
-- Prints machine-readable lines: `W1 <tasks/s>`, `W2 <items/s>`,
-- `W3 <speedup>`, `W4 n/a`, `W5 <us>`.
local uv = require "luv"

local N = 100000          -- W1, W2: tasks / items
local FIB_N, FIB_TASKS = 30, 8
local LAT_CALLS = 10000   -- W5
local REPS = tonumber(os.getenv("BENCH_REPS")) or 3

local now = uv.hrtime     -- nanoseconds

local function best_of (reps, fn)
  local best = math.huge
  for _ = 1, reps do
    local dt = fn()
    if dt < best then best = dt end
  end
  return best
end

-- W1: queue N no-op tasks taking and returning one integer, then collect
-- every result (the after-work callbacks run in the loop).
local function w1 ()
  local got, sum = 0, 0
  local work = uv.new_work(function (x) return x end,
                           function (x) got = got + 1; sum = sum + x end)
  local t0 = now()
  for i = 1, N do uv.queue_work(work, i) end
  uv.run()
  local dt = (now() - t0) / 1e9
  assert(got == N and sum == N * (N + 1) // 2, "W1: wrong results")
  return dt
end

-- W2: an ordered map.  luv has no map: queue every item with its
-- position, store results by position, then read them in input order.
local function w2 ()
  local results = {}
  local work = uv.new_work(function (i, x) return i, x end,
                           function (i, x) results[i] = x end)
  local xs = {}
  for i = 1, N do xs[i] = i end
  local t0 = now()
  for i = 1, N do uv.queue_work(work, i, xs[i]) end
  uv.run()
  local sum = 0
  for i = 1, N do sum = sum + results[i] end
  local dt = (now() - t0) / 1e9
  assert(sum == N * (N + 1) // 2, "W2: wrong results")
  return dt
end

local function fib (n)
  if n < 2 then return n end
  return fib(n - 1) + fib(n - 2)
end

-- W3: FIB_TASKS fib(FIB_N) on the pool against the same in sequence.
local function w3 ()
  local seq = best_of(REPS, function ()
    local t0 = now()
    for _ = 1, FIB_TASKS do fib(FIB_N) end
    return (now() - t0) / 1e9
  end)
  local par = best_of(REPS, function ()
    local done = 0
    -- The work function is dumped to bytecode: it cannot reach the
    -- local fib, so it carries its own.
    local work = uv.new_work(function (n)
      local function f (k)
        if k < 2 then return k end
        return f(k - 1) + f(k - 2)
      end
      return f(n)
    end, function (r) assert(r == 832040); done = done + 1 end)
    local t0 = now()
    for _ = 1, FIB_TASKS do uv.queue_work(work, FIB_N) end
    uv.run()
    assert(done == FIB_TASKS)
    return (now() - t0) / 1e9
  end)
  return seq / par
end

-- W5: one task queued and its result collected, LAT_CALLS times in a row.
local function w5 ()
  local got
  local work = uv.new_work(function (x) return x end,
                           function (x) got = x end)
  local samples = {}
  for i = 1, LAT_CALLS do
    local t0 = now()
    uv.queue_work(work, i)
    uv.run()
    samples[i] = now() - t0
    assert(got == i)
  end
  table.sort(samples)
  return samples[LAT_CALLS // 2 + 1] / 1e3
end

io.stdout:setvbuf("line")
do                                    -- warm the pool up
  local work = uv.new_work(function (x) return x end, function () end)
  for i = 1, 100 do uv.queue_work(work, i) end
  uv.run()
end
print(string.format("W1 %.0f", N / best_of(REPS, w1)))
print(string.format("W2 %.0f", N / best_of(REPS, w2)))
print(string.format("W3 %.3f", w3()))
-- luv 1.44 cannot pass tables to a work function ("thread arg not
-- support type 'table'"), so there is no W4 figure.
print("W4 n/a")
print(string.format("W5 %.1f", w5()))
