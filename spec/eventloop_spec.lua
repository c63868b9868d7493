-- spec/eventloop_spec.lua: cfut inside an event loop (API.md §2 "Event
-- loops"): futures.fileno(), futures.poll() and futures.await(f), driven
-- by a luv loop (Debian's lua-luv, installed by make test's setup).

local futures = require "cfut"
local helpers = require "helpers"
local uv = require "luv"

local LONG = helpers.LONG
local errof, pool = helpers.errof, helpers.pool

after_each(helpers.cleanup)

--[[
Run the luv loop with a poll watcher on futures.fileno() that calls
futures.poll() when it is readable, until done() holds; a guard timer
ends it after LONG seconds.  The handles in 'others' are closed with the
loop's own.  Returns true when done() held, false when the guard fired.
]]
local function run_loop (done, others)
  local poll = uv.new_poll(futures.fileno())
  local guard = uv.new_timer()
  local ok = false
  local function stop ()
    for _, h in ipairs{ poll, guard, table.unpack(others or {}) } do
      if not h:is_closing() then h:close() end
    end
  end
  poll:start("r", function ()
    futures.poll()
    if done() then ok = true; stop() end
  end)
  guard:start(LONG * 1000, 0, stop)
  if done() then ok = true; stop() end
  uv.run()
  return ok
end

-- Start fn as a coroutine (as a loop's handler would) and return a table
-- that will hold what it returned ({ok = true, ...}) or raised
-- ({ok = false, err}).
local function spawn (fn, ...)
  local out = {}
  local co = coroutine.create(function (...)
    local r = table.pack(pcall(fn, ...))
    out.ok, out.n = r[1], r.n - 1
    for k = 2, r.n do out[k - 1] = r[k] end
  end)
  local ok, err = coroutine.resume(co, ...)
  assert(ok, err)
  return out
end

describe("futures.fileno", function ()

  it("returns one descriptor, the same each time", function ()
    local fd = futures.fileno()
    assert.is_true(math.type(fd) == "integer" and fd >= 0)
    assert.equal(fd, futures.fileno())
  end)

  it("becomes readable when a future with a callback finishes, and poll "
     .. "runs the callback", function ()
    local ex = pool(1)
    local gate = helpers.gate()
    local f = ex:submit(helpers.gated, gate, 7)
    local got
    f:add_done_callback(function (g) got = g:result() end)
    local opener = futures.thread_pool(1)
    helpers.track(opener)
    opener:submit(function (g) g:set_result(true) end, gate)
    assert.is_true(run_loop(function () return got ~= nil end))
    assert.equal(7, got)
  end)

  it("becomes readable when a future this state holds a handle for "
     .. "finishes", function ()
    futures.fileno()
    local ex = pool(1)
    local gate = helpers.gate()
    local f = ex:submit(helpers.gated, gate, 1)
    local opener = futures.thread_pool(1)
    helpers.track(opener)
    opener:submit(function (g) g:set_result(true) end, gate)
    assert.is_true(run_loop(function () return f:done() end))
  end)

  it("is not readable once poll has run what was due", function ()
    local f = futures.future()
    local ran = 0
    f:add_done_callback(function () ran = ran + 1 end)
    local opener = futures.thread_pool(1)
    helpers.track(opener)
    opener:submit(function (g) g:set_result(true) end, f):result(LONG)
    local fired = 0
    local poll = uv.new_poll(futures.fileno())
    poll:start("r", function () fired = fired + 1; futures.poll() end)
    uv.run("nowait")          -- readable: the callback runs
    assert.equal(1, ran)
    local before = fired
    uv.run("nowait")          -- drained: nothing more
    assert.equal(before, fired)
    poll:close()
    uv.run("nowait")
  end)
end)

describe("futures.await", function ()

  it("yields until the future is done and returns its values", function ()
    local ex = pool(2)
    local gate = helpers.gate()
    local f = ex:submit(function (g) g:result(60) return 1, nil, "three" end,
                        gate)
    local out = spawn(futures.await, f)
    assert.is_nil(out.ok)     -- suspended: the loop goes on
    local opener = futures.thread_pool(1)
    helpers.track(opener)
    opener:submit(function (g) g:set_result(true) end, gate)
    assert.is_true(run_loop(function () return out.ok ~= nil end))
    assert.is_true(out.ok)
    assert.equal(3, out.n)
    assert.same({ 1, nil, "three" }, { out[1], out[2], out[3] })
  end)

  it("raises the task's error as result() does", function ()
    local ex = pool(1)
    local gate = helpers.gate()
    local f = ex:submit(function (g) g:result(60) error({ code = 5 }) end,
                        gate)
    local out = spawn(futures.await, f)
    gate:set_result(true)
    assert.is_true(run_loop(function () return out.ok ~= nil end))
    assert.is_false(out.ok)
    assert.same({ code = 5 }, out[1])
  end)

  it("returns at once for a future that is done", function ()
    local f = futures.future()
    f:set_result("x")
    local out = spawn(futures.await, f)
    assert.is_true(out.ok)
    assert.equal("x", out[1])
  end)

  it("raises TimeoutError when the timeout runs out first", function ()
    local gate = helpers.gate()   -- never set by anyone: cleanup opens it
    local out = spawn(futures.await, gate, 0.05)
    assert.is_true(run_loop(function () return out.ok ~= nil end))
    assert.is_false(out.ok)
    assert.is_true(futures.is(out[1], futures.TimeoutError))
    assert.is_false(gate:done())
  end)

  it("raises CancelledError for a future cancelled meanwhile", function ()
    local ex = pool(1)
    local gate = helpers.gate()
    helpers.block(ex, gate, 1)
    local f = ex:submit(function () return 1 end)
    local out = spawn(futures.await, f)
    f:cancel()
    assert.is_true(run_loop(function () return out.ok ~= nil end))
    assert.is_false(out.ok)
    assert.is_true(futures.is(out[1], futures.CancelledError))
  end)

  it("refuses to block outside a coroutine", function ()
    local f = futures.future()
    local e = errof(futures.await, f)
    assert.matches("futures.await must run in a coroutine", e, 1, true)
  end)

  it("rejects what is not a future, and a bad timeout", function ()
    assert.matches("bad argument #1 to 'await' (cfut.Future expected, got "
                   .. "number)", errof(futures.await, 42), 1, true)
    assert.matches("bad argument #2 to 'await' (timeout must be a number)",
                   errof(futures.await, futures.future(), "soon"), 1, true)
  end)
end)

describe("a luv loop with cfut", function ()

  --[[
  The loop's 10 ms timer keeps ticking while 100 light tasks run on a
  thread pool.  Each task sleeps 5 ms, so the work lasts 250 ms or more on
  two workers: a loop that blocked in result() would see a gap of that
  size every time.  A gap above 50 ms can still come from this machine
  being busy (other processes share its cores), so the measure is taken
  up to three times and the best run counts.
  ]]
  local function measure ()
    local ex <close> = futures.thread_pool(2)
    local ticks, longest, last = 0, 0, futures.monotonic()
    local timer = uv.new_timer()
    timer:start(10, 10, function ()
      local now = futures.monotonic()
      if now - last > longest then longest = now - last end
      last = now
      ticks = ticks + 1
    end)
    local left, sum = 100, 0
    for i = 1, 100 do
      spawn(function ()
        local v = futures.await(ex:submit(function (n)
          futures.sleep(0.005)
          return n
        end, i))
        sum = sum + v           -- not sum + await(): sum is read first
        left = left - 1
      end)
    end
    local ok = run_loop(function () return left == 0 end, { timer })
    assert.is_true(ok)
    assert.equal(5050, sum)
    return longest, ticks
  end

  it("keeps its timer ticking every 10 ms while tasks run", function ()
    local bound = helpers.sanitized and 0.2 or 0.05
    local best, ticks = math.huge, 0
    for _ = 1, 3 do
      local longest, n = measure()
      if longest < best then best, ticks = longest, n end
      if best < bound then break end
    end
    assert.is_true(ticks >= 5, "the timer ticked " .. ticks .. " times")
    assert.is_true(best < bound, ("longest gap between ticks: %.1f ms")
                                 :format(best * 1000))
  end)

  it("runs examples/luv_loop.lua", function ()
    local root = os.getenv("CFUT_ROOT") or "."
    local r = helpers.run(helpers.read_file(root .. "/examples/luv_loop.lua"))
    assert.equal(0, r.status, r.stderr)
    assert.equal("main: 100 tasks submitted, the loop runs\n"
                 .. "main: 100 results, in order: 1, 5, ..., 338350\n"
                 .. "main: their sum: 8670850\n", r.stdout)
    assert.matches("main: the timer ticked %d+ times while they ran; "
                   .. "longest gap [%d.]+ ms\n", r.stderr)
  end)
end)
