-- spec/hostile_spec.lua: hostile input to every public function (issue 4,
-- "Hostile input"): wrong types and counts, NaN and negative timeouts,
-- absurd max_workers, values nested past the C stack, strings of hundreds
-- of megabytes, metatables whose metamethods raise, iterators and tables
-- that raise midway through map.  Each must get a clear Lua error naming
-- the argument or the path (never a crash), and the pool must still work
-- afterwards.  Plain wrong types that other specs check already (0, -1,
-- 1.5 workers; a task that is not a function...) are not repeated here.

local futures = require "cfut"
local helpers = require "helpers"

local LONG = helpers.LONG
local errof, pool = helpers.errof, helpers.pool

after_each(helpers.cleanup)

-- futures.process_pool(arg), shut down by cleanup().
local function ppool (arg)
  return helpers.track(futures.process_pool(arg))
end

-- Assert that e is the argument error "bad argument #n to '<fname>'
-- (<what>)" (fname may carry a module prefix such as cfut.).
local function argerr (e, n, fname, what)
  assert.is_string(e)
  assert.matches("bad argument #" .. n .. " to '[%w_.]*" .. fname .. "'",
                 e)
  assert.truthy(e:find("(" .. what .. ")", 1, true),
                "expected (" .. what .. ") in: " .. e)
end

-- futures.thread_pool(arg) or futures.process_pool(arg), called by name
-- (so that argument errors name the function).
local function construct (make, arg)
  local ex
  if make == "thread_pool" then ex = futures.thread_pool(arg)
  else ex = futures.process_pool(arg) end
  return ex
end

-- The pool still runs tasks.
local function works (ex)
  assert.equal(42, ex:submit(function () return 42 end):result(LONG))
end

-- A table nested n deep through field [1].
local function deep (n)
  local t = {}
  local c = t
  for _ = 2, n do
    c[1] = {}
    c = c[1]
  end
  return t
end

-- A task that builds a table nested n deep and returns it (or raises it).
local function builddeep (n, raise)
  local t = deep(n)     -- (travels with the task, as an upvalue)
  if raise then error(t) end
  return t
end

-- A table whose every metamethod raises.
local function booby ()
  local function boom (what)
    return function () error(what .. " boom", 0) end
  end
  local mt = {}
  for _, k in ipairs{ "__index", "__newindex", "__len", "__pairs", "__eq",
                      "__lt", "__le", "__concat", "__call", "__tostring",
                      "__close", "__unm", "__add" } do
    mt[k] = boom(k)
  end
  return setmetatable({ a = 1, 2, 3 }, mt)
end


