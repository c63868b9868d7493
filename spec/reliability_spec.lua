-- spec/reliability_spec.lua: worker death under load and executors by the
-- thousand (issue 4, "Worker death and signals: kill storm" and "Load and
-- leaks"): every future resolves, nothing hangs, and no process, thread,
-- file descriptor or Lua memory is left behind.
--
-- These are the short versions that run in `make test`, `make asan` and
-- `make tsan`.  `make stress` runs the same specs longer through these
-- variables (each a count; unset = the short default):
--   CFUT_KILL_ROUNDS    rounds of the kill storm
--   CFUT_CHURN_THREADS  thread pools created and dropped
--   CFUT_CHURN_PROCS    process pools created and dropped
--   CFUT_SEED           the random seed (default: time and pid); every
--                       failure message names the seed it ran with
-- CFUT_SANITIZED (ASan/TSan) and CFUT_VALGRIND scale the defaults down.

local futures = require "cfut"
local helpers = require "helpers"

local LONG = helpers.LONG
local BROKEN = "A process in the process pool was terminated abruptly "
               .. "while the future was running or pending."

local VALGRIND = os.getenv("CFUT_VALGRIND") == "1"

-- The count in variable 'name', else 'plain' (divided by 'slow' when
-- sanitized, by 'vg' under valgrind).
local function scaled (name, plain, slow, vg)
  local v = math.tointeger(tonumber(os.getenv(name) or ""))
  if v then return v end
  if VALGRIND then return math.max(1, plain // vg) end
  if helpers.sanitized then return math.max(1, plain // slow) end
  return plain
end

local KILL_ROUNDS = scaled("CFUT_KILL_ROUNDS", 200, 5, 40)
local CHURN_THREADS = scaled("CFUT_CHURN_THREADS", 10000, 20, 200)
local CHURN_PROCS = scaled("CFUT_CHURN_PROCS", 300, 10, 30)
local SEED = math.tointeger(tonumber(os.getenv("CFUT_SEED") or ""))
             or (os.time() * 1000 + futures.getpid()) % 2147483647

after_each(helpers.cleanup)

-- With CFUT_STORM_REPORT set (make stress), print a figure on stderr.
local function report (fmt, ...)
  if os.getenv("CFUT_STORM_REPORT") then
    io.stderr:write(string.format(fmt, ...), "\n")
  end
end


-- {==================================================================
-- What this process holds: threads, descriptors, children, Lua memory
-- ===================================================================

-- The value of field 'name' in /proc/self/status, as a number.
local function status_field (name)
  local s = assert(helpers.read_file("/proc/self/status"))
  return math.tointeger(tonumber(s:match(name .. ":%s*(%d+)")))
end

--[[
Let the executors dropped so far go (collected, then reaped when a new
pool is made), then count what this process holds.
]]
local function snapshot ()
  -- Start one thread first: TSan starts a thread of its own with the
  -- first pthread_create, which is not ours to count.
  local ex = futures.thread_pool(1)
  ex:submit(collectgarbage, "count"):result(LONG)
  ex:shutdown()
  for _ = 1, 2 do
    collectgarbage()
    collectgarbage()
    futures.thread_pool(1):shutdown()
  end
  return { threads = status_field("Threads"), fds = helpers.fds(),
           kids = helpers.children(), kb = collectgarbage("count") }
end

-- Assert that nothing counted in 'before' grew; Lua memory may grow by
-- 'kb' kilobytes at most.  'ctx' goes into the messages.
local function assert_no_leak (before, kb, ctx)
  local after
  -- Managers and workers of dropped pools end on their own: wait for it.
  helpers.wait_until(function ()
    after = snapshot()
    return after.threads <= before.threads
           and #helpers.missing(after.kids, before.kids) == 0
           and #helpers.missing(after.fds, before.fds) == 0
  end)
  assert.equal(before.threads, after.threads, "threads left: " .. ctx)
  assert.same({}, helpers.missing(after.fds, before.fds),
              "file descriptors left: " .. ctx)
  assert.same({}, helpers.missing(after.kids, before.kids),
              "child processes left: " .. ctx)
  local grown = after.kb - before.kb
  assert.is_true(grown < kb, string.format(
    "Lua memory grew by %.1f KB (bound %d KB): %s", grown, kb, ctx))
end

-- }==================================================================


-- {==================================================================
-- The kill storm
-- ===================================================================

-- A task: 2 * i, and the pid of the worker that ran it.
local function work (i)
  return 2 * i, futures.getpid()
end

-- The pool's workers: this process's children not in 'base'.
local function workers_of (base)
  return helpers.missing(helpers.children(), base)
end

-- Is 'pid' a child of this process (so its pid cannot have been reused
-- by another program)?
local function ours (pid)
  local s = helpers.read_file("/proc/" .. pid .. "/stat")
  local ppid = s and s:match("^%d+ %b() %a (%d+)")
  return tonumber(ppid) == futures.getpid()
end

-- Kill the processes in list 'pids' that are still our children; add
-- them to set 'seen'.  Returns how many were killed.
local function kill_all (pids, seen)
  local n = 0
  for _, pid in ipairs(pids) do
    if ours(pid) then
      futures.kill(pid, "SIGKILL")
      n = n + 1
    end
    seen[pid] = true
  end
  return n
end

--[[
The worker that ran a done future of 'fs', the first done at or after
position 'k' (wrapping round); nil if none is done yet.
]]
local function worker_of_done (fs, k)
  for j = 0, #fs - 1 do
    local f = fs[(k + j - 1) % #fs + 1]
    if f:done() then
      local ok, _, pid = pcall(f.result, f, 0)
      if ok then return pid end
    end
  end
  return nil
end

--[[
Kill at a moment chosen at random by 'mode': "start" kills the workers
(one or all) as soon as they exist, before any task may have run;
"delay" waits up to 10 ms, "progress" until a random future is done,
"shutdown" calls shutdown(false) first; these kill the worker that ran
a finished task.  Returns the number of workers killed.
]]
local function kill_at_moment (ex, fs, mode, base, seen)
  if mode == "start" then
    local ws = {}
    helpers.wait_until(function ()
      ws = workers_of(base)
      return #ws > 0
    end, LONG)
    assert(#ws > 0, "no worker started")
    if math.random(2) == 1 then ws = { ws[math.random(#ws)] } end
    return kill_all(ws, seen)
  end
  local k = math.random(#fs)
  if mode == "delay" then
    futures.sleep(math.random() * 0.01)
  elseif mode == "shutdown" then
    ex:shutdown(false)
  end
  local pid
  helpers.wait_until(function ()
    pid = worker_of_done(fs, k)
    return pid
  end, LONG)
  return pid and kill_all({ pid }, seen) or 0
end

--[[
Check every outcome of a round: each future gives its result or
BrokenProcessPool, within a bounded wait.  Returns the number broken.
]]
local function check_outcomes (fs, ctx, seen)
  local broken = 0
  for i, f in ipairs(fs) do
    local ok, v, pid = pcall(f.result, f, LONG)
    if ok then
      assert.equal(2 * i, v, ctx)
      seen[pid] = true
    else
      assert.is_true(futures.is(v, futures.BrokenProcessPool),
                     "future " .. i .. " raised " .. tostring(v) .. ": "
                     .. ctx)
      assert.equal(BROKEN, v.message, ctx)
      broken = broken + 1
    end
  end
  return broken
end

--[[
A map over the pool, whose worker is killed after a random number of
rows: right rows in order up to the position that raises
BrokenProcessPool.  Returns the number killed and of futures broken (0
or 1: the map stops at the first).
]]
local function check_map (ex, n, ctx, seen)
  local xs = {}
  for i = 1, n do xs[i] = i end
  local it, s, c = ex:map{ work, xs, chunksize = math.random(1, 64),
                           timeout = LONG * 2 }
  local at, killed, k = math.random(n), 0, 0
  while true do
    local ok, i, v, pid = pcall(it, s, c)
    if not ok then
      assert.is_true(futures.is(i, futures.BrokenProcessPool),
                     "map raised " .. tostring(i) .. ": " .. ctx)
      assert.is_true(killed > 0, "map broken with no kill: " .. ctx)
      return killed, 1
    end
    if i == nil then break end
    k = k + 1
    assert.equal(k, i, ctx)
    assert.equal(2 * i, v, ctx)
    seen[pid] = true
    if i == at then killed = kill_all({ pid }, seen) end
    c = i
  end
  assert.equal(n, k, ctx)
  return killed, 0
end

--[[
One round: a pool of 1 to 3 workers, thousands of tasks queued, then a
kill at a random moment; every future must resolve, and once the pool is
shut down every worker seen must be reaped (no zombie); every 'full'
rounds the children and descriptors are counted too.
]]
local function storm_round (round, base, stats, full)
  local n = math.random(1000, 4000)
  if helpers.sanitized or VALGRIND then n = n // 10 end
  local modes = { "start", "delay", "progress", "shutdown", "map" }
  local mode = modes[math.random(#modes)]
  local nw = math.random(1, 3)
  local ctx = string.format("seed %d, round %d, mode %s, %d workers, %d "
                            .. "tasks", SEED, round, mode, nw, n)
  local ex = helpers.track(futures.process_pool(nw))
  local seen, killed, broken = {}, nil, nil
  if mode == "map" then
    killed, broken = check_map(ex, n, ctx, seen)
  else
    local fs = {}
    for i = 1, n do fs[i] = ex:submit(work, i) end
    killed = kill_at_moment(ex, fs, mode, base.kids, seen)
    broken = check_outcomes(fs, ctx, seen)
  end
  ex:shutdown(false)
  assert.is_truthy(helpers.wait_until(function ()
    for pid in pairs(seen) do
      if helpers.proc_state(pid) ~= nil then return false end
    end
    return true
  end), "a worker (or its zombie) is left: " .. ctx)
  ex:shutdown(true)
  if round % full == 0 then
    assert.same({}, workers_of(base.kids), "workers left: " .. ctx)
    assert.same({}, helpers.missing(helpers.fds(), base.fds),
                "file descriptors left: " .. ctx)
  end
  stats.killed = stats.killed + killed
  if broken > 0 then stats.broken = stats.broken + 1 end
end

-- Run 'rounds' rounds; returns the stats.
local function storm (rounds)
  local stats = { killed = 0, broken = 0 }
  local base = snapshot()
  math.randomseed(SEED)
  for round = 1, rounds do storm_round(round, base, stats, 10) end
  assert_no_leak(base, 512, "seed " .. SEED)
  return stats
end


describe("a process pool under a kill storm", function ()

  it("resolves every future with its result or BrokenProcessPool, leaving "
     .. "no worker, zombie or descriptor, in " .. KILL_ROUNDS .. " rounds",
     function ()
    local t0 = futures.monotonic()
    local stats = storm(KILL_ROUNDS)
    -- Most kills must land while work is left, or the storm tests little.
    assert.is_true(stats.broken >= KILL_ROUNDS // 4, string.format(
      "only %d of %d rounds broke their pool (seed %d)", stats.broken,
      KILL_ROUNDS, SEED))
    report("kill storm: %d rounds, %d workers killed, %d pools broken "
           .. "with work left, %.1f s (seed %d)", KILL_ROUNDS, stats.killed,
           stats.broken, futures.monotonic() - t0, SEED)
  end)

  it("leaves a new pool that works normally", function ()
    storm(math.min(KILL_ROUNDS, 10))
    local ex = helpers.track(futures.process_pool(2))
    local fs = {}
    for i = 1, 1000 do fs[i] = ex:submit(work, i) end
    for i = 1, 1000 do assert.equal(2 * i, (fs[i]:result(LONG))) end
    local k = 0
    for i, v in ex:map(work, { 1, 2, 3 }) do
      k = k + 1
      assert.equal(2 * i, v)
    end
    assert.equal(3, k)
  end)

end)

-- }==================================================================


-- {==================================================================
-- Executors by the thousand
-- ===================================================================

local function inc (x)
  return x + 1
end

--[[
Make and drop executor number i of a churn with 'make': each fourth one
is dropped unused, with a future dropped before it is done, with its
result taken then shut down, or dropped (collected) while its future is
kept and checked later through 'kept'.
]]
local function churn_one (make, i, kept)
  local ex = make()
  local how = i % 4
  if how == 1 then
    ex:submit(inc, i)
  elseif how == 2 then
    assert.equal(i + 1, ex:submit(inc, i):result(LONG))
    ex:shutdown()
  elseif how == 3 then
    kept[#kept + 1] = { i, ex:submit(inc, i) }
  end
end

-- Churn n executors made by 'make'; check the kept futures as it goes.
local function churn (make, n)
  local kept = {}
  for i = 1, n do
    churn_one(make, i, kept)
    if #kept >= 50 or i == n then
      for _, k in ipairs(kept) do
        assert.equal(k[1] + 1, k[2]:result(LONG), "executor " .. k[1])
      end
      kept = {}
      collectgarbage("step")
    end
  end
end

local function thread_pool ()
  return futures.thread_pool(1 + math.random(0, 1))
end

local function process_pool ()
  return futures.process_pool(1)
end

-- A task that submits to 'ex' (the pool it runs on) depth levels deep
-- and waits for each level: the depth.
local function nested (ex, depth)
  if depth == 0 then return 0 end
  return ex:submit(nested, ex, depth - 1):result(30) + 1
end

--[[
A done-callback that submits the next task of a chain to 'ex' and adds
itself to its future, until 'left' reaches 0; 'done' counts the
futures it saw, 'sum' their results.
]]
local function chain (ex, left, acc)
  return function (f)
    -- result() runs other pending callbacks (it waits, if only for 0 s):
    -- take it before touching 'acc', or their updates would be lost.
    local v = f:result(0)
    acc.seen = acc.seen + 1
    acc.sum = acc.sum + v
    if left > 0 then
      local g = ex:submit(inc, left)
      g:add_done_callback(chain(ex, left - 1, acc))
    end
  end
end

-- Start 'nchains' chains of 'depth' tasks on 'ex'; wait (bounded) until
-- every future of every chain has been seen by its callback.
local function run_chains (ex, nchains, depth)
  local acc = { seen = 0, sum = 0 }
  for _ = 1, nchains do
    ex:submit(inc, depth):add_done_callback(chain(ex, depth - 1, acc))
  end
  local total = nchains * depth
  assert.is_truthy(helpers.wait_until(function ()
    return acc.seen == total
  end, LONG * 4), acc.seen .. " of " .. total .. " callbacks ran")
  -- the chain submits inc(depth), inc(depth - 1), ..., inc(1)
  assert.equal(nchains * (depth * (depth + 1) // 2 + depth), acc.sum)
end


describe("executors created and dropped by the thousand", function ()

  it("leak no thread, descriptor or Lua memory: " .. CHURN_THREADS
     .. " thread pools", function ()
    local before = snapshot()
    local t0 = futures.monotonic()
    math.randomseed(SEED)
    churn(thread_pool, CHURN_THREADS)
    assert_no_leak(before, 256, "seed " .. SEED)
    report("churn: %d thread pools made and dropped in %.1f s; threads "
           .. "%d before and after, Lua %.0f KB before (growth < 256 KB)",
           CHURN_THREADS,
           futures.monotonic() - t0, before.threads, before.kb)
  end)

  it("leak no process, thread, descriptor or Lua memory: " .. CHURN_PROCS
     .. " process pools", function ()
    local before = snapshot()
    local t0 = futures.monotonic()
    churn(process_pool, CHURN_PROCS)
    assert_no_leak(before, 256, "seed " .. SEED)
    report("churn: %d process pools made and dropped in %.1f s",
           CHURN_PROCS, futures.monotonic() - t0)
  end)

  it("leak nothing when the futures are dropped before and after they "
     .. "finish", function ()
    local before = snapshot()
    for _, make in ipairs{ thread_pool, process_pool } do
      local ex = make()
      local gate = helpers.fgate()
      -- dropped before they finish (queued behind a blocked worker)
      ex:submit(helpers.await_file, gate.path, LONG)
      for i = 1, 5000 do ex:submit(inc, i) end
      collectgarbage()
      gate.open()
      -- dropped after they finish
      local last
      for i = 1, 5000 do last = ex:submit(inc, i) end
      assert.equal(5001, last:result(LONG))
      collectgarbage()
      ex:shutdown()
    end
    assert_no_leak(before, 256, "seed " .. SEED)
  end)

  it("leak nothing when done-callbacks submit more work, chain after "
     .. "chain", function ()
    local before = snapshot()
    for _, make in ipairs{ thread_pool, process_pool } do
      local ex = make()
      run_chains(ex, 20, helpers.sanitized and 20 or 100)
      ex:shutdown()
      ex = nil
    end
    assert_no_leak(before, 256, "seed " .. SEED)
  end)

  it("leak nothing when tasks submit to their own pool several levels "
     .. "deep", function ()
    local before = snapshot()
    local depth = 6
    for r = 1, helpers.sanitized and 10 or 100 do
      -- each level waits for the next: depth + 1 workers never deadlock
      local ex = futures.thread_pool(depth + 1)
      assert.equal(depth, ex:submit(nested, ex, depth):result(LONG),
                   "round " .. r)
      if r % 2 == 0 then ex:shutdown() end
    end
    assert_no_leak(before, 256, "seed " .. SEED)
  end)

  it("leak nothing when tasks make and drop pools of their own", function ()
    local before = snapshot()
    local ex = futures.thread_pool(2)
    local function inner (i)
      local sub = futures.thread_pool(1)
      return sub:submit(function (x) return x * 3 end, i):result(30)
    end
    local fs = {}
    for i = 1, helpers.sanitized and 20 or 200 do
      fs[i] = ex:submit(inner, i)
    end
    for i, f in ipairs(fs) do assert.equal(3 * i, f:result(LONG)) end
    ex:shutdown()
    assert_no_leak(before, 256, "seed " .. SEED)
  end)

end)

-- }==================================================================


-- {==================================================================
-- A million tasks (stress/million.lua, which make stress runs too)
-- ===================================================================

describe("a million tasks", function ()

  -- RSS means little under ASan/TSan (quarantine, shadow memory) or
  -- valgrind: there the script runs fewer tasks and checks the results
  -- only.
  local measured = not helpers.sanitized and not VALGRIND

  for _, kind in ipairs{ "thread", "process" } do
    local n = measured and 1000000 or 20000
    it("through a " .. kind .. " pool give every result right"
       .. (measured and ", and resident memory grows by less than 10 MB "
                        .. "after a warm-up" or ""), function ()
      local root = assert(os.getenv("CFUT_ROOT"), "CFUT_ROOT is not set")
      local src = assert(helpers.read_file(root .. "/stress/million.lua"))
      local r = helpers.run(src, {
        args = { n, kind },
        env = { CFUT_STRESS_NORSS = measured and "" or "1" },
        timeout = LONG * 12 })
      assert.equal(0, r.status, r.stdout .. r.stderr)
      assert.matches(kind .. " +pool: " .. n .. " tasks in [%d.]+ s %(%d+ "
                     .. "tasks/s%), all results right", r.stdout)
      if measured then assert.matches("growth after warm%-up %-?%d+ KB "
                                      .. "%(bound 10240 KB%): PASS",
                                      r.stdout) end
    end)
  end

end)

-- }==================================================================


-- {==================================================================
-- Found by running the suite under valgrind (./cfut as the host)
-- ===================================================================

describe("process-pool workers started by the cfut host", function ()

  it("see exactly the main script's package.path and package.cpath, "
     .. "even when the host adds its build tree's lua/", function ()
    local r = helpers.run([[
      local futures = require "cfut"
      local ex = futures.process_pool(1)
      local p, c = ex:submit(function ()
        return package.path, package.cpath
      end):result(30)
      print(p == package.path, c == package.cpath)
      if p ~= package.path then print(package.path, p) end
    ]])
    assert.equal(0, r.status, r.stderr)
    assert.equal("true\ttrue\n", r.stdout)
  end)

end)

-- }==================================================================
