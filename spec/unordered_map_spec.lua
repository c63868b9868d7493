-- spec/unordered_map_spec.lua: map{..., unordered = true} (issue 11 §3):
-- positions and values as the items finish, each position once, with the
-- error, timeout and cancel rules of the ordered map; with chunksize (per
-- item) and buffersize too, in thread and process pools.
--
-- Tasks and the spec meet through files, in both pools: item x writes
-- "ran<x>" in its directory when it starts and, when it is gated, waits
-- for "open<x>" (written by open()).  What an item does is in 'hows':
-- "gate", "raise", or nothing (it returns at once).

local futures = require "cfut"
local helpers = require "helpers"

local LONG = helpers.LONG
local errof = helpers.errof
local write_file, await_file = helpers.write_file, helpers.await_file

-- Directories whose gates are opened after each test, so that no worker
-- stays blocked until its wait runs out.
local dirs = {}

local function open (dir, x) write_file(dir .. "/open" .. x, "1") end

after_each(function ()
  for i = #dirs, 1, -1 do
    for x = 1, dirs[i].n do
      if not helpers.read_file(dirs[i].dir .. "/open" .. x) then
        pcall(open, dirs[i].dir, x)
      end
    end
    dirs[i] = nil
  end
  helpers.cleanup()
end)