describe("pool constructors given hostile options", function ()

  for _, make in ipairs{ "thread_pool", "process_pool" } do
    for _, bad in ipairs{ 2 ^ 40, 1 << 40, math.maxinteger, 4097 } do
      it(make .. " rejects " .. tostring(bad) .. " workers as too many",
         function ()
        local e = errof(function ()
          return construct(make, bad)
        end)
        argerr(e, 1, make, "max_workers must be at most 4096")
        e = errof(function ()
          local ex = construct(make, { max_workers = bad })
          return ex
        end)
        argerr(e, 1, make, "field 'max_workers' must be at most 4096")
      end)
    end

    for _, bad in ipairs{ 0 / 0, math.huge, -math.huge, math.mininteger } do
      it(make .. " rejects " .. tostring(bad) .. " workers", function ()
        local e = errof(function ()
          return construct(make, bad)
        end)
        argerr(e, 1, make, "max_workers must be a positive integer")
      end)
    end

    it(make .. " rejects a boolean, a function or a coroutine", function ()
      for _, bad in ipairs{ true, print, coroutine.create(print) } do
        local e = errof(function ()
          return construct(make, bad)
        end)
        argerr(e, 1, make, "max_workers or options table expected, got "
                           .. type(bad))
      end
    end)

    it(make .. " names an option key that is not a string", function ()
      local e = errof(function ()
        local ex = construct(make, { 4 })
        return ex
      end)
      argerr(e, 1, make, "unknown option '1'")
    end)

    it(make .. " rejects initargs.n that is not a count", function ()
      for _, bad in ipairs{ 1.5, -1, 0 / 0 } do
        local e = errof(function ()
          local ex = construct(make, { initializer = print,
                                       initargs = { n = bad } })
          return ex
        end)
        argerr(e, 1, make, "field 'initargs.n' must be a non-negative "
                           .. "integer")
      end
    end)

    it(make .. " rejects initargs with more values than a call takes",
       function ()
      for _, n in ipairs{ 2 ^ 40, 1 << 31, 5000000 } do
        local e = errof(function ()
          local ex = construct(make, { initializer = print,
                                       initargs = { n = n } })
          return ex
        end)
        argerr(e, 1, make, "field 'initargs' has too many values")
      end
    end)

    it(make .. " passes on the error of an options table's __index",
       function ()
      local opts = setmetatable({}, { __index = function (_, k)
        error("no option " .. k, 0)
      end })
      local e = errof(function ()
        return construct(make, opts)
      end)
      assert.equal("no option max_workers", e)
    end)
  end

  it("thread_pool takes a thread_name_prefix of a megabyte", function ()
    local prefix = string.rep("p", 1 << 20)
    local ex = pool{ max_workers = 1, thread_name_prefix = prefix }
    assert.equal(prefix .. "_0", ex:submit(futures.thread_name):result(LONG))
  end)

end)


describe("executor methods given hostile arguments", function ()

  it("name the bad self of submit, shutdown and map", function ()
    local ex = pool(1)
    for _, bad in ipairs{ 42, "x", {}, futures.future() } do
      local shown = type(bad) == "userdata" and "cfut.Future" or type(bad)
      local e = errof(function () local f = ex.submit(bad, print) return f end)
      argerr(e, 1, "submit", "cfut.Executor expected, got " .. shown)
      e = errof(function () ex.shutdown(bad) end)
      argerr(e, 1, "shutdown", "cfut.Executor expected, got " .. shown)
      e = errof(function () local it = ex.map(bad, print, {1}) return it end)
      assert.matches("calling 'map' on bad self %(cfut.Executor expected, "
                     .. "got " .. shown .. "%)", e)
    end
    local e = errof(function () local f = ex.submit() return f end)
    argerr(e, 1, "submit", "cfut.Executor expected, got no value")
    works(ex)
  end)

  it("name the bad self of a future's methods and metamethods", function ()
    -- The handle check compares metatables without a registry look-up
    -- (lfuture.c, checkbox): anything else still gets luaL_checkudata's
    -- error, an executor handle and a file included.
    local ex = pool(1)
    local f = ex:submit(function () return 7 end)
    local mt = getmetatable(f)
    for _, bad in ipairs{ 42, {}, ex, io.stdout } do
      local shown = bad == ex and "cfut.Executor"
        or bad == io.stdout and "FILE*" or type(bad)
      for _, m in ipairs{ "result", "exception", "done", "running",
                          "cancelled", "cancel" } do
        local t = { [m] = f[m] }
        local e = errof(load("local t, x = ... return t." .. m .. "(x)"), t,
                        bad)
        argerr(e, 1, m, "cfut.Future expected, got " .. shown)
      end
      for _, m in ipairs{ "__tostring", "__gc", "__index", "__newindex" } do
        local t = { [m] = mt[m] }
        local e = errof(load("local t, x = ... return t." .. m .. "(x, 'k')"),
                        t, bad)
        argerr(e, 1, m, "cfut.Future expected, got " .. shown)
      end
    end
    assert.equal(7, f:result(LONG))
    works(ex)
  end)

  it("name the bad self of the executor's metamethods", function ()
    local ex = pool(1)
    local mt = getmetatable(ex)
    for _, m in ipairs{ "__tostring", "__close", "__gc" } do
      local t = { [m] = mt[m] }
      local e = errof(load("local t, x = ... t." .. m .. "(x)"), t,
                      futures.future())
      argerr(e, 1, m, "cfut.Executor expected, got cfut.Future")
    end
    works(ex)
  end)

  it("reject shutdown options that are not booleans, naming them",
     function ()
    local ex = pool(1)
    local e = errof(function () ex:shutdown{ wait = 1 } end)
    argerr(e, 1, "shutdown", "field 'wait' must be a boolean")
    e = errof(function () ex:shutdown{ cancel_futures = "yes" } end)
    argerr(e, 1, "shutdown", "field 'cancel_futures' must be a boolean")
    works(ex)
  end)

  it("take a hundred thousand arguments and results", function ()
    local args = {}
    for i = 1, 100000 do args[i] = i end
    for _, ex in ipairs{ pool(1), ppool(1) } do
      local n, last = ex:submit(function (...)
        return select("#", ...), (select(100000, ...))
      end, table.unpack(args)):result(LONG)
      assert.equal(100000, n)
      assert.equal(100000, last)
      local r = table.pack(ex:submit(table.unpack, args):result(LONG))
      assert.equal(100000, r.n)
      assert.equal(100000, r[100000])
      works(ex)
    end
  end)

end)


