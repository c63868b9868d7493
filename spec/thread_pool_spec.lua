-- spec/thread_pool_spec.lua: futures.thread_pool and the executor methods
-- submit, map and shutdown (API.md §2 "Executors"), and the helpers that
-- tell threads apart: thread_name, getpid, kill, cpu_count.

local futures = require "cfut"
local helpers = require "helpers"

local LONG, QUICK = helpers.LONG, helpers.QUICK
local errof, count, pool = helpers.errof, helpers.count, helpers.pool

after_each(helpers.cleanup)

-- What a failing initializer writes to stderr: its error and traceback.
local function assert_init_report (err)
  assert.matches("cfut: exception in initializer:\n[^\n]*: init failed\n"
                 .. "stack traceback:\n", err)
end

-- A task that waits for 'gate' to open, then returns 'v'.
local function gated (gate, v)
  gate:result(LONG)
  return v
end

local function thread_name ()
  return futures.thread_name()
end

-- Collect every row of a map iterator: rows[k] = table.pack(i, ...).
local function rows_of (it, s, c)
  local rows = {}
  while true do
    local r = table.pack(it(s, c))
    if r[1] == nil then break end
    rows[#rows + 1] = r
    c = r[1]
  end
  return rows
end


describe("futures.thread_pool", function ()

  it("accepts no argument", function ()
    local ex = pool()
    assert.equal(42, ex:submit(function () return 42 end):result(LONG))
  end)

  it("runs at most min(32, cpu_count() + 4) workers by default", function ()
    local ex = pool()
    local max = math.min(32, futures.cpu_count() + 4)
    local gate = helpers.gate()
    local fs = {}
    for i = 1, max + 2 do fs[i] = ex:submit(gated, gate, i) end
    assert.is_true(helpers.wait_until(function ()
      return count(fs, "running") == max
    end))
    -- submit returns once a worker it starts has taken its task, so no
    -- worker too many can show up later.
    assert.equal(max, count(fs, "running"))
    assert.equal(2, count(fs, helpers.is_pending))
    gate:set_result(true)
    for i, f in ipairs(fs) do assert.equal(i, f:result(LONG)) end
  end)

  it("takes the number of workers as its argument", function ()
    local ex = pool(3)
    local gate = helpers.gate()
    local fs = {}
    for i = 1, 5 do fs[i] = ex:submit(gated, gate, i) end
    assert.is_true(helpers.wait_until(function ()
      return count(fs, "running") == 3
    end))
    assert.equal(3, count(fs, "running"))
    assert.equal(2, count(fs, helpers.is_pending))
    gate:set_result(true)
    for i, f in ipairs(fs) do assert.equal(i, f:result(LONG)) end
  end)

  it("takes max_workers in an options table", function ()
    local ex = pool{ max_workers = 2 }
    local gate = helpers.gate()
    local fs = {}
    for i = 1, 4 do fs[i] = ex:submit(gated, gate, i) end
    assert.is_true(helpers.wait_until(function ()
      return count(fs, "running") == 2
    end))
    assert.equal(2, count(fs, "running"))
    assert.equal(2, count(fs, helpers.is_pending))
    gate:set_result(true)
    for i, f in ipairs(fs) do assert.equal(i, f:result(LONG)) end
  end)

  for _, bad in ipairs{ 0, -1, 1.5, "x" } do
    local shown = type(bad) == "string" and string.format("%q", bad)
                  or tostring(bad)

    it("rejects " .. shown .. " workers with an argument error", function ()
      local e = errof(function () return futures.thread_pool(bad) end)
      assert.is_string(e)
      assert.matches("bad argument #1 to 'thread_pool' %(.+%)", e)
    end)

    it("rejects max_workers = " .. shown .. " with an argument error "
       .. "naming the field", function ()
      local e = errof(function ()
        return futures.thread_pool{ max_workers = bad }
      end)
      assert.is_string(e)
      assert.matches("bad argument #1 to 'thread_pool' %(.*max_workers.*%)",
                     e)
    end)
  end

  it("rejects an initializer that is not a function", function ()
    local e = errof(function ()
      return futures.thread_pool{ max_workers = 1, initializer = 42 }
    end)
    assert.is_string(e)
    assert.matches("bad argument #1 to 'thread_pool' %(.*initializer.*%)", e)
  end)

  it("runs the initializer once in each worker, with initargs", function ()
    local ex = pool{
      max_workers = 2,
      initializer = function (a, b)
        INIT_CALLS = (INIT_CALLS or 0) + 1
        INIT_ARGS = a .. b
      end,
      initargs = { "x", "y" },
    }
    local function report (gate)
      if gate then gate:result(LONG) end
      return INIT_CALLS, INIT_ARGS, futures.thread_name()
    end
    -- Two tasks that wait on a gate together make both workers start.
    local gate = helpers.gate()
    local a, b = ex:submit(report, gate), ex:submit(report, gate)
    assert.is_true(helpers.wait_until(function ()
      return a:running() and b:running()
    end))
    gate:set_result(true)
    local names = {}
    for _, f in ipairs{ a, b } do
      local calls, args, name = f:result(LONG)
      assert.equal(1, calls)
      assert.equal("xy", args)
      names[name] = true
    end
    assert.equal(2, helpers.size(names))
    -- Later tasks on the same workers: still one call per worker.
    for _ = 1, 6 do
      local calls, args, name = ex:submit(report):result(LONG)
      assert.equal(1, calls)
      assert.equal("xy", args)
      assert.is_true(names[name])
    end
  end)

  -- A failing initializer reports itself on stderr: these run in a child
  -- (helpers.in_child), which keeps the report out of busted's output and
  -- lets the spec check it.
  it("fails the futures with BrokenThreadPool when the initializer fails",
     function ()
    local err = helpers.in_child([[
    local ex = pool{
      max_workers = 1,
      initializer = function () error("init failed") end,
    }
    local f = ex:submit(function () return 1 end)
    local e = errof(f.result, f, LONG)
    assert.is_true(futures.is(e, futures.BrokenThreadPool))
    assert.is_true(futures.is(e, futures.BrokenExecutor))
    assert.is_true(futures.is(e, futures.Error))
    assert.equal("BrokenThreadPool", e.name)
    assert.is_string(e.message)
    assert.is_true(#e.message > 0)
    assert.equal("BrokenThreadPool: " .. e.message, tostring(e))
    assert.is_true(f:done())
    assert.is_false(f:cancelled())
    ]])
    assert_init_report(err)
  end)

  it("raises the same BrokenThreadPool error at submit once broken",
     function ()
    local err = helpers.in_child([[
    local ex = pool{
      max_workers = 1,
      initializer = function () error("init failed") end,
    }
    local f = ex:submit(function () return 1 end)
    local e1 = errof(f.result, f, LONG)
    assert.is_true(futures.is(e1, futures.BrokenThreadPool))
    local e2 = errof(ex.submit, ex, function () return 2 end)
    assert.is_true(futures.is(e2, futures.BrokenThreadPool))
    assert.equal(e1.message, e2.message)
    assert.equal(tostring(e1), tostring(e2))
    ]])
    assert_init_report(err)
  end)

  it("names worker threads <prefix>_<k> with thread_name_prefix",
     function ()
    local ex = pool{ max_workers = 2, thread_name_prefix = "specpool" }
    local gate = helpers.gate()
    local function name (g) g:result(LONG) return futures.thread_name() end
    local a, b = ex:submit(name, gate), ex:submit(name, gate)
    assert.is_true(helpers.wait_until(function ()
      return a:running() and b:running()
    end))
    gate:set_result(true)
    assert.same({ specpool_0 = true, specpool_1 = true },
                helpers.set{ a:result(LONG), b:result(LONG) })
  end)

  it("names worker threads ThreadPoolExecutor-<n>_<k> by default",
     function ()
    local ex = pool(2)
    local gate = helpers.gate()
    local function name (g) g:result(LONG) return futures.thread_name() end
    local a, b = ex:submit(name, gate), ex:submit(name, gate)
    assert.is_true(helpers.wait_until(function ()
      return a:running() and b:running()
    end))
    gate:set_result(true)
    local na, ka = a:result(LONG):match("^ThreadPoolExecutor%-(%d+)_(%d+)$")
    local nb, kb = b:result(LONG):match("^ThreadPoolExecutor%-(%d+)_(%d+)$")
    assert.is_string(na)
    assert.is_string(nb)
    assert.equal(na, nb)
    assert.same({ ["0"] = true, ["1"] = true }, helpers.set{ ka, kb })
  end)

  it("numbers thread pools in the order they are created", function ()
    local first = pool(1)
    local second = pool(1)
    local n1 = first:submit(thread_name):result(LONG)
                 :match("^ThreadPoolExecutor%-(%d+)_0$")
    local n2 = second:submit(thread_name):result(LONG)
                 :match("^ThreadPoolExecutor%-(%d+)_0$")
    assert.is_string(n1)
    assert.is_string(n2)
    assert.is_true(tonumber(n1) < tonumber(n2))
  end)

  it("sets the OS thread name of its workers", function ()
    local pid = futures.getpid()
    local probe = assert(io.open("/proc/" .. pid .. "/task"))
    probe:close()
    local ex = pool{ max_workers = 2, thread_name_prefix = "cfspec" }
    local gate = helpers.gate()
    helpers.block(ex, gate, 2)
    local p = assert(io.popen("cat /proc/" .. pid .. "/task/*/comm"))
    local comms = {}
    for line in p:lines() do comms[line] = true end
    p:close()
    gate:set_result(true)
    assert.is_true(comms["cfspec_0"])
    assert.is_true(comms["cfspec_1"])
  end)

  it("starts workers on demand only", function ()
    local ex = pool(4)
    local names = {}
    for _ = 1, 8 do
      -- A worker counts as waiting from the moment its result is ready.
      names[ex:submit(thread_name):result(LONG)] = true
    end
    assert.equal(1, helpers.size(names))
  end)

  it("starts another worker when the running ones are busy", function ()
    local ex = pool(4)
    local gate = helpers.gate()
    local busy = helpers.block(ex, gate, 1)
    local f = ex:submit(thread_name)
    local other = f:result(LONG)
    assert.is_false(busy[1]:done())
    assert.matches("^ThreadPoolExecutor%-%d+_1$", other)
    gate:set_result(true)
    assert.equal(1, busy[1]:result(LONG))
  end)

  it("keeps a worker's Lua state for the worker's lifetime", function ()
    local ex = pool(1)
    ex:submit(function () KEPT_GLOBAL = "kept" end):result(LONG)
    assert.equal("kept",
                 ex:submit(function () return KEPT_GLOBAL end):result(LONG))
    assert.is_nil(rawget(_G, "KEPT_GLOBAL"))
    local other = pool(1)
    assert.is_nil(other:submit(function () return KEPT_GLOBAL end)
                       :result(LONG))
  end)
end)


describe("Executor:submit", function ()

  it("returns a Future", function ()
    local ex = pool(1)
    local f = ex:submit(function () return 1 end)
    assert.equal("userdata", type(f))
    assert.matches("^<Future at 0x%x+ state=%a+", tostring(f))
    assert.equal(1, f:result(LONG))
  end)

  it("delivers every value the task returns, nils included", function ()
    local ex = pool(1)
    local r = table.pack(ex:submit(function () return 1, nil, 3 end)
                           :result(LONG))
    assert.equal(3, r.n)
    assert.equal(1, r[1])
    assert.is_nil(r[2])
    assert.equal(3, r[3])
    r = table.pack(ex:submit(function () return "a", nil end):result(LONG))
    assert.equal(2, r.n)
    assert.equal("a", r[1])
    r = table.pack(ex:submit(function () end):result(LONG))
    assert.equal(0, r.n)
  end)

  it("passes its extra arguments to the task, nils included", function ()
    local ex = pool(1)
    local f = ex:submit(function (...)
      return select("#", ...), ...
    end, 1, nil, "c", nil)
    local r = table.pack(f:result(LONG))
    assert.same({ n = 5, 4, 1, nil, "c", nil }, r)
  end)

  it("re-raises the task's error with the worker's file and line",
     function ()
    local ex = pool(1)
    local line = debug.getinfo(1, "l").currentline + 1
    local f = ex:submit(function () error("boom") end)
    local e = errof(f.result, f, LONG)
    assert.is_string(e)
    assert.matches("^[^\n]-thread_pool_spec%.lua:" .. line .. ": boom$", e)
  end)

  it("re-raises an error raised at level 0 unchanged", function ()
    local ex = pool(1)
    local f = ex:submit(function () error("plain", 0) end)
    assert.equal("plain", errof(f.result, f, LONG))
  end)

  it("re-raises a table error as a copy", function ()
    local ex = pool(1)
    local f = ex:submit(function () error({ code = 7, tag = "x" }) end)
    local e = errof(f.result, f, LONG)
    assert.same({ code = 7, tag = "x" }, e)
  end)

  it("raises ShutdownError after shutdown", function ()
    local ex = pool(1)
    ex:shutdown()
    local e = errof(ex.submit, ex, function () return 1 end)
    assert.is_true(futures.is(e, futures.ShutdownError))
    assert.is_true(futures.is(e, futures.Error))
    assert.equal("ShutdownError", e.name)
    assert.equal("cannot schedule new futures after shutdown", e.message)
    assert.equal("ShutdownError: cannot schedule new futures after shutdown",
                 tostring(e))
  end)

  it("rejects a task that is not a function as argument #1", function ()
    local ex = pool(1)
    local e = errof(function () return ex:submit(42) end)
    assert.is_string(e)
    assert.matches("bad argument #1 to 'submit' %(.-expected, got number%)",
                   e)
    e = errof(function () return ex:submit() end)
    assert.matches("bad argument #1 to 'submit' %(.-expected, got no value%)",
                   e)
  end)

  it("lets a task submit sub-tasks to its own pool and wait on them",
     function ()
    local ex = pool(2)
    local f = ex:submit(function (pool_)
      local g = pool_:submit(function (x)
        return x * 2, futures.thread_name()
      end, 21)
      local v, name = g:result(LONG)
      return v, name, futures.thread_name()
    end, ex)
    local v, inner, outer = f:result(LONG)
    assert.equal(42, v)
    assert.matches("^ThreadPoolExecutor%-%d+_%d+$", inner)
    assert.not_equal(inner, outer)
  end)

  it("lets a task use its pool as an upvalue", function ()
    local ex = pool(2)
    local f = ex:submit(function ()
      return ex:submit(function () return "sub" end):result(LONG)
    end)
    assert.equal("sub", f:result(LONG))
  end)

  it("lets a task return a future", function ()
    local ex = pool(2)
    local f = ex:submit(function (pool_)
      return pool_:submit(function () return "inner" end)
    end, ex)
    local g = f:result(LONG)
    assert.equal("userdata", type(g))
    assert.equal("inner", g:result(LONG))
    local h = ex:submit(function ()
      local made = futures.future()
      made:set_result(7, "seven")
      return made
    end):result(LONG)
    local a, b = h:result(0)
    assert.equal(7, a)
    assert.equal("seven", b)
  end)
end)


describe("Executor:map", function ()

  local function double (x) return x * 2 end

  it("maps over a sequence table, yielding positions and values",
     function ()
    local ex = pool(2)
    local got = {}
    for i, v in ex:map(double, { 1, 2, 3, 4 }) do got[i] = v end
    assert.same({ 2, 4, 6, 8 }, got)
  end)

  it("maps over 1..t.n, passing nil holes as explicit nil arguments",
     function ()
    local ex = pool(2)
    local function arity (...) return select("#", ...), (...) end
    local rows = rows_of(ex:map(arity, { n = 4, 10, nil, 30, nil, 50 }))
    assert.equal(4, #rows)
    for i, r in ipairs(rows) do
      assert.equal(i, r[1])
      assert.equal(1, r[2])
    end
    assert.equal(10, rows[1][3])
    assert.is_nil(rows[2][3])
    assert.equal(30, rows[3][3])
    assert.is_nil(rows[4][3])
  end)

  it("maps over an iterator function", function ()
    local ex = pool(2)
    local k = 0
    local function gen ()
      k = k + 1
      if k <= 5 then return k end
    end
    local got = {}
    for i, v in ex:map(double, gen) do got[i] = v end
    assert.same({ 2, 4, 6, 8, 10 }, got)
  end)

  it("zips several iterables and stops at the shortest", function ()
    local ex = pool(2)
    local got = {}
    for i, v in ex:map(function (a, b) return a + b end,
                       { 1, 2, 3 }, { 10, 20 }) do
      got[i] = v
    end
    assert.same({ 11, 22 }, got)
    local calls = 0
    local function endless () calls = calls + 1 return calls * 100 end
    got = {}
    for i, v in ex:map(function (a, b) return a + b end,
                       { 1, 2 }, endless) do
      got[i] = v
    end
    assert.same({ 101, 202 }, got)
    assert.is_true(calls <= 3)
  end)

  it("yields every value a task returns; a nil result does not end the "
     .. "loop", function ()
    local ex = pool(2)
    local function task (x)
      if x == 2 then return nil end
      if x == 3 then return end
      return x, nil, x * 10
    end
    local rows = rows_of(ex:map(task, { 1, 2, 3, 4 }))
    assert.equal(4, #rows)
    assert.same({ n = 4, 1, 1, nil, 10 }, rows[1])
    assert.equal(2, rows[2][1])
    assert.is_nil(rows[2][2])
    assert.equal(3, rows[3][1])
    assert.is_nil(rows[3][2])
    assert.same({ n = 4, 4, 4, nil, 40 }, rows[4])
    local seen = {}
    for i, v in ex:map(task, { 1, 2, 3, 4 }) do seen[#seen + 1] = i end
    assert.same({ 1, 2, 3, 4 }, seen)
  end)

  it("yields results in input order when later items finish first",
     function ()
    local ex = pool(3)
    local gate = helpers.gate()
    local marks = { futures.future(), futures.future(), futures.future() }
    local function task (x)
      if x == 1 then gate:result(LONG) end
      marks[x]:set_result(futures.monotonic())
      return x
    end
    local it, s, c = ex:map(task, { 1, 2, 3 })
    -- Items 2 and 3 finish while item 1 is held back.
    marks[2]:result(LONG)
    marks[3]:result(LONG)
    assert.is_false(marks[1]:done())
    gate:set_result(true)
    local order = {}
    for i, v in it, s, c do order[#order + 1] = { i, v } end
    assert.same({ { 1, 1 }, { 2, 2 }, { 3, 3 } }, order)
    assert.is_true(marks[1]:result(0) > marks[3]:result(0))
  end)

  it("raises a task's error when the loop reaches its position",
     function ()
    local ex = pool(2)
    local failed = futures.future()
    local function task (x)
      if x == 1 then failed:result(LONG) end  -- item 2 fails first
      if x == 2 then failed:set_result(true); error("bad item") end
      return x
    end
    local got = {}
    local ok, e = pcall(function ()
      for _, v in ex:map(task, { 1, 2, 3 }) do got[#got + 1] = v end
    end)
    assert.is_false(ok)
    assert.matches("^[^\n]-thread_pool_spec%.lua:%d+: bad item$", e)
    assert.same({ 1 }, got)
  end)

  it("takes its arguments and options as a single table", function ()
    local ex = pool(2)
    local got = {}
    for i, v in ex:map{ double, { 1, 2, 3 }, timeout = LONG, chunksize = 2,
                        buffersize = 2 } do
      got[i] = v
    end
    assert.same({ 2, 4, 6 }, got)
    got = {}
    for i, v in ex:map{ function (a, b) return a .. b end,
                        { "a", "b", "c" }, { "x", "y" } } do
      got[i] = v
    end
    assert.same({ "ax", "by" }, got)
  end)

  it("raises TimeoutError once the timeout, counted from the call, runs out",
     function ()
    local ex = pool(1)
    local gate = helpers.gate()
    local t0 = futures.monotonic()
    local it, s, c = ex:map{ function (x)
      if x == 1 then gate:result(LONG) end
      return x
    end, { 1, 2, 3 }, timeout = 0.2 }
    futures.sleep(0.3 - (futures.monotonic() - t0))
    local t1 = futures.monotonic()
    local e = errof(function ()
      for _ in it, s, c do end
    end)
    local waited = futures.monotonic() - t1
    assert.is_true(futures.is(e, futures.TimeoutError))
    assert.matches("^TimeoutError", tostring(e))
    -- The 0.2 s were over before the loop started: no further wait.
    assert.is_true(waited < QUICK / 2,
                   "loop waited " .. waited .. " s after the timeout")
  end)

  it("cancels the queued items when the timeout runs out", function ()
    local ex = pool(1)
    local gate = helpers.gate()
    local ran = { futures.future(), futures.future(), futures.future() }
    local function task (x)
      ran[x]:set_result(true)
      if x == 1 then gate:result(LONG) end
      return x
    end
    local t0 = futures.monotonic()
    local e = errof(function ()
      for _ in ex:map{ task, { 1, 2, 3 }, timeout = 0.2 } do end
    end)
    local waited = futures.monotonic() - t0
    assert.is_true(futures.is(e, futures.TimeoutError))
    assert.is_true(waited >= 0.19, "timed out after " .. waited .. " s")
    assert.is_true(waited < 0.2 + QUICK, "timed out after " .. waited .. " s")
    gate:set_result(true)
    ex:shutdown(true)
    assert.is_true(ran[1]:done())
    assert.is_false(ran[2]:done())
    assert.is_false(ran[3]:done())
  end)

  it("keeps at most buffersize items in flight ahead of the loop",
     function ()
    local ex = pool(2)
    local calls = 0
    local function endless () calls = calls + 1 return calls end
    local taken = 0
    for i, v in ex:map{ double, endless, buffersize = 2 } do
      assert.equal(2 * i, v)
      taken = taken + 1
      assert.is_true(calls - taken <= 3,
                     calls .. " items drawn for " .. taken .. " results")
      if taken == 10 then break end
    end
    assert.equal(10, taken)
    assert.is_true(calls >= 10)
    assert.is_true(calls <= 13, "iterator called " .. calls .. " times")
  end)

  it("describes its iterator in tostring", function ()
    local ex = pool(1)
    local it, s, c = ex:map(double, { 1 })
    local text = tostring(it)
    assert.is_string(text)
    assert.is_true(#text > 0)
    assert.is_nil(text:match("^function: "))
    assert.is_nil(text:match("^table: "))
    assert.is_nil(text:match("^userdata: "))
    for _ in it, s, c do end
  end)

  it("rejects a task that is not a function as argument #1", function ()
    local ex = pool(1)
    local e = errof(function () return ex:map(42, { 1 }) end)
    assert.is_string(e)
    assert.matches("bad argument #1 to 'map'", e)
  end)

  it("rejects an iterable that is neither a table nor a function",
     function ()
    local ex = pool(1)
    local e = errof(function () return ex:map(double, 42) end)
    assert.is_string(e)
    assert.matches("bad argument #2 to 'map'", e)
  end)

  it("raises ShutdownError after shutdown", function ()
    local ex = pool(1)
    ex:shutdown()
    local e = errof(function ()
      for _ in ex:map(double, { 1, 2 }) do end
    end)
    assert.is_true(futures.is(e, futures.ShutdownError))
    assert.equal("cannot schedule new futures after shutdown", e.message)
  end)
end)


describe("Executor:shutdown", function ()

  local function slow (x)
    futures.sleep(0.1)
    return x
  end

  it("waits for running and queued tasks by default", function ()
    local ex = pool(1)
    local a, b = ex:submit(slow, "a"), ex:submit(slow, "b")
    ex:shutdown()
    assert.is_true(a:done())
    assert.is_true(b:done())
    assert.equal("a", a:result(0))
    assert.equal("b", b:result(0))
  end)

  it("can be called again without effect", function ()
    local ex = pool(1)
    local f = ex:submit(slow, 1)
    ex:shutdown()
    ex:shutdown()
    ex:shutdown(false)
    ex:shutdown(true, true)
    ex:shutdown{ wait = false, cancel_futures = true }
    assert.equal(1, f:result(0))
  end)

  it("cancels queued futures with cancel_futures while running ones finish",
     function ()
    local ex = pool(1)
    local gate = helpers.gate()
    local busy = helpers.block(ex, gate, 1)[1]
    local q1 = ex:submit(function () return "q1" end)
    local q2 = ex:submit(function () return "q2" end)
    ex:shutdown(false, true)
    assert.is_true(q1:cancelled())
    assert.is_true(q2:cancelled())
    assert.is_true(busy:running())
    gate:set_result(true)
    assert.equal(1, busy:result(LONG))
    ex:shutdown()
  end)

  it("cancels queued futures and waits for running ones with "
     .. "shutdown(true, true)", function ()
    local ex = pool(1)
    local started = futures.future()
    local run = ex:submit(function ()
      started:set_result(true)
      futures.sleep(0.1)
      return "ran"
    end)
    local queued = ex:submit(function () return "queued" end)
    started:result(LONG)
    ex:shutdown(true, true)
    assert.is_true(run:done())
    assert.equal("ran", run:result(0))
    assert.is_true(queued:cancelled())
  end)

  it("returns at once with wait = false while tasks still run", function ()
    local ex = pool(1)
    local gate = helpers.gate()
    local busy = helpers.block(ex, gate, 1)[1]
    local queued = ex:submit(function () return "later" end)
    local took = helpers.timed(ex.shutdown, ex, false)
    assert.is_true(took < QUICK, "shutdown(false) took " .. took .. " s")
    assert.is_true(busy:running())
    assert.is_false(queued:done())
    gate:set_result(true)
    assert.equal(1, busy:result(LONG))
    assert.equal("later", queued:result(LONG))
  end)

  it("takes its options as a table", function ()
    local ex = pool(1)
    local gate = helpers.gate()
    local busy = helpers.block(ex, gate, 1)[1]
    local queued = ex:submit(function () return "q" end)
    local took = helpers.timed(ex.shutdown, ex,
                               { wait = false, cancel_futures = true })
    assert.is_true(took < QUICK, "shutdown{wait=false} took " .. took .. " s")
    assert.is_true(queued:cancelled())
    assert.is_false(busy:done())
    gate:set_result(true)
    ex:shutdown{ wait = true }
    assert.is_true(busy:done())
    assert.equal(1, busy:result(0))
  end)

  it("runs at the end of a <close> variable's scope", function ()
    local saved, f
    do
      local ex <close> = futures.thread_pool(2)
      saved = ex
      f = ex:submit(slow, "closed")
    end
    assert.is_true(f:done())
    assert.equal("closed", f:result(0))
    local e = errof(saved.submit, saved, slow, 1)
    assert.is_true(futures.is(e, futures.ShutdownError))
  end)

  it("runs at the end of a <close> variable's scope left by an error",
     function ()
    local saved, f
    local ok, e = pcall(function ()
      local ex <close> = futures.thread_pool(2)
      saved = ex
      f = ex:submit(slow, "closed")
      error("leaving the block", 0)
    end)
    assert.is_false(ok)
    assert.equal("leaving the block", e)
    assert.is_true(f:done())
    assert.equal("closed", f:result(0))
    e = errof(saved.submit, saved, slow, 1)
    assert.is_true(futures.is(e, futures.ShutdownError))
  end)

  it("is what garbage collection of an executor does: queued tasks still run",
     function ()
    -- Build and drop the executor in a function of its own, so that no
    -- register of this one still refers to it.
    local function submit_and_drop ()
      local ex = futures.thread_pool(1)
      local gate = helpers.gate()
      local busy = ex:submit(gated, gate, "busy")
      local queued = ex:submit(function () return "queued" end)
      local weak = setmetatable({ ex }, { __mode = "v" })
      return gate, busy, queued, weak
    end
    local gate, busy, queued, weak = submit_and_drop()
    assert.is_true(helpers.wait_until(function () return busy:running() end))
    collectgarbage()
    collectgarbage()
    assert.is_nil(weak[1])
    assert.is_false(queued:done())
    gate:set_result(true)
    assert.equal("busy", busy:result(LONG))
    assert.equal("queued", queued:result(LONG))
  end)
end)


describe("futures.thread_name", function ()

  it("is MainThread in the main script", function ()
    assert.equal("MainThread", futures.thread_name())
  end)

  it("names the worker in a task", function ()
    local ex = pool(1)
    local name = ex:submit(thread_name):result(LONG)
    assert.is_string(name)
    assert.not_equal("MainThread", name)
    assert.matches("^ThreadPoolExecutor%-%d+_0$", name)
  end)
end)


describe("futures.getpid", function ()

  it("returns this process's id as an integer", function ()
    local pid = futures.getpid()
    assert.equal("integer", math.type(pid))
    assert.is_true(pid > 0)
  end)

  it("returns the same id in thread-pool tasks", function ()
    local ex = pool(1)
    assert.equal(futures.getpid(),
                 ex:submit(function () return futures.getpid() end)
                   :result(LONG))
  end)
end)


describe("futures.kill", function ()

  it("accepts signal 0 to probe a process", function ()
    local ok, e = pcall(futures.kill, futures.getpid(), 0)
    assert.is_true(ok, tostring(e))
  end)

  it("accepts a signal name", function ()
    local ok, e = pcall(futures.kill, futures.getpid(), "SIGCONT")
    assert.is_true(ok, tostring(e))
  end)

  it("rejects an unknown signal name with an argument error", function ()
    local e = errof(function ()
      return futures.kill(futures.getpid(), "SIGNOSUCH")
    end)
    assert.is_string(e)
    assert.matches("bad argument #2 to 'kill'", e)
  end)
end)


describe("futures.cpu_count", function ()

  it("returns a positive integer", function ()
    local n = futures.cpu_count()
    assert.equal("integer", math.type(n))
    assert.is_true(n >= 1)
  end)
end)


describe("a thread worker's Lua state", function ()

  it("turns os.exit into an error that ends only the task", function ()
    local ex = pool(1)
    local f = ex:submit(function () os.exit(3) end)
    local e = f:exception(LONG)
    assert.is_string(e)
    assert.matches("os%.exit%(3%) called in a worker", e)
    -- the worker (and the process) go on
    assert.equal(7, ex:submit(function () return 7 end):result(LONG))
  end)

  it("sees the main script's package.path and package.cpath", function ()
    local ex = pool(1)
    local path, cpath = ex:submit(function ()
      return package.path, package.cpath
    end):result(LONG)
    assert.equal(package.path, path)
    assert.equal(package.cpath, cpath)
  end)

  it("prints each line whole while other tasks print too", function ()
    -- Two workers print long lines at the same time; in a child process, so
    -- that the lines can be read back from its stdout.
    local r = helpers.run([[
      local futures = require "cfut"
      local ex = futures.thread_pool(2)
      local function spam (c)
        local line = string.rep(c, 3000)
        for _ = 1, 300 do print(line, c) end
      end
      local a, b = ex:submit(spam, "a"), ex:submit(spam, "b")
      a:result(30) b:result(30)
    ]])
    assert.equal(0, r.status, r.stderr)
    local n = 0
    for line in r.stdout:gmatch("[^\n]+") do
      local c = line:sub(1, 1)
      n = n + 1
      assert.is_true(line == string.rep(c, 3000) .. "\t" .. c,
                     "line " .. n .. " was split or mixed")
    end
    assert.equal(600, n)
  end)
end)
