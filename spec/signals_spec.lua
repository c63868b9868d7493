-- spec/signals_spec.lua: signals and a closed stdout (issue 4, "Worker
-- death and signals", third bullet).  A child cfut runs a script with a
-- thread pool or a process pool; the spec signals it with kill and checks
-- that it exits with the conventional status, at once, with its workers
-- ended (their pids are written to files by the tasks and checked).
--
-- The behaviour checked (the choices made where API.md is silent):
-- - SIGINT during any wait raises "interrupted!" there, cancels queued
--   tasks, interrupts running ones; the script exits with status 1
--   (host_spec.lua checks result() on a thread pool, sleep without a
--   pool and a second Ctrl-C; process_pool_spec.lua result() on a
--   process pool; here: every other wait, both pools).
-- - SIGTERM is not caught, as in lua.c: the process dies of it (status
--   128 + 15); the kernel ends its worker processes (PR_SET_PDEATHSIG),
--   even those in the middle of a task.
-- - A closed stdout: a write to it ends the process with SIGPIPE (status
--   128 + 13, nothing on stderr), as lua.c would, whether the main script,
--   a thread worker or a process worker wrote (a process worker's SIGPIPE
--   death is passed on to its parent).

local futures = require "cfut"
local helpers = require "helpers"

local LONG, QUICK = helpers.LONG, helpers.QUICK
local read_file = helpers.read_file

-- Worker pids a failing spec found still running: killed after it, so
-- that a failure never leaves a task looping.
local strays = {}

after_each(function ()
  for i = #strays, 1, -1 do
    if helpers.alive(strays[i]) then pcall(futures.kill, strays[i], 9) end
    strays[i] = nil
  end
  helpers.cleanup()
end)

-- Tasks write marks (their pid) in the directory arg[1].
local prelude = helpers.MARKS

-- Start 'src' (after the prelude) with a fresh directory as arg[1];
-- return the handle and the directory once it has printed "ready".
local start = helpers.spawn_marked

local function pid_in (dir, name)
  return math.tointeger(tonumber(read_file(dir .. "/" .. name)))
end

-- Do all the processes in 'pids' end soon?
local function ended (pids)
  local ok = helpers.wait_until(function ()
    for _, pid in ipairs(pids) do
      if helpers.alive(pid) then return false end
    end
    return true
  end, 2 * QUICK + 1)
  if not ok then
    for _, pid in ipairs(pids) do strays[#strays + 1] = pid end
  end
  return ok
end

-- Send 'sig'; return the exit status and the seconds it took.
local function signal (h, sig)
  local t0 = futures.monotonic()
  assert.is_true(h:signal(sig))
  local status = h:wait(LONG)
  return status, futures.monotonic() - t0
end

-- The script body for a wait of 'kind' on a pool made by 'make': task a
-- sleeps, task b runs Lua without end, a third task stays queued.
local function waiting (make, kind)
  local pre, wait = "", ({
    result = "a:result()",
    exception = "a:exception()",
    wait = "futures.wait({ a, b })",
    as_completed = "for _ in futures.as_completed({ a, b }) do end",
    map = "for _ in m do end",
    shutdown = "ex:shutdown(true)",
    sleep = "futures.sleep(30)",
  })[kind]
  if kind == "map" then
    pre = [[
      m = ex:map(function (x) mark("m" .. x) futures.sleep(30) end, { 1 })
      while not marked("m1") do futures.sleep(0.005) end
    ]]
  end
  return string.format([[
    local ex = futures.%s(%d)
    local a = ex:submit(function () mark("a") futures.sleep(30) end)
    local b = ex:submit(function () mark("b") while true do local _ = {} end
                        end)
    while not (marked("a") and marked("b")) do futures.sleep(0.005) end
    local m
    %s
    ex:submit(function () mark("queued") end)
    print("ready") io.stdout:flush()
    %s
    print("not reached")
  ]], make, kind == "map" and 3 or 2, pre, wait)
end

for _, make in ipairs{ "thread_pool", "process_pool" } do

  describe("SIGINT to a script with a " .. make, function ()

    -- result() is in host_spec.lua and process_pool_spec.lua.
    for _, kind in ipairs{ "exception", "wait", "as_completed", "map",
                           "shutdown", "sleep" } do
      do
        it("interrupts " .. kind .. ", exits with 1 and ends the workers",
           function ()
          local h, dir = start(waiting(make, kind))
          local status, took = signal(h, "SIGINT")
          assert.equal(1, status, h:stderr())
          assert.is_true(took < 2 * QUICK + 1, "took " .. took .. " s")
          assert.matches("^%S*cfut: [^\n]*interrupted!\n", h:stderr())
          assert.equal("ready\n", h:stdout())
          local pids = { pid_in(dir, "a"), pid_in(dir, "b") }
          if kind == "map" then pids[3] = pid_in(dir, "m1") end
          assert.is_true(ended(pids), "a worker still runs")
          assert.is_nil(read_file(dir .. "/queued"), "the queued task ran")
        end)
      end
    end

  end)

  describe("SIGTERM to a script with a " .. make, function ()

    it("ends it with status 143 and ends the workers in their tasks",
       function ()
      local h, dir = start(waiting(make, "result"))
      local pids = { pid_in(dir, "a"), pid_in(dir, "b") }
      local status, took = signal(h, "SIGTERM")
      assert.equal(128 + 15, status, h:stderr())
      assert.is_true(took < 2 * QUICK + 1, "took " .. took .. " s")
      -- (The shell around it may say "Terminated"; cfut says nothing.)
      assert.equal("", (h:stderr():gsub("^Terminated\n$", "")))
      assert.is_true(ended(pids), "a worker still runs")
    end)

  end)

end

-- helpers.spawn options that run the stock lua5.4.  Under a sanitizer it
-- needs the sanitizer's runtime preloaded to load the sanitized cfut.so,
-- and only it (sh and timeout crash with TSan's): a wrapper script sets
-- LD_PRELOAD and execs lua5.4, keeping the pid.
local function lua54 ()
  if not helpers.sanitized then return { prog = "lua5.4" } end
  local cpath = os.getenv("LUA_CPATH") or ""
  local lib = cpath:find("tsan", 1, true) and "libtsan.so" or "libasan.so"
  local p = assert(io.popen("gcc -print-file-name=" .. lib))
  local path = p:read("l")
  p:close()
  local wrapper = helpers.tmpdir() .. "/lua5.4"
  helpers.write_file(wrapper, "#!/bin/sh\nLD_PRELOAD=" .. helpers.shquote(path)
                              .. " exec lua5.4 \"$@\"\n")
  assert(os.execute("chmod +x " .. helpers.shquote(wrapper)))
  return { prog = wrapper }
end

describe("SIGTERM and SIGKILL to the stock lua5.4 with a process pool",
         function ()

  for _, sig in ipairs{ "SIGTERM", "SIGKILL" } do
    it("end its busy workers too (" .. sig .. ")", function ()
      local h, dir = start(waiting("process_pool", "result"), lua54())
      local pids = { pid_in(dir, "a"), pid_in(dir, "b") }
      local status = signal(h, sig)
      assert.equal(128 + (sig == "SIGTERM" and 15 or 9), status)
      assert.is_true(ended(pids), "a worker still runs")
    end)
  end

end)


describe("a closed stdout (cfut script | head -1)", function ()

  -- Run src under cfut with its stdout piped into head -1; return the
  -- exit status, what head printed, stderr, the marks directory.
  local function piped (src, args)
    local dir = helpers.tmpdir()
    local script, out, err, rc = dir .. "/script.lua", dir .. "/out",
                                 dir .. "/err", dir .. "/rc"
    helpers.write_file(script, prelude .. src)
    local q = helpers.shquote
    local words = { "timeout", "-k", "2", tostring(LONG * 2),
                    q(helpers.cfut_bin()), q(script), q(dir) }
    for _, a in ipairs(args or {}) do words[#words + 1] = q(a) end
    local cmd = "(" .. table.concat(words, " ") .. " 2>" .. q(err)
                .. "; echo $? >" .. q(rc) .. ") | head -1 >" .. q(out)
    os.execute(cmd)
    return tonumber(read_file(rc)), read_file(out), read_file(err), dir
  end

  -- Tasks that mark their pid, then print many lines.
  local printers = [=[
    local ex = futures[arg[2]](2)
    local fs = {}
    for i = 1, 4 do
      fs[i] = ex:submit(function (k)
        mark("t" .. k)
        for j = 1, 1e6 do print(("line %d of task %d"):format(j, k)) end
      end, i)
    end
    for _, f in ipairs(fs) do f:result() end
    io.stderr:write("all tasks finished\n")
  ]=]

  for _, make in ipairs{ "thread_pool", "process_pool" } do
    it("ends the process with SIGPIPE when " .. make .. " workers print",
       function ()
      local status, out, err, dir = piped(printers, { make })
      assert.equal(128 + 13, status, err)
      assert.matches("^line 1 of task %d\n$", out)
      assert.equal("", err)
      local pids = {}
      for i = 1, 4 do pids[#pids + 1] = pid_in(dir, "t" .. i) end
      assert.is_true(ended(pids), "a worker still runs")
    end)
  end

  it("ends busy process workers when the main script's print fails",
     function ()
    local status, out, err, dir = piped([[
      local ex = futures.process_pool(2)
      ex:submit(function () mark("a") futures.sleep(30) end)
      ex:submit(function () mark("b") while true do local _ = {} end end)
      while not (marked("a") and marked("b")) do futures.sleep(0.005) end
      for i = 1, 1e7 do print("main line " .. i) end
    ]])
    assert.equal(128 + 13, status, err)
    assert.equal("main line 1\n", out)
    assert.equal("", err)
    assert.is_true(ended{ pid_in(dir, "a"), pid_in(dir, "b") },
                   "a worker still runs")
  end)

end)
