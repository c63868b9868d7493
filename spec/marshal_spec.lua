-- spec/marshal_spec.lua: what crosses between states (API.md §3), through
-- the public functions that use the marshaller: futures.dumps/loads (no
-- handles, no code unless asked) and a thread pool's submit/result (the
-- same-process flavour, with handles).  The byte format is docs/wire.md.

local futures = require "cfut"
local helpers = require "helpers"

local LONG = helpers.LONG
local errof, pool = helpers.errof, helpers.pool

after_each(helpers.cleanup)

-- Where this file's code says it is, as error messages show it.
local SRC = debug.getinfo(1, "S").short_src

-- The values of a dumps/loads round trip, packed.
local function roundtrip (...)
  return table.pack(futures.loads(futures.dumps(...), true))
end

-- The result of fn(...) run by a worker (a one-worker pool per call).
local function inworker (fn, ...)
  return pool(1):submit(fn, ...):result(LONG)
end

local function echo (...) return ... end

-- A table nested 'n' deep: {a = {a = ... {} ...}}.
local function nested (n)
  local t = {}
  local cur = t
  for _ = 2, n do
    cur.a = {}
    cur = cur.a
  end
  return t
end


describe("futures.dumps", function ()

  it("returns a string that starts with the wire format's header", function ()
    local s = futures.dumps(1, "x")
    assert.equal("string", type(s))
    assert.equal("\27CF\1", s:sub(1, 4))
  end)

  it("keeps nil, booleans, integers and floats exactly", function ()
    local r = roundtrip(nil, true, false, 0, -7, math.maxinteger,
                        math.mininteger, 2.5, 3.0, math.huge, -math.huge,
                        -0.0, 0 / 0)
    assert.equal(13, r.n)
    assert.is_nil(r[1])
    assert.is_true(r[2])
    assert.is_false(r[3])
    assert.equal("integer", math.type(r[4]))
    assert.equal(-7, r[5])
    assert.equal(math.maxinteger, r[6])
    assert.equal(math.mininteger, r[7])
    assert.equal(2.5, r[8])
    assert.equal("float", math.type(r[9]))
    assert.equal(math.huge, r[10])
    assert.equal(-math.huge, r[11])
    assert.equal(-math.huge, 1 / r[12])   -- -0.0 keeps its sign
    assert.is_true(r[13] ~= r[13])        -- nan
  end)

  it("keeps binary strings of any size", function ()
    local bin = ""
    for i = 0, 255 do bin = bin .. string.char(i) end
    local big = string.rep(bin, 4096)      -- 1 MiB
    local r = roundtrip("", bin, big)
    assert.equal("", r[1])
    assert.equal(bin, r[2])
    assert.equal(#big, #r[3])
    assert.is_true(big == r[3])
  end)

  it("keeps trailing nils in the value count", function ()
    local r = roundtrip(1, nil, nil)
    assert.equal(3, r.n)
  end)

  it("copies array and hash parts, holes included", function ()
    local t = {1, 2, nil, 4, x = "y", [2.5] = "f", [true] = "b",
               [-1] = "neg", n = 4}
    local c = roundtrip(t)[1]
    assert.are_not.equal(t, c)
    assert.same(t, c)
    assert.is_nil(c[3])
  end)

  it("sends a table reached twice as one table", function ()
    local shared = {}
    local r = roundtrip({a = shared, b = {shared}}, shared)
    local t, s = r[1], r[2]
    assert.equal(t.a, t.b[1])
    assert.equal(t.a, s)
    assert.are_not.equal(shared, s)
  end)

  it("keeps cycles", function ()
    local t = {}
    t.self = t
    t.list = {t}
    local c = roundtrip(t)[1]
    assert.equal(c, c.self)
    assert.equal(c, c.list[1])
  end)

  it("keeps shared tables and cycles in big and small messages in turn",
     function ()
    -- A big message leaves its thread a big map of seen tables, which
    -- later messages reuse once they grow past 4096 entries.
    local function records (n)
      local t, s = {}, {}
      for i = 1, n do t[i] = {id = i, tags = {"a"}, s = s} end
      t.self = t
      return t
    end
    for _, n in ipairs{ 70000, 5000, 20, 3000, 70000, 1100, 9000 } do
      local c = futures.loads(futures.dumps(records(n)))
      assert.equal(n, #c)
      assert.equal(c, c.self)
      for i = 1, n, 97 do
        assert.equal(i, c[i].id)
        assert.equal("a", c[i].tags[1])
        assert.equal(c[1].s, c[i].s)
      end
      assert.are_not.equal(c[1].tags, c[n].tags)
    end
  end)

  it("copies metatables, shared ones once", function ()
    local mt = {__index = {kind = "point"}}
    local r = roundtrip(setmetatable({}, mt), setmetatable({}, mt))
    assert.equal("point", r[1].kind)
    assert.equal(getmetatable(r[1]), getmetatable(r[2]))
    assert.are_not.equal(mt, getmetatable(r[1]))
  end)

  it("sends loaded modules and their tables by name", function ()
    local r = roundtrip(string, _G, futures, package.loaded,
                        futures.TimeoutError)
    assert.equal(string, r[1])
    assert.equal(_G, r[2])
    assert.equal(futures, r[3])
    assert.equal(package.loaded, r[4])
    assert.equal(futures.TimeoutError, r[5])
  end)

  it("sends C functions by the name a loaded module holds them under",
     function ()
    local r = roundtrip(print, string.format, futures.sleep)
    assert.equal(print, r[1])
    assert.equal(string.format, r[2])
    assert.equal(futures.sleep, r[3])
  end)

  it("keeps the class of error objects", function ()
    local e = futures.TimeoutError("too slow")
    local c = roundtrip(e)[1]
    assert.are_not.equal(e, c)
    assert.is_true(futures.is(c, futures.TimeoutError))
    assert.is_true(futures.is(c, futures.Error))
    assert.equal("TimeoutError: too slow", tostring(c))
  end)

  it("refuses userdata, naming where it was found", function ()
    local err = errof(futures.dumps, 1, {db = {conn = io.stdout}})
    assert.matches("cannot dump argument #2 (field 'db.conn': userdata FILE*)",
                   err, 1, true)
  end)

  it("refuses futures, which cannot cross to another process", function ()
    local err = errof(futures.dumps, {f = futures.future()})
    assert.matches("cannot dump argument #1 (field 'f': future: futures "
                   .. "cannot cross to another process)", err, 1, true)
  end)

  it("refuses coroutines, light userdata and unnamed C functions",
     function ()
    assert.matches("cannot dump argument #3 (coroutine)",
                   errof(futures.dumps, 1, 2, coroutine.create(print)),
                   1, true)
    assert.matches("argument #1 (field 'it': C function that no loaded "
                   .. "module holds)",
                   errof(futures.dumps, {it = string.gmatch("", "")}),
                   1, true)
  end)

  it("names the path through keys, metatables and upvalues", function ()
    local cfg = {db = {conn = io.stdout}}
    local function task () return cfg end
    assert.matches("argument #1 (upvalue 'cfg', field 'db.conn': "
                   .. "userdata FILE*)", errof(futures.dumps, task), 1, true)
    assert.matches([[argument #1 (field 'x["a b"][3]': userdata FILE*)]],
                   errof(futures.dumps, {x = {["a b"] = {1, 2, io.stdout}}}),
                   1, true)
    assert.matches("argument #1 (metatable, field '__index.f': userdata "
                   .. "FILE*)", errof(futures.dumps, setmetatable({},
                     {__index = {f = io.stdout}})), 1, true)
    assert.matches("argument #1 (field 'k', key: userdata FILE*)",
                   errof(futures.dumps, {k = {[io.stdout] = true}}), 1, true)
  end)

  it("copies data nested deeper than any C stack (no limit but memory)",
     function ()
    for _, n in ipairs{ 200, 201, 300, 100000 } do
      local c, d = roundtrip(nested(n))[1], 1
      while c.a do
        c = c.a
        d = d + 1
      end
      assert.equal(n, d)
    end
  end)

  it("adds nothing to a message when a later value fails", function ()
    local ok = pcall(futures.dumps, {1, 2, 3}, io.stdout)
    assert.is_false(ok)
    assert.same({1, 2, 3}, roundtrip({1, 2, 3})[1])
  end)

end)


describe("futures.loads", function ()

  it("refuses functions unless allow_code is true", function ()
    local up = 41
    local s = futures.dumps(function () return up + 1 end)
    assert.matches("cannot load: functions from another process are not "
                   .. "accepted", errof(futures.loads, s), 1, true)
    assert.equal(42, futures.loads(s, true)())
  end)

  it("keeps file and line in loaded functions' errors", function ()
    local line = debug.getinfo(1, "l").currentline + 1
    local function boom () error("boom") end
    local f = futures.loads(futures.dumps(boom), true)
    local ok, err = pcall(f)
    assert.is_false(ok)
    assert.equal(SRC .. ":" .. line .. ": boom", err)
  end)

  it("keeps upvalues that two functions share", function ()
    local n = 0
    local function inc () n = n + 1; return n end
    local function get () return n end
    local i, g = futures.loads(futures.dumps(inc, get), true)
    i(); i()
    assert.equal(2, g())
    assert.equal(0, n)
  end)

  it("refuses handles, which only cross within a process", function ()
    local s = "\27CF\1\1\12" .. string.rep("\0", 8)
    assert.matches("cannot load: future handle in a message from another "
                   .. "process at byte 5", errof(futures.loads, s), 1, true)
  end)

  it("refuses bad headers and trailing bytes", function ()
    assert.matches("not a cfut message", errof(futures.loads, "hello"),
                   1, true)
    assert.matches("unsupported wire version 9",
                   errof(futures.loads, "\27CF\9\0"), 1, true)
    assert.matches("trailing bytes after the last value at byte 5",
                   errof(futures.loads, futures.dumps() .. "x"), 1, true)
  end)

  it("reports a truncated message at every length", function ()
    local s = futures.dumps({1, "two", {3.0}, x = {y = true}}, "tail")
    for len = 0, #s - 1 do
      local ok, err = pcall(futures.loads, s:sub(1, len))
      assert.is_false(ok)
      assert.matches("^cannot load: ", err)
    end
  end)

  it("fails cleanly, never crashes, on any damaged byte", function ()
    local shared = {k = "v"}
    local n = 0
    local function inc () n = n + 1; return n, shared end
    local msgs = {
      futures.dumps(nil, true, 1, 2.5, "s", {1, 2, x = shared, y = shared},
                    setmetatable({}, {__index = shared}), string, print,
                    futures.TimeoutError("t")),
      futures.dumps(inc, function () return inc() end),
    }
    for _, s in ipairs(msgs) do
      for i = 1, #s do
        for _, x in ipairs{0x01, 0x80, 0xff} do
          local bad = s:sub(1, i - 1) .. string.char(s:byte(i) ~ x)
                      .. s:sub(i + 1)
          local ok, err = pcall(futures.loads, bad, true)
          if not ok then assert.matches("^cannot load: ", err) end
        end
      end
    end
  end)

  it("reads error objects written without Lua (docs/wire.md)", function ()
    local s = "\27CF\1\1" .. "\6\0\2"
              .. "\5\4name" .. "\5\12TimeoutError"
              .. "\5\7message" .. "\5\4slow"
              .. "\11\4cfut\12TimeoutError"
    local e = futures.loads(s)
    assert.is_true(futures.is(e, futures.TimeoutError))
    assert.equal("TimeoutError: slow", tostring(e))
  end)

  it("fails with the module's name when require fails", function ()
    local s = (futures.dumps(string):gsub("string", "strinx"))
    assert.matches("cannot load: cannot load module 'strinx'",
                   errof(futures.loads, s), 1, true)
  end)

end)


describe("Executor:submit", function ()

  it("copies the arguments exactly", function ()
    local t = {1, 2.0, "s", x = {y = true}}
    local r = table.pack(pool(1):submit(echo, 1, 2.5, nil, "bin\0",
                                        t):result(LONG))
    assert.equal(5, r.n)
    assert.equal("integer", math.type(r[1]))
    assert.equal(2.5, r[2])
    assert.is_nil(r[3])
    assert.equal("bin\0", r[4])
    assert.same(t, r[5])
    assert.are_not.equal(t, r[5])
  end)

  it("keeps shared tables and cycles shared", function ()
    local shared = {}
    local t = {a = shared, b = shared}
    t.self = t
    local same, cyc = inworker(function (x)
      return x.a == x.b, x.self == x
    end, t)
    assert.is_true(same)
    assert.is_true(cyc)
  end)

  it("keeps upvalues shared between the function and its arguments",
     function ()
    local n = 0
    local function inc () n = n + 1; return n end
    local function task (i) i(); i(); return n end
    assert.equal(2, inworker(task, inc))
    assert.equal(0, n)
  end)

  it("never lets a task's changes reach the main script", function ()
    local t = {x = 1}
    local n = 0
    local function bump () n = n + 1 end
    _G.CFUT_MARSHAL_SPEC = "main"
    local r = table.pack(inworker(function (arg)
      arg.x = 2
      bump()
      local seen = CFUT_MARSHAL_SPEC
      CFUT_MARSHAL_SPEC = "worker"
      return arg.x, seen
    end, t))
    assert.equal(2, r[1])
    assert.equal("main", r[2])          -- a copy of the global it reads
    assert.equal(1, t.x)
    assert.equal(0, n)
    assert.equal("main", _G.CFUT_MARSHAL_SPEC)
    _G.CFUT_MARSHAL_SPEC = nil
  end)

  it("gives tasks the worker's globals, standard libraries included",
     function ()
    local ok, fmt = inworker(function ()
      return _G == _ENV, string.format("%03d", 7)
    end)
    assert.is_true(ok)
    assert.equal("007", fmt)
  end)

  it("sends modules so that they arrive as require(name)", function ()
    local same, kind = inworker(function (h, s)
      return h == require("helpers"), type(s.rep)
    end, helpers, string)
    assert.is_true(same)
    assert.equal("function", kind)
  end)

  it("sends C functions by name", function ()
    assert.equal("ababab", pool(1):submit(string.rep, "ab", 3):result(LONG))
    assert.equal(9, inworker(function (f) return f(3, 9) end, math.max))
  end)

  it("fails the task when a module cannot be required in the worker",
     function ()
    package.loaded.cfut_no_such_module = {}
    local ok, f = pcall(function ()
      return pool(1):submit(echo, package.loaded.cfut_no_such_module)
    end)
    package.loaded.cfut_no_such_module = nil
    assert.is_true(ok, f)
    local err = errof(f.result, f, LONG)
    assert.matches("cannot load module 'cfut_no_such_module'", tostring(err),
                   1, true)
  end)

  it("refuses unsendable values with the path in the message", function ()
    local ex = pool(1)
    assert.equal("cannot send argument #2 (field 'conn': userdata FILE*) "
                 .. "to a worker",
                 errof(ex.submit, ex, echo, {conn = io.stdout}))
    local cfg = {db = {conn = io.stdout}}
    assert.matches("cannot send argument #1 (upvalue 'cfg', field "
                   .. "'db.conn': userdata FILE*) to a worker",
                   errof(ex.submit, ex, function () return cfg end), 1, true)
    assert.matches("cannot send argument #3 (coroutine) to a worker",
                   errof(ex.submit, ex, echo, 1, coroutine.create(print)),
                   1, true)
  end)

  it("lets futures cross as handles to the same future", function ()
    local gate = futures.future()
    local ex = pool(1)
    local back = ex:submit(echo, gate):result(LONG)
    local f = ex:submit(function (g) return g:result(LONG) end, gate)
    gate:set_result(7)
    assert.equal(7, f:result(LONG))
    assert.is_true(rawequal(gate, back))
  end)

  it("lets a task submit to the pool it runs on", function ()
    local ex = pool(2)
    local r = ex:submit(function (e)
      return e:submit(function () return 5 end):result(LONG)
    end, ex):result(LONG)
    assert.equal(5, r)
  end)

end)


describe("Future:result", function ()

  it("returns copies of the task's results, cycles included", function ()
    local a, b = inworker(function ()
      local t = {}
      t.me = t
      return t, t
    end)
    assert.equal(a, b)
    assert.equal(a, a.me)
  end)

  it("re-raises errors with the task's file and line", function ()
    local line = debug.getinfo(1, "l").currentline + 1
    local f = pool(1):submit(function () error("boom") end)
    local err = errof(f.result, f, LONG)
    assert.equal(SRC .. ":" .. line .. ": boom", err)
    local _, tb = f:exception(LONG)
    assert.matches(SRC .. ":" .. line, tb, 1, true)
  end)

  it("re-raises error objects with their class", function ()
    local f = pool(1):submit(function ()
      error(futures.TimeoutError("late"))
    end)
    local err = errof(f.result, f, LONG)
    assert.is_true(futures.is(err, futures.TimeoutError))
    assert.equal("TimeoutError: late", tostring(err))
  end)

  it("reports a task that raised nil as a string error", function ()
    local f = pool(1):submit(function () error(nil) end)
    assert.equal("(error object is a nil value)", errof(f.result, f, LONG))
    assert.equal("(error object is a nil value)", (f:exception(LONG)))
  end)

  it("fails the task when its results cannot be sent", function ()
    local f = pool(1):submit(function () return {conn = io.stdout} end)
    local err = errof(f.result, f, LONG)
    assert.matches("cannot send result #1 (field 'conn': userdata FILE*)",
                   tostring(err), 1, true)
  end)

end)