describe("map given hostile arguments", function ()

  it("rejects a timeout that is NaN or not a number", function ()
    local ex = pool(1)
    local e = errof(function ()
      local it = ex:map{ print, { 1 }, timeout = 0 / 0 }
      return it
    end)
    argerr(e, 1, "map", "field 'timeout' must be a number, not NaN")
    e = errof(function ()
      local it = ex:map{ print, { 1 }, timeout = "soon" }
      return it
    end)
    argerr(e, 1, "map", "field 'timeout' must be a number")
    works(ex)
  end)

  it("rejects a sequence whose n is not a count, naming the iterable",
     function ()
    local ex = pool(1)
    for _, bad in ipairs{ 1.5, -1, 0 / 0, 2 ^ 40, 1 << 40 } do
      for _, opts in ipairs{ false, true } do
        local e = errof(function ()
          local it
          if opts then it = ex:map{ print, { 1 }, { n = bad }, buffersize = 2 }
          else it = ex:map(print, { 1 }, { n = bad }) end
          return it
        end)
        -- map{...} is one argument: #1, and the field names the iterable.
        argerr(e, opts and 1 or 3, "map",
               (opts and "field [3]: " or "")
               .. "field 'n' must be an integer from 0 to 268435455, got "
               .. tostring(bad))
      end
    end
    works(ex)
  end)

  it("rejects a sequence whose __len is not a count", function ()
    local ex = pool(1)
    local t = setmetatable({}, { __len = function () return -5 end })
    local e = errof(function () local it = ex:map(print, t) return it end)
    argerr(e, 2, "map", "length must be an integer from 0 to 268435455, "
                        .. "got -5")
    works(ex)
  end)

  it("rejects a buffersize that is not a positive integer", function ()
    local ex = pool(1)
    for _, bad in ipairs{ 0, -1, 1.5, 2 ^ 40, "2" } do
      local e = errof(function ()
        local it = ex:map{ print, { 1 }, buffersize = bad }
        return it
      end)
      argerr(e, 1, "map", "field 'buffersize' must be a positive integer")
    end
    works(ex)
  end)

  it("says what its iterator's __call expects", function ()
    local ex = pool(1)
    local it = ex:map(print, {})
    local e = errof(function () getmetatable(it).__call(42) end)
    argerr(e, 1, "__call", "cfut.MapIterator expected, got number")
  end)

  for _, kind in ipairs{ "thread", "process" } do
    local make = kind == "thread" and pool or ppool

    for _, how in ipairs{ "plain", "buffersize", "chunksize" } do
      it("passes on the error of an iterator that raises midway ("
         .. kind .. " pool, " .. how .. ")", function ()
        local ex = make(2)
        local function items ()
          local i = 0
          return function ()
            i = i + 1
            if i == 4 then error({ why = "item 4" }) end
            return i
          end
        end
        local function double (x) return 2 * x end
        local e = errof(function ()
          local got = {}
          local it
          if how == "plain" then it = ex:map(double, items())
          elseif how == "buffersize" then
            it = ex:map{ double, items(), buffersize = 2 }
          else it = ex:map{ double, items(), chunksize = 2 } end
          for i, v in it do got[i] = v end
          return got
        end)
        assert.same({ why = "item 4" }, e)
        works(ex)
      end)
    end

    it("passes on the error of a sequence's __index midway (" .. kind
       .. " pool), running none of its items", function ()
      local ex = make(1)
      local dir = helpers.tmpdir()
      local t = setmetatable({ n = 5 }, { __index = function (_, i)
        if i == 3 then error("no item 3", 0) end
        return dir .. "/ran" .. i
      end })
      local function mark (path)
        local fh = assert(io.open(path, "w"))
        fh:close()
      end
      local e = errof(function () local it = ex:map(mark, t) return it end)
      assert.equal("no item 3", e)
      collectgarbage()
      collectgarbage()
      ex:shutdown(true)
      assert.is_nil(helpers.read_file(dir .. "/ran1"))
      assert.is_nil(helpers.read_file(dir .. "/ran2"))
    end)
  end

  it("cancels what it queued when its iterator raises with buffersize",
     function ()
    local ex = pool(1)
    local gate = helpers.gate()
    local busy = helpers.block(ex, gate, 1)
    local flags = { futures.future(), futures.future() }
    local i = 0
    local it = ex:map{ function (flag) flag:set_result(true) end, function ()
      i = i + 1
      if i == 3 then error("iterator broke", 0) end
      return flags[i]
    end, buffersize = 2 }
    assert.equal("iterator broke", errof(it))
    gate:set_result(true)
    busy[1]:result(LONG)
    ex:shutdown(true)
    assert.is_false(flags[1]:done())
    assert.is_false(flags[2]:done())
  end)

end)


