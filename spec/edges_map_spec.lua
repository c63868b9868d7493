-- spec/edges_map_spec.lua: Executor:map at its edges (issue 8, defects 2, 3
-- and 11): the answers of a chunk that a worker sends are checked before
-- they are used, a map iterator ends once it has raised, and a timeout
-- with buffersize cancels the item that timed out.
--
-- Process-pool tasks and the spec meet through files (helpers.write_file,
-- await_file, fgate); thread-pool tasks through hand-made futures.

local futures = require "cfut"
local helpers = require "helpers"

local LONG = helpers.LONG
local errof = helpers.errof
local write_file, await_file = helpers.write_file, helpers.await_file

after_each(helpers.cleanup)

local function assert_broken (e, message)
  assert.is_true(futures.is(e, futures.BrokenProcessPool), tostring(e))
  if message then assert.equal(message, e.message) end
end

-- Wait until process 'pid' is gone: exited and reaped by this process.
local function reaped (pid)
  return helpers.wait_until(function ()
    return helpers.proc_state(pid) == nil
  end)
end

-- The position and values of the next call of map iterator 'it', packed.
local function step (it)
  return table.pack(it())
end

-- A task: write this worker's pid to 'mark', then wait for the file gate
-- at 'gate' and return x.
local function held (mark, gate, x)
  write_file(mark, tostring(futures.getpid()))
  assert(await_file(gate, LONG), "the gate was not opened")
  return x
end


