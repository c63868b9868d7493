-- spec/process_pool_spec.lua: futures.process_pool (API.md §2, §3, §4):
-- worker processes, what crosses to them, the executor methods and the
-- waiting functions on a process pool, and what happens when a worker
-- dies, misbehaves, or the parent is interrupted.
--
-- Futures cannot cross to another process, so tasks and the spec meet
-- through files (helpers.write_file / await_file / fgate): a task writes a
-- mark once it really runs in its worker, and blocks on a file gate that
-- the spec (or cleanup) opens.

local futures = require "cfut"
local helpers = require "helpers"

local LONG, QUICK = helpers.LONG, helpers.QUICK
local errof = helpers.errof
local write_file, read_file = helpers.write_file, helpers.read_file
local await_file = helpers.await_file

local BROKEN = "A process in the process pool was terminated abruptly "
               .. "while the future was running or pending."

after_each(helpers.cleanup)

-- The behaviour specs run against futures.mpi_pool too: mpi_pool_spec.lua
-- (spawn mode) and mpi_pool_static_spec.lua (static mode, under mpiexec)
-- load this file again with CFUT_SPEC_POOL = "mpi_pool" (issue 9).  The
-- parts about local worker processes themselves (their count, pids,
-- descriptors, the hosts, signals) run for the process pool only.
local POOL = CFUT_SPEC_POOL or "process_pool"
local BROKENCLS = POOL == "mpi_pool" and "BrokenMPIPool" or "BrokenProcessPool"
local PROCESS_ONLY = POOL == "process_pool"

-- Static mode: mpi_pool_static_spec.lua runs this file on rank 0 under
-- mpiexec, where the pool's workers are the job's other ranks.  A case
-- that cannot hold there is reported as pending, with the reason.
local STATIC = POOL == "mpi_pool" and require("cfut.mpi").info().mode == "static"
local KILLS = "it kills a worker, and under mpiexec a dead rank ends the "
              .. "whole job (docs/mpi.md)"
local STAYS = "worker ranks do not exit with a pool: they serve the next "
              .. "one until rank 0's script ends"

-- it(name, fn), but pending in static mode, saying why.
local function it_spawned (why, name, fn)
  if STATIC then
    pending(name .. " [not under mpiexec: " .. why .. "]")
  else
    it(name, fn)
  end
end

-- futures.process_pool(arg), shut down by cleanup().
local function pool (arg)
  return helpers.track(futures[POOL](arg))
end

--[[
A task: write this worker's pid to the file 'mark', wait for the file gate
at 'gate', then return v.
]]
local function held (mark, gate, v)
  write_file(mark, tostring(futures.getpid()))
  assert(await_file(gate, LONG), "the gate was not opened")
  return v
end

--[[
Submit held(..., v) to ex and wait until it runs in a worker.  Returns
its future and the worker's pid.
]]
local function start_held (ex, gate, v)
  local mark = helpers.tmpdir() .. "/pid"
  local f = ex:submit(held, mark, gate.path, v)
  local pid = await_file(mark)
  assert(pid, "the held task did not start")
  return f, math.tointeger(tonumber(pid))
end

-- A task's pid, as a task.
local function getpid ()
  return futures.getpid()
end

-- Wait until process 'pid' is gone: exited and reaped by this process.
local function reaped (pid)
  return helpers.wait_until(function ()
    return helpers.proc_state(pid) == nil
  end)
end

local function assert_broken (e, message)
  assert.is_true(futures.is(e, futures.BrokenProcessPool), tostring(e))
  assert.is_true(futures.is(e, futures.BrokenExecutor))
  assert.equal(BROKENCLS, e.name)
  assert.equal(BROKENCLS .. ": " .. e.message, tostring(e))
  if message then assert.equal(message, e.message) end
end

-- The same helpers, for a body run by helpers.in_child.
local CHILD_PRELUDE = [[
    local function pool (arg)
      return helpers.track(futures.process_pool(arg))
    end
    local function getpid () return futures.getpid() end
    local function assert_broken (e, message)
      assert.is_true(futures.is(e, futures.BrokenProcessPool), tostring(e))
      assert.is_true(futures.is(e, futures.BrokenExecutor))
      assert.equal("BrokenProcessPool", e.name)
      assert.equal("BrokenProcessPool: " .. e.message, tostring(e))
      if message then assert.equal(message, e.message) end
    end
]]

-- What a failing initializer writes to stderr: its error and traceback.
local function assert_init_report (err)
  assert.matches("cfut: exception in initializer:\n[^\n]*: init failed\n"
                 .. "stack traceback:\n", err)
end

-- What this process has open and runs: the file descriptors and the
-- child processes.
local function snapshot ()
  -- Let pools that earlier specs dropped go first (making a pool reaps
  -- those that are shut down and collected), so that a descriptor they
  -- free cannot hide one that leaks here.
  collectgarbage()
  collectgarbage()
  futures.thread_pool(1):shutdown()
  collectgarbage()
  collectgarbage()
  return { fds = helpers.fds(), kids = helpers.children() }
end

-- The children this process has now that it did not have at 'snap'.
local function new_children (snap)
  return helpers.missing(helpers.children(), snap.kids)
end

local function assert_nothing_left (snap)
  assert.same({}, helpers.missing(helpers.fds(), snap.fds),
              "file descriptors left open")
  assert.same({}, new_children(snap), "child processes left")
end

-- Collect every row of a map iterator: rows[k] = table.pack(i, ...).
local function rows_of (it, s, c)
  local rows = {}
  while true do
    local r = table.pack(it(s, c))
    if r[1] == nil then break end
    rows[#rows + 1] = r
    c = r[1]
  end
  return rows
end

-- Does a future stay queued (neither running nor done) for a while?
-- (Bounded: a short poll that is expected to run out.)
local function stays_pending (f)
  return not helpers.wait_until(function ()
    return f:running() or f:done()
  end, QUICK / 5)
end

-- A shell command that writes 'bytes' to the worker's socket (fd 3, which
-- a shell started by the task inherits), then does what 'after' adds.
local function to_fd3 (bytes, after)
  local esc = bytes:gsub(".", function (c)
    return string.format("\\0%03o", c:byte())
  end)
  return "printf '%b' '" .. esc .. "' >&3" .. (after or "")
end

