-- spec/future_spec.lua: futures and their methods (API.md §2 "Futures",
-- "Done-callbacks: where they run"), hand-made futures (futures.future)
-- and the error classes (futures.is, "Errors the library raises").

local futures = require "cfut"
local helpers = require "helpers"

local LONG, QUICK = helpers.LONG, helpers.QUICK
local errof, pool = helpers.errof, helpers.pool

after_each(helpers.cleanup)

-- A task that waits for 'gate' to open, then returns 'v'.
local function gated (gate, v)
  gate:result(LONG)
  return v
end

--[[
A 1-worker pool whose worker is busy until the returned gate opens, and a
future queued behind it (pending until then) that returns "queued".
Returns pending, gate, busy, ex.
]]
local function make_pending (nocallbacks)
  local ex = pool(1)
  local gate = helpers.gate()
  local busy = helpers.block(ex, gate, 1, nocallbacks)[1]
  local f = ex:submit(function () return "queued" end)
  return f, gate, busy, ex
end

-- A future that is running until the returned gate opens; returns f, gate.
local function make_running (nocallbacks)
  local ex = pool(1)
  local gate = helpers.gate()
  local f = helpers.block(ex, gate, 1, nocallbacks)[1]
  return f, gate, ex
end

-- A future finished with the given values (by a worker).
local function make_finished (...)
  local ex = pool(1)
  local f = ex:submit(function (...) return ... end, ...)
  f:result(LONG)
  return f
end

-- A future that finished by raising 'err' (in a worker).
local function make_failed (err)
  local ex = pool(1)
  local f = ex:submit(function (e) error(e, 0) end, err)
  f:exception(LONG)
  return f
end

local function make_cancelled ()
  local f, gate = make_pending()
  assert(f:cancel())
  gate:set_result(true)
  return f
end


describe("Future:result", function ()

  it("returns every value the task returned", function ()
    local f = make_finished("a", nil, 3.5, nil)
    local r = table.pack(f:result(LONG))
    assert.same({ n = 4, "a", nil, 3.5 }, r)
    assert.equal("float", math.type(r[3]))
  end)

  it("waits for a task that is still running", function ()
    local f, gate = make_running()
    gate:set_result(true)
    assert.equal(1, f:result(LONG))
  end)

  it("re-raises the task's error every time it is called", function ()
    local f = make_failed("it failed")
    assert.equal("it failed", errof(f.result, f, LONG))
    assert.equal("it failed", errof(f.result, f, LONG))
  end)

  it("raises TimeoutError when the timeout runs out", function ()
    local f = make_running()
    local t0 = futures.monotonic()
    local e = errof(f.result, f, 0.1)
    local took = futures.monotonic() - t0
    assert.is_true(futures.is(e, futures.TimeoutError))
    assert.matches("^TimeoutError", tostring(e))
    assert.is_true(took >= 0.099, "timed out after " .. took .. " s")
    assert.is_true(took < 0.1 + QUICK, "timed out after " .. took .. " s")
    assert.is_false(f:done())
  end)

  it("polls with timeout 0", function ()
    local f = make_running()
    local t0 = futures.monotonic()
    local e = errof(f.result, f, 0)
    local took = futures.monotonic() - t0
    assert.is_true(futures.is(e, futures.TimeoutError))
    assert.is_true(took < QUICK, "result(0) took " .. took .. " s")
    local done = make_finished("now")
    assert.equal("now", done:result(0))
  end)

  it("waits without a bound when the timeout is nil", function ()
    local ex = pool(1)
    local f = ex:submit(function ()
      futures.sleep(0.05)
      return "late"
    end)
    assert.equal("late", f:result(nil))
    local g = ex:submit(function ()
      futures.sleep(0.05)
      return "later"
    end)
    assert.equal("later", g:result())
  end)

  it("raises CancelledError on a cancelled future", function ()
    local f = make_cancelled()
    local e = errof(f.result, f, LONG)
    assert.is_true(futures.is(e, futures.CancelledError))
    assert.equal("CancelledError", e.name)
    assert.matches("^CancelledError", tostring(e))
  end)

  it("rejects a timeout that is not a number", function ()
    local f = make_finished(1)
    local e = errof(function () return f:result({}) end)
    assert.matches(
      "bad argument #1 to 'result' %(number expected, got table%)", e)
  end)
end)