describe("futures and waits given hostile arguments", function ()

  it("reject a NaN timeout in result, exception, wait and as_completed",
     function ()
    local f = futures.future()
    local msg = "timeout must be a number, not NaN"
    argerr(errof(function () f:result(0 / 0) end), 1, "result", msg)
    argerr(errof(function () f:exception(0 / 0) end), 1, "exception", msg)
    argerr(errof(function () futures.wait({ f }, 0 / 0) end), 2, "wait", msg)
    argerr(errof(function () futures.as_completed({ f }, 0 / 0) end), 2,
           "as_completed", msg)
  end)

  it("poll with a negative timeout, however large", function ()
    local f = futures.future()
    for _, t in ipairs{ -1, -1e300, -math.huge, math.mininteger } do
      local took = helpers.timed(function ()
        local e = errof(function () f:result(t) end)
        assert.is_true(futures.is(e, futures.TimeoutError))
        e = errof(function () f:exception(t) end)
        assert.is_true(futures.is(e, futures.TimeoutError))
        local done, not_done = futures.wait({ f }, t)
        assert.same({ {}, { f } }, { done, not_done })
        e = errof(function ()
          for _ in futures.as_completed({ f }, t) do end
        end)
        assert.equal("TimeoutError: 1 (of 1) futures unfinished",
                     tostring(e))
      end)
      assert.is_true(took < helpers.QUICK, "took " .. took .. " s")
    end
  end)

  it("wait without a bound for an infinite timeout", function ()
    local ex = pool(1)
    local f = ex:submit(function () futures.sleep(0.05) return "late" end)
    assert.equal("late", f:result(math.huge))
    assert.is_nil((ex:submit(print):exception(1e300)))
  end)

  it("reject a timeout that is not a number", function ()
    local f = futures.future()
    argerr(errof(function () f:result({}) end), 1, "result",
           "number expected, got table")
    argerr(errof(function () futures.wait({ f }, "never") end), 2, "wait",
           "number expected, got string")
  end)

  it("name the bad self of every future method", function ()
    local ex = pool(1)
    for _, m in ipairs{ "result", "exception", "done", "running",
                        "cancelled", "cancel", "add_done_callback",
                        "set_result", "set_exception",
                        "set_running_or_notify_cancel" } do
      -- Called as field m of a table, so that the error names it.
      local t = { [m] = futures.future()[m] }
      local call = load("local t, x = ... local r = t." .. m .. "(x) "
                        .. "return r")
      local e = errof(call, t, ex)
      argerr(e, 1, m, "cfut.Future expected, got cfut.Executor")
      e = errof(load("local r = (...)." .. m .. "() return r"), t)
      argerr(e, 1, m, "cfut.Future expected, got no value")
    end
  end)

  it("say a future handle is closed once its __gc was called by hand",
     function ()
    local f = futures.future()
    getmetatable(f).__gc(f)
    local e = errof(function () return f:done() end)
    assert.matches("future handle is closed", e, 1, true)
    e = errof(function () futures.wait({ f }) end)
    argerr(e, 1, "wait", "future expected at index 1, got userdata")
    e = errof(function () local g = pool(1):submit(print, f) return g end)
    assert.matches("cannot send argument #2 (userdata cfut.Future) to a "
                   .. "worker", e, 1, true)
  end)

  it("say an executor handle is closed once its __gc was called by hand",
     function ()
    local ex = futures.thread_pool(1)
    getmetatable(ex).__gc(ex)
    local e = errof(function () local f = ex:submit(print) return f end)
    assert.matches("executor handle is closed", e, 1, true)
  end)

  it("refuse a user field with a nil or NaN key", function ()
    local f = futures.future()
    assert.matches("index is nil", errof(function () f[nil] = 1 end))
    assert.matches("index is NaN", errof(function () f[0 / 0] = 1 end))
  end)

  it("reject a list whose __len is negative or huge", function ()
    for _, n in ipairs{ -1, -(1 << 40), 1 << 31, 1 << 40 } do
      local fs = setmetatable({}, { __len = function () return n end })
      argerr(errof(function () futures.wait(fs) end), 1, "wait",
             "length out of range")
      argerr(errof(function () futures.as_completed(fs) end), 1,
             "as_completed", "length out of range")
    end
  end)

  it("pass on the error of a list's __len or __index", function ()
    local fs = setmetatable({}, { __len = function () error("len", 0) end })
    assert.equal("len", errof(futures.wait, fs))
    fs = setmetatable({}, { __len = function () return 2 end,
                            __index = function () error("index", 0) end })
    assert.equal("index", errof(futures.as_completed, fs))
  end)

  it("reject a set_result value that cannot be stored, naming it",
     function ()
    local f = futures.future()
    local e = errof(function () f:set_result(1, { x = io.stdout }) end)
    assert.matches("cannot store argument #2 (field 'x': userdata FILE*) "
                   .. "in a future", e, 1, true)
    assert.is_false(f:done())
    argerr(errof(function () f:set_exception() end), 1, "set_exception",
           "value expected")
  end)

end)