describe("Executor:map with chunksize, given a worker's answers", function ()

  --[[
  A process pool of one worker whose cfut._runchunk (what runs each chunk
  of a map) answers every chunk with the values of 'answer' (a
  table.pack): the pool's initializer replaces it, as a worker gone wrong
  could.
  ]]
  local function rigged (answer)
    return helpers.track(futures.process_pool{
      max_workers = 1,
      initializer = function (a)
        require("cfut")._runchunk = function ()
          return table.unpack(a, 1, a.n)
        end
      end,
      initargs = { answer },
    })
  end

  local function ident (x) return x end

  -- Each case: what the worker answers for a chunk of the two items
  -- {1, 2}, and the reason the parent must give.
  local BIG = (1 << 32) + 1
  local cases = {
    { "offsets that overrun the values (issue 8)",
      table.pack({ 1, 2 }, { 1, 1, BIG }), "offsets do not fit its items" },
    { "an item with more values than a stack holds",
      table.pack({}, { 1, 1, 1000002 }), "offsets do not fit its items" },
    { "offsets that go down", table.pack({ 1, 2 }, { 1, 3, 2 }),
      "offsets do not fit its items" },
    { "offsets that go below 1", table.pack({ 1, 2 }, { 1, -BIG, 2 }),
      "offsets do not fit its items" },
    { "a first offset other than 1", table.pack({ 1, 2 }, { 0, 1, 2 }),
      "offsets do not fit its items" },
    { "an offset that is a float", table.pack({ 1, 2 }, { 1, 1.5, 3 }),
      "offsets do not fit its items" },
    { "an offset missing", table.pack({ 1, 2 }, { 1, 2 }),
      "offsets do not fit its items" },
    { "values that are not a table", table.pack("out", { 1, 2, 3 }),
      "answer is not out, offs %[, index, error%]" },
    { "offsets that are not a table", table.pack({ 1, 2 }, 3),
      "answer is not out, offs %[, index, error%]" },
    { "three values", table.pack({ 1, 2 }, { 1, 2, 3 }, 1),
      "answer is not out, offs %[, index, error%]" },
    { "five values", table.pack({}, { 1, 1 }, 1, { "e" }, 5),
      "answer is not out, offs %[, index, error%]" },
    { "an error index past the chunk", table.pack({}, { 1 }, 3, { "e" }),
      "error index is not one of its items" },
    { "an error index of 0", table.pack({}, { 1 }, 0, { "e" }),
      "error index is not one of its items" },
    { "an error index that is a float", table.pack({}, { 1 }, 1.0, { "e" }),
      "error index is not one of its items" },
    { "an error that is not a table", table.pack({}, { 1 }, 1, "e"),
      "error is not {error, traceback}" },
    { "a traceback that is not a string", table.pack({}, { 1 }, 1, { "e", 7 }),
      "error is not {error, traceback}" },
    { "offsets before the error that go down",
      table.pack({ 1 }, { 1, 0 }, 2, { "e" }), "offsets do not fit its items" },
  }
  for _, case in ipairs(cases) do
    local what, answer, reason = case[1], case[2], case[3]
    it("breaks the pool with a clear error on " .. what, function ()
      local ex = rigged(answer)
      local gate = helpers.fgate()
      local mark = helpers.tmpdir() .. "/pid"
      local it, s, c = ex:map{ ident, { 1, 2 }, chunksize = 2 }
      -- Queued behind the chunk, running when the answer is read.
      local f = ex:submit(held, mark, gate.path, "answered")
      local pid = math.tointeger(tonumber(await_file(mark)))
      assert.is_truthy(pid, "the task behind the chunk did not start")
      local e = errof(function () for _ in it, s, c do end end)
      assert_broken(e)
      assert.matches("^malformed message from a worker: map chunk "
                     .. reason .. "$", e.message)
      assert_broken(f:exception(LONG), e.message)
      assert_broken(errof(ex.submit, ex, ident, 1), e.message)
      assert.is_true(reaped(pid), "worker " .. pid .. " not reaped")
      assert.equal(0, step(it).n)          -- the iterator has ended
    end)
  end

  it("takes answers that check out, empty items and an error included",
     function ()
    local ex = rigged(table.pack({ 10, 20, 30 }, { 1, 1, 2, 4 }))
    local got = {}
    for i, a, b in ex:map{ ident, { 1, 2, 3 }, chunksize = 3 } do
      got[#got + 1] = { i, a, b }
    end
    assert.same({ { 1 }, { 2, 10 }, { 3, 20, 30 } }, got)

    ex = rigged(table.pack({ 10 }, { 1, 2 }, 2, { "boom", "tb" }))
    local it = ex:map{ ident, { 1, 2, 3 }, chunksize = 3 }
    assert.same({ n = 2, 1, 10 }, step(it))
    assert.equal("boom", errof(it))
    assert.equal(0, step(it).n)
  end)
end)


describe("a map iterator that has raised", function ()

  -- The iterator of a map of 'task' over {1, 2, 3, 4} on 'ex', with the
  -- options in 'opts'.
  local function mapof (ex, opts, task)
    local t = { task, { 1, 2, 3, 4 } }
    for k, v in pairs(opts) do t[k] = v end
    return ex:map(t)
  end

  local kinds = {
    { "a thread pool", function () return helpers.pool(1) end, {} },
    { "a thread pool with buffersize",
      function () return helpers.pool(1) end, { buffersize = 2 } },
    { "a process pool", function ()
        return helpers.track(futures.process_pool(1))
      end, {} },
    { "a process pool with chunksize", function ()
        return helpers.track(futures.process_pool(1))
      end, { chunksize = 2 } },
    { "a process pool with buffersize", function ()
        return helpers.track(futures.process_pool(1))
      end, { buffersize = 2 } },
  }
  for _, kind in ipairs(kinds) do
    local name, newpool, opts = kind[1], kind[2], kind[3]

    it("ends after a timeout on " .. name .. " (issue 8)", function ()
      local ex = newpool()
      local gate = helpers.fgate()
      local o = { timeout = 0.05 }
      for k, v in pairs(opts) do o[k] = v end
      local it = mapof(ex, o, function (x)
        assert(await_file(gate.path, LONG), "the gate was not opened")
        return x
      end)
      local e = errof(it)
      assert.is_true(futures.is(e, futures.TimeoutError), tostring(e))
      assert.is_nil((it()))
      assert.is_nil((it()))
      gate.open()
      assert.equal(7, ex:submit(function (x) return x end, 7):result(LONG))
    end)

    it("ends after an item's error on " .. name, function ()
      local ex = newpool()
      local it = mapof(ex, opts, function (x)
        if x == 2 then error("bad item " .. x, 0) end
        return x
      end)
      assert.same({ n = 2, 1, 1 }, step(it))
      assert.equal("bad item 2", errof(it))
      assert.is_nil((it()))
      assert.is_nil((it()))
    end)
  end
end)


describe("Executor:map with buffersize and a timeout", function ()

  it("cancels the item that timed out on a thread pool (issue 8)",
     function ()
    local ex = helpers.pool(1)
    local gate = helpers.gate()
    helpers.block(ex, gate, 1)             -- the only worker is busy
    local ran = futures.future()           -- set by an item that runs
    for _, buffersize in ipairs{ 2, false } do
      local it = ex:map{ function (x)
        if not ran:done() then ran:set_result(x) end
        return x
      end, { 1, 2 }, timeout = 0.05, buffersize = buffersize or nil }
      local e = errof(it)
      assert.is_true(futures.is(e, futures.TimeoutError), tostring(e))
    end
    gate:set_result(true)
    ex:shutdown(true)                      -- what was not cancelled ran
    assert.is_false(ran:done(), "item " .. tostring(ran:done()
                                and ran:result()) .. " ran")
  end)

  it("cancels the item that timed out on a process pool", function ()
    local ex = helpers.track(futures.process_pool(1))
    local gate = helpers.fgate()
    local dir = helpers.tmpdir()
    local mark = dir .. "/pid"
    ex:submit(held, mark, gate.path)
    assert(await_file(mark), "the blocking task did not start")
    local it = ex:map{ function (d, x)
      write_file(d .. "/ran" .. x, "ran")
      return x
    end, { dir, dir }, { 1, 2 }, timeout = 0.05, buffersize = 2 }
    local e = errof(it)
    assert.is_true(futures.is(e, futures.TimeoutError), tostring(e))
    gate.open()
    ex:shutdown(true)
    assert.is_nil(helpers.read_file(dir .. "/ran1"), "item 1 ran")
    assert.is_nil(helpers.read_file(dir .. "/ran2"), "item 2 ran")
  end)
end)