describe("Future:exception", function ()

  it("returns nil for a task that succeeded", function ()
    local f = make_finished(1, 2)
    assert.is_nil(f:exception(LONG))
    assert.is_nil((make_finished():exception(LONG)))
  end)

  it("returns the error value and the worker's traceback", function ()
    local ex = pool(1)
    local line = debug.getinfo(1, "l").currentline + 1
    local f = ex:submit(function () error("kaboom") end)
    local e, tb = f:exception(LONG)
    assert.is_string(e)
    assert.matches("^[^\n]-future_spec%.lua:" .. line .. ": kaboom$", e)
    assert.is_string(tb)
    assert.is_truthy(tb:find("future_spec.lua", 1, true))
  end)

  it("returns a table error as a copy", function ()
    local f = make_failed({ reason = "no" })
    assert.same({ reason = "no" }, (f:exception(LONG)))
  end)

  it("waits for a task that is still running", function ()
    local ex = pool(1)
    local gate = helpers.gate()
    local f = ex:submit(function (g) g:result(LONG) error("late", 0) end,
                        gate)
    assert.is_true(helpers.wait_until(function () return f:running() end))
    gate:set_result(true)
    assert.equal("late", (f:exception(LONG)))
  end)

  it("raises TimeoutError when the timeout runs out", function ()
    local f = make_running()
    local e = errof(f.exception, f, 0.05)
    assert.is_true(futures.is(e, futures.TimeoutError))
    e = errof(f.exception, f, 0)
    assert.is_true(futures.is(e, futures.TimeoutError))
  end)

  it("raises CancelledError on a cancelled future", function ()
    local f = make_cancelled()
    local e = errof(f.exception, f, LONG)
    assert.is_true(futures.is(e, futures.CancelledError))
  end)
end)


describe("Future:done", function ()

  it("is false while pending or running, without blocking", function ()
    local pending, gate, busy = make_pending()
    local took, r = helpers.timed(pending.done, pending)
    assert.is_false(r[1])
    assert.is_true(took < QUICK)
    took, r = helpers.timed(busy.done, busy)
    assert.is_false(r[1])
    assert.is_true(took < QUICK)
    gate:set_result(true)
  end)

  it("is true once finished or cancelled", function ()
    assert.is_true(make_finished(1):done())
    assert.is_true(make_failed("x"):done())
    assert.is_true(make_cancelled():done())
  end)
end)


describe("Future:running", function ()

  it("is true only while the task runs, without blocking", function ()
    local pending, gate, busy = make_pending()
    local took, r = helpers.timed(busy.running, busy)
    assert.is_true(r[1])
    assert.is_true(took < QUICK)
    took, r = helpers.timed(pending.running, pending)
    assert.is_false(r[1])
    assert.is_true(took < QUICK)
    gate:set_result(true)
    busy:result(LONG)
    assert.is_false(busy:running())
    assert.is_false(make_cancelled():running())
  end)
end)


describe("Future:cancelled", function ()

  it("is true only for a cancelled future, without blocking", function ()
    local pending, gate, busy = make_pending()
    local took, r = helpers.timed(pending.cancelled, pending)
    assert.is_false(r[1])
    assert.is_true(took < QUICK)
    assert.is_false(busy:cancelled())
    gate:set_result(true)
    assert.is_false(make_finished(1):cancelled())
    assert.is_false(make_failed("x"):cancelled())
    assert.is_true(make_cancelled():cancelled())
  end)
end)


describe("Future:cancel", function ()

  it("cancels a pending future and returns true", function ()
    local ex = pool(1)
    local gate = helpers.gate()
    local busy = helpers.block(ex, gate, 1)[1]
    local ran = futures.future()
    local f = ex:submit(function () ran:set_result(true) return 1 end)
    assert.is_true(f:cancel())
    assert.is_true(f:cancelled())
    assert.is_true(f:done())
    assert.is_false(f:running())
    gate:set_result(true)
    assert.equal(1, busy:result(LONG))
    ex:shutdown()
    assert.is_false(ran:done())  -- the cancelled task never ran
  end)

  it("returns false for a running future, which then finishes", function ()
    local f, gate = make_running()
    assert.is_false(f:cancel())
    assert.is_false(f:cancelled())
    assert.is_true(f:running())
    gate:set_result(true)
    assert.equal(1, f:result(LONG))
  end)

  it("returns false for a finished future", function ()
    local f = make_finished("v")
    assert.is_false(f:cancel())
    assert.is_false(f:cancelled())
    assert.equal("v", f:result(0))
    assert.is_false(make_failed("x"):cancel())
  end)

  it("returns true again for a cancelled future", function ()
    local f = make_cancelled()
    assert.is_true(f:cancel())
    assert.is_true(f:cancelled())
  end)
end)