describe("helpers given hostile arguments", function ()

  it("futures.sleep rejects NaN, a negative length and a non-number",
     function ()
    argerr(errof(function () futures.sleep(0 / 0) end), 1, "sleep",
           "sleep length must not be NaN")
    argerr(errof(function () futures.sleep(-1) end), 1, "sleep",
           "sleep length must be non-negative")
    argerr(errof(function () futures.sleep(-math.huge) end), 1, "sleep",
           "sleep length must be non-negative")
    argerr(errof(function () futures.sleep() end), 1, "sleep",
           "number expected, got no value")
  end)

  it("futures.kill rejects a pid a pid_t cannot hold", function ()
    -- A cast would make 2^32 the caller's process group and 2^32 - 1
    -- every process: both must be refused before any signal is sent.
    for _, pid in ipairs{ 1 << 32, (1 << 32) - 1, 1 << 40, math.maxinteger,
                          math.mininteger } do
      argerr(errof(function () futures.kill(pid, 0) end), 1, "kill",
             "pid out of range")
    end
    argerr(errof(function () futures.kill(1.5, 0) end), 1, "kill",
           "number has no integer representation")
  end)

  it("futures.kill rejects a signal out of range or of a wrong type",
     function ()
    local me = futures.getpid()
    for _, sig in ipairs{ -1, 65, 1 << 40 } do
      argerr(errof(function () futures.kill(me, sig) end), 2, "kill",
             "invalid signal number")
    end
    argerr(errof(function () futures.kill(me, {}) end), 2, "kill",
           "string expected, got table")
    argerr(errof(function () futures.kill(me) end), 2, "kill",
           "string expected, got no value")
  end)

  it("futures.is returns for a metatable whose super chain is a cycle",
     function ()
    local mt = {}
    mt.super = mt
    assert.is_false(futures.is(setmetatable({}, mt), futures.Error))
    local protected = setmetatable({}, { __metatable = "locked" })
    assert.is_false(futures.is(protected, futures.Error))
  end)

  it("futures.loads rejects what is not a string", function ()
    argerr(errof(function () futures.loads() end), 1, "loads",
           "string expected, got no value")
    argerr(errof(function () futures.loads({}) end), 1, "loads",
           "string expected, got table")
    assert.equal("cannot load: truncated message at byte 0",
                 errof(futures.loads, ""))
  end)

end)


