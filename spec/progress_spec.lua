-- spec/progress_spec.lua: the progress option of map, as_completed and
-- wait (API.md §2): a function gets (done, total); true draws a line on
-- stderr only when it is a terminal (tested through a pseudo-terminal made
-- by script(1)), never mixed with printed lines, gone when the loop ends.

local futures = require "cfut"
local helpers = require "helpers"

local LONG = helpers.LONG
local errof, pool = helpers.errof, helpers.pool

after_each(helpers.cleanup)

local function double (x) return 2 * x end

-- A progress function and the (done, total) pairs it was called with.
local function recorder ()
  local calls = {}
  return function (done, total)
    calls[#calls + 1] = { done, total }
  end, calls
end

-- Assert that calls go from (first, total) up to (total, total), one by
-- one.
local function counts_up (calls, total, first)
  assert.is_true(#calls >= 1)
  for k, c in ipairs(calls) do
    assert.equal(total, c[2])
    assert.equal((first or 0) + k - 1, c[1])
  end
  assert.equal(total, calls[#calls][1])
end

describe("map{..., progress = fn}", function ()

  it("calls fn with (done, total) as items reach the loop", function ()
    local ex = pool(2)
    local fn, calls = recorder()
    local seen = {}
    for i, v in ex:map{ double, { 1, 2, 3, 4, 5 }, progress = fn } do
      -- the count includes the item the body has now
      assert.same({ i, 5 }, calls[#calls])
      seen[i] = v
    end
    assert.same({ 2, 4, 6, 8, 10 }, seen)
    counts_up(calls, 5)
  end)

  it("passes a nil total when an iterator function makes it unknown",
     function ()
    local ex = pool(2)
    local fn, calls = recorder()
    local k = 0
    local function gen () k = k + 1; if k <= 3 then return k end end
    for _ in ex:map{ double, gen, buffersize = 2, progress = fn } do end
    assert.same({ { 0 }, { 1 }, { 2 }, { 3 } }, calls)
  end)

  it("counts from the loop's view when map runs in chunks", function ()
    local ex = helpers.track(futures.process_pool(2))
    local fn, calls = recorder()
    local xs = {}
    for i = 1, 20 do xs[i] = i end
    for _ in ex:map{ double, xs, chunksize = 7, progress = fn } do end
    counts_up(calls, 20)
  end)

  it("keeps the iterator's description", function ()
    local ex = pool(1)
    local it = ex:map{ double, { 1 }, progress = function () end }
    assert.matches("^<map iterator at ", tostring(it))
    for _ in it do end
  end)

  it("passes a task's error on to the loop", function ()
    local ex = pool(1)
    local fn, calls = recorder()
    local e = errof(function ()
      for _ in ex:map{ function (x) if x == 2 then error("two", 0) end end,
                      { 1, 2, 3 }, progress = fn } do end
    end)
    assert.equal("two", e)
    assert.same({ { 0, 3 }, { 1, 3 } }, calls)
  end)

  it("rejects a progress value that is neither boolean nor function",
     function ()
    local ex = pool(1)
    local e = errof(function () return ex:map{ double, {}, progress = 1 } end)
    assert.matches("bad argument #1 to 'map' (field 'progress' must be a "
                   .. "boolean or a function)", e, 1, true)
  end)
end)

describe("as_completed with progress", function ()

  it("calls fn with (done, total) as futures are yielded", function ()
    local ex = pool(2)
    local fs = {}
    for i = 1, 4 do fs[i] = ex:submit(double, i) end
    local fn, calls = recorder()
    local n = 0
    for f in futures.as_completed(fs, LONG, { progress = fn }) do
      n = n + 1
      assert.same({ n, 4 }, calls[#calls])
      assert.is_true(f:done())
    end
    counts_up(calls, 4)
  end)

  it("rejects a progress value of the wrong type", function ()
    local e = errof(futures.as_completed, {}, nil, { progress = "yes" })
    assert.matches("bad argument #3 to '[%w.]*as_completed'", e)
    assert.matches("(field 'progress' must be a boolean or a function)", e,
                   1, true)
  end)
end)

describe("wait with progress", function ()

  it("calls fn with counts that rise to the total", function ()
    local ex = pool(2)
    local gate = helpers.gate()
    local fs = { ex:submit(helpers.gated, gate, 1), ex:submit(double, 2),
                 ex:submit(double, 3) }
    local fn, calls = recorder()
    local opener = futures.thread_pool(1)
    helpers.track(opener)
    -- opened once wait has seen the two quick ones done
    fs[2]:result(LONG)
    fs[3]:result(LONG)
    opener:submit(function (g) g:set_result(true) end, gate)
    local done, not_done = futures.wait(fs, LONG, nil, { progress = fn })
    assert.equal(3, #done)
    assert.equal(0, #not_done)
    assert.same({ 0, 3 }, calls[1])
    assert.same({ 3, 3 }, calls[#calls])
    for k = 2, #calls do
      assert.is_true(calls[k][1] > calls[k - 1][1])
    end
  end)

  it("answers sets with progress too", function ()
    local f = futures.future()
    f:set_result(1)
    local fn, calls = recorder()
    local done = futures.wait({ [f] = true }, 0, nil, { progress = fn })
    assert.same({ [f] = true }, done)
    assert.same({ { 0, 1 }, { 1, 1 } }, calls)
  end)
end)

-- {==================================================================
-- The line on a terminal
-- ===================================================================

-- What a terminal shows after 'raw': the lines, each as it ends up after
-- carriage returns and erase-to-end-of-line (ESC [ K).
local function screen (raw)
  local lines, cur, col = {}, {}, 0
  local i = 1
  while i <= #raw do
    local c = raw:sub(i, i)
    if c == "\r" then
      col = 0
    elseif c == "\n" then
      lines[#lines + 1] = table.concat(cur)
      cur, col = {}, 0
    elseif raw:sub(i, i + 2) == "\27[K" then
      for k = col + 1, #cur do cur[k] = nil end
      i = i + 2
    else
      for k = #cur + 1, col do cur[k] = " " end
      col = col + 1
      cur[col] = c
    end
    i = i + 1
  end
  if #cur > 0 then lines[#lines + 1] = table.concat(cur) end
  return lines
end

-- Run the Lua source 'src' with cfut, stdout and stderr on a terminal;
-- returns what the terminal received.
local function on_terminal (src)
  local dir = helpers.tmpdir()
  local script = dir .. "/prog.lua"
  helpers.write_file(script, src)
  local cmd = ("cd %s && timeout -k 2 %d script -qfec %s /dev/null"
               .. " </dev/null 2>&1"):format(
    helpers.shquote(os.getenv("CFUT_ROOT") or "."), LONG * 4,
    helpers.shquote(helpers.shquote(helpers.cfut_bin()) .. " "
                    .. helpers.shquote(script)))
  local p = assert(io.popen(cmd, "r"))
  local out = p:read("a")
  p:close()
  return out
end

-- The child: a map whose first task waits until the line was drawn
-- (Bar.draw is wrapped to open the gate), then prints; as_completed left
-- by break; wait; with lines printed between them.
local CHILD = [[
local futures = require "cfut"
local ex <close> = futures.thread_pool(2)
local drawn = futures.future()
local function task (x, gate)
  if gate then
    gate:result(60)
    print("task line " .. x)
  end
  return 2 * x
end
local xs = {}
for i = 1, 10 do xs[i] = i end
local it, s, c, bar = ex:map{ task, xs, { drawn, n = 10 }, progress = true }
local mt = getmetatable(bar)
local draw = mt.draw
mt.draw = function (self)
  draw(self)
  if not drawn:done() then drawn:set_result(true) end
end
for i, v in it, s, c, bar do print("item " .. i .. " " .. v) end
local fs = {}
for i = 1, 3 do fs[i] = ex:submit(task, i) end
for _ in futures.as_completed(fs, 60, { progress = true }) do
  print("first done")
  break
end
futures.wait(fs, 60, nil, { progress = true })
print("waited")
for _ in ex:map{ task, xs, progress = true } do end
print("end")
]]

describe("progress = true on a terminal", function ()

  it("draws a line while the loop waits and never mixes it with printed "
     .. "lines", function ()
    local raw = on_terminal(CHILD)
    -- the line was drawn: count, total and erase-to-end-of-line
    assert.truthy(raw:find("0/10   0%", 1, true), raw)
    assert.truthy(raw:find("\27[K", 1, true))
    local want = { "task line 1" }
    for i = 1, 10 do want[#want + 1] = ("item %d %d"):format(i, 2 * i) end
    want[#want + 1] = "first done"
    want[#want + 1] = "waited"
    want[#want + 1] = "end"
    -- what is left on the screen: the printed lines, whole, and nothing
    -- of a bar (the last map's line is gone too)
    assert.same(want, screen(raw))
  end)

  it("draws nothing when stderr is not a terminal", function ()
    local r = helpers.run([[
      local futures = require "cfut"
      local ex <close> = futures.thread_pool(2)
      for _ in ex:map{ function (x) return x end, { 1, 2, 3 },
                       progress = true } do end
      for _ in futures.as_completed({ ex:submit(print, "x") }, 60,
                                    { progress = true }) do end
      print("ok")
    ]])
    assert.equal(0, r.status)
    assert.equal("x\nok\n", r.stdout)
    assert.equal("", r.stderr)
  end)
end)

-- }==================================================================
