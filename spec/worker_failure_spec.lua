-- spec/worker_failure_spec.lua: every Lua-level failure inside a task
-- resolves its future with an error and leaves the worker usable (issue 4,
-- "Worker death and signals", second bullet), in thread and process pools
-- alike: errors of every type, os.exit, Lua and C stack overflows, a
-- memory error in the worker's state, values that cannot be sent back.
-- The same worker (same thread name, same pid) then runs the next task.
--
-- Worker states use Lua's default allocator, which is not bounded: "out
-- of memory" is tested with one allocation no machine can satisfy (128
-- TiB, past the user address space), never by eating memory.

local futures = require "cfut"
local helpers = require "helpers"

local LONG = helpers.LONG
local errof = helpers.errof

after_each(helpers.cleanup)

local KINDS = {
  thread = function (n) return helpers.pool(n) end,
  process = function (n) return helpers.track(futures.process_pool(n)) end,
}

-- Which worker runs tasks: its thread name and its process id.
local function whoami ()
  return futures.thread_name() .. "@" .. futures.getpid()
end

-- Run 'task' on a one-worker pool of 'kind'; check that the worker who
-- runs the next task is the same one and still works.  Returns the future
-- of 'task' (finished).
local function fails (kind, task, ...)
  local ex = KINDS[kind](1)
  local before = ex:submit(whoami):result(LONG)
  local f = ex:submit(task, ...)
  futures.wait({ f }, LONG * 2)
  assert.is_true(f:done(), "the failing task did not finish")
  assert.equal(before, ex:submit(whoami):result(LONG))
  assert.equal(7, ex:submit(function (x) return x + 1 end, 6):result(LONG))
  return f
end

local function raise (v) error(v, 0) end

for kind in pairs(KINDS) do

  describe("a task that fails in a " .. kind .. " worker", function ()

    it("raises a table, kept as a copy with its class", function ()
      local f = fails(kind, function ()
        error(setmetatable({ code = 7 }, { __index = { kind = "mine" } }))
      end)
      local e, tb = f:exception(LONG)
      assert.equal(7, e.code)
      assert.equal("mine", e.kind)
      assert.matches("^%(error object is a table value%)\nstack traceback:",
                     tb)
      f = fails(kind, function () error(futures.TimeoutError("late")) end)
      e = f:exception(LONG)
      assert.is_true(futures.is(e, futures.TimeoutError))
      assert.equal("late", e.message)
    end)

    it("raises numbers and booleans, kept exactly", function ()
      for _, v in ipairs{ 42, -0.5, math.maxinteger, 1 / 0, false, true } do
        local f = fails(kind, raise, v)
        local e = errof(f.result, f)
        assert.equal(v, e)
        assert.equal(math.type(v), math.type(e))
      end
      local f = fails(kind, raise, 0 / 0)
      local e = errof(f.result, f)
      assert.is_true(e ~= e)
      f = fails(kind, function () error() end)
      assert.equal("(error object is a nil value)", errof(f.result, f))
    end)

    it("raises a value that cannot be sent back", function ()
      local f = fails(kind, function () error(io.stdout) end)
      assert.equal("cannot send error value #1 (userdata FILE*) from a "
                   .. "worker", errof(f.result, f))
      f = fails(kind, function () error(coroutine.create(print)) end)
      assert.equal("cannot send error value #1 (coroutine) from a worker",
                   errof(f.result, f))
      f = fails(kind, function () error({ deep = { io.stderr } }) end)
      assert.equal("cannot send error value #1 (field 'deep[1]': userdata "
                   .. "FILE*) from a worker", errof(f.result, f))
    end)

    it("raises a function", function ()
      -- (it comes back from a process worker too: issue 11 section 5)
      local f = fails(kind, function () error(function () return 5 end) end)
      assert.equal(5, errof(f.result, f)())
    end)

    it("returns a value that cannot be sent back", function ()
      local f = fails(kind, function () return 1, { io.stdout } end)
      assert.equal("cannot send result #2 (field '[1]': userdata FILE*) "
                   .. "from a worker", errof(f.result, f))
    end)

    it("calls os.exit, whatever its arguments", function ()
      local cases = { { {}, 0 }, { { 0 }, 0 }, { { 3 }, 3 }, { { true }, 0 },
                      { { false, true }, 1 } }
      for _, c in ipairs(cases) do
        local f = fails(kind, function (...) os.exit(...) end,
                        table.unpack(c[1]))
        assert.matches(":%d+: os%.exit%(" .. c[2] .. "%) called in a "
                       .. "worker: the task ends here %(workers do not end "
                       .. "the process%)$", errof(f.result, f))
      end
    end)

    it("overflows the Lua stack with endless recursion", function ()
      local f = fails(kind, function ()
        local function down (n) return 1 + down(n + 1) end
        return down(1)
      end)
      local e, tb = f:exception(LONG)
      assert.matches(":%d+: stack overflow", e)
      assert.matches("stack traceback:", tb)
    end)

    it("overflows the C stack through string.gsub callbacks", function ()
      local f = fails(kind, function ()
        local function down (s) return (s:gsub(".", down)) end
        return down("x")
      end)
      assert.matches("C stack overflow", errof(f.result, f))
    end)

    it("overflows the C stack through nested coroutines and sort",
       function ()
      local f = fails(kind, function ()
        local function down () return coroutine.wrap(down)() end
        return down()
      end)
      assert.matches("C stack overflow", errof(f.result, f))
      f = fails(kind, function ()
        local function cmp (a, b)
          table.sort({ 3, 2, 1 }, cmp)
          return a < b
        end
        table.sort({ 3, 2, 1 }, cmp)
      end)
      assert.matches("C stack overflow", errof(f.result, f))
    end)

    it("overflows the C stack in pcall inside pcall, and succeeds",
       function ()
      local f = fails(kind, function ()
        local function down () return pcall(down) end
        return select("#", down())
      end)
      assert.is_true(f:result(LONG) > 100)
    end)

    it("raises an error whose __tostring recurses without end", function ()
      -- The message handler calls __tostring; the overflow happens there.
      local f = fails(kind, function ()
        local mt = {}
        mt.__tostring = function (t) return tostring(t) end
        error(setmetatable({}, mt))
      end)
      assert.matches("C stack overflow", errof(f.result, f))
    end)

  end)

