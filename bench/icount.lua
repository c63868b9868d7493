-- icount.lua: one workload of the bench, sized for valgrind's callgrind,
-- to compare builds by instructions instead of noisy timings (see
-- bench/icount.sh and docs/bench.md, "Issue 8 before/after").
-- Usage: cfut bench/icount.lua WORKLOAD N
-- WORKLOAD: t1 t2 t4 t5 on thread_pool(2), p1 p2 p4 p5 on process_pool(2)
--   1: submit N no-op tasks, then collect every result (W1, P1)
--   2: an ordered map over N integers (W2; P2 with chunksize = 1000)
--   4: a table of ICOUNT_RECORDS (default 20 000) records built and sent
--      on one trip, then N more trips (N = -1: built, no trip)
--   5: N submit -> result round trips in a row (W5, P5)
local futures = require "cfut"
local W, N = arg[1], tonumber(arg[2])
assert(W and W:match("^[tp][1245]$") and N, "usage: icount.lua t1|..|p5 N")
local function noop (x) return x end
local ex = W:sub(1, 1) == "t" and futures.thread_pool(2)
           or futures.process_pool(2)
do                            -- start both workers
  local fs = {}
  for i = 1, 100 do fs[i] = ex:submit(noop, i) end
  for i = 1, 100 do fs[i]:result() end
end
local kind = W:sub(2)
if kind == "1" then
  local fs = {}
  for i = 1, N do fs[i] = ex:submit(noop, i) end
  local s = 0
  for i = 1, N do s = s + fs[i]:result() end
  assert(s == N * (N + 1) // 2)
elseif kind == "2" then
  local xs = {}
  for i = 1, N do xs[i] = i end
  local s = 0
  if W:sub(1, 1) == "t" then
    for _, v in ex:map(noop, xs) do s = s + v end
  else
    for _, v in ex:map{noop, xs, chunksize = 1000} do s = s + v end
  end
  assert(s == N * (N + 1) // 2)
elseif kind == "4" then
  local R = tonumber(os.getenv("ICOUNT_RECORDS")) or 20000
  local t = {}
  for i = 1, R do t[i] = {id = i, name = "item" .. i, tags = {"a", "b"}} end
  for _ = 0, N do
    local back = ex:submit(noop, t):result()
    assert(#back == R)
    back = nil
    collectgarbage()
  end
else
  for i = 1, N do assert(ex:submit(noop, i):result() == i) end
end
ex:shutdown()
