-- spec/edges_marshal_spec.lua: the marshaller's edges (issue 8): the one
-- walker of the wire grammar (defect 4: a worker's answer nested deep
-- through metatables; issue 11: no limit but memory), handles inside messages that count (defect
-- 9: a queued task keeps the pool it carries open), and set_result on a
-- process-pool future (values of this process, decoded as such).

local futures = require "cfut"
local helpers = require "helpers"

local LONG = helpers.LONG
local await_file = helpers.await_file

after_each(helpers.cleanup)

local function ppool (n)
  return helpers.track(futures.process_pool(n))
end

-- A frame as the worker sends it: u64 length (LE), type, body.
local function frame (ty, body)
  return string.pack("<I8", #body + 1) .. ty .. body
end

-- The answer to task 0, not failed, without traceback, holding 'msg'.
local function answer (msg)
  return frame("r", string.pack("<I8 B I4", 0, 0, 0) .. msg)
end

-- One message of one value.
local function message (value)
  return "\27CF\1\1" .. value
end

-- n tables, each the metatable of the one before (the last has none).
local function metachain (n)
  return ("\6\0\0"):rep(n) .. "\0"
end

-- n tables nested alternately as element [1] and as metatable.
local function mixed (n)
  local head, tail = {}, {}
  for i = 1, n do
    if i % 2 == 1 then
      head[#head + 1] = "\6\1\0"      -- t[1] = next, then t's metatable
      tail[#tail + 1] = "\0"
    else
      head[#head + 1] = "\6\0\0"      -- no entries: next is the metatable
    end
  end
  return table.concat(head) .. "\0" .. table.concat(tail):reverse()
end

-- Have the pool's only worker send 'bytes' on its socket as the answer
-- to its first task (id 0); then it waits for 'gate' (or, with 'die',
-- ends at once, so that its own answer never follows).  Returns that
-- task's future.
local function hostile (ex, bytes, gate, die)
  local path = helpers.tmpdir() .. "/answer"
  helpers.write_file(path, bytes)
  return ex:submit(function (p, g, kill)
    os.execute("cat '" .. p .. "' >&3" .. (kill and "; kill -9 $PPID" or ""))
    assert(await_file(g, LONG))
  end, path, gate.path, die)
end

local function assert_broken (e, reason)
  assert.is_true(futures.is(e, futures.BrokenProcessPool), tostring(e))
  assert.matches("^malformed message from worker %d+: " .. reason, e.message)
end

describe("a worker's answer nested deep", function ()

  it("delivers metatables nested 100000 deep (no limit but memory)",
     function ()
    local ex = ppool(1)
    local gate = helpers.fgate()
    local f = hostile(ex, answer(message(metachain(100000))), gate, true)
    local t, n = f:result(LONG), 1
    while getmetatable(t) do
      t = getmetatable(t)
      n = n + 1
    end
    assert.equal(100000, n)
  end)

  it("delivers tables and metatables nested alternately 100001 deep",
     function ()
    local ex = ppool(1)
    local gate = helpers.fgate()
    local f = hostile(ex, answer(message(mixed(100001))), gate, true)
    local t, n = f:result(LONG), 1
    while true do
      local nxt = (n % 2 == 1) and t[1] or getmetatable(t)
      if nxt == nil then break end
      t, n = nxt, n + 1
    end
    assert.equal(100001, n)
  end)

  it("breaks the pool when the bytes claim more nesting than they hold",
     function ()
    local ex = ppool(1)
    local gate = helpers.fgate()
    -- 100000 tables each opening the next, and nothing to close them
    local f = hostile(ex, answer(message(("\6\1\0"):rep(100000))), gate)
    assert_broken(f:exception(LONG), "truncated message at byte 300002")
    assert.is_true(futures.is(select(2, pcall(ex.submit, ex, print)),
                              futures.BrokenProcessPool))
  end)

  it("is read by loads the same way, with the same words", function ()
    local ok, e = pcall(futures.loads, message(("\6\0\0"):rep(100000)))
    assert.is_false(ok)
    assert.matches("truncated message at byte 300002", e, 1, true)
    ok, e = pcall(futures.loads, message(("\6\1\0"):rep(1000) .. "\6\99\0\0"))
    assert.is_false(ok)
    assert.matches("table size exceeds the message at byte 3005", e, 1, true)
    local t, n = futures.loads(message(metachain(100000))), 1
    while getmetatable(t) do
      t = getmetatable(t)
      n = n + 1
    end
    assert.equal(100000, n)
  end)
end)

-- Make a pool of two workers, hold both with 'gate', and queue behind
-- them a task that carries 'target' (the pool itself when nil) and
-- submits to it (the other worker runs that).  Returns the queued task's
-- future, and a weak table holding the pools; the caller keeps no handle.
local function queue_carrying (gate, target)
  local ex = futures.thread_pool(2)
  local weak = setmetatable({ ex, target }, { __mode = "v" })
  for _ = 1, 2 do ex:submit(function (g) g:result(30) end, gate) end
  local f = ex:submit(function (e)
    return e:submit(function () return 42 end):result(30)
  end, target or ex)
  return f, weak
end

-- How many threads this process has.
local function threads ()
  local p = io.popen("ls /proc/" .. futures.getpid() .. "/task")
  local n = 0
  for _ in p:lines() do n = n + 1 end
  p:close()
  return n
end

describe("a queued task that carries an executor (defect 9)", function ()

  it("keeps its own pool open when the script's handle is collected",
     function ()
    local gate = helpers.gate()
    local f, weak = queue_carrying(gate)
    collectgarbage()
    collectgarbage()
    assert.is_nil(weak[1], "the script's handle was not collected")
    gate:set_result(true)
    assert.equal(42, f:result(LONG))
  end)

  it("keeps another thread pool open", function ()
    local gate = helpers.gate()
    local f, weak = queue_carrying(gate, futures.thread_pool(1))
    collectgarbage()
    collectgarbage()
    assert.is_nil(weak[2], "the script's handle was not collected")
    gate:set_result(true)
    assert.equal(42, f:result(LONG))
    assert.is_true(helpers.wait_until(function ()
      collectgarbage()
      return weak[1] == nil
    end, LONG))
  end)

  it("lets the pool shut down once the task is over", function ()
    local before = threads()
    local gate = helpers.gate()
    local f = queue_carrying(gate)
    collectgarbage()
    gate:set_result(true)
    assert.equal(42, f:result(LONG))
    -- the task's message and its worker's copy held the last handles:
    -- dropping them shut the pool down, and its worker exits
    assert.is_true(helpers.wait_until(function ()
      collectgarbage()
      return threads() <= before
    end, LONG), "the pool's worker thread did not exit")
  end)

  it("is refused when the executor is a process pool", function ()
    local pp = ppool(1)
    local tp = helpers.pool(1)
    local ok, e = pcall(tp.submit, tp, function () end, pp)
    assert.is_false(ok)
    assert.matches("executor: executors cannot cross to another process",
                   e, 1, true)
  end)
end)

describe("set_result on a process-pool future", function ()

  it("stores values of this process, read back as such", function ()
    local ex = ppool(1)
    local gate = helpers.fgate()
    local busy = ex:submit(function (g)
      return await_file(g, LONG) ~= nil
    end, gate.path)
    local f = ex:submit(function () return "from the worker" end)
    local fut, tp = futures.future(), helpers.pool(1)
    f:set_result(function () return 7 end, fut, tp)
    local fn, fut2, tp2 = f:result(0)
    assert.equal(7, fn())
    assert.equal(fut, fut2)
    assert.equal(tostring(tp), tostring(tp2))
    assert.matches("state=finished returned function", tostring(f), 1, true)
    gate.open()
    assert.is_true(busy:result(LONG))
    -- the worker's own answer, arriving later, changes nothing
    assert.equal(7, (f:result(0))())
  end)
end)