-- A new directory for items 1..n.
local function newdir (n)
  local dir = helpers.tmpdir()
  dirs[#dirs + 1] = { dir = dir, n = n }
  return dir
end

local function ran (dir, x)
  return helpers.read_file(dir .. "/ran" .. x) ~= nil
end

-- The task of map over 1..n in 'dir': item x returns x * 2, nil and
-- "v<x>" (a nil among the values does not end the loop).
local function task (dir, hows)
  return function (x)
    write_file(dir .. "/ran" .. x, "1")
    local how = hows[x]
    if how == "gate" then
      assert(await_file(dir .. "/open" .. x, LONG), "gate not opened")
    elseif how == "raise" then
      error("boom " .. x, 0)
    end
    return x * 2, nil, "v" .. x
  end
end

-- 1..n
local function range (n)
  local xs = {}
  for i = 1, n do xs[i] = i end
  return xs
end

-- The next call of map iterator 'it', packed.
local function step (it)
  return table.pack(it())
end

local function assert_item (x, r)
  assert.same({ n = 4, x, 2 * x, nil, "v" .. x }, r)
end

for _, kind in ipairs{ "thread", "process" } do
  local function pool (n)
    if kind == "thread" then return helpers.pool(n) end
    return helpers.track(futures.process_pool(n))
  end

  -- The forms of map that keep every item in flight: a plain map and
  -- chunks of 2.
  local forms = {
    plain = {},
    ["chunksize = 2"] = { chunksize = 2 },
  }

  -- map{fn, xs, unordered = true, <opts>}
  local function umap (ex, fn, xs, opts)
    local t = { fn, xs, unordered = true }
    for k, v in pairs(opts or {}) do t[k] = v end
    return ex:map(t)
  end

  describe("unordered map, " .. kind .. " pool:", function ()
    it("yields the items as they finish, with their positions", function ()
      local ex = pool(3)
      local dir = newdir(3)
      local it = umap(ex, task(dir, { "gate", "gate" }), range(3))
      assert_item(3, step(it))
      open(dir, 2)
      assert_item(2, step(it))
      open(dir, 1)
      assert_item(1, step(it))
      assert.same({ n = 0 }, step(it))
      assert.same({ n = 0 }, step(it))
    end)

    it("yields a chunk's items one by one when the chunk finishes",
       function ()
      local ex = pool(2)
      local dir = newdir(6)
      local it = umap(ex, task(dir, { "gate" }), range(6), { chunksize = 3 })
      for x = 4, 6 do assert_item(x, step(it)) end
      open(dir, 1)
      for x = 1, 3 do assert_item(x, step(it)) end
      assert.same({ n = 0 }, step(it))
    end)

    for _, opts in ipairs{ {}, { chunksize = 7 }, { buffersize = 5 },
                           { buffersize = 5, chunksize = 3 } } do
      local shown = {}
      for k, v in pairs(opts) do shown[#shown + 1] = k .. " = " .. v end
      it("yields each position once (" .. table.concat(shown, ", ") .. ")",
         function ()
        local ex = pool(3)
        local seen, count = {}, 0
        for i, a, b, c in umap(ex, function (x) return x * 2, nil, "v" .. x
                               end, range(200), opts) do
          assert.is_nil(seen[i], "position " .. i .. " twice")
          seen[i] = true
          count = count + 1
          assert.same({ 2 * i, nil, "v" .. i }, { a, b, c })
        end
        assert.equal(200, count)
      end)
    end

    it("yields each position of a long input once (batched on its own)",
       function ()
      local ex = pool(2)
      local xs = range(10000)
      local seen, count = {}, 0
      for i, v in umap(ex, function (x) return -x end, xs) do
        assert.is_nil(seen[i], "position " .. i .. " twice")
        assert.equal(-i, v)
        seen[i] = true
        count = count + 1
      end
      assert.equal(10000, count)
    end)

    it("passes several iterables and the nil holes of a t.n sequence",
       function ()
      local ex = pool(2)
      local got = {}
      for i, s in ex:map{ function (a, b) return tostring(a) .. tostring(b)
                          end, { n = 3, 1, nil, 3 }, { "x", "y", "z", "w" },
                          unordered = true } do
        got[i] = s
      end
      assert.same({ "1x", "nily", "3z" }, got)
    end)

    it("maps an empty input to an empty loop", function ()
      local ex = pool(1)
      for _ in umap(ex, tostring, {}) do error("an item from nothing") end
      for _ in umap(ex, tostring, {}, { buffersize = 2 }) do
        error("an item from nothing")
      end
    end)

    for name, opts in pairs(forms) do
      it("raises an item's error when it is yielded, then ends (" .. name
         .. ")", function ()
        local ex = pool(2)
        local dir = newdir(8)
        -- Item 1 holds one worker; the other runs the item that raises
        -- (with chunks of 2: item 3, first of its chunk), then a gated one.
        local bad = opts.chunksize and 3 or 2
        local hows = {}
        for x = 1, 8 do hows[x] = x == bad and "raise" or "gate" end
        local it = umap(ex, task(dir, hows), range(8), opts)
        local e = errof(it)
        assert.equal("boom " .. bad, e)
        assert.same({ n = 0 }, step(it))
        -- The items still queued were cancelled: once the gates are open
        -- and the pool is shut down, none of them ran.
        for x = 1, 8 do open(dir, x) end
        ex:shutdown(true)
        assert.is_false(ran(dir, 8), "item 8 ran after the map raised")
      end)

      it("raises TimeoutError counted from the map call and cancels the rest ("
         .. name .. ")", function ()
        local ex = pool(2)
        local dir = newdir(8)
        local hows = { "gate", nil, "gate", "gate", "gate", "gate", "gate",
                       "gate" }
        local timeout = 2 * helpers.QUICK
        local t0 = futures.monotonic()
        local o = { timeout = timeout }
        for k, v in pairs(opts) do o[k] = v end
        local it = umap(ex, task(dir, hows), range(8), o)
        -- Items that finished in time are yielded; with chunks of 2, the
        -- chunk of item 2 waits for item 1, so nothing is.
        if not opts.chunksize then assert_item(2, step(it)) end
        assert.is_true(helpers.wait_until(function ()
          return futures.monotonic() > t0 + timeout
        end, timeout + LONG))
        -- Past the deadline: the next call does not wait a new timeout.
        local t1 = futures.monotonic()
        local e = errof(it)
        assert.is_true(futures.is(e, futures.TimeoutError), tostring(e))
        assert.is_true(futures.monotonic() - t1 < timeout,
                       "the timeout counted from the call, not from the map")
        assert.same({ n = 0 }, step(it))
        for x = 1, 8 do open(dir, x) end
        ex:shutdown(true)
        assert.is_false(ran(dir, 8), "item 8 ran after the map timed out")
      end)

      it("cancels the items still queued when the iterator is collected ("
         .. name .. ")", function ()
        local ex = pool(1)
        local dir = newdir(6)
        local it = umap(ex, task(dir, { "gate" }), range(6), opts)
        assert.is_truthy(await_file(dir .. "/ran1"), "item 1 did not start")
        it = nil                  -- the only reference: now collectable
        collectgarbage()
        collectgarbage()
        for x = 1, 6 do open(dir, x) end
        ex:shutdown(true)
        assert.is_false(ran(dir, 6), "item 6 ran after the iterator went")
      end)
    end

    it("keeps at most buffersize items in flight", function ()
      local ex = pool(3)
      local dir = newdir(5)
      local it = umap(ex, task(dir, { "gate", "gate", "gate", "gate" }),
                      range(5), { buffersize = 2 })
      assert.is_truthy(await_file(dir .. "/ran1"), "item 1 did not start")
      assert.is_truthy(await_file(dir .. "/ran2"), "item 2 did not start")
      -- Nothing more is submitted before the loop takes an item.
      assert.is_false(ran(dir, 3), "item 3 ran past buffersize")
      open(dir, 2)
      assert_item(2, step(it))
      assert.is_truthy(await_file(dir .. "/ran3"), "item 3 did not start")
      assert.is_false(ran(dir, 4), "item 4 ran past buffersize")
      open(dir, 3)
      assert_item(3, step(it))
      open(dir, 1)
      assert_item(1, step(it))
      open(dir, 4)
      local got = {}
      for _ = 1, 2 do got[step(it)[1]] = true end
      assert.same({ [4] = true, [5] = true }, got)
      assert.same({ n = 0 }, step(it))
    end)

    it("with buffersize, raises an item's error and cancels the rest",
       function ()
      local ex = pool(1)
      local dir = newdir(6)
      local it = umap(ex, task(dir, { nil, "raise", "gate" }), range(6),
                      { buffersize = 3 })
      assert_item(1, step(it))
      assert.equal("boom 2", errof(it))
      assert.same({ n = 0 }, step(it))
      open(dir, 3)
      ex:shutdown(true)
      assert.is_false(ran(dir, 4), "item 4 ran after the map raised")
    end)

    it("with buffersize, raises TimeoutError counted from the map call",
       function ()
      local ex = pool(2)
      local dir = newdir(4)
      local it = umap(ex, task(dir, { "gate", nil, "gate", "gate" }),
                      range(4),
                      { buffersize = 2, timeout = 2 * helpers.QUICK })
      assert_item(2, step(it))
      local e = errof(it)
      assert.is_true(futures.is(e, futures.TimeoutError), tostring(e))
      assert.same({ n = 0 }, step(it))
      for x = 1, 4 do open(dir, x) end
      ex:shutdown(true)
      assert.is_false(ran(dir, 4), "item 4 ran after the map timed out")
    end)

    it("with buffersize, cancels what is in flight when collected",
       function ()
      local ex = pool(1)
      local dir = newdir(3)
      local it = umap(ex, task(dir, { "gate" }), range(3), { buffersize = 3 })
      assert.is_truthy(await_file(dir .. "/ran1"), "item 1 did not start")
      it = nil                  -- the only reference: now collectable
      collectgarbage()
      collectgarbage()
      for x = 1, 3 do open(dir, x) end
      ex:shutdown(true)
      assert.is_false(ran(dir, 3), "item 3 ran after the iterator went")
    end)

    it("counts items for a progress function", function ()
      local ex = pool(2)
      local calls = {}
      local seen = 0
      for _ in ex:map{ function (x) return x end, range(5), unordered = true,
                       progress = function (done, total)
                         calls[#calls + 1] = { done, total }
                       end } do
        seen = seen + 1
      end
      assert.equal(5, seen)
      assert.same({ 5, 5 }, calls[#calls])
    end)
  end)
end

describe("unordered map, options:", function ()
  it("rejects a unordered that is not a boolean", function ()
    local ex = helpers.pool(1)
    local e = errof(ex.map, ex, { tostring, { 1 }, unordered = 1 })
    assert.matches("bad argument #1 to 'map' %(field 'unordered' must be a "
                   .. "boolean%)", e)
  end)

  it("yields in input order with unordered = false", function ()
    local ex = helpers.pool(2)
    local n = 0
    for i, v in ex:map{ function (x) return x end, range(50),
                        unordered = false } do
      n = n + 1
      assert.equal(n, i)
      assert.equal(i, v)
    end
    assert.equal(50, n)
  end)
end)

describe("unordered map, process pool:", function ()
  it("fails with BrokenProcessPool when a worker dies, never hangs",
     function ()
    local ex = helpers.track(futures.process_pool(1))
    local dir = newdir(4)
    local it = ex:map{ function (x)
      if x == 2 then
        write_file(dir .. "/pid", tostring(futures.getpid()))
        assert(await_file(dir .. "/open2", LONG))
      end
      return x
    end, range(4), unordered = true, timeout = LONG }
    assert.same({ n = 2, 1, 1 }, step(it))
    local pid = math.tointeger(tonumber(await_file(dir .. "/pid")))
    assert.is_truthy(pid, "item 2 did not start")
    assert.is_true(futures.kill(pid, "SIGKILL"))
    local e = errof(it)
    assert.is_true(futures.is(e, futures.BrokenProcessPool), tostring(e))
  end)
end)

-- Chunks (issue 12): thread pools honour chunksize, and a long input is
-- batched on its own; the loop yields the same as one item per task.
for _, kind in ipairs{ "thread", "process" } do
  local function pool (n)
    if kind == "thread" then return helpers.pool(n) end
    return helpers.track(futures.process_pool(n))
  end

  describe("map chunks, " .. kind .. " pool:", function ()
    it("runs the items of one chunk in one worker, in input order",
       function ()
      local ex = pool(2)
      local rows = {}
      for i, x, who in ex:map{ function (x)
        return x, futures.thread_name() .. futures.getpid()
      end, range(10), chunksize = 5 } do
        rows[#rows + 1] = { i, x, who }
      end
      assert.equal(10, #rows)
      for i, r in ipairs(rows) do
        assert.equal(i, r[1])
        assert.equal(i, r[2])
        assert.equal(rows[i <= 5 and 1 or 6][3], r[3], "item " .. i)
      end
    end)

    for _, unordered in ipairs{ false, true } do
      local how = unordered and "unordered" or "ordered"
      it("keeps one, none and several values per item in a chunk ("
         .. how .. ")", function ()
        local ex = pool(2)
        -- Items 1..4 give one value each (a chunk answers without
        -- offsets until an item gives another count), 5 none, 6 three.
        local function f (x)
          if x == 5 then return end
          if x == 6 then return 6, nil, "six" end
          return x * 10
        end
        local got = {}
        for i, a, b, c in ex:map{ f, range(8), chunksize = 8,
                                  unordered = unordered } do
          got[i] = table.pack(a, b, c)
        end
        for x = 1, 8 do
          if x == 5 then assert.same({ n = 3 }, got[x])
          elseif x == 6 then assert.same({ n = 3, 6, nil, "six" }, got[x])
          else assert.same({ n = 3, x * 10 }, got[x]) end
        end
      end)

      it("raises an error after items of one value at its position ("
         .. how .. ")", function ()
        local ex = pool(1)
        local seen = {}
        local e = errof(function ()
          for i, v in ex:map{ function (x)
            if x == 4 then error("four", 0) end
            return -x
          end, range(6), chunksize = 6, unordered = unordered } do
            assert.equal(-i, v)
            seen[#seen + 1] = i
          end
        end)
        assert.equal("four", e)
        assert.same({ 1, 2, 3 }, seen)
      end)
    end

    if kind == "thread" then
      for _, unordered in ipairs{ false, true } do
        it("starts no further item of a running chunk once the map timed out ("
           .. (unordered and "unordered" or "ordered") .. ")", function ()
          local ex = pool(1)
          local dir = newdir(4)
          local it = ex:map{ task(dir, { "gate" }), range(4), chunksize = 4,
                             timeout = 2 * helpers.QUICK,
                             unordered = unordered }
          assert.is_truthy(await_file(dir .. "/ran1"), "item 1 did not start")
          local e = errof(it)
          assert.is_true(futures.is(e, futures.TimeoutError), tostring(e))
          open(dir, 1)
          ex:shutdown(true)
          assert.is_false(ran(dir, 2), "item 2 ran after the map timed out")
        end)
      end
    end

    it("batches a long input on its own and yields it in order",
       function ()
      local ex = pool(2)
      local n = 0
      for i, v, w in ex:map(function (x) return x + 1, x end, range(20000)) do
        n = n + 1
        assert.equal(n, i)
        assert.equal(i + 1, v)
        assert.equal(i, w)
      end
      assert.equal(20000, n)
    end)

    it("raises a long input's error at its own position", function ()
      local ex = pool(2)
      local n = 0
      local e = errof(function ()
        for i in ex:map(function (x)
          if x == 7777 then error({ at = x }) end
          return x
        end, range(10000)) do
          n = n + 1
          assert.equal(n, i)
        end
      end)
      assert.same({ at = 7777 }, e)
      assert.equal(7776, n)
    end)
  end)
end

describe("map chunks, process pool with max_tasks_per_child:", function ()
  it("keeps one item per task, so each item counts", function ()
    local ex = helpers.track(futures.process_pool{
      max_workers = 1, max_tasks_per_child = 1500 })
    local pids, n = {}, 0
    for _, pid in ex:map(function () return futures.getpid() end,
                         range(4500)) do
      pids[pid] = true
      n = n + 1
    end
    assert.equal(4500, n)
    -- 1500 tasks per worker process: three processes ran the items.
    assert.equal(3, helpers.size(pids))
  end)
end)