-- The depth of a table nested through field [1] (as deep() makes it).
local function depth (t)
  local n = 1
  while t[1] do
    t = t[1]
    n = n + 1
  end
  return n
end

describe("values nested far past the C stack", function ()

  it("cross dumps and loads whatever the way down", function ()
    assert.equal(100000, depth(futures.loads(futures.dumps(deep(100000)))))
    local m = {}
    local c = m
    for _ = 1, 100000 do
      local mt = {}
      setmetatable(c, mt)
      c = mt
    end
    local n, back = 0, futures.loads(futures.dumps(m))
    while getmetatable(back) do
      back = getmetatable(back)
      n = n + 1
    end
    assert.equal(100000, n)
    local f = function () return 0 end
    for _ = 1, 100000 do
      local g = f
      f = function () return g() end
    end
    local k = {}
    for i = 1, 100000 do k = { [k] = i } end
    local g, k2 = futures.loads(futures.dumps(f, k), true)
    assert.equal(f(), g())
    n = 0
    while next(k2) do
      local kk, v = next(k2)
      assert.equal(100000 - n, v)
      k2, n = kk, n + 1
    end
    assert.equal(100000, n)
  end)

  it("name an unsendable value deep down with the middle of the path cut",
     function ()
    local t = deep(100000)
    local c = t
    while c[1] do c = c[1] end
    c.conn = io.stdout
    local e = errof(futures.dumps, t)
    assert.equal("cannot dump argument #1 (field '[1][1][1][1][1][1]...[1][1]"
                 .. "[1][1][1].conn': userdata FILE*)", e)
    local f = function () return io.stdout end
    local up = io.stdout
    f = function () return up end
    for _ = 1, 100000 do
      local g = f
      f = function () return g() end
    end
    e = errof(futures.dumps, f)
    assert.equal("cannot dump argument #1 (upvalue 'g', upvalue 'g', "
                 .. "upvalue 'g', upvalue 'g', upvalue 'g', upvalue 'g', ..., "
                 .. "upvalue 'g', upvalue 'g', upvalue 'g', upvalue 'g', "
                 .. "upvalue 'g', upvalue 'up': userdata FILE*)", e)
  end)

  it("are read by loads when a message nests a million tables", function ()
    local n = 1000000
    local s = "\27CF\1\1" .. ("\6\1\0"):rep(n) .. "\0" .. ("\0"):rep(n)
    local t = futures.loads(s)
    assert.equal(n, depth(t))
    s = "\27CF\1\1" .. ("\6\0\0"):rep(n) .. "\0"
    t = futures.loads(s)
    local m = 1
    while getmetatable(t) do
      t = getmetatable(t)
      m = m + 1
    end
    assert.equal(n, m)
    -- and refused, with no harm, when the bytes end before the nesting
    assert.equal("cannot load: truncated message at byte " .. (3 * n + 2),
                 errof(futures.loads, s:sub(1, -2)))
  end)

  for _, kind in ipairs{ "thread", "process" } do
    local make = kind == "thread" and pool or ppool

    it("cross to a worker and back (" .. kind .. " pool)", function ()
      local ex = make(1)
      local f = ex:submit(function (t)
        local n = 1
        while t[1] do
          t = t[1]
          n = n + 1
        end
        return n
      end, deep(100000))
      assert.equal(100000, f:result(LONG))
      assert.equal(100000, depth(ex:submit(builddeep, 100000):result(LONG)))
      f = ex:submit(builddeep, 100000, true)
      assert.equal(100000, depth(f:exception(LONG)))
      local it = ex:map(function (t) return t end, { 1, deep(1000) })
      assert.same({ 1, 1 }, { it() })
      local i, v = it()
      assert.equal(2, i)
      assert.equal(1000, depth(v))
      works(ex)
    end)

    it("name an unsendable value deep down in a result (" .. kind
       .. " pool)", function ()
      local ex = make(1)
      local f = ex:submit(function (n)
        local t = {}
        local c = t
        for _ = 2, n do
          c[1] = {}
          c = c[1]
        end
        c.conn = io.stdout
        return t
      end, 100000)
      assert.equal("cannot send result #1 (field '[1][1][1][1][1][1]...[1]"
                   .. "[1][1][1][1].conn': userdata FILE*) from a worker",
                   errof(f.result, f, LONG))
      works(ex)
    end)
  end

end)


