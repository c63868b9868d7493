-- spec/stop_spec.lua: stopping running tasks (f:cancel{force = true}),
-- task_timeout, and the end of a script that fails with tasks running
-- (issue 11 §2, API.md §2).  Every wait is bounded (helpers.wait_until, or
-- a result with LONG); no timing is asserted but the bounds.

local futures = require "cfut"
local helpers = require "helpers"

local LONG = helpers.LONG

after_each(helpers.cleanup)

local POOLS = {
  thread = function (opts) return helpers.pool(opts) end,
  process = function (opts) return helpers.track(futures.process_pool(opts)) end,
}

-- ThreadSanitizer runs a signal handler only when the thread next calls
-- into libc: under it the loops allocate (as host_spec's Ctrl-C loops do).
local SAN = helpers.sanitized
local function busy ()
  local n = 0
  while true do
    n = n + 1
    if SAN then n = #{ n } end
  end
end

-- The class name of the error f failed with, and its message.
local function failure (f)
  local ok, e = pcall(f.result, f, LONG)
  assert.is_false(ok)
  if type(e) == "table" then return e.name, e.message end
  return nil, tostring(e)
end

local function running (f)
  assert.truthy(helpers.wait_until(function () return f:running() end),
                "the task never started")
end

-- A pool of one worker still answers (the stopped task's worker, or its
-- replacement).
local function usable (ex)
  assert.equal(42, ex:submit(function () return 42 end):result(LONG))
end

for _, kind in ipairs { "thread", "process" } do
  local newpool = POOLS[kind]

  describe(kind .. " pool: cancel{force = true}", function ()
    it("stops a busy loop; the future ends cancelled; the worker goes on",
       function ()
      local ex = newpool(1)
      local f = ex:submit(busy)
      running(f)
      assert.is_false(f:cancel())              -- plain cancel: as before
      assert.is_true(f:cancel{ force = true })
      assert.is_true(f:cancelled())
      assert.is_true(f:done())
      assert.equal("CancelledError", (failure(f)))
      assert.matches("state=cancelled", tostring(f))
      usable(ex)
    end)

    it("stops a task that catches errors with pcall and xpcall", function ()
      local ex = newpool(1)
      local f = ex:submit(function ()
        while true do
          pcall(busy)
          xpcall(busy, function (e) return e end)
        end
      end)
      running(f)
      assert.is_true(f:cancel{ force = true })
      usable(ex)
      -- A stop does not leave a pcall's caller running: its state after
      -- the stop is what it was.
      local g = ex:submit(function ()
        _G.after_stop = false
        pcall(busy)
        _G.after_stop = true
      end)
      running(g)
      g:cancel{ force = true }
      -- (false, or nil where the stuck worker was replaced: never true)
      assert.is_not_true(ex:submit(function () return _G.after_stop end)
                         :result(LONG))
    end)

    it("stops a busy loop inside a coroutine (resume, wrap, nested)",
       function ()
      local ex = newpool(1)
      local pid = ex:submit(futures.getpid):result(LONG)
      for _, how in ipairs { "resume", "wrap", "nested" } do
        local f = ex:submit(function (how, busy)
          if how == "resume" then
            return coroutine.resume(coroutine.create(busy))
          elseif how == "wrap" then
            return coroutine.wrap(busy)()
          end
          return coroutine.wrap(function ()
            return coroutine.resume(coroutine.create(busy))
          end)()
        end, how, busy)
        running(f)
        assert.is_true(f:cancel{ force = true })
        usable(ex)
      end
      -- the stop reached the coroutine: no process worker was replaced
      assert.equal(pid, ex:submit(futures.getpid):result(LONG))
      -- and coroutines behave as ever
      assert.same({ 2, 20, false, "boom", false, "bang", false,
                    "cannot resume dead coroutine" }, { ex:submit(function ()
        local gen = coroutine.wrap(function (a)
          return 2 * coroutine.yield(a + 1)
        end)
        local x, y = gen(1), gen(10)
        local co = coroutine.create(function () error("boom", 0) end)
        local ok, e = coroutine.resume(co)
        local ok2, e2 = pcall(coroutine.wrap(function () error("bang", 0) end))
        return x, y, ok, e, ok2, e2, coroutine.resume(co)
      end):result(LONG) })
    end)

    it("stops a task in futures.sleep, result and wait at once", function ()
      local ex = newpool(1)
      for _, task in ipairs {
        function () futures.sleep(1e6) end,
        function () return futures.future():result() end,
        function () futures.wait({ futures.future() }) end,
      } do
        local f = ex:submit(task)
        running(f)
        assert.is_true(f:cancel{ force = true })
        usable(ex)
      end
    end)

    it("returns false on a finished or cancelled future, changing nothing",
       function ()
      local ex = newpool(1)
      local f = ex:submit(function () return "v" end)
      assert.equal("v", f:result(LONG))
      local calls = 0
      f:add_done_callback(function () calls = calls + 1 end)
      assert.is_false(f:cancel{ force = true })
      assert.is_false(f:cancelled())
      assert.equal("v", f:result(0))
      local g = futures.future()
      assert.is_true(g:cancel())
      assert.is_false(g:cancel{ force = true })
      assert.is_true(g:cancelled())
      assert.equal(1, calls)
    end)

    it("cancels a pending future as plain cancel does", function ()
      local ex = newpool(1)
      local blocker = ex:submit(function () futures.sleep(0.3) return true end)
      running(blocker)
      local f = ex:submit(function () return 1 end)
      assert.is_true(f:cancel{ force = true })
      assert.is_true(f:cancelled())
      assert.is_true(blocker:result(LONG))
    end)

    it("rejects unknown options and wrong types", function ()
      local f = futures.future()
      assert.error_matches(function () f:cancel{ forse = true } end,
                           "unknown option 'forse'")
      assert.error_matches(function () f:cancel{ force = 1 } end,
                           "'force' must be a boolean")
      assert.error_matches(function () f:cancel(true) end, "table expected")
      assert.is_false(f:cancelled())
    end)

    it("callbacks, wait and as_completed see a stopped future", function ()
      local ex = newpool(2)
      local f = ex:submit(busy)
      local seen
      f:add_done_callback(function (x) seen = x:cancelled() end)
      running(f)
      f:cancel{ force = true }
      assert.is_true(seen)
      local done, not_done = futures.wait({ f }, LONG)
      assert.equal(1, #done)
      assert.equal(0, #not_done)
      local n = 0
      for x in futures.as_completed({ f }, LONG) do
        assert.equal(f, x)
        n = n + 1
      end
      assert.equal(1, n)
    end)

    it("a stop racing the sending of a big result leaves one outcome",
       function ()
      local ex = newpool(1)
      for i = 1, 20 do
        local f = ex:submit(function (k)
          local t = {}
          for j = 1, 20000 * k do t[j] = j end
          return t
        end, i % 5 + 1)
        helpers.wait_until(function () return f:running() or f:done() end)
        local stopped = f:cancel{ force = true }
        assert.truthy(helpers.wait_until(function () return f:done() end))
        if stopped then
          assert.is_true(f:cancelled())
        else
          assert.is_false(f:cancelled())
          assert.equal(20000 * (i % 5 + 1), #f:result(0))
        end
      end
      usable(ex)
    end)

    it("1000 stops in a row lose no worker", function ()
      local ex = newpool(2)
      local fs = {}
      for i = 1, 1000 do
        local f = ex:submit(busy)
        if i % 50 == 0 then running(f) end
        assert.is_true(f:cancel{ force = true })
        fs[i] = f
      end
      for i = 1, 1000 do assert.is_true(fs[i]:cancelled()) end
      -- both workers (or their replacements) serve: two tasks that wait
      -- for each other finish only when they run side by side
      local a, b = futures.future(), futures.future()
      if kind == "thread" then
        local x = ex:submit(function () b:set_result(1); return a:result(LONG) end)
        local y = ex:submit(function () a:set_result(2); return b:result(LONG) end)
        assert.equal(2, x:result(LONG))
        assert.equal(1, y:result(LONG))
      else
        local rs = {}
        for i = 1, 2 do
          rs[i] = ex:submit(function () futures.sleep(0.1) return 1 end)
        end
        for i = 1, 2 do assert.equal(1, rs[i]:result(LONG)) end
      end
    end)
  end)

  describe(kind .. " pool: task_timeout", function ()
    it("stops a task that runs too long with TimeoutError", function ()
      local ex = newpool{ max_workers = 1, task_timeout = 0.3 }
      local f = ex:submit(busy)
      local name, msg = failure(f)
      assert.equal("TimeoutError", name)
      assert.equal("task ran longer than 0.3 s", msg)
      assert.matches("raised TimeoutError", tostring(f))
      local g = ex:submit(function () futures.sleep(1e6) end)
      assert.equal("TimeoutError", (failure(g)))
      usable(ex)
    end)

    it("stops a task busy inside a coroutine", function ()
      local ex = newpool{ max_workers = 1, task_timeout = 0.2 }
      local f = ex:submit(function (busy) return coroutine.wrap(busy)() end,
                          busy)
      assert.equal("TimeoutError", (failure(f)))
      usable(ex)
    end)

    it("counts running time only, not time in the queue", function ()
      local t = helpers.sanitized and 3 or 1
      local ex = newpool{ max_workers = 1, task_timeout = t }
      -- each runs 0.6 t; the second waits 0.6 t in the queue first
      local a = ex:submit(function (s) futures.sleep(s) return "a" end, 0.6 * t)
      local b = ex:submit(function (s) futures.sleep(s) return "b" end, 0.6 * t)
      assert.equal("a", a:result(LONG * 2))
      assert.equal("b", b:result(LONG * 2))
    end)

    it("in map: each item is a task, unless a chunksize makes chunks",
       function ()
      local t = helpers.sanitized and 3 or 1
      local ex = newpool{ max_workers = 1, task_timeout = t }
      local function nap (x) futures.sleep(0.3 * t) return x end
      -- five items of 0.3 t each: no item runs longer than t
      local out = {}
      for v in ex:map{ nap, { 1, 2, 3, 4, 5 }, timeout = LONG * 2 } do
        out[#out + 1] = v
      end
      assert.same({ 1, 2, 3, 4, 5 }, out)
      -- one chunk of all five runs 1.5 t: the limit is the chunk's
      local ok, e = pcall(function ()
        for _ in ex:map{ nap, { 1, 2, 3, 4, 5 }, chunksize = 5,
                         timeout = LONG * 2 } do end
      end)
      assert.is_false(ok)
      assert.matches("task ran longer than", tostring(e))
      usable(ex)
    end)

    it("rejects a bad task_timeout", function ()
      for _, v in ipairs { 0, -1, "1", true } do
        assert.error_matches(function () newpool{ task_timeout = v } end,
                             "task_timeout")
      end
    end)
  end)
end

describe("a task stuck in C code", function ()
  it("thread pool: stops when it is back in Lua", function ()
    local ex = helpers.pool(1)
    local f = ex:submit(function ()
      os.execute("sleep 0.3")     -- C code: the stop waits for its return
      busy()
    end)
    running(f)
    assert.is_true(f:cancel{ force = true })
    usable(ex)
  end)

  it("process pool: its worker is killed and replaced, the pool not broken",
     function ()
    local ex = helpers.track(futures.process_pool(1))
    local tag = string.format("%d.%d", futures.getpid(), math.random(1e6))
    local f = ex:submit(function (s) os.execute("sleep 1000" .. s) end,
                        "." .. tag:gsub("%D", ""))
    running(f)
    local pid = ex:submit(futures.getpid)  -- queued behind it
    assert.truthy(helpers.wait_until(function ()
      local p = io.popen("pgrep -f '[s]leep 1000[.]" .. tag:gsub("%D", "") .. "'")
      local found = p:read("a") ~= ""
      p:close()
      return found
    end), "the task's command never started")
    assert.is_true(f:cancel{ force = true })
    assert.is_number(pid:result(LONG))
    usable(ex)
    -- what the task started went with its worker
    assert.truthy(helpers.wait_until(function ()
      local p = io.popen("pgrep -f '[s]leep 1000[.]" .. tag:gsub("%D", "") .. "'")
      local found = p:read("a") ~= ""
      p:close()
      return not found
    end), "the task's command outlived its worker")
  end)
end)

describe("process pool: tasks sent ahead to a worker", function ()
  -- How many times each task started, from the lines tasks append to log.
  local function starts (log)
    local n = {}
    for l in io.lines(log) do n[l] = (n[l] or 0) + 1 end
    return n
  end
  local function logged (i, log)
    local f = assert(io.open(log, "a"))
    f:write(i, "\n")
    f:close()
  end

  -- A worker answers a batch of tasks in one write; the stop of the first
  -- one must not look like a task stuck in C code while it runs the
  -- others (the worker was killed after half a second and the tasks it
  -- had run went to its replacement, which ran them again).
  it("stopping the one that runs starts none of the others twice",
     function ()
    local ex = helpers.track(futures.process_pool(1))
    local log = os.tmpname()
    local fs = {}
    fs[1] = ex:submit(function (log, logged, busy)
      logged(1, log)
      busy()
    end, log, logged, busy)
    for i = 2, 40 do                  -- ~2 s of work, most sent ahead
      fs[i] = ex:submit(function (i, log, logged)
        logged(i, log)
        futures.sleep(0.05)
        return i
      end, i, log, logged)
    end
    running(fs[1])
    assert.truthy(helpers.wait_until(function ()
      return starts(log)["1"] ~= nil
    end), "the first task never started")
    assert.is_true(fs[1]:cancel{ force = true })
    for i = 2, 40 do assert.equal(i, fs[i]:result(LONG)) end
    local n = starts(log)
    os.remove(log)
    for i = 1, 40 do assert.equal(1, n[tostring(i)], "task " .. i) end
  end)

  it("stopping one behind the running one stops only that one", function ()
    local ex = helpers.track(futures.process_pool(1))
    local log = os.tmpname()
    local fs = {}
    for i = 1, 40 do
      fs[i] = ex:submit(function (i, log, logged, busy)
        logged(i, log)
        if i == 1 then futures.sleep(0.5) end
        if i == 20 then busy() end
        return i
      end, i, log, logged, busy)
    end
    assert.truthy(helpers.wait_until(function () return fs[20]:running() end),
                  "task 20 was never sent")
    assert.is_true(fs[20]:cancel{ force = true })
    for i = 1, 40 do
      if i ~= 20 then assert.equal(i, fs[i]:result(LONG)) end
    end
    local n = starts(log)
    os.remove(log)
    for i = 1, 40 do
      if i ~= 20 then assert.equal(1, n[tostring(i)], "task " .. i) end
    end
  end)
end)

describe("a script that ends with an uncaught error", function ()
  local src = [[
    local futures = require "cfut"
    local ex = futures.%s(2)
    ex:submit(function () local n = 0 while true do n = #{ n } end end)
    ex:submit(function () futures.sleep(1e6) end)
    for i = 1, 10 do ex:submit(function () futures.sleep(1e6) end) end
    futures.sleep(0.2)
    error("the script fails")
  ]]
  for _, kind in ipairs { "thread_pool", "process_pool" } do
    it(kind .. ": does not wait for runaway tasks", function ()
      local r = helpers.run(src:format(kind), { timeout = LONG * 4 })
      assert.equal(1, r.status)             -- not 124: it did not hang
      assert.matches("^%S*cfut: .-the script fails", r.stderr)
    end)
  end

  it("a script that ends normally still waits for its tasks", function ()
    local r = helpers.run([[
      local futures = require "cfut"
      local ex = futures.thread_pool(1)
      ex:submit(function () futures.sleep(0.3) print("task done") end)
    ]])
    assert.equal(0, r.status)
    assert.equal("task done\n", r.stdout)
  end)
end)