describe("Future:add_done_callback", function ()

  it("runs the callback at once when the future is already finished",
     function ()
    local f = make_finished(1)
    local got
    f:add_done_callback(function (g) got = g end)
    assert.equal(f, got)
  end)

  it("runs the callback at once when the future is already cancelled",
     function ()
    local f = make_cancelled()
    local got
    f:add_done_callback(function (g) got = g:cancelled() end)
    assert.is_true(got)
  end)

  it("runs the callback of a pending future at the next poll, not before",
     function ()
    futures.poll()  -- nothing left over from other specs
    local f, gate, _, ex = make_pending(true)
    local ran = 0
    f:add_done_callback(function () ran = ran + 1 end)
    -- 'after' runs on the same (only) worker once 'f' is over, so when it
    -- is done the callback of 'f' is due.  Nothing here runs callbacks.
    local after = ex:submit(function () return true end)
    assert.equal(0, ran)
    gate:set_result(true)
    assert.is_true(helpers.spin_until(function () return after:done() end))
    assert.is_true(f:done())
    assert.equal(0, ran)
    local polled = futures.poll()
    assert.equal(1, ran)
    assert.equal(1, polled)
    assert.equal(0, futures.poll())
    assert.equal(1, ran)
  end)

  it("runs the callback when the state waits in result()", function ()
    local f, gate = make_running(true)
    local ran = false
    f:add_done_callback(function () ran = true end)
    gate:set_result(true)
    f:result(LONG)
    assert.is_true(ran)
  end)

  it("runs the callback inside cancel() when that cancels the future",
     function ()
    local f, gate = make_pending(true)
    local state
    f:add_done_callback(function (g) state = g:cancelled() end)
    assert.is_nil(state)
    assert.is_true(f:cancel())
    assert.is_true(state)
    gate:set_result(true)
  end)

  it("does not run the callback when cancel() fails", function ()
    local f, gate = make_running(true)
    local ran = false
    f:add_done_callback(function () ran = true end)
    assert.is_false(f:cancel())
    assert.is_false(ran)
    gate:set_result(true)
    f:result(LONG)
    assert.is_true(ran)
  end)

  it("runs the callbacks of a future in the order they were added",
     function ()
    local f, gate = make_pending()
    local order = {}
    for i = 1, 5 do
      f:add_done_callback(function () order[#order + 1] = i end)
    end
    gate:set_result(true)
    f:result(LONG)
    assert.is_true(helpers.wait_until(function () return #order == 5 end))
    assert.same({ 1, 2, 3, 4, 5 }, order)
    local done = make_finished(1)
    order = {}
    for i = 1, 3 do
      done:add_done_callback(function () order[#order + 1] = i end)
    end
    assert.same({ 1, 2, 3 }, order)
  end)

  it("runs each callback once", function ()
    local f, gate = make_pending()
    local ran = 0
    f:add_done_callback(function () ran = ran + 1 end)
    gate:set_result(true)
    f:result(LONG)
    futures.poll()
    f:result(LONG)
    futures.sleep(0.01)
    assert.equal(1, ran)
  end)

  it("passes the future itself, user fields included", function ()
    local f, gate = make_pending()
    f.arg = 5
    local seen_f, seen_arg
    f:add_done_callback(function (g) seen_f, seen_arg = g, g.arg end)
    gate:set_result(true)
    f:result(LONG)
    assert.is_true(helpers.wait_until(function () return seen_f ~= nil end))
    assert.equal(f, seen_f)
    assert.equal(5, seen_arg)
  end)

  -- The failing callback reports itself on stderr: run in a child
  -- (helpers.in_child), which keeps the report out of busted's output.
  it("goes on with the other callbacks when one raises", function ()
    local err = helpers.in_child([[
    local f = futures.future()
    local ran = {}
    f:add_done_callback(function () ran[#ran + 1] = 1 end)
    f:add_done_callback(function () error("callback failed") end)
    f:add_done_callback(function () ran[#ran + 1] = 3 end)
    local ok, e = pcall(f.set_result, f, true)
    assert.is_true(ok, tostring(e))
    assert.same({ 1, 3 }, ran)
    ]])
    assert.matches("cfut: exception calling callback for <Future at 0x%x+ "
                   .. "state=finished returned boolean>\n[^\n]*: callback "
                   .. "failed\nstack traceback:\n", err)
  end)

  it("writes a callback's error to stderr with its traceback and future",
     function ()
    local r = helpers.run([[
      local futures = require "cfut"
      local f = futures.future()
      local ran = {}
      f:add_done_callback(function () ran[#ran + 1] = 1 end)
      f:add_done_callback(function () error("callback boom") end)
      f:add_done_callback(function () ran[#ran + 1] = 3 end)
      f:set_result(1)
      io.stdout:write("ran ", table.concat(ran, ","), "\n")
      local ex = futures.thread_pool(1)
      local g = ex:submit(function () return 2 end)
      g:add_done_callback(function () error("deferred boom") end)
      g:result(5)
      futures.poll()
      io.stdout:write("end\n")
    ]])
    assert.equal(0, r.status, r.stderr)
    assert.equal("ran 1,3\nend\n", r.stdout)
    assert.matches("callback boom", r.stderr)
    assert.matches("deferred boom", r.stderr)
    assert.matches("traceback", r.stderr)
    assert.matches("<Future at 0x%x+", r.stderr)
  end)

  it("rejects a callback that is not a function", function ()
    local f = futures.future()
    local e = errof(function () return f:add_done_callback(42) end)
    assert.matches("bad argument #1 to 'add_done_callback'", e)
  end)
end)


describe("Future fields", function ()

  it("keeps arbitrary user fields", function ()
    local f = futures.future()
    f.arg = 5
    f.label = "five"
    assert.equal(5, f.arg)
    assert.equal("five", f.label)
    assert.is_nil(f.missing)
    local g = futures.future()
    assert.is_nil(g.arg)
  end)

  it("keeps user fields on a future returned by submit", function ()
    local ex = pool(1)
    local f = ex:submit(function () return 1 end)
    f.arg = { 1, 2 }
    f:result(LONG)
    assert.same({ 1, 2 }, f.arg)
  end)
end)


describe("Future __tostring", function ()

  local function state_of (f)
    return tostring(f):match("^<Future at 0x%x+ state=(.*)>$")
  end

  it("shows a pending future", function ()
    local f, gate = make_pending()
    assert.equal("pending", state_of(f))
    assert.equal("pending", state_of(futures.future()))
    gate:set_result(true)
  end)

  it("shows a running future", function ()
    local f, gate = make_running()
    assert.equal("running", state_of(f))
    gate:set_result(true)
  end)

  it("shows a cancelled future", function ()
    assert.equal("cancelled", state_of(make_cancelled()))
  end)

  it("shows the math type of a number result", function ()
    assert.equal("finished returned float", state_of(make_finished(0.5)))
    assert.equal("finished returned integer", state_of(make_finished(5)))
  end)

  it("shows the type of other results", function ()
    assert.equal("finished returned string", state_of(make_finished("s")))
    assert.equal("finished returned table", state_of(make_finished({})))
    assert.equal("finished returned boolean", state_of(make_finished(false)))
    assert.equal("finished returned nil", state_of(make_finished(nil)))
    assert.equal("finished returned nil", state_of(make_finished()))
  end)

  it("shows the type of a raised error", function ()
    assert.equal("finished raised string", state_of(make_failed("bad")))
    assert.equal("finished raised table", state_of(make_failed({})))
  end)

  it("shows the class name of a raised library error", function ()
    local ex = pool(1)
    local f = ex:submit(function () error(futures.TimeoutError("x")) end)
    f:exception(LONG)
    assert.equal("finished raised TimeoutError", state_of(f))
    local g = futures.future()
    g:set_exception(futures.TimeoutError("x"))
    assert.equal("finished raised TimeoutError", state_of(g))
  end)
end)


describe("futures.future", function ()

  it("makes a pending future", function ()
    local f = futures.future()
    assert.equal("userdata", type(f))
    assert.is_false(f:done())
    assert.is_false(f:running())
    assert.is_false(f:cancelled())
    assert.is_true(futures.is(errof(f.result, f, 0), futures.TimeoutError))
  end)

  it("delivers the values given to set_result", function ()
    local f = futures.future()
    f:set_result(1, nil, 3)
    assert.is_true(f:done())
    assert.same({ n = 3, 1, nil, 3 }, table.pack(f:result(0)))
    assert.is_nil(f:exception(0))
  end)

  it("re-raises the value given to set_exception, unchanged", function ()
    local f = futures.future()
    f:set_exception("plain error")
    assert.is_true(f:done())
    assert.equal("plain error", errof(f.result, f, 0))
    assert.equal("plain error", (f:exception(0)))
    local g = futures.future()
    local err = futures.InvalidStateError("custom")
    g:set_exception(err)
    local e = errof(g.result, g, 0)
    assert.is_true(futures.is(e, futures.InvalidStateError))
    assert.equal("custom", e.message)
  end)

  it("moves a pending future to running with set_running_or_notify_cancel",
     function ()
    local f = futures.future()
    assert.is_true(f:set_running_or_notify_cancel())
    assert.is_true(f:running())
    assert.is_false(f:cancel())
    f:set_result("done")
    assert.equal("done", f:result(0))
  end)

  it("returns false from set_running_or_notify_cancel once cancelled",
     function ()
    local f = futures.future()
    assert.is_true(f:cancel())
    assert.is_false(f:set_running_or_notify_cancel())
    assert.is_true(f:cancelled())
  end)

  it("names the real state when set_running_or_notify_cancel finds it running",
     function ()
    local f = futures.future()
    assert.is_true(f:set_running_or_notify_cancel())
    local e = errof(f.set_running_or_notify_cancel, f)
    assert.is_true(futures.is(e, futures.InvalidStateError))
    assert.matches("^RUNNING: ", e.message)
    f:set_result(1)
    e = errof(f.set_running_or_notify_cancel, f)
    assert.matches("^FINISHED: ", e.message)
  end)

  it("returns exactly one nil from exception() on success", function ()
    local f = futures.future()
    f:set_result(1, 2)
    local r = table.pack(f:exception(0))
    assert.equal(1, r.n)
    assert.is_nil(r[1])
  end)

  it("raises InvalidStateError when set_result finds it finished",
     function ()
    local f = futures.future()
    f:set_result(1)
    local e = errof(f.set_result, f, 2)
    assert.is_true(futures.is(e, futures.InvalidStateError))
    assert.matches("^InvalidStateError", tostring(e))
    assert.equal(1, f:result(0))
    e = errof(f.set_exception, f, "late")
    assert.is_true(futures.is(e, futures.InvalidStateError))
    assert.equal(1, f:result(0))
  end)

  it("raises InvalidStateError when set_exception finds it finished",
     function ()
    local f = futures.future()
    f:set_exception("first")
    local e = errof(f.set_exception, f, "second")
    assert.is_true(futures.is(e, futures.InvalidStateError))
    e = errof(f.set_result, f, 1)
    assert.is_true(futures.is(e, futures.InvalidStateError))
    assert.equal("first", errof(f.result, f, 0))
  end)

  it("raises InvalidStateError when set_result finds it cancelled",
     function ()
    local f = futures.future()
    f:cancel()
    local e = errof(f.set_result, f, 1)
    assert.is_true(futures.is(e, futures.InvalidStateError))
    assert.is_true(f:cancelled())
  end)

  it("runs the calling state's callbacks at once in set_result", function ()
    local f = futures.future()
    local got
    f:add_done_callback(function (g) got = table.pack(g:result(0)) end)
    assert.is_nil(got)
    f:set_result("x", "y")
    assert.same({ n = 2, "x", "y" }, got)
  end)

  it("runs the calling state's callbacks at once in set_exception",
     function ()
    local f = futures.future()
    local got
    f:add_done_callback(function (g) got = g:exception(0) end)
    f:set_exception("oops")
    assert.equal("oops", got)
  end)

  it("can be completed by a task while the main script waits on it",
     function ()
    local ex = pool(1)
    local f = futures.future()
    ex:submit(function (h) h:set_result("from worker", 2) end, f)
    local a, b = f:result(LONG)
    assert.equal("from worker", a)
    assert.equal(2, b)
  end)

  it("runs the main script's callbacks at its next wait when a task sets it",
     function ()
    futures.poll()  -- nothing left over from other specs
    local ex = pool(1)
    local f = futures.future()
    local ran = 0
    f:add_done_callback(function () ran = ran + 1 end)
    local setter = ex:submit(function (h) h:set_result(1) end, f)
    -- set_result in the worker is over once 'setter' is done.
    assert.is_true(helpers.spin_until(function () return setter:done() end))
    assert.is_true(f:done())
    assert.equal(0, ran)
    assert.equal(1, futures.poll())
    assert.equal(1, ran)
  end)
end)


describe("futures.is", function ()

  it("tests an error's class, subclasses included", function ()
    local e = futures.BrokenThreadPool("pool broke")
    assert.is_true(futures.is(e, futures.BrokenThreadPool))
    assert.is_true(futures.is(e, futures.BrokenExecutor))
    assert.is_true(futures.is(e, futures.Error))
    assert.is_false(futures.is(e, futures.BrokenProcessPool))
    assert.is_false(futures.is(e, futures.TimeoutError))
    local p = futures.BrokenProcessPool("gone")
    assert.is_true(futures.is(p, futures.BrokenExecutor))
    assert.is_false(futures.is(p, futures.BrokenThreadPool))
    local base = futures.Error("base")
    assert.is_true(futures.is(base, futures.Error))
    assert.is_false(futures.is(base, futures.TimeoutError))
  end)

  it("puts every library error class under futures.Error", function ()
    for _, name in ipairs{ "CancelledError", "TimeoutError",
                           "InvalidStateError", "ShutdownError",
                           "BrokenExecutor", "BrokenThreadPool",
                           "BrokenProcessPool" } do
      local cls = futures[name]
      assert.is_table(cls, name)
      local e = cls("m")
      assert.equal(name, e.name)
      assert.is_true(futures.is(e, cls), name)
      assert.is_true(futures.is(e, futures.Error), name)
    end
  end)

  it("returns false for values that are not errors", function ()
    assert.is_false(futures.is("TimeoutError: x", futures.TimeoutError))
    assert.is_false(futures.is(nil, futures.Error))
    assert.is_false(futures.is(42, futures.Error))
    assert.is_false(futures.is({ name = "TimeoutError", message = "x" },
                               futures.TimeoutError))
  end)

  it("rejects a second argument that is not an error class", function ()
    local e = errof(function () return futures.is(futures.Error("x"), 42) end)
    assert.matches("bad argument #2 to 'is'", e)
  end)
end)


describe("futures error classes", function ()

  it("make errors with name and message fields", function ()
    local e = futures.TimeoutError("too slow")
    assert.equal("TimeoutError", e.name)
    assert.equal("too slow", e.message)
    assert.equal("TimeoutError: too slow", tostring(e))
  end)

  it("keep their class when raised by the library in a worker", function ()
    local ex = pool(1)
    local f = ex:submit(function ()
      return futures.future():result(0)
    end)
    local e = errof(f.result, f, LONG)
    assert.is_table(e)
    assert.is_true(futures.is(e, futures.TimeoutError))
    assert.is_true(futures.is(e, futures.Error))
    assert.equal("TimeoutError", e.name)
    assert.matches("^TimeoutError", tostring(e))
  end)

  it("keep their class and message when raised by a task", function ()
    local ex = pool(1)
    local f = ex:submit(function ()
      error(futures.CancelledError("given up"))
    end)
    local e = errof(f.result, f, LONG)
    assert.is_true(futures.is(e, futures.CancelledError))
    assert.equal("given up", e.message)
    assert.equal("CancelledError: given up", tostring(e))
    assert.is_false(f:cancelled())
  end)

  it("keep their class when a task's future fails through another future",
     function ()
    local ex = pool(2)
    local f = ex:submit(function (pool_)
      local inner = pool_:submit(function ()
        error(futures.ShutdownError("inner"))
      end)
      return inner:result(LONG)
    end, ex)
    local e = errof(f.result, f, LONG)
    assert.is_true(futures.is(e, futures.ShutdownError))
    assert.equal("inner", e.message)
  end)
end)