describe("huge values", function ()

  -- Hundreds of megabytes (64 MiB under the sanitizers, which copy slowly
  -- and whose allocator is bounded differently).
  local MB = helpers.sanitized and 64 or 300
  local unit = "0123456789abcdef"

  it("a string of " .. MB .. " MiB round-trips through dumps and loads",
     function ()
    local s = unit:rep(MB * 65536)
    local d = futures.dumps(s)
    local lenbytes, n = 1, #s       -- the varint of the length
    while n >= 128 do lenbytes, n = lenbytes + 1, n >> 7 end
    assert.equal(4 + 1 + 1 + lenbytes + #s, #d)   -- header, count, tag
    local back = futures.loads(d)
    assert.is_true(back == s)
    d, back = nil, nil
    collectgarbage()
  end)

  it("a string of " .. MB .. " MiB goes both ways through a thread pool",
     function ()
    local s = unit:rep(MB * 65536)
    local ex = pool(1)
    local n, r = ex:submit(function (x) return #x, x end, s)
                   :result(LONG * 4)
    assert.equal(#s, n)
    assert.is_true(r == s)
    r = nil
    collectgarbage()
    works(ex)
  end)

  it("a string of 64 MiB goes both ways through a process pool",
     function ()
    local s = unit:rep(64 * 65536)
    local ex = ppool(1)
    local n, r = ex:submit(function (x) return #x, "<" .. x .. ">" end, s)
                   :result(LONG * 4)
    assert.equal(#s, n)
    assert.is_true(r == "<" .. s .. ">")
    works(ex)
  end)

  it("a table of a million entries goes both ways through both pools",
     function ()
    local t = {}
    for i = 1, 1000000 do t[i] = i end
    for k = 1, 1000 do t["k" .. k] = { k } end
    for _, ex in ipairs{ pool(1), ppool(1) } do
      local r = ex:submit(function (x)
        x[#x + 1] = "end"
        return x
      end, t):result(LONG * 4)
      assert.equal(1000001, #r)
      assert.equal(999999, r[999999])
      assert.same({ 1000 }, r.k1000)
      works(ex)
    end
  end)

end)


describe("metatables whose metamethods raise", function ()

  for _, kind in ipairs{ "thread", "process" } do
    local make = kind == "thread" and pool or ppool

    it("are copied without calling them (" .. kind .. " pool)", function ()
      local ex = make(1)
      local r = table.pack(ex:submit(function (t)
        local mt = getmetatable(t)
        local ok, e = pcall(function () return t.missing end)
        return rawget(t, "a"), rawlen(t), type(mt.__gc), ok, e,
               mt.__index ~= nil
      end, booby()):result(LONG))
      assert.same({ n = 6, 1, 2, "nil", false, "__index boom", true }, r)
      -- And back: the copy that returns keeps its metatable too, from a
      -- process as from a thread (its metamethods are code that comes
      -- back: the worker is this program).
      local f = ex:submit(function (t) return t end, booby())
      local back = f:result(LONG)
      assert.equal(1, rawget(back, "a"))
      assert.equal("__len boom", errof(function () return #back end))
      works(ex)
    end)

    it("__gc that raises does not hurt a worker (" .. kind .. " pool)",
       function ()
      local ex = make(1)
      local gcmt = { __gc = function () error("gc boom") end }
      for _ = 1, 3 do
        assert.equal("collected", ex:submit(function (t)
          t = nil
          collectgarbage()
          collectgarbage()
          return "collected"
        end, setmetatable({}, gcmt)):result(LONG))
      end
      if kind == "thread" then
        -- A result with such a __gc, collected here.
        local r = ex:submit(function ()
          return setmetatable({ 1 }, { __gc = function () error("x") end })
        end):result(LONG)
        assert.equal(1, r[1])
        r = nil
        collectgarbage()
        collectgarbage()
      end
      works(ex)
    end)

    it("a task table whose __call raises fails its future (" .. kind
       .. " pool)", function ()
      local ex = make(1)
      local task = setmetatable({}, { __call = function ()
        error("call boom", 0)
      end })
      local f = ex:submit(task)
      assert.equal("call boom", errof(f.result, f, LONG))
      works(ex)
    end)

    it("an error value whose __tostring raises fails its future with "
       .. "that error (" .. kind .. " pool)", function ()
      local ex = make(1)
      local f = ex:submit(function ()
        error(setmetatable({}, { __tostring = function ()
          error("tostring boom", 0)
        end }))
      end)
      local e, tb = f:exception(LONG)
      assert.equal("tostring boom", e)
      assert.matches("^tostring boom\nstack traceback:", tb)
      works(ex)
    end)
  end

  it("a __gc that submits while the collector runs in a submit",
     function ()
    local ex = pool(2)
    local fs = {}
    local mt = { __gc = function () fs[#fs + 1] = ex:submit(math.abs, -1) end }
    collectgarbage("generational")
    for i = 1, 2000 do
      setmetatable({}, mt)
      local up = { i }
      ex:submit(function () return up[1] end)
    end
    collectgarbage("incremental")
    collectgarbage()
    for _, f in ipairs(fs) do assert.equal(1, f:result(LONG)) end
    assert.is_true(#fs > 0)
    works(ex)
  end)

end)
