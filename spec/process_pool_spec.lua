-- spec/process_pool_spec.lua: futures.process_pool (API.md §2, §3, §4).

local futures = require "cfut"
local helpers = require "helpers"

local LONG = helpers.LONG

after_each(helpers.cleanup)

local function errof (fn, ...)
  local ok, e = pcall(fn, ...)
  assert.is_false(ok)
  return e
end

describe("futures.process_pool", function ()

  it("runs tasks in worker processes, not in this one", function ()
    local ex = helpers.track(futures.process_pool(2))
    local pid = ex:submit(futures.getpid):result(LONG)
    assert.is_number(pid)
    assert.are_not.equal(futures.getpid(), pid)
  end)

  it("returns every value and keeps integers and floats apart", function ()
    local ex = helpers.track(futures.process_pool(1))
    local r = table.pack(ex:submit(function (a, b)
      return a + b, a / b, nil, "s"
    end, 3, 2):result(LONG))
    assert.same({ n = 4, 5, 1.5, nil, "s" }, r)
    assert.equal("integer", math.type(r[1]))
  end)

  it("re-raises a task's error with the worker's file and line", function ()
    local ex = helpers.track(futures.process_pool(1))
    local f = ex:submit(function () error("boom") end)
    local e, tb = f:exception(LONG)
    assert.matches("process_pool_spec%.lua:%d+: boom$", e)
    assert.is_truthy(tb:find("process_pool_spec.lua", 1, true))
  end)

  it("refuses futures and executors as arguments, naming them", function ()
    local ex = helpers.track(futures.process_pool(1))
    local e = errof(ex.submit, ex, function () end, futures.future())
    assert.matches("^cannot send argument #2 %(.*future.*%) to a worker$", e)
  end)

  it("breaks with BrokenProcessPool when a worker is killed", function ()
    local ex = helpers.track(futures.process_pool(1))
    local pid = ex:submit(futures.getpid):result(LONG)
    local f = ex:submit(function () futures.sleep(30) end)
    assert.is_true(helpers.wait_until(function () return f:running() end))
    assert.is_true(futures.kill(pid, "SIGKILL"))
    local e = f:exception(LONG)
    assert.is_true(futures.is(e, futures.BrokenProcessPool))
    assert.equal("A process in the process pool was terminated abruptly "
                 .. "while the future was running or pending.", e.message)
    local e2 = errof(ex.submit, ex, futures.getpid)
    assert.is_true(futures.is(e2, futures.BrokenProcessPool))
    assert.equal(e.message, e2.message)
  end)
end)