end

describe("a task that runs out of memory in its worker's state", function ()

  -- Run in a child process: under ASan or TSan an allocation this large
  -- aborts unless allocator_may_return_null is set, which only a new
  -- process can get.  The child prints one line per case.
  local script = [=[
    local futures = require "cfut"
    local function huge () return #io.open("/dev/zero"):read(1 << 47) end
    local function whoami ()
      return futures.thread_name() .. "@" .. futures.getpid()
    end
    for _, kind in ipairs{ "thread_pool", "process_pool" } do
      local ex = futures[kind](1)
      local who = ex:submit(whoami):result()
      local f = ex:submit(huge)
      local e, tb = f:exception()
      print(kind, "task", tostring(e), tostring(tb))
      print(kind, "same worker", ex:submit(whoami):result() == who)
      local got = {}
      local ok, err = pcall(function ()
        for i, v in ex:map{ function (x)
          if x == 2 then return huge() end
          return x
        end, { 1, 2, 3 }, chunksize = 3 } do got[i] = v end
      end)
      print(kind, "map", got[1], got[2], ok, tostring(err))
      print(kind, "after", ex:submit(function () return 42 end):result())
      local bad = futures[kind]{ max_workers = 1, initializer = huge }
      local g = bad:submit(print)
      print(kind, "initializer", tostring(g:exception()))
      print(kind, "last", ex:submit(whoami):result() == who)
    end
  ]=]

  it("fails the task with 'not enough memory', keeping the worker "
     .. "(thread and process pools)", function ()
    local env = {}
    for _, name in ipairs{ "ASAN_OPTIONS", "TSAN_OPTIONS" } do
      local v = os.getenv(name)
      env[name] = (v and v .. ":" or "") .. "allocator_may_return_null=1"
    end
    local r = helpers.run(script, { env = env })
    assert.equal(0, r.status, r.stderr)
    local broken = {
      thread_pool = "BrokenThreadPool: A thread initializer failed, the "
                    .. "thread pool is not usable anymore",
      process_pool = "BrokenProcessPool: A process initializer failed, "
                     .. "the process pool is not usable anymore",
    }
    local expect = {}
    for _, kind in ipairs{ "thread_pool", "process_pool" } do
      local lines = {
        "task\tnot enough memory\tnil",
        "same worker\ttrue",
        "map\t1\tnil\tfalse\tnot enough memory",
        "after\t42",
        "initializer\t" .. broken[kind],
        "last\ttrue",
      }
      for _, l in ipairs(lines) do expect[#expect + 1] = kind .. "\t" .. l end
    end
    assert.equal(table.concat(expect, "\n") .. "\n", r.stdout)
    local _, n = r.stderr:gsub("cfut: exception in initializer:\n"
                               .. "not enough memory\n", "")
    assert.equal(2, n, r.stderr)
  end)

end)