-- A frame as the worker sends it: u64 length (LE), type, body.
local function frame (ty, body)
  return string.pack("<I8", #body + 1) .. ty .. body
end

local function python3 ()
  for _, p in ipairs{ "/usr/bin/python3", "/usr/local/bin/python3" } do
    if read_file(p) then return p end
  end
  return nil
end


if PROCESS_ONLY then
describe("futures.process_pool", function ()

  it("runs tasks in worker processes, not in this one", function ()
    local ex = pool(2)
    local pid = ex:submit(futures.getpid):result(LONG)
    assert.equal("integer", math.type(pid))
    assert.are_not.equal(futures.getpid(), pid)
    assert.is_true(helpers.alive(pid))
  end)

  it("describes itself in tostring", function ()
    local ex = pool(1)
    assert.matches("^<ProcessPoolExecutor at 0x%x+>$", tostring(ex))
  end)

  it("runs at most cpu_count() workers by default", function ()
    local snap = snapshot()
    local ex = pool()
    local n = futures.cpu_count()
    local gate = helpers.fgate()
    local dir = helpers.tmpdir()
    local fs = {}
    for i = 1, n + 1 do
      fs[i] = ex:submit(held, dir .. "/" .. i, gate.path, i)
    end
    local started = helpers.wait_until(function ()
      local k = 0
      for i = 1, n + 1 do
        if read_file(dir .. "/" .. i) then k = k + 1 end
      end
      return k == n and k
    end)
    assert.equal(n, started)
    assert.equal(n, #new_children(snap))
    gate:open()
    for i, f in ipairs(fs) do assert.equal(i, f:result(LONG)) end
  end)

  it("takes the number of workers as its argument", function ()
    local snap = snapshot()
    local ex = pool(3)
    local gate = helpers.fgate()
    local pids = {}
    for i = 1, 3 do
      local _, pid = start_held(ex, gate, i)
      pids[pid] = true
    end
    assert.equal(3, helpers.size(pids))
    local more = ex:submit(getpid)
    assert.is_false(more:done())
    assert.equal(3, #new_children(snap))
    gate:open()
    assert.is_true(pids[more:result(LONG)])
  end)

  it("takes max_workers in an options table", function ()
    local snap = snapshot()
    local ex = pool{ max_workers = 2 }
    local gate = helpers.fgate()
    local _, p1 = start_held(ex, gate, 1)
    local _, p2 = start_held(ex, gate, 2)
    assert.are_not.equal(p1, p2)
    local more = ex:submit(getpid)
    assert.is_false(more:done())
    assert.equal(2, #new_children(snap))
    gate:open()
    local p3 = more:result(LONG)
    assert.is_true(p3 == p1 or p3 == p2)
  end)

  for _, bad in ipairs{ 0, -1, 1.5, "x" } do
    local shown = type(bad) == "string" and string.format("%q", bad)
                  or tostring(bad)

    it("rejects " .. shown .. " workers with an argument error", function ()
      local e = errof(function () return futures.process_pool(bad) end)
      assert.is_string(e)
      assert.matches("bad argument #1 to '[%w_.]*process_pool' %(.+%)$", e)
    end)

    it("rejects max_workers = " .. shown .. " with an argument error "
       .. "naming the field", function ()
      local e = errof(function ()
        return futures.process_pool{ max_workers = bad }
      end)
      assert.is_string(e)
      assert.matches("bad argument #1 to '[%w_.]*process_pool' "
                     .. "%(.*max_workers.*%)$", e)
    end)

    it("rejects max_tasks_per_child = " .. shown .. " with an argument "
       .. "error naming the field", function ()
      local e = errof(function ()
        return futures.process_pool{ max_tasks_per_child = bad }
      end)
      assert.is_string(e)
      assert.matches("bad argument #1 to '[%w_.]*process_pool' "
                     .. "%(.*max_tasks_per_child.*%)$", e)
    end)
  end

  it("rejects an initializer that is not a function", function ()
    local e = errof(function ()
      return futures.process_pool{ max_workers = 1, initializer = 42 }
    end)
    assert.is_string(e)
    assert.matches("bad argument #1 to '[%w_.]*process_pool' "
                   .. "%(.*initializer.*%)$", e)
  end)

  it("says why it cannot be made when no file descriptor is left",
     function ()
    -- fds 0-2 are open: with a limit of 4 the pool's pipe cannot be made
    local r = helpers.run([[
      ulimit -n 4 || exit 3
      exec "$CFUT_BIN" -e '
        local futures = require "cfut"
        local ok, e = pcall(futures.process_pool, {max_workers = 1,
          initializer = function () end})
        io.write(tostring(ok), " ", tostring(e))']], { prog = "/bin/sh" })
    assert.equals("", r.stderr)
    assert.matches("^false .*cannot make a pool: Too many open files$",
                   r.stdout)
  end)

  it("rejects an option it does not know, naming it", function ()
    local e = errof(function ()
      return futures.process_pool{ thread_name_prefix = "x" }
    end)
    assert.is_string(e)
    assert.matches("bad argument #1 to '[%w_.]*process_pool' "
                   .. "%(.*thread_name_prefix.*%)$", e)
  end)

  it("starts workers on demand only", function ()
    local snap = snapshot()
    local ex = pool(4)
    local pids = {}
    for _ = 1, 8 do pids[ex:submit(getpid):result(LONG)] = true end
    assert.equal(1, helpers.size(pids))
    assert.equal(1, #new_children(snap))
  end)

  it("starts another worker when the running ones are busy", function ()
    local ex = pool(4)
    local gate = helpers.fgate()
    local busy, busy_pid = start_held(ex, gate, "busy")
    local other = ex:submit(getpid):result(LONG)
    assert.are_not.equal(busy_pid, other)
    assert.is_false(busy:done())
    gate:open()
    assert.equal("busy", busy:result(LONG))
  end)

  it("keeps a worker's Lua state for the worker's lifetime", function ()
    local ex = pool(1)
    ex:submit(function () KEPT_GLOBAL = "kept" end):result(LONG)
    assert.equal("kept",
                 ex:submit(function () return KEPT_GLOBAL end):result(LONG))
    assert.is_nil(rawget(_G, "KEPT_GLOBAL"))
    local other = pool(1)
    assert.is_nil(other:submit(function () return KEPT_GLOBAL end)
                       :result(LONG))
  end)

  it("gives tasks a copy of the main script's globals they read", function ()
    PPSPEC_MAIN_GLOBAL = "main"
    finally(function () PPSPEC_MAIN_GLOBAL = nil end)
    local ex = pool(1)
    assert.equal("main", ex:submit(function ()
      local seen = PPSPEC_MAIN_GLOBAL
      PPSPEC_MAIN_GLOBAL = "worker"     -- stays in the worker
      return seen
    end):result(LONG))
    assert.equal("main", PPSPEC_MAIN_GLOBAL)
  end)

  it("runs the initializer once in each worker, with initargs", function ()
    local ex = pool{
      max_workers = 2,
      initializer = function (a, b)
        INIT_CALLS = (INIT_CALLS or 0) + 1
        INIT_ARGS = a .. b
      end,
      initargs = { "x", "y" },
    }
    local gate = helpers.fgate()
    local gpath = gate.path
    local dir = helpers.tmpdir()
    local function report (mark)
      if mark then held(mark, gpath) end
      return INIT_CALLS, INIT_ARGS, futures.getpid()
    end
    local a = ex:submit(report, dir .. "/a")
    local b = ex:submit(report, dir .. "/b")
    assert.is_truthy(await_file(dir .. "/a"))
    assert.is_truthy(await_file(dir .. "/b"))
    gate:open()
    local pids = {}
    for _, f in ipairs{ a, b } do
      local calls, args, pid = f:result(LONG)
      assert.equal(1, calls)
      assert.equal("xy", args)
      pids[pid] = true
    end
    assert.equal(2, helpers.size(pids))
    for _ = 1, 6 do
      local calls, args, pid = ex:submit(report):result(LONG)
      assert.equal(1, calls)
      assert.equal("xy", args)
      assert.is_true(pids[pid])
    end
  end)

  -- A failing initializer reports itself on stderr (the worker's): these
  -- run in a child (helpers.in_child), which keeps the report out of
  -- busted's output and lets the spec check it.
  it("fails the futures with BrokenProcessPool when the initializer fails",
     function ()
    local err = helpers.in_child(CHILD_PRELUDE .. [[
    local ex = pool{
      max_workers = 1,
      initializer = function () error("init failed") end,
    }
    local f = ex:submit(getpid)
    local g = ex:submit(getpid)
    local e = errof(f.result, f, LONG)
    assert_broken(e)
    assert.matches("initializer", e.message)
    assert.is_true(f:done())
    assert.is_false(f:cancelled())
    local e2 = errof(g.result, g, LONG)
    assert_broken(e2, e.message)
    ]])
    assert_init_report(err)
  end)

  it("raises the initializer's BrokenProcessPool at submit once broken",
     function ()
    local err = helpers.in_child(CHILD_PRELUDE .. [[
    local ex = pool{
      max_workers = 1,
      initializer = function () error("init failed") end,
    }
    local f = ex:submit(getpid)
    local e1 = errof(f.result, f, LONG)
    local e2 = errof(ex.submit, ex, getpid)
    assert_broken(e2, e1.message)
    assert.equal(tostring(e1), tostring(e2))
    ]])
    assert_init_report(err)
  end)

  it("replaces a worker after max_tasks_per_child tasks and uses the "
     .. "replacement", function ()
    local ex = pool{ max_workers = 1, max_tasks_per_child = 2 }
    local pids = {}
    for i = 1, 5 do pids[i] = ex:submit(getpid):result(LONG) end
    assert.equal(pids[1], pids[2])
    assert.equal(pids[3], pids[4])
    assert.are_not.equal(pids[1], pids[3])
    assert.are_not.equal(pids[3], pids[5])
    assert.are_not.equal(pids[1], pids[5])
    -- The retired workers are reaped; the one that has taken one task of
    -- its two still serves.
    assert.is_true(reaped(pids[1]), "worker " .. pids[1] .. " not reaped")
    assert.is_true(reaped(pids[3]), "worker " .. pids[3] .. " not reaped")
    assert.is_true(helpers.alive(pids[5]))
  end)

  it("replaces workers after max_tasks_per_child tasks submitted at once",
     function ()
    local snap = snapshot()
    local ex = pool{ max_workers = 2, max_tasks_per_child = 1 }
    local fs = {}
    for i = 1, 6 do fs[i] = ex:submit(getpid) end
    local pids = {}
    for i = 1, 6 do pids[fs[i]:result(LONG)] = true end
    assert.equal(6, helpers.size(pids))
    ex:shutdown()
    assert_nothing_left(snap)
  end)

  it("runs the initializer in every replacement worker", function ()
    local ex = pool{
      max_workers = 1, max_tasks_per_child = 1,
      initializer = function (v) INIT_CALLS = (INIT_CALLS or 0) + 1
                                 INIT_VALUE = v end,
      initargs = { "v" },
    }
    local pids = {}
    for _ = 1, 3 do
      local calls, v, pid = ex:submit(function ()
        return INIT_CALLS, INIT_VALUE, futures.getpid()
      end):result(LONG)
      assert.equal(1, calls)
      assert.equal("v", v)
      pids[pid] = true
    end
    assert.equal(3, helpers.size(pids))
  end)

  it("gives workers the package.path and package.cpath of the main script",
     function ()
    local dir = helpers.tmpdir()
    write_file(dir .. "/ppspec_module.lua",
               "return { answer = 42 }\n")
    local saved = package.path
    package.path = dir .. "/?.lua;" .. saved
    finally(function () package.path = saved end)
    local ex = pool(1)
    local answer, path, cpath = ex:submit(function ()
      return require("ppspec_module").answer, package.path, package.cpath
    end):result(LONG)
    assert.equal(42, answer)
    assert.equal(dir .. "/?.lua;" .. saved, path)
    assert.equal(package.cpath, cpath)
  end)

  it("leaves no file descriptor and no child process behind after shutdown",
     function ()
    local snap = snapshot()
    local ex = futures.process_pool(2)
    local gate = helpers.fgate()
    local a = start_held(ex, gate, "a")
    local b = start_held(ex, gate, "b")
    assert.equal(2, #new_children(snap))
    gate:open()
    assert.equal("a", a:result(LONG))
    assert.equal("b", b:result(LONG))
    ex:shutdown()
    assert_nothing_left(snap)
  end)

  describe("with a worker that dies", function ()

    it("fails the running task with BrokenProcessPool when its worker is "
       .. "killed", function ()
      local ex = pool(1)
      local gate = helpers.fgate()
      local f, pid = start_held(ex, gate)
      assert.is_true(futures.kill(pid, "SIGKILL"))
      local e = f:exception(LONG)
      assert_broken(e, BROKEN)
      assert.is_true(f:done())
      local e2 = errof(ex.submit, ex, getpid)
      assert_broken(e2, BROKEN)
      assert.is_true(reaped(pid), "worker " .. pid .. " not reaped")
    end)

    it("breaks the pool when an idle worker is killed", function ()
      local ex = pool(2)
      local pid = ex:submit(getpid):result(LONG)
      assert.is_true(futures.kill(pid, "SIGKILL"))
      assert.is_true(reaped(pid), "worker " .. pid .. " not reaped")
      local e = errof(ex.submit, ex, getpid)
      assert_broken(e, BROKEN)
    end)

    it("fails every running and queued future when a worker is killed "
       .. "while others have queued work", function ()
      local snap = snapshot()
      local ex = pool(2)
      local gate = helpers.fgate()
      local a, pa = start_held(ex, gate, "a")
      local b, pb = start_held(ex, gate, "b")
      local dir = helpers.tmpdir()
      local fs = { a, b }
      for i = 3, 6 do
        fs[i] = ex:submit(held, dir .. "/" .. i, gate.path, i)
      end
      assert.is_true(futures.kill(pa, "SIGKILL"))
      local done, not_done = futures.wait(fs, LONG)
      assert.equal(6, #done)
      assert.equal(0, #not_done)
      for _, f in ipairs(fs) do
        assert_broken(f:exception(0), BROKEN)
      end
      assert.is_true(reaped(pa), "worker " .. pa .. " not reaped")
      assert.is_true(reaped(pb), "worker " .. pb .. " not reaped")
      assert_broken(errof(ex.submit, ex, getpid), BROKEN)
      local took = helpers.timed(ex.shutdown, ex)
      assert.is_true(took < QUICK, "shutdown took " .. took .. " s")
      assert_nothing_left(snap)
    end)

    it("fails the futures of a worker that exits from C code", function ()
      local ex = pool(1)
      -- glibc's exit, called as if it were a Lua C function (its status is
      -- then garbage: only the death matters).
      local f = ex:submit(function ()
        local exit = assert(package.loadlib("libc.so.6", "exit"))
        exit()
        return "still here"
      end)
      local ok, r = pcall(f.result, f, LONG)
      assert.is_false(ok, tostring(r))
      assert_broken(r, BROKEN)
      assert_broken(errof(ex.submit, ex, getpid), BROKEN)
    end)

    it("fails the futures of a worker whose socket is shut down", function ()
      -- make test installs Debian's python3 for this.
      local py = python3()
      assert.is_string(py, "no /usr/bin/python3 (make setup installs it)")
      local ex = pool(1)
      local gate = helpers.fgate()
      local pid = ex:submit(getpid):result(LONG)
      local cmd = helpers.shquote(py) .. " -c 'import socket; "
                  .. "socket.socket(fileno=3).shutdown(socket.SHUT_RDWR)'"
      local f = ex:submit(function (c, g)
        if not os.execute(c) then return "python3 failed" end
        assert(await_file(g, LONG))
        return "not noticed"
      end, cmd, gate.path)
      local e = f:exception(LONG)
      assert_broken(e, BROKEN)
      assert.is_true(reaped(pid), "worker " .. pid .. " not reaped")
    end)

    it("fails a chunked map whose worker is killed", function ()
      local ex = pool(1)
      local gpath = helpers.fgate().path
      local mark = helpers.tmpdir() .. "/pid"
      local it, s, c = ex:map{ function (x)
        if x == 2 then held(mark, gpath) end
        return x
      end, { 1, 2, 3, 4, 5, 6 }, chunksize = 3, timeout = LONG }
      local pid = math.tointeger(tonumber(await_file(mark)))
      assert.is_truthy(pid, "item 2 did not start")
      assert.is_true(futures.kill(pid, "SIGKILL"))
      local e = errof(function () for _ in it, s, c do end end)
      assert_broken(e, BROKEN)
    end)

    it("ends a task that calls os.exit with an error, keeping the worker",
       function ()
      local ex = pool(1)
      local pid = ex:submit(getpid):result(LONG)
      local f = ex:submit(function () os.exit(3) end)
      local e = f:exception(LONG)
      assert.is_string(e)
      assert.matches("os%.exit%(3%) called in a worker", e)
      assert.equal(pid, ex:submit(getpid):result(LONG))
    end)
  end)

  describe("with a worker that sends a malformed message", function ()

    -- Each case: what the task writes to its socket, and the reason the
    -- parent must give.
    local cases = {
      { "garbage bytes", "garbage!garbage!garbage!",
        "bad frame length %d+" },
      { "a frame of length 0", string.pack("<I8", 0) .. "r",
        "bad frame length 0" },
      { "a frame longer than any allowed", string.pack("<I8", 1 << 62) .. "r",
        "bad frame length %d+" },
      { "a frame of an unknown type", frame("z", ""),
        "bad frame type 0x7a" },
      { "a result for a task it was not given",
        frame("r", string.pack("<I8 B I4", 77, 0, 0)),
        "result frame does not match its task" },
      { "a result frame too short to hold its header",
        frame("r", "\0\0\0"), "unexpected result frame" },
      { "a result whose traceback overruns the frame",
        frame("r", string.pack("<I8 B I4", 0, 1, 1000) .. "tb"),
        "result frame does not match its task" },
    }
    for _, case in ipairs(cases) do
      local what, bytes, reason = case[1], case[2], case[3]
      it("breaks the pool with a clear error on " .. what, function ()
        local ex = pool(1)
        local gate = helpers.fgate()
        local mark = helpers.tmpdir() .. "/pid"
        -- The pool's first task, so its id is 0.
        local f = ex:submit(function (cmd, m, g)
          write_file(m, tostring(futures.getpid()))
          os.execute(cmd)
          assert(await_file(g, LONG))
          return "answered"
        end, to_fd3(bytes), mark, gate.path)
        local pid = math.tointeger(tonumber(await_file(mark)))
        local e = f:exception(LONG)
        assert_broken(e)
        assert.matches("^malformed message from worker " .. pid .. ": "
                       .. reason, e.message)
        assert_broken(errof(ex.submit, ex, getpid), e.message)
        assert.is_true(reaped(pid), "worker " .. pid .. " not reaped")
      end)
    end

    it("leaves no file descriptor and no child process behind", function ()
      local snap = snapshot()
      local ex = pool(2)
      local gate = helpers.fgate()
      local _, other = start_held(ex, gate, "other")
      local f = ex:submit(function (cmd) os.execute(cmd) end,
                          to_fd3("garbage!garbage!garbage!"))
      assert_broken(f:exception(LONG))
      assert.is_true(reaped(other), "worker " .. other .. " not reaped")
      ex:shutdown()
      assert_nothing_left(snap)
    end)

    it("breaks the pool with a clear error on a truncated frame", function ()
      local ex = pool(1)
      local f = ex:submit(function (cmd) os.execute(cmd) end,
                          to_fd3(string.pack("<I8", 100) .. "r\0\0",
                                 "; kill -9 " .. "$PPID"))
      local e = f:exception(LONG)
      assert_broken(e)
      assert.matches("^malformed message from worker %d+: truncated frame",
                     e.message)
    end)

    it("breaks the pool with a clear error on a result that does not "
       .. "decode", function ()
      local ex = pool(1)
      local gate = helpers.fgate()
      local f = ex:submit(function (cmd, g)
        os.execute(cmd)
        assert(await_file(g, LONG))
      end, to_fd3(frame("r", string.pack("<I8 B I4", 0, 0, 0)
                                 .. "\255\254garbage")), gate.path)
      local e = f:exception(LONG)
      assert_broken(e)
      assert.matches("^malformed message from worker %d+: ", e.message)
      assert_broken(errof(ex.submit, ex, getpid), e.message)
    end)
  end)
end)
end


describe("Executor:submit", function ()

  it("returns every value and keeps integers and floats apart", function ()
    local ex = pool(1)
    local r = table.pack(ex:submit(function (a, b)
      return a + b, a / b, nil, "s"
    end, 3, 2):result(LONG))
    assert.same({ n = 4, 5, 1.5, nil, "s" }, r)
    assert.equal("integer", math.type(r[1]))
    assert.equal("float", math.type(r[2]))
  end)

  it("passes its extra arguments to the task, nils included", function ()
    local ex = pool(1)
    local r = table.pack(ex:submit(function (...)
      return select("#", ...), ...
    end, nil, 2, nil):result(LONG))
    assert.same({ n = 4, 3, nil, 2, nil }, r)
  end)

  it("copies special floats, binary strings and nested tables both ways",
     function ()
    local ex = pool(1)
    local cyc = { name = "cyc" }
    cyc.self = cyc
    local shared = { 1 }
    local arg = { a = shared, b = shared, cyc = cyc, bin = "\0\1\255x\0",
                  mt = setmetatable({}, { __index = { k = "v" } }) }
    -- What the worker sees...
    local seen = table.pack(ex:submit(function (t, inf, nan, negz)
      return t.a == t.b, t.cyc.self == t.cyc, t.bin, t.mt.k, inf,
             nan ~= nan, 1 / negz, math.type(inf)
    end, arg, math.huge, 0 / 0, -0.0):result(LONG))
    assert.same({ n = 8, true, true, "\0\1\255x\0", "v", math.huge, true,
                  -math.huge, "float" }, seen)
    -- ...and what comes back.
    local t, inf, nan, negz = ex:submit(function (...) return ... end,
                                        arg, math.huge, 0 / 0, -0.0)
                                :result(LONG)
    assert.are_not.equal(arg, t)
    assert.equal(t.a, t.b)
    assert.equal(t.cyc, t.cyc.self)
    assert.equal("\0\1\255x\0", t.bin)
    assert.equal("v", t.mt.k)
    assert.equal(math.huge, inf)
    assert.is_true(nan ~= nan)
    assert.equal(-math.huge, 1 / negz)
  end)

  it("moves large strings both ways", function ()
    local ex = pool(1)
    local big = string.rep("0123456789abcdef", 512 * 1024)   -- 8 MiB
    local n, back = ex:submit(function (s)
      return #s, s:upper()
    end, big):result(LONG)
    assert.equal(#big, n)
    assert.equal(big:upper(), back)
  end)

  it("answers many tasks, each with its own result", function ()
    local ex = pool(2)
    local fs = {}
    for i = 1, 2000 do
      fs[i] = ex:submit(function (x) return x * 2 end, i)
    end
    for i, f in ipairs(fs) do assert.equal(2 * i, f:result(LONG)) end
  end)

  it("sends a function's upvalues with it", function ()
    local ex = pool(1)
    local base, conf = 10, { scale = 3 }
    local function helper (x) return x * conf.scale end
    assert.equal(10 + 3 * 4, ex:submit(function (x)
      return base + helper(x)
    end, 4):result(LONG))
  end)

  it("sends C functions by the name a module holds them under", function ()
    local ex = pool(1)
    local pid = ex:submit(futures.getpid):result(LONG)
    assert.are_not.equal(futures.getpid(), pid)
    assert.equal("5-x", ex:submit(string.format, "%d-%s", 5, "x")
                          :result(LONG))
    assert.equal(9, ex:submit(math.max, 3, 9, 2):result(LONG))
  end)

  it("refuses a C function that no module holds, naming it", function ()
    local ex = pool(1)
    local e = errof(ex.submit, ex, io.stdout.write)
    assert.equal("cannot send argument #1 (C function that no loaded "
                 .. "module holds) to a worker", e)
  end)

  it("refuses futures, saying they cannot cross to another process",
     function ()
    local ex = pool(1)
    local fut = futures.future()
    local e = errof(ex.submit, ex, function () end, fut)
    assert.matches("^cannot send argument #2 %(future: .*another process%) "
                   .. "to a worker$", e)
    e = errof(ex.submit, ex, function () end, 1, { f = fut })
    assert.matches("^cannot send argument #3 %(field 'f': future: "
                   .. ".*another process%) to a worker$", e)
    e = errof(ex.submit, ex, function () return fut end)
    assert.matches("^cannot send argument #1 %(upvalue 'fut': future: "
                   .. ".*another process%) to a worker$", e)
  end)

  it("refuses executors, saying they cannot cross to another process",
     function ()
    local ex = pool(1)
    local tp = helpers.pool(1)
    local e = errof(ex.submit, ex, function () end, ex)
    assert.matches("^cannot send argument #2 %(executor: .*another "
                   .. "process%) to a worker$", e)
    e = errof(ex.submit, ex, function () end, tp)
    assert.matches("^cannot send argument #2 %(executor: .*another "
                   .. "process%) to a worker$", e)
    e = errof(ex.submit, ex, function () return tp end)
    assert.matches("^cannot send argument #1 %(upvalue 'tp': executor: "
                   .. ".*another process%) to a worker$", e)
  end)

  it("refuses userdata and coroutines, naming where they were found",
     function ()
    local ex = pool(1)
    assert.equal("cannot send argument #2 (userdata FILE*) to a worker",
                 errof(ex.submit, ex, print, io.stdout))
    assert.equal("cannot send argument #3 (field 'conn': userdata FILE*) "
                 .. "to a worker",
                 errof(ex.submit, ex, print, 1, { conn = io.stdout }))
    assert.equal("cannot send argument #2 (coroutine) to a worker",
                 errof(ex.submit, ex, print, coroutine.create(print)))
  end)

  it("fails a task whose result cannot come back, naming it", function ()
    local ex = pool(1)
    local f = ex:submit(function () return 1, io.stdout end)
    assert.equal("cannot send result #2 (userdata FILE*) from a worker",
                 errof(f.result, f, LONG))
    f = ex:submit(function () return futures.future() end)
    assert.matches("^cannot send result #1 %(future: .*another process%) "
                   .. "from a worker$", errof(f.result, f, LONG))
    f = ex:submit(function () return { ok = true, co = coroutine.create(print) } end)
    assert.equal("cannot send result #1 (field 'co': coroutine) from a worker",
                 errof(f.result, f, LONG))
    -- The pool still works.
    assert.equal(1, ex:submit(function () return 1 end):result(LONG))
  end)

  it("re-raises a task's error with the worker's file and line", function ()
    local ex = pool(1)
    local f = ex:submit(function () error("boom") end)
    local e = errof(f.result, f, LONG)
    assert.matches("^[^\n]*process_pool_spec%.lua:%d+: boom$", e)
  end)

  it("gives the worker's traceback with the error", function ()
    local ex = pool(1)
    local function inner () error("deep") end
    local f = ex:submit(function () inner() end)
    local e, tb = f:exception(LONG)
    assert.matches("process_pool_spec%.lua:%d+: deep$", e)
    assert.is_string(tb)
    assert.matches("stack traceback:", tb)
    assert.matches("in function 'error'", tb)
    assert.matches("process_pool_spec%.lua:%d+: in upvalue 'inner'", tb)
  end)

  it("re-raises an error raised at level 0 unchanged", function ()
    local ex = pool(1)
    local f = ex:submit(function () error("plain", 0) end)
    assert.equal("plain", errof(f.result, f, LONG))
  end)

  it("re-raises a table error as a copy", function ()
    local ex = pool(1)
    local f = ex:submit(function () error({ code = 7, tag = "x" }) end)
    assert.same({ code = 7, tag = "x" }, errof(f.result, f, LONG))
  end)

  it("fails a task that raises nil with a message saying so", function ()
    local ex = pool(1)
    local f = ex:submit(function () error() end)
    assert.equal("(error object is a nil value)", f:exception(LONG))
  end)

  it("keeps the changes a task makes to its copies in the worker",
     function ()
    local ex = pool(1)
    local t = { 1 }
    ex:submit(function (x) x[1] = 99; x[2] = 2 end, t):result(LONG)
    assert.same({ 1 }, t)
  end)

  it("raises ShutdownError after shutdown", function ()
    local ex = pool(1)
    ex:shutdown()
    local e = errof(ex.submit, ex, getpid)
    assert.is_true(futures.is(e, futures.ShutdownError))
    assert.equal("cannot schedule new futures after shutdown", e.message)
  end)
end)


describe("Executor:map", function ()

  local function double (x) return x * 2 end

  it("maps over a sequence table, yielding positions and values",
     function ()
    local ex = pool(2)
    local got = {}
    for i, v in ex:map(double, { 1, 2, 3, 4 }) do got[i] = v end
    assert.same({ 2, 4, 6, 8 }, got)
  end)

  it("maps over an iterator function and zips several iterables",
     function ()
    local ex = pool(2)
    local k = 0
    local function gen ()
      k = k + 1
      if k <= 5 then return k end
    end
    local got = {}
    for i, v in ex:map(function (a, b) return a + b end, gen,
                       { 10, 20, 30 }) do
      got[i] = v
    end
    assert.same({ 11, 22, 33 }, got)
  end)

  it("yields results in input order when later items finish first",
     function ()
    local ex = pool(3)
    local gate = helpers.fgate()
    local gpath = gate.path
    local dir = helpers.tmpdir()
    local function task (x)
      if x == 1 then assert(await_file(gpath, LONG)) end
      write_file(dir .. "/done" .. x, "")
      return x
    end
    local it, s, c = ex:map(task, { 1, 2, 3 })
    -- Items 2 and 3 finish while item 1 is held back.
    assert.is_truthy(await_file(dir .. "/done2"))
    assert.is_truthy(await_file(dir .. "/done3"))
    assert.is_nil(read_file(dir .. "/done1"))
    gate:open()
    local order = {}
    for i, v in it, s, c do order[#order + 1] = { i, v } end
    assert.same({ { 1, 1 }, { 2, 2 }, { 3, 3 } }, order)
  end)

  it("sends chunksize items per task and keeps the input order",
     function ()
    local ex = pool(2)
    local rows = rows_of(ex:map{ function (x)
      return x, futures.getpid(), nil, x * 10
    end, { 1, 2, 3, 4, 5, 6, 7, 8, 9, 10 }, chunksize = 3 })
    assert.equal(10, #rows)
    for i, r in ipairs(rows) do
      assert.same({ n = 5, i, i, r[3], nil, 10 * i }, r)
    end
    -- The items of one chunk run in one worker.
    for c = 0, 3 do
      local first = rows[3 * c + 1][3]
      for i = 3 * c + 1, math.min(3 * c + 3, 10) do
        assert.equal(first, rows[i][3], "item " .. i)
      end
    end
    assert.are_not.equal(futures.getpid(), rows[1][3])
  end)

  it("raises an item's error at its position with chunksize", function ()
    local ex = pool(2)
    local got = {}
    local e = errof(function ()
      for i, v in ex:map{ function (x)
        if x == 5 then error("bad item " .. x) end
        return x
      end, { 1, 2, 3, 4, 5, 6, 7, 8, 9, 10 }, chunksize = 3 } do
        got[i] = v
      end
    end)
    assert.matches("^[^\n]*process_pool_spec%.lua:%d+: bad item 5$", e)
    assert.same({ 1, 2, 3, 4 }, got)
  end)

  it("passes the nil holes of a t.n sequence with chunksize", function ()
    local ex = pool(2)
    local rows = rows_of(ex:map{ function (...)
      return select("#", ...), ...
    end, { n = 5, 1, nil, 3, nil }, chunksize = 2 })
    assert.equal(5, #rows)
    for i, r in ipairs(rows) do
      assert.equal(i, r[1])
      assert.equal(1, r[2])
    end
    assert.equal(1, rows[1][3])
    assert.is_nil(rows[2][3])
    assert.equal(3, rows[3][3])
    assert.is_nil(rows[5][3])
  end)

  it("maps a C function sent by name, with and without chunksize",
     function ()
    local ex = pool(2)
    local got = {}
    for i, v in ex:map(math.abs, { -1, -2, -3 }) do got[i] = v end
    assert.same({ 1, 2, 3 }, got)
    got = {}
    for i, v in ex:map{ math.abs, { -1, -2, -3, -4, -5 }, chunksize = 2 } do
      got[i] = v
    end
    assert.same({ 1, 2, 3, 4, 5 }, got)
  end)

  it("maps many items with and without chunksize", function ()
    local ex = pool(2)
    local xs = {}
    for i = 1, 5000 do xs[i] = i end
    for _, k in ipairs{ 1, 7, 100, 6000 } do
      local n = 0
      for i, v in ex:map{ double, xs, chunksize = k } do
        n = n + 1
        assert.equal(i, n)
        assert.equal(2 * i, v)
      end
      assert.equal(5000, n)
    end
  end)

  for _, bad in ipairs{ 0, -1, 1.5, "2" } do
    it("rejects chunksize = " .. tostring(bad) .. " with an argument error",
       function ()
      local ex = pool(1)
      local e = errof(function ()
        return ex:map{ double, { 1, 2 }, chunksize = bad }
      end)
      assert.is_string(e)
      assert.matches("bad argument #1 to 'map' %(field 'chunksize' must be "
                     .. "a positive integer%)$", e)
      -- Blamed on the caller, not on the library's own files.
      assert.is_nil(e:find("cfut/iter.lua", 1, true), e)
    end)
  end

  it("keeps at most buffersize items in flight ahead of the loop",
     function ()
    local ex = pool(2)
    local calls = 0
    local function endless () calls = calls + 1 return calls end
    local taken = 0
    for i, v in ex:map{ double, endless, buffersize = 2 } do
      assert.equal(2 * i, v)
      taken = taken + 1
      assert.is_true(calls - taken <= 3,
                     calls .. " items drawn for " .. taken .. " results")
      if taken == 10 then break end
    end
    assert.equal(10, taken)
    assert.is_true(calls <= 13, "iterator called " .. calls .. " times")
  end)

  it("raises TimeoutError once the timeout, counted from the call, runs out",
     function ()
    local ex = pool(1)
    local gpath = helpers.fgate().path
    local t0 = futures.monotonic()
    local e = errof(function ()
      for _ in ex:map{ function (x)
        if x == 1 then await_file(gpath, LONG) end
        return x
      end, { 1, 2, 3 }, timeout = 0.2 } do end
    end)
    local waited = futures.monotonic() - t0
    assert.is_true(futures.is(e, futures.TimeoutError), tostring(e))
    assert.is_true(waited >= 0.19, "timed out after " .. waited .. " s")
    assert.is_true(waited < 0.2 + QUICK, "timed out after " .. waited .. " s")
  end)

  it("cancels the items still queued when the timeout runs out", function ()
    local ex = pool(1)
    local gate = helpers.fgate()
    local gpath = gate.path
    local dir = helpers.tmpdir()
    local function task (x)
      write_file(dir .. "/ran" .. x, "")
      if x == 1 then await_file(gpath, LONG) end
      return x
    end
    local it, s, c = ex:map{ task, { 1, 2, 3 }, timeout = 0.2 }
    assert.is_truthy(await_file(dir .. "/ran1"))
    local e = errof(function () for _ in it, s, c do end end)
    assert.is_true(futures.is(e, futures.TimeoutError), tostring(e))
    gate:open()
    ex:shutdown(true)
    assert.is_nil(read_file(dir .. "/ran2"), "item 2 ran")
    assert.is_nil(read_file(dir .. "/ran3"), "item 3 ran")
  end)

  it("raises ShutdownError after shutdown", function ()
    local ex = pool(1)
    ex:shutdown()
    local e = errof(function ()
      for _ in ex:map(double, { 1, 2 }) do end
    end)
    assert.is_true(futures.is(e, futures.ShutdownError))
    assert.equal("cannot schedule new futures after shutdown", e.message)
  end)
end)


describe("Executor:shutdown", function ()

  it("waits for running and queued tasks by default", function ()
    local ex = pool(1)
    local function slow (x) futures.sleep(0.1) return x end
    local a, b = ex:submit(slow, "a"), ex:submit(slow, "b")
    ex:shutdown()
    assert.is_true(a:done())
    assert.is_true(b:done())
    assert.equal("a", a:result(0))
    assert.equal("b", b:result(0))
  end)

  it("can be called again without effect", function ()
    local ex = pool(1)
    local f = ex:submit(getpid)
    ex:shutdown()
    ex:shutdown()
    ex:shutdown(false)
    ex:shutdown(true, true)
    ex:shutdown{ wait = false, cancel_futures = true }
    assert.is_number(f:result(0))
  end)

  it("reaps every worker" .. (STATIC and " (under mpiexec: " .. STAYS
     .. ", so each is free for a new pool at once)" or ""), function ()
    local snap = snapshot()
    local ex = pool(3)
    local gate = helpers.fgate()
    local pids = {}
    for i = 1, 3 do pids[i] = select(2, start_held(ex, gate, i)) end
    gate:open()
    ex:shutdown()
    if STATIC then
      local again, back = pool(3), {}
      local gate2 = helpers.fgate()
      for i = 1, 3 do back[select(2, start_held(again, gate2, i))] = true end
      gate2:open()
      for _, pid in ipairs(pids) do
        assert.is_true(back[pid], "worker rank " .. pid .. " not free")
      end
    else
      for _, pid in ipairs(pids) do
        assert.is_nil(helpers.proc_state(pid), "worker " .. pid .. " left")
      end
    end
    assert.same({}, new_children(snap))
  end)

  it("cancels queued futures with cancel_futures while running ones finish",
     function ()
    local ex = pool(1)
    local gate = helpers.fgate()
    local busy = start_held(ex, gate, "busy")
    local q1 = ex:submit(getpid)
    local q2 = ex:submit(getpid)
    assert.is_true(stays_pending(q1), "a queued task is " .. tostring(q1))
    ex:shutdown(false, true)
    assert.is_true(q1:cancelled())
    assert.is_true(q2:cancelled())
    assert.is_false(busy:done())
    gate:open()
    assert.equal("busy", busy:result(LONG))
    ex:shutdown()
  end)

  it("returns at once with wait = false while tasks still run", function ()
    local ex = pool(1)
    local gate = helpers.fgate()
    local busy = start_held(ex, gate, "busy")
    local queued = ex:submit(function () return "later" end)
    local took = helpers.timed(ex.shutdown, ex, false)
    assert.is_true(took < QUICK, "shutdown(false) took " .. took .. " s")
    assert.is_false(busy:done())
    assert.is_false(queued:done())
    gate:open()
    assert.equal("busy", busy:result(LONG))
    assert.equal("later", queued:result(LONG))
  end)

  it("takes its options as a table", function ()
    local ex = pool(1)
    local gate = helpers.fgate()
    local busy = start_held(ex, gate, "busy")
    local queued = ex:submit(getpid)
    assert.is_true(stays_pending(queued),
                   "a queued task is " .. tostring(queued))
    local took = helpers.timed(ex.shutdown, ex,
                               { wait = false, cancel_futures = true })
    assert.is_true(took < QUICK, "shutdown{wait=false} took " .. took .. " s")
    assert.is_true(queued:cancelled())
    assert.is_false(busy:done())
    gate:open()
    ex:shutdown{ wait = true }
    assert.is_true(busy:done())
    assert.equal("busy", busy:result(0))
  end)

  it("runs at the end of a <close> variable's scope", function ()
    local snap = snapshot()
    local saved, f
    do
      local ex <close> = futures[POOL](2)
      saved = ex
      f = ex:submit(function () futures.sleep(0.05) return "closed" end)
    end
    assert.is_true(f:done())
    assert.equal("closed", f:result(0))
    local e = errof(saved.submit, saved, getpid)
    assert.is_true(futures.is(e, futures.ShutdownError))
    assert.same({}, new_children(snap))
  end)

  it("runs at the end of a <close> variable's scope left by an error",
     function ()
    local saved, f
    local ok, e = pcall(function ()
      local ex <close> = futures[POOL](2)
      saved = ex
      f = ex:submit(function () futures.sleep(0.05) return "closed" end)
      error("leaving the block", 0)
    end)
    assert.is_false(ok)
    assert.equal("leaving the block", e)
    assert.is_true(f:done())
    assert.equal("closed", f:result(0))
    e = errof(saved.submit, saved, getpid)
    assert.is_true(futures.is(e, futures.ShutdownError))
  end)

  it("is what garbage collection of an executor does: queued tasks still "
     .. "run, then the workers exit" .. (STATIC and " (under mpiexec: "
     .. STAYS .. ")" or ""), function ()
    local gate = helpers.fgate()
    local function submit_and_drop ()
      local ex = futures[POOL](1)
      local busy, pid = start_held(ex, gate, "busy")
      local queued = ex:submit(function () return "queued" end)
      local weak = setmetatable({ ex }, { __mode = "v" })
      return busy, queued, pid, weak
    end
    local busy, queued, pid, weak = submit_and_drop()
    collectgarbage()
    collectgarbage()
    assert.is_nil(weak[1])
    assert.is_false(queued:done())
    gate:open()
    assert.equal("busy", busy:result(LONG))
    assert.equal("queued", queued:result(LONG))
    if STATIC then
      assert.is_true(helpers.alive(pid), "worker rank " .. pid .. " ended")
    else
      assert.is_true(helpers.wait_until(function ()
        return not helpers.alive(pid)
      end), "worker " .. pid .. " still runs")
    end
  end)

  it_spawned(KILLS, "returns at once on a broken pool", function ()
    local ex = pool(2)
    local gate = helpers.fgate()
    local f, pid = start_held(ex, gate)
    futures.kill(pid, "SIGKILL")
    local took = helpers.timed(ex.shutdown, ex)
    assert.is_true(took < QUICK, "shutdown took " .. took .. " s")
    assert_broken(f:exception(0), BROKEN)
  end)
end)


describe("Future:cancel", function ()

  it("cancels a task queued behind busy workers", function ()
    local ex = pool(1)
    local gate = helpers.fgate()
    local dir = helpers.tmpdir()
    local busy = start_held(ex, gate, "busy")
    local q = ex:submit(function () write_file(dir .. "/ran", "") end)
    assert.is_true(stays_pending(q), "a queued task is " .. tostring(q))
    assert.is_true(q:cancel())
    assert.is_true(q:cancelled())
    gate:open()
    assert.equal("busy", busy:result(LONG))
    ex:shutdown()
    assert.is_nil(read_file(dir .. "/ran"), "the cancelled task ran")
  end)

  it("does not cancel a running task", function ()
    local ex = pool(1)
    local gate = helpers.fgate()
    local busy = start_held(ex, gate, "busy")
    assert.is_true(busy:running())
    assert.is_false(busy:cancel())
    gate:open()
    assert.equal("busy", busy:result(LONG))
  end)
end)


describe("Future:result", function ()

  it("raises TimeoutError when the task runs longer than the timeout",
     function ()
    local ex = pool(1)
    local gate = helpers.fgate()
    local f = start_held(ex, gate, "late")
    local took, r = helpers.timed(pcall, f.result, f, 0.1)
    assert.is_false(r[1])
    assert.is_true(futures.is(r[2], futures.TimeoutError), tostring(r[2]))
    assert.is_true(took >= 0.09 and took < 0.1 + QUICK, took .. " s")
    assert.is_false(f:done())
    gate:open()
    assert.equal("late", f:result(LONG))
  end)
end)


describe("Future:add_done_callback", function ()

  it("runs the callback in the main script once the task is done",
     function ()
    local ex = pool(1)
    local gate = helpers.fgate()
    local f = start_held(ex, gate, "v")
    local calls = {}
    f:add_done_callback(function (g) calls[#calls + 1] = g:result(0) end)
    f:add_done_callback(function () calls[#calls + 1] = "second" end)
    assert.same({}, calls)
    gate:open()
    f:result(LONG)
    assert.same({ "v", "second" }, calls)
  end)

  it_spawned(KILLS, "runs the callback of a future that a broken pool "
     .. "failed", function ()
    local ex = pool(1)
    local gate = helpers.fgate()
    local f, pid = start_held(ex, gate)
    local got
    f:add_done_callback(function (g) got = g:exception(0) end)
    futures.kill(pid, "SIGKILL")
    assert.is_true(helpers.wait_until(function () return got ~= nil end))
    assert_broken(got, BROKEN)
  end)
end)


describe("futures.wait", function ()

  it("returns on the first completed task with FIRST_COMPLETED", function ()
    local ex = pool(2)
    local gate = helpers.fgate()
    local slow = start_held(ex, gate, "slow")
    local quick = ex:submit(getpid)
    local done, not_done = futures.wait({ slow, quick }, LONG,
                                        futures.FIRST_COMPLETED)
    assert.same({ quick }, done)
    assert.same({ slow }, not_done)
    gate:open()
  end)

  it("returns on the first failed task with FIRST_EXCEPTION", function ()
    local ex = pool(2)
    local gate = helpers.fgate()
    local slow = start_held(ex, gate, "slow")
    local bad = ex:submit(function () error("bad") end)
    local done, not_done = futures.wait({ slow, bad }, LONG,
                                        futures.FIRST_EXCEPTION)
    assert.same({ bad }, done)
    assert.same({ slow }, not_done)
    gate:open()
  end)

  it("returns what is done when the timeout runs out", function ()
    local ex = pool(2)
    local gate = helpers.fgate()
    local slow = start_held(ex, gate, "slow")
    local quick = ex:submit(getpid)
    quick:result(LONG)
    local took, r = helpers.timed(futures.wait, { slow, quick }, 0.1)
    assert.same({ quick }, r[1])
    assert.same({ slow }, r[2])
    assert.is_true(took >= 0.09 and took < 0.1 + QUICK, took .. " s")
    gate:open()
  end)
end)


describe("futures.as_completed", function ()

  it("yields the tasks in the order they finish", function ()
    local ex = pool(2)
    local gate = helpers.fgate()
    local slow = start_held(ex, gate, "slow")
    local quick = ex:submit(getpid)
    local order = {}
    for f in futures.as_completed({ slow, quick }, LONG) do
      order[#order + 1] = f
      if f == quick then gate:open() end
    end
    assert.same({ quick, slow }, order)
  end)

  it("raises TimeoutError naming the unfinished count", function ()
    local ex = pool(2)
    local gate = helpers.fgate()
    local slow = start_held(ex, gate, "slow")
    local quick = ex:submit(getpid)
    local e = errof(function ()
      for _ in futures.as_completed({ slow, quick }, 0.2) do end
    end)
    assert.is_true(futures.is(e, futures.TimeoutError), tostring(e))
    assert.equal("1 (of 2) futures unfinished", e.message)
  end)
end)


-- Scripts run by a child interpreter: the cfut host, and the stock lua5.4
-- loading the module with require "cfut".

local HOSTS = { "cfut", "lua5.4" }

-- Options for helpers.run/spawn that run 'host'; nil and a reason when it
-- cannot run here.
local function host_opts (host)
  if host == "cfut" then return { prog = helpers.cfut_bin() } end
  return helpers.stock_lua()
end

local function run_on (host, src, extra)
  local opts, why = host_opts(host)
  if not opts then return nil, why end
  for k, v in pairs(extra or {}) do
    if k == "env" and opts.env then
      for n, x in pairs(v) do opts.env[n] = x end
    else
      opts[k] = v
    end
  end
  return helpers.run(src, opts)
end


if PROCESS_ONLY then
describe("a process pool under each host", function ()

  local script = [[
    local futures = require "cfut"
    local T = 30
    local ex = futures.process_pool(2)
    local pid = ex:submit(futures.getpid):result(T)
    print("another process", pid ~= futures.getpid())
    print("values", ex:submit(function (a, b)
      return a + b, a / b, math.type(a + b)
    end, 3, 2):result(T))
    local t = {}
    for i, v in ex:map{ function (x) return x * x end, { 1, 2, 3, 4, 5 },
                        chunksize = 2 } do
      t[i] = v
    end
    print("chunked map", table.concat(t, " "))
    t = {}
    for i, v in ex:map(function (x) return x + 1 end, { 1, 2, 3 }) do
      t[i] = v
    end
    print("map", table.concat(t, " "))
    local e, tb = ex:submit(function () error("boom", 0) end):exception(T)
    print("error", e, tb:find("stack traceback", 1, true) ~= nil)
    e = ex:submit(function () os.exit(3) end):exception(T)
    print("exit", e:match("os%.exit%(3%) called in a worker"))
    print("unsendable", select(2, pcall(ex.submit, ex, print, io.stdout)))
    local be = ex:submit(function ()
      futures.kill(futures.getpid(), "SIGKILL")
    end):exception(T)
    print("broken", be.name, be.message)
    print("submit", select(2, pcall(ex.submit, ex, futures.getpid)).name)
    ex:shutdown()
    print("done")
  ]]

  local expected = table.concat({
    "another process\ttrue",
    "values\t5\t1.5\tinteger",
    "chunked map\t1 4 9 16 25",
    "map\t2 3 4",
    "error\tboom\ttrue",
    "exit\tos.exit(3) called in a worker",
    "unsendable\tcannot send argument #2 (userdata FILE*) to a worker",
    "broken\tBrokenProcessPool\t" .. BROKEN,
    "submit\tBrokenProcessPool",
    "done",
  }, "\n") .. "\n"

  for _, host in ipairs(HOSTS) do

    it("works the same when the parent is " .. host, function ()
      local r, why = run_on(host, script)
      assert.is_table(r, why)
      assert.equal(expected, r.stdout)
      assert.equal(0, r.status, r.stderr)
    end)

    it("gives workers the environment, directory, stdout and stderr of "
       .. "the parent under " .. host, function ()
      local dir = helpers.tmpdir()
      local r, why = run_on(host, [[
        local futures = require "cfut"
        local ex = futures.process_pool(1)
        ex:submit(function ()
          local p = io.popen("readlink /proc/" .. futures.getpid() .. "/cwd")
          local cwd = p:read("l")
          p:close()
          print("var", os.getenv("PPSPEC_VAR"))
          print("cwd", cwd)
          io.stderr:write("to stderr\n")
        end):result(30)
        local p = io.popen("readlink /proc/" .. futures.getpid() .. "/cwd")
        print("main cwd", p:read("l"))
        p:close()
      ]], { env = { PPSPEC_VAR = "from the parent" }, cwd = dir })
      assert.is_table(r, why)
      local real = r.stdout:match("main cwd\t([^\n]+)")
      assert.is_string(real, r.stdout)
      assert.equal("var\tfrom the parent\ncwd\t" .. real .. "\nmain cwd\t"
                   .. real .. "\n", r.stdout)
      assert.matches("to stderr\n", r.stderr)
      assert.equal(0, r.status, r.stderr)
    end)

    it("shuts open process pools down at the end of the script under "
       .. host, function ()
      local r, why = run_on(host, [[
        local futures = require "cfut"
        local ex = futures.process_pool(1)
        ex:submit(function ()
          futures.sleep(0.2)
          print("open pool " .. futures.getpid())
        end)
        local ex2 = futures.process_pool(1)
        ex2:submit(function ()
          futures.sleep(0.2)
          print("after shutdown(false) " .. futures.getpid())
        end)
        ex2:shutdown(false)
        print("main done")
        io.stdout:flush()
      ]])
      assert.is_table(r, why)
      assert.equal(0, r.status, r.stderr)
      assert.matches("^main done\n", r.stdout)
      local p1 = tonumber(r.stdout:match("\nopen pool (%d+)\n"))
      local p2 = tonumber(r.stdout:match("\nafter shutdown%(false%) (%d+)\n"))
      assert.is_number(p1, r.stdout)
      assert.is_number(p2, r.stdout)
      assert.is_false(helpers.alive(p1))
      assert.is_false(helpers.alive(p2))
    end)
  end

  it("prints the worker's traceback for an uncaught task error", function ()
    local r = helpers.run([[
      local futures = require "cfut"
      local ex = futures.process_pool(1)
      local function inner () error("deep") end
      ex:submit(function () inner() end):result(30)
    ]])
    assert.equal(1, r.status)
    assert.matches("^%S*cfut: [^\n]*:3: deep\nstack traceback:\n", r.stderr)
    assert.matches("\n[^\n]*worker[^\n]*\n[^\n]*:3: deep\nstack traceback:"
                   .. "\n%s*%[C%]: in function 'error'\n[^\n]*:3: in "
                   .. "upvalue 'inner'", r.stderr)
  end)
end)
end


if PROCESS_ONLY then
describe("Ctrl-C with a process pool", function ()

  -- Start 'src' under cfut with a fresh directory as arg[1]; tasks write
  -- marks there with mark(name).  Returns the handle and the directory
  -- once the script has printed "ready".
  local start = helpers.spawn_marked

  -- Send SIGINT; the script must exit with status 1 at once.
  local function interrupt (h)
    local t0 = futures.monotonic()
    assert.is_true(h:signal("SIGINT"))
    local status = h:wait(LONG)
    local took = futures.monotonic() - t0
    assert.equal(1, status, h:stderr())
    assert.is_true(took < 2 * QUICK + 1, "took " .. took .. " s")
    assert.matches("^%S*cfut: [^\n]*interrupted!\n", h:stderr())
  end

  local function pid_in (dir, name)
    return math.tointeger(tonumber(read_file(dir .. "/" .. name)))
  end

  local function ended (pids)
    return helpers.wait_until(function ()
      for _, pid in ipairs(pids) do
        if helpers.alive(pid) then return false end
      end
      return true
    end, 2 * QUICK + 1)
  end

  it("interrupts the wait, cancels queued work and ends the workers",
     function ()
    local h, dir = start([[
      local ex = futures.process_pool(2)
      local a = ex:submit(function () mark("a") futures.sleep(30) end)
      ex:submit(function () mark("b") while true do local _ = {} end end)
      ex:submit(function () mark("queued") end)
      while not (marked("a") and marked("b")) do futures.sleep(0.005) end
      print("ready") io.stdout:flush()
      a:result()
    ]])
    local pids = { pid_in(dir, "a"), pid_in(dir, "b") }
    interrupt(h)
    assert.is_true(ended(pids), "a worker still runs")
    assert.is_nil(read_file(dir .. "/queued"), "the queued task ran")
  end)

  it("cancels the tasks of a long queue sent ahead to a busy worker",
     function ()
    local h, dir = start([[
      local ex = futures.process_pool(1)
      local a = ex:submit(function () mark("a") futures.sleep(30) end)
      for i = 1, 100 do ex:submit(function () mark("q" .. i) end) end
      while not marked("a") do futures.sleep(0.005) end
      print("ready") io.stdout:flush()
      a:result()
    ]])
    local pid = pid_in(dir, "a")
    interrupt(h)
    assert.is_true(ended{ pid }, "the worker still runs")
    local ran = {}
    for i = 1, 100 do
      if read_file(dir .. "/q" .. i) then ran[#ran + 1] = i end
    end
    assert.equal(0, #ran, #ran .. " queued tasks ran after Ctrl-C, from #"
                          .. tostring(ran[1]))
  end)
end)
end
