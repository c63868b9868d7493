-- spec/wait_spec.lua: waiting on many futures (futures.wait,
-- futures.as_completed, API.md §2 "Waiting on many") and the helpers that
-- wait or run callbacks: futures.sleep, futures.monotonic, futures.poll.

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

-- A future that runs on 'ex' until 'gate' opens (it is running on return).
local function running_on (ex, gate, v)
  local f = ex:submit(gated, gate, v)
  assert(helpers.wait_until(function () return f:running() end),
         "blocking task did not start")
  return f
end

-- A future on 'ex' that has finished with 'v'.
local function finished_on (ex, v)
  local f = ex:submit(function () return v end)
  f:result(LONG)
  return f
end

-- The results of f:result(0) for each future in fs.
local function results (fs)
  local r = {}
  for i, f in ipairs(fs) do r[i] = f:result(0) end
  return r
end


describe("futures.wait", function ()

  it("returns done and not_done in the order of fs, without duplicates",
     function ()
    local ex = pool(2)
    local gate = helpers.gate()
    local b = running_on(ex, gate, "b")
    local a, c = finished_on(ex, "a"), finished_on(ex, "c")
    local done, not_done = futures.wait({ b, a, c, a, b }, 0)
    assert.equal(2, #done)
    assert.equal(a, done[1])
    assert.equal(c, done[2])
    assert.equal(1, #not_done)
    assert.equal(b, not_done[1])
    gate:set_result(true)
  end)

  it("waits for all futures by default", function ()
    local ex = pool(2)
    local function slow (v) futures.sleep(0.05) return v end
    local fs = { ex:submit(slow, 1), ex:submit(slow, 2), ex:submit(slow, 3) }
    local done, not_done = futures.wait(fs)
    assert.equal(3, #done)
    assert.same({}, not_done)
    assert.same({ 1, 2, 3 }, results(done))
  end)

  it("waits for all futures with ALL_COMPLETED", function ()
    local ex = pool(2)
    local gate = helpers.gate()
    local a = running_on(ex, gate, "a")
    local b = finished_on(ex, "b")
    local opener = pool(1):submit(function (g)
      futures.sleep(0.05)
      g:set_result(true)
    end, gate)
    local done, not_done = futures.wait({ a, b }, LONG, futures.ALL_COMPLETED)
    assert.same({ "a", "b" }, results(done))
    assert.same({}, not_done)
    opener:result(LONG)
  end)

  it("returns when the first future finishes with FIRST_COMPLETED",
     function ()
    local ex = pool(2)
    local ga, gb = helpers.gate(), helpers.gate()
    local a = running_on(ex, ga, "a")
    local b = running_on(ex, gb, "b")
    gb:set_result(true)
    local done, not_done = futures.wait({ a, b }, LONG,
                                        futures.FIRST_COMPLETED)
    assert.equal(1, #done)
    assert.equal(b, done[1])
    assert.equal(1, #not_done)
    assert.equal(a, not_done[1])
    ga:set_result(true)
  end)

  it("returns at once with FIRST_COMPLETED when one is already done",
     function ()
    local ex = pool(2)
    local gate = helpers.gate()
    local a = running_on(ex, gate, "a")
    local b = finished_on(ex, "b")
    local took, r = helpers.timed(futures.wait, { a, b }, LONG,
                                  futures.FIRST_COMPLETED)
    assert.is_true(took < QUICK, "wait took " .. took .. " s")
    assert.same({ b }, r[1])
    assert.same({ a }, r[2])
    gate:set_result(true)
  end)

  it("returns when a future raises with FIRST_EXCEPTION", function ()
    local ex = pool(2)
    local gate = helpers.gate()
    local blocked = running_on(ex, gate, "blocked")
    local ok = finished_on(ex, "ok")
    local bad = ex:submit(function () error("failed", 0) end)
    local done, not_done = futures.wait({ ok, bad, blocked }, LONG,
                                        futures.FIRST_EXCEPTION)
    assert.equal(2, #done)
    assert.equal(ok, done[1])
    assert.equal(bad, done[2])
    assert.equal("failed", (bad:exception(0)))
    assert.same({ blocked }, not_done)
    gate:set_result(true)
  end)

  it("waits for all futures with FIRST_EXCEPTION when none raises",
     function ()
    local ex = pool(2)
    local gate = helpers.gate()
    local a = running_on(ex, gate, "a")
    local b = finished_on(ex, "b")
    local opener = pool(1):submit(function (g)
      futures.sleep(0.05)
      g:set_result(true)
    end, gate)
    local done, not_done = futures.wait({ a, b }, LONG,
                                        futures.FIRST_EXCEPTION)
    assert.same({ "a", "b" }, results(done))
    assert.same({}, not_done)
    opener:result(LONG)
  end)

  it("returns the partial sets when the timeout runs out, without error",
     function ()
    local ex = pool(2)
    local gate = helpers.gate()
    local blocked = running_on(ex, gate, "blocked")
    local fin = finished_on(ex, "fin")
    for _, how in ipairs{ futures.ALL_COMPLETED, futures.FIRST_EXCEPTION } do
      local t0 = futures.monotonic()
      local done, not_done = futures.wait({ blocked, fin }, 0.1, how)
      local took = futures.monotonic() - t0
      assert.same({ fin }, done)
      assert.same({ blocked }, not_done)
      local why = "wait returned after " .. took .. " s"
      assert.is_true(took >= 0.099, why)
      assert.is_true(took < 0.1 + QUICK, why)
    end
    local done, not_done = futures.wait({ blocked }, 0.05,
                                        futures.FIRST_COMPLETED)
    assert.same({}, done)
    assert.same({ blocked }, not_done)
    gate:set_result(true)
  end)

  it("counts a cancelled future as done", function ()
    local ex = pool(1)
    local gate = helpers.gate()
    local busy = running_on(ex, gate, "busy")
    local queued = ex:submit(function () return 1 end)
    assert.is_true(queued:cancel())
    local done, not_done = futures.wait({ busy, queued }, 0)
    assert.same({ queued }, done)
    assert.same({ busy }, not_done)
    gate:set_result(true)
  end)

  it("waits on futures made by hand", function ()
    local f, g = futures.future(), futures.future()
    pool(1):submit(function (x, y)
      x:set_result(1)
      y:set_exception("no")
    end, f, g)
    local done, not_done = futures.wait({ f, g }, LONG)
    assert.same({ f, g }, done)
    assert.same({}, not_done)
  end)

  it("returns two empty sequences for no futures", function ()
    local done, not_done = futures.wait({})
    assert.same({}, done)
    assert.same({}, not_done)
  end)

  it("runs the done-callbacks that are due", function ()
    local ex = pool(1)
    local gate = helpers.gate()
    local f = running_on(ex, gate, "f")
    local ran = false
    f:add_done_callback(function () ran = true end)
    gate:set_result(true)
    futures.wait({ f }, LONG)
    assert.is_true(ran)
  end)

  it("rejects fs that is not a table", function ()
    local e = errof(function () return futures.wait(42) end)
    assert.matches("bad argument #1 to 'wait'", e)
  end)

  it("rejects an unknown return_when", function ()
    local e = errof(function ()
      return futures.wait({}, 1, "NOT_A_CONDITION")
    end)
    assert.matches("bad argument #3 to 'wait'", e)
  end)
end)


describe("futures.FIRST_COMPLETED, FIRST_EXCEPTION, ALL_COMPLETED",
         function ()

  it("are three distinct values", function ()
    assert.is_not_nil(futures.FIRST_COMPLETED)
    assert.is_not_nil(futures.FIRST_EXCEPTION)
    assert.is_not_nil(futures.ALL_COMPLETED)
    assert.not_equal(futures.FIRST_COMPLETED, futures.FIRST_EXCEPTION)
    assert.not_equal(futures.FIRST_COMPLETED, futures.ALL_COMPLETED)
    assert.not_equal(futures.FIRST_EXCEPTION, futures.ALL_COMPLETED)
  end)
end)


describe("futures.as_completed", function ()

  it("yields finished futures first, then in completion order", function ()
    local ex = pool(4)
    local g1, g2 = helpers.gate(), helpers.gate()
    local p1 = running_on(ex, g1, "p1")
    local p2 = running_on(ex, g2, "p2")
    local d1, d2 = finished_on(ex, "d1"), finished_on(ex, "d2")
    local got = {}
    for f in futures.as_completed({ p1, d1, p2, d2 }, LONG) do
      got[#got + 1] = f:result(0)
      -- Finish p2, then p1, once the finished ones are out.
      if #got == 2 then g2:set_result(true)
      elseif #got == 3 then g1:set_result(true) end
    end
    assert.equal(4, #got)
    assert.same({ d1 = true, d2 = true }, helpers.set{ got[1], got[2] })
    assert.equal("p2", got[3])
    assert.equal("p1", got[4])
  end)

  it("yields each future once, however often fs holds it", function ()
    local ex = pool(2)
    local a, b = finished_on(ex, "a"), finished_on(ex, "b")
    local gate = helpers.gate()
    local c = running_on(ex, gate, "c")
    local seen = {}
    for f in futures.as_completed({ a, c, a, b, c, a }, LONG) do
      seen[#seen + 1] = f:result(0)
      if #seen == 2 then gate:set_result(true) end
    end
    assert.equal(3, #seen)
    assert.same({ a = true, b = true, c = true }, helpers.set(seen))
    assert.equal("c", seen[3])
  end)

  it("waits without a bound when no timeout is given", function ()
    local ex = pool(2)
    local function slow (v) futures.sleep(0.05) return v end
    local fs = { ex:submit(slow, 1), ex:submit(slow, 2), ex:submit(slow, 3) }
    local got = {}
    for f in futures.as_completed(fs) do got[#got + 1] = f:result(0) end
    table.sort(got)
    assert.same({ 1, 2, 3 }, got)
  end)

  it("raises TimeoutError naming the unfinished futures when time runs out",
     function ()
    local ex = pool(2)
    local gate = helpers.gate()
    local blocked = running_on(ex, gate, "blocked")
    local fin = finished_on(ex, "fin")
    local got = {}
    local t0 = futures.monotonic()
    local e = errof(function ()
      for f in futures.as_completed({ blocked, fin }, 0.1) do
        got[#got + 1] = f
      end
    end)
    local took = futures.monotonic() - t0
    assert.same({ fin }, got)
    assert.is_true(futures.is(e, futures.TimeoutError))
    assert.equal("1 (of 2) futures unfinished", e.message)
    assert.equal("TimeoutError: 1 (of 2) futures unfinished", tostring(e))
    assert.is_true(took >= 0.099, "timed out after " .. took .. " s")
    assert.is_true(took < 0.1 + QUICK, "timed out after " .. took .. " s")
    gate:set_result(true)
  end)

  it("counts each future once in the timeout message", function ()
    local ex = pool(3)
    local gate = helpers.gate()
    local b1 = running_on(ex, gate, "b1")
    local b2 = running_on(ex, gate, "b2")
    local fin = finished_on(ex, "fin")
    local e = errof(function ()
      for _ in futures.as_completed({ b1, fin, b2, b1, fin }, 0.05) do end
    end)
    assert.is_true(futures.is(e, futures.TimeoutError))
    assert.equal("2 (of 3) futures unfinished", e.message)
    gate:set_result(true)
  end)

  it("yields nothing for no futures", function ()
    local n = 0
    for _ in futures.as_completed({}) do n = n + 1 end
    assert.equal(0, n)
  end)

  it("yields cancelled futures as completed", function ()
    local ex = pool(1)
    local gate = helpers.gate()
    local busy = running_on(ex, gate, "busy")
    local queued = ex:submit(function () return 1 end)
    assert.is_true(queued:cancel())
    local seen = {}
    for f in futures.as_completed({ busy, queued }, LONG) do
      seen[#seen + 1] = f
      if #seen == 1 then gate:set_result(true) end
    end
    assert.same({ queued, busy }, seen)
  end)

  it("runs the done-callbacks that are due", function ()
    local ex = pool(1)
    local gate = helpers.gate()
    local f = running_on(ex, gate, "f")
    local ran = false
    f:add_done_callback(function () ran = true end)
    gate:set_result(true)
    for _ in futures.as_completed({ f }, LONG) do end
    assert.is_true(ran)
  end)

  it("rejects fs that is not a table", function ()
    local e = errof(function ()
      for _ in futures.as_completed(42) do end
    end)
    assert.matches("bad argument #1 to 'as_completed'", e)
  end)
end)


describe("futures.sleep", function ()

  it("sleeps at least the given time", function ()
    for _, s in ipairs{ 0.01, 0.05 } do
      local t0 = futures.monotonic()
      futures.sleep(s)
      local took = futures.monotonic() - t0
      assert.is_true(took >= s - 1e-6, "slept " .. took .. " s for " .. s)
      assert.is_true(took < s + QUICK, "slept " .. took .. " s for " .. s)
    end
  end)

  it("returns at once for 0", function ()
    local took = helpers.timed(futures.sleep, 0)
    assert.is_true(took < QUICK)
  end)

  it("sleeps in a task as in the main script", function ()
    local ex = pool(1)
    local took = ex:submit(function ()
      local t0 = futures.monotonic()
      futures.sleep(0.05)
      return futures.monotonic() - t0
    end):result(LONG)
    assert.is_true(took >= 0.05 - 1e-6, "slept " .. took .. " s")
  end)

  it("runs the done-callbacks that are due", function ()
    local ex = pool(1)
    local gate = helpers.gate()
    local f = running_on(ex, gate, "f")
    local ran = false
    f:add_done_callback(function () ran = true end)
    gate:set_result(true)
    local deadline = futures.monotonic() + LONG
    while not ran and futures.monotonic() < deadline do
      futures.sleep(0.001)
    end
    assert.is_true(ran)
  end)

  it("rejects a duration that is not a number", function ()
    local e = errof(function () return futures.sleep("soon") end)
    assert.matches("bad argument #1 to 'sleep'", e)
  end)
end)


describe("futures.monotonic", function ()

  it("returns a float that never goes back", function ()
    local last = futures.monotonic()
    assert.equal("float", math.type(last))
    for _ = 1, 1000 do
      local now = futures.monotonic()
      assert.is_true(now >= last)
      last = now
    end
    futures.sleep(0.01)
    assert.is_true(futures.monotonic() > last)
  end)

  it("shares its clock with the tasks", function ()
    local ex = pool(1)
    local t0 = futures.monotonic()
    local inside = ex:submit(function () return futures.monotonic() end)
                     :result(LONG)
    local t1 = futures.monotonic()
    assert.is_true(t0 <= inside and inside <= t1)
  end)
end)


describe("futures.poll", function ()

  it("returns 0 when no callback is due", function ()
    futures.poll()
    assert.equal(0, futures.poll())
    local f = futures.future()
    f:add_done_callback(function () end)
    assert.equal(0, futures.poll())
    f:set_result(1)                   -- runs the callback at once
    assert.equal(0, futures.poll())
  end)

  it("runs the due callbacks and returns how many ran", function ()
    futures.poll()
    local ex = pool(1)
    local gate = helpers.gate()
    local busy = helpers.block(ex, gate, 1, true)[1]
    local f1 = ex:submit(function () return 1 end)
    local f2 = ex:submit(function () return 2 end)
    local after = ex:submit(function () return 3 end)
    local ran = {}
    f1:add_done_callback(function () ran[#ran + 1] = "f1a" end)
    f1:add_done_callback(function () ran[#ran + 1] = "f1b" end)
    f2:add_done_callback(function () ran[#ran + 1] = "f2" end)
    gate:set_result(true)
    -- 'after' runs last on the only worker: once it is done, f1 and f2 are.
    assert.is_true(helpers.spin_until(function () return after:done() end))
    assert.same({}, ran)
    assert.equal(3, futures.poll())
    assert.equal(3, #ran)
    local at = {}
    for i, name in ipairs(ran) do at[name] = i end
    assert.is_number(at.f2)
    assert.is_true(at.f1a < at.f1b)
    assert.equal(0, futures.poll())
    assert.equal(1, busy:result(0))
  end)

  it("does not block", function ()
    local ex = pool(1)
    local gate = helpers.gate()
    local f = running_on(ex, gate, "f")
    f:add_done_callback(function () end)
    local took, r = helpers.timed(futures.poll)
    assert.equal(0, r[1])
    assert.is_true(took < QUICK)
    gate:set_result(true)
  end)
end)
