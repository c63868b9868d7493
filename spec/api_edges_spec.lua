-- spec/api_edges_spec.lua: the edges a new user met (issue 10): sets in
-- futures.wait and futures.as_completed, unknown option names, the
-- numbering of map{...}'s arguments, and futures.kill with a pid that
-- names more than one process.

local futures = require "cfut"
local helpers = require "helpers"

local LONG = helpers.LONG
local errof, pool = helpers.errof, helpers.pool

after_each(helpers.cleanup)

local function argerr (e, n, fname, what)
  assert.is_string(e)
  assert.matches("bad argument #" .. n .. " to '[%w_.]*" .. fname .. "'", e)
  assert.truthy(e:find("(" .. what .. ")", 1, true),
                "expected (" .. what .. ") in: " .. e)
end

-- A future finished with v.
local function finished (v)
  local f = futures.future()
  f:set_result(v)
  return f
end

describe("futures.wait with a set", function ()

  it("returns done and not_done as sets", function ()
    local a, b, c = finished(1), finished(2), futures.future()
    local done, not_done = futures.wait({ [a] = true, [b] = true,
                                          [c] = true }, 0)
    assert.same({ [a] = true, [b] = true }, done)
    assert.same({ [c] = true }, not_done)
  end)

  it("waits on a set until every future is done", function ()
    local ex = pool(2)
    local fs = {}
    for i = 1, 4 do fs[ex:submit(function () return i end)] = true end
    local done, not_done = futures.wait(fs, LONG)
    assert.equal(4, helpers.size(done))
    assert.same({}, not_done)
    for f in pairs(fs) do assert.is_true(done[f]) end
  end)

  it("returns two empty sequences for an empty table", function ()
    local done, not_done = futures.wait({})
    assert.same({}, done)
    assert.same({}, not_done)
  end)

  it("rejects a set whose key is not a future, naming the key", function ()
    local e = errof(futures.wait, { [finished(1)] = true, x = true })
    argerr(e, 1, "wait", "future expected as key 'x', got string")
  end)

  it("rejects a set whose value is not true, naming the key", function ()
    local f = finished(1)
    local e = errof(futures.wait, { [f] = 1 })
    argerr(e, 1, "wait", "value true expected at key " .. tostring(f)
                         .. ", got number")
  end)

  it("rejects a sequence with other keys, naming the key", function ()
    local e = errof(futures.wait, { finished(1), finished(2), name = "x" })
    argerr(e, 1, "wait", "unexpected key 'name' in a sequence of futures")
  end)
end)

describe("futures.as_completed with a set", function ()

  it("yields each future of a set once", function ()
    local ex = pool(2)
    local fs, n = {}, 0
    for i = 1, 5 do fs[ex:submit(function () return i end)] = true end
    for f in futures.as_completed(fs, LONG) do
      assert.is_true(fs[f])
      fs[f] = nil
      n = n + 1
    end
    assert.equal(5, n)
  end)

  it("rejects a table of neither kind, naming the key", function ()
    local e = errof(function ()
      for _ in futures.as_completed({ [finished(1)] = true, [2] = true }) do
      end
    end)
    argerr(e, 1, "as_completed", "future expected as key 2, got number")
  end)
end)

describe("unknown option names", function ()

  it("are rejected by map{...}", function ()
    local ex = pool(1)
    local e = errof(function ()
      return ex:map{ function (x) return x end, { 1, 2 }, chunk_size = 10 }
    end)
    argerr(e, 1, "map", "unknown option 'chunk_size'")
  end)

  it("are rejected by shutdown{...}", function ()
    local ex = pool(1)
    local e = errof(function () ex:shutdown{ wiat = true } end)
    argerr(e, 1, "shutdown", "unknown option 'wiat'")
  end)

  it("are rejected by as_completed and wait", function ()
    local f = finished(1)
    argerr(errof(futures.wait, { f }, 0, nil, { progres = true }), 4, "wait",
           "unknown option 'progres'")
    argerr(errof(futures.as_completed, { f }, 0, { progres = true }), 3,
           "as_completed", "unknown option 'progres'")
  end)
end)

describe("map{...} argument errors", function ()

  it("number the table as the user sees it", function ()
    local ex = pool(1)
    argerr(errof(function () return ex:map{} end), 1, "map",
           "field [1]: function expected, got nil")
    argerr(errof(function () return ex:map{ print } end), 1, "map",
           "field [2]: iterable expected, got no value")
    argerr(errof(function () return ex:map{ print, { 1 }, 42 } end), 1,
           "map", "field [3]: sequence table or iterator function expected, "
                  .. "got number")
  end)

  it("number the arguments of the plain form as before", function ()
    local ex = pool(1)
    argerr(errof(function () return ex:map(42, {}) end), 1, "map",
           "function expected, got number")
    argerr(errof(function () return ex:map(print, {}, 42) end), 3, "map",
           "sequence table or iterator function expected, got number")
  end)
end)

describe("futures.kill", function ()

  it("rejects a pid that names more than one process", function ()
    for _, pid in ipairs{ -1, 0, -futures.getpid() } do
      argerr(errof(futures.kill, pid, 0), 1, "kill",
             "pid must name one process (a positive integer), got " .. pid)
    end
  end)

  it("still signals one process", function ()
    assert.is_true(futures.kill(futures.getpid(), 0))
  end)
end)
