-- spec/globals_spec.lua: the globals a task reads travel with it (API.md
-- §3, "Globals the task reads travel with it"), in thread and process
-- pools: submit, map (with chunks), initializers, the REPL, and the errors
-- that name a global that cannot be sent.
--
-- The globals of this file are set and read as a script's are (busted
-- gives the file an environment that falls back on _G); after_each clears
-- them, so that no test sees another's.

local futures = require "cfut"
local helpers = require "helpers"

local LONG = helpers.LONG
local errof = helpers.errof

local NAMES = { "g_helper", "g_X", "g_fib", "g_even", "g_odd", "g_cfg",
                "g_conn", "g_T", "g_a", "g_b", "g_c", "g_V", "g_count",
                "g_undef", "g_futures", "g_fmt", "g_W" }

after_each(function ()
  helpers.cleanup()
  for _, k in ipairs(NAMES) do _ENV[k] = nil end
end)

local kinds = {
  threads = function (arg) return helpers.pool(arg) end,
  processes = function (arg)
    return helpers.track(futures.process_pool(arg))
  end,
}

for kind, newpool in pairs(kinds) do
  describe("globals in a " .. kind .. " pool", function ()
    it("reach a task: a global function and a global value", function ()
      function g_helper (x) return x * 2 end
      g_X = 5
      local ex = newpool(2)
      assert.equal(10, ex:submit(function () return g_helper(g_X) end)
                         :result(LONG))
    end)

    it("recursion and mutual calls through globals", function ()
      function g_fib (n)
        if n < 2 then return n end
        return g_fib(n - 1) + g_fib(n - 2)
      end
      function g_even (n) if n == 0 then return true end return g_odd(n - 1) end
      function g_odd (n) if n == 0 then return false end return g_even(n - 1) end
      local ex = newpool(2)
      assert.equal(610, ex:submit(g_fib, 15):result(LONG))
      assert.same({ true, false }, { ex:submit(function ()
        return g_even(10), g_even(7)
      end):result(LONG) })
    end)

    it("a global table read by 1000 tasks", function ()
      g_cfg = { base = 100, nested = { scale = 3 } }
      local ex = newpool(2)
      local fs = {}
      for i = 1, 1000 do
        fs[i] = ex:submit(function (j)
          return g_cfg.base + g_cfg.nested.scale * j
        end, i)
      end
      for i = 1, 1000 do assert.equal(100 + 3 * i, fs[i]:result(LONG)) end
    end)

    it("thousands of globals, read by several functions, each sent once",
       function ()
      -- Built with load so that the task's bytecode reads 3000 globals
      -- (short names, and names past 40 bytes, which Lua does not
      -- intern); two functions read overlapping halves of them.
      local long = ("g_long_name_"):rep(4)
      local reads = {}
      for i = 1, 3000 do
        local name = (i % 2 == 0 and long or "g_many_") .. i
        NAMES[#NAMES + 1] = name
        _ENV[name] = i
        reads[i] = name
      end
      local function summer (lo, hi)
        return assert(load("return function () return "
          .. table.concat(reads, " + ", lo, hi) .. " end", "=summer", "t",
          _ENV))()
      end
      local a, b = summer(1, 2000), summer(1001, 3000)
      g_a, g_b = a, b
      local ex = newpool(2)
      local f = ex:submit(function () return g_a() + g_b() end)
      assert.equal(2000 * 2001 / 2 + (3000 * 3001 - 1000 * 1001) / 2,
                   f:result(LONG))
    end)

    it("globals of globals: the functions a global holds bring theirs",
       function ()
      g_c = 7
      function g_b () return g_c + 1 end
      g_a = { f = function () return g_b() * 2 end }
      local ex = newpool(1)
      assert.equal(16, ex:submit(function () return g_a.f() end):result(LONG))
      -- and a function in an argument brings its globals too
      assert.equal(16, ex:submit(function (t) return t.fn() end,
                                 { fn = function () return g_b() * 2 end })
                         :result(LONG))
    end)

    it("in map, with and without chunks", function ()
      function g_helper (x) return x * 2 end
      g_V = 1
      local ex = newpool(2)
      local xs = {}
      for i = 1, 50 do xs[i] = i end
      for _, chunk in ipairs{ 1, 7 } do
        local got = {}
        for i, v in ex:map{ function (x) return g_helper(x) + g_V end, xs,
                            chunksize = chunk } do
          got[i] = v
        end
        for i = 1, 50 do assert.equal(2 * i + 1, got[i]) end
      end
    end)

    it("a module crosses by name; a global holding a C function too",
       function ()
      g_futures = futures
      g_fmt = string.format
      local ex = newpool(1)
      assert.same({ true, "x=3" }, { ex:submit(function ()
        return rawequal(g_futures, require "cfut"), g_fmt("x=%d", 3)
      end):result(LONG) })
    end)

    it("a table both an argument and a global arrives as one table",
       function ()
      g_T = { 1, 2, 3 }
      local ex = newpool(1)
      assert.is_true(ex:submit(function (t) return rawequal(t, g_T) end, g_T)
                       :result(LONG))
    end)

    it("an initializer's global wins over the script's", function ()
      g_W = "script"
      g_X = "script"
      local ex = newpool{ max_workers = 1,
                          initializer = function () g_W = "initializer" end }
      assert.same({ "initializer", "script" }, { ex:submit(function ()
        return g_W, g_X
      end):result(LONG) })
    end)

    it("the worker's standard library wins", function ()
      local ex = newpool(1)
      -- a function that reads 'string' and 'print': the worker's own
      assert.is_true(ex:submit(function ()
        return rawequal(string, require "string") and type(print) == "function"
      end):result(LONG))
    end)

    it("a newer copy replaces an older one; assignments stay in the worker",
       function ()
      local ex = newpool(1)
      local function read () return g_X end
      g_X = 1
      assert.equal(1, ex:submit(read):result(LONG))
      g_X = 2
      assert.equal(2, ex:submit(read):result(LONG))
      -- a task's own global (the script has none): stays in that worker
      ex:submit(function () g_count = 41 end):result(LONG)
      assert.equal(42, ex:submit(function ()
        g_count = g_count + 1
        return g_count
      end):result(LONG))
      assert.is_nil(g_count)
    end)

    it("a global that is nil is not sent", function ()
      local ex = newpool(1)
      assert.is_nil(ex:submit(function () return g_undef end):result(LONG))
      -- the worker's own value is untouched by the script's nil
      ex:submit(function () g_undef = "worker" end):result(LONG)
      assert.equal("worker", ex:submit(function () return g_undef end)
                               :result(LONG))
    end)

    it("an unsendable global is an error at submit naming it", function ()
      g_conn = io.stdout
      local ex = newpool(1)
      local err = errof(ex.submit, ex, function () return g_conn end)
      assert.equal("cannot send argument #1 (global 'g_conn': userdata FILE*)"
                   .. " to a worker", err:match("cannot send.*"))
      g_cfg = { db = io.stdout }
      err = errof(ex.submit, ex, print, 1,
                  { f = function () return g_cfg end })
      assert.equal("cannot send argument #3 (global 'g_cfg', field 'db': "
                   .. "userdata FILE*) to a worker", err:match("cannot send.*"))
      err = errof(function ()
        for _ in ex:map(function (x) return g_conn, x end, { 1 }) do end
      end)
      assert.matches("global 'g_conn': userdata FILE%*", err)
      -- the pool is fine afterwards
      assert.equal(3, ex:submit(function (x) return x end, 3):result(LONG))
    end)

    it("a global read after the function's 256th constant", function ()
      -- past 256 constants Lua reads a global with GETUPVAL, LOADK and
      -- GETTABLE instead of GETTABUP
      g_helper = function () return 42 end
      local src = { "return function () local t = {" }
      for i = 1, 300 do src[#src + 1] = ("'s%d',"):format(i) end
      src[#src + 1] = "} return g_helper(), #t end"
      local fn = assert(load(table.concat(src), "=big", "t", _ENV))()
      local ex = newpool(1)
      assert.same({ 42, 300 }, { ex:submit(fn):result(LONG) })
    end)

    it("a nested function reading a local _ENV of the task reads no global",
       function ()
      g_conn = io.stdout        -- a global of that name that cannot cross
      local ex = newpool(1)
      -- tostring is read from the real _ENV (so the task has that upvalue);
      -- g_conn only from the task's own local _ENV, in a nested function
      assert.equal("7", ex:submit(function ()
        local tostring = tostring
        local _ENV = { g_conn = 7 }
        return tostring((function () return g_conn end)())
      end):result(LONG))
    end)
  end)
end

describe("the globals bit of the wire format", function ()
  it("is refused outside a task's message", function ()
    local s = futures.dumps(1)
    local bad = s:sub(1, 3) .. string.char(s:byte(4) | 0x40) .. s:sub(5)
              .. "\6\0\0\0"
    assert.matches("globals in a message that is not a task",
                   errof(futures.loads, bad))
    assert.matches("globals in a message that is not a task",
                   errof(futures.loads, bad, true))
  end)
end)

describe("globals at the REPL and in scripts", function ()
  it("a script's top-level helper and value reach its tasks", function ()
    local r = helpers.run([[
local futures = require "cfut"
function helper (x) return x * 2 end
X = 5
local t = futures.thread_pool(2)
local p = futures.process_pool(2)
print(t:submit(function () return helper(X) end):result())
print(p:submit(function () return helper(X) end):result())
]])
    assert.equal("", r.stderr)
    assert.equal(0, r.status)
    assert.equal("10\n10\n", r.stdout)
  end)

  it("`cfut -i` fed on stdin: a global function in a task", function ()
    local dir = helpers.tmpdir()
    helpers.write_file(dir .. "/in", [[
futures = require "cfut"
function sq (x) return x * x end
ex = futures.thread_pool(2)
print("T", ex:submit(function () return sq(7) end):result())
px = futures.process_pool(1)
print("P", px:submit(function () return sq(8), futures.sleep ~= nil end):result())
]])
    local q = helpers.shquote
    local ok = os.execute("env -u LUA_INIT -u LUA_INIT_5_4 timeout -k 2 "
      .. LONG * 2 .. " " .. q(helpers.cfut_bin()) .. " -i <" .. q(dir .. "/in")
      .. " >" .. q(dir .. "/out") .. " 2>" .. q(dir .. "/err"))
    local out = helpers.read_file(dir .. "/out")
    assert.equal("", helpers.read_file(dir .. "/err"))
    assert.is_true(ok)
    assert.matches("T\t49\n", out)
    assert.matches("P\t64\ttrue\n", out)
  end)
end)
