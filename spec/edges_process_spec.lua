-- spec/edges_process_spec.lua: the process worker and the spawning of
-- worker processes at their edges (issue 8: defects 1, 5, 6 and 7, and
-- the check for a parent that died before the worker asked to die with
-- it).  Most run a child script (helpers.run, always under a timeout), for
-- what only its exit, its stdout or stderr shows; under `make asan` the
-- child is the sanitized host, and its workers too.

local futures = require "cfut"
local helpers = require "helpers"

local LONG = helpers.LONG
local shquote = helpers.shquote

after_each(helpers.cleanup)

local function pool (n)
  return helpers.track(futures.process_pool(n))
end

-- The lines a shell command prints.
local function lines_of (cmd)
  local p = assert(io.popen(cmd))
  local t = {}
  for l in p:lines() do t[#t + 1] = l end
  p:close()
  return t
end

-- Does 'cmd' run here (a tool that may be missing or not allowed)?
local function works (cmd)
  return os.execute(cmd .. " >/dev/null 2>&1") == true
end

local function no_sanitizer_report (r)
  assert.is_nil(r.stderr:find("Sanitizer", 1, true), r.stderr)
  assert.is_nil(r.stderr:find("runtime error:", 1, true), r.stderr)
end

describe("a process worker interrupted with tasks sent ahead (defect 1)", function ()
  -- The worker read its input into a buffer that a read after the Ctrl-C
  -- could move while it still held the current frame: the refusal of the
  -- tasks sent ahead read their ids from freed memory (ASan:
  -- heap-use-after-free in refuse, the worker dies, the pool breaks).

  -- A task that runs until a Ctrl-C (or for 'limit' seconds: a failing
  -- spec must not leave it running).  It sleeps in small steps: under
  -- ThreadSanitizer a signal is delivered only inside a library call.
  local function looping (mark, limit)
    helpers.write_file(mark, tostring(futures.getpid()))
    local deadline = futures.monotonic() + limit
    while futures.monotonic() < deadline do futures.sleep(0.001) end
  end

  -- Start a looping task, then 60 more that are sent ahead to the busy
  -- worker: with 60 queued, the pool sends 45 ahead (it keeps some queued,
  -- to be cancellable), about 90 KiB that wait in the worker's socket.
  -- Returns the futures and the worker's pid.
  local function loop_and_send_ahead (ex)
    local mark = helpers.tmpdir() .. "/looping"
    local pad = ("p"):rep(2000)
    local fs = { ex:submit(looping, mark, 2 * LONG) }
    for i = 1, 60 do
      fs[#fs + 1] = ex:submit(function (s) return #s end, pad)
    end
    local pid = helpers.await_file(mark)
    assert(pid, "the first task did not start")
    assert(helpers.wait_until(function ()
      return helpers.count(fs, "running") >= 40       -- sent to the worker
    end), "the tasks were not sent ahead")
    return fs, math.tointeger(tonumber(pid))
  end

  it("refuses the tasks that had arrived; the pool goes on", function ()
    local ex = pool(1)
    local fs, pid = loop_and_send_ahead(ex)
    local sent = helpers.count(fs, "running")
    assert(futures.kill(pid, "SIGINT"))
    local done = futures.wait(fs, LONG)
    assert.equal(#fs, #done)
    local outcome = {}
    for i, f in ipairs(fs) do
      local ok, v = pcall(f.result, f, 0)
      outcome[i] = ok and v or tostring(v):match("interrupted!") or tostring(v)
    end
    -- the loop and every task sent ahead: refused; the others ran after
    for i = 1, #fs do
      assert.equal(i <= sent and "interrupted!" or 2000, outcome[i])
    end
    assert.equal(7, ex:submit(function () return 7 end):result(LONG))
  end)

  it("after a Ctrl-C of the parent, the worker ends cleanly", function ()
    -- the issue's script, with conditions where it slept
    local r = helpers.run([[
      local futures = require "cfut"
      local helpers = require "helpers"
      local ex = futures.process_pool(1)
      local mark = helpers.tmpdir() .. "/looping"
      local pad = ("p"):rep(2000)
      local fs = { ex:submit(function (m)
        helpers.write_file(m, "x")
        local deadline = futures.monotonic() + 2 * helpers.LONG
        while futures.monotonic() < deadline do futures.sleep(0.001) end
      end, mark) }
      for i = 1, 60 do fs[#fs + 1] = ex:submit(function (s) return #s end, pad) end
      assert(helpers.await_file(mark), "the first task did not start")
      assert(helpers.wait_until(function ()
        return helpers.count(fs, "running") >= 40
      end), "the tasks were not sent ahead")
      futures.kill(futures.getpid(), "SIGINT")
      futures.sleep(helpers.LONG)     -- the Ctrl-C ends this wait
    ]], { timeout = 4 * LONG })
    no_sanitizer_report(r)
    assert.equal(1, r.status, r.stderr)
    assert.matches("^%S*cfut: [^\n]*interrupted!\n", r.stderr)
  end)
end)

describe("a process worker's file descriptors (defect 5)", function ()
  it("are 0, 1, 2 and its socket at 3, whatever the parent has open", function ()
    local path = os.tmpname()
    local keep = assert(io.open(path, "w"))   -- no close-on-exec
    local ex = pool(1)
    local pid = ex:submit(function () return futures.getpid() end):result(LONG)
    keep:close()
    os.remove(path)
    assert.same({ 0, 1, 2, 3 }, helpers.fds(pid))
    local link = lines_of("readlink /proc/" .. pid .. "/fd/3")[1]
    assert.matches("^socket:", link)
  end)

  it("do not hold a pipe of the parent's open: its close does not hang", function ()
    local r = helpers.run([[
      local futures = require "cfut"
      local p = assert(io.popen("cat > /dev/null", "w"))
      local ex = futures.process_pool(1)
      print(ex:submit(function () return 42 end):result())
      print(p:close())
      ex:shutdown()
    ]], { timeout = 2 * LONG })
    no_sanitizer_report(r)
    assert.equal(0, r.status, r.stderr)
    assert.equal("42\ntrue\texit\t0\n", r.stdout)
  end)
end)

--[[
The kill and wait4 calls of a strace log: whether a signal was sent to a
pid after a wait4 of that pid returned it (the pid may belong to another
process by then).  Returns the offending line, or nil; and the number of
reaped pids seen.
]]
local function signal_after_reap (log)
  local reaped, nreaped, pending = {}, 0, {}
  for line in log:gmatch("[^\n]+") do
    local tid, rest = line:match("^(%d+)%s+(.*)$")
    rest = rest or line
    local wpid, got = rest:match("^wait4%((%d+),.*%) = (%d+)")
    if not wpid then
      local p = rest:match("^wait4%((%d+),%s*<unfinished")
      if p then pending[tid] = p end
      got = rest:match("^<%.%.%. wait4 resumed>.*%) = (%d+)")
      if got then wpid, pending[tid] = pending[tid], nil end
    end
    if wpid and wpid == got and not reaped[wpid] then
      reaped[wpid] = true
      nreaped = nreaped + 1
    end
    local kpid = rest:match("^kill%((%d+), SIG")
    if kpid and reaped[kpid] then return line, nreaped end
  end
  return nil, nreaped
end

describe("a worker that died (defect 6)", function ()
  it("is never signalled once reaped", function ()
    if not works("strace -f -o /dev/null true") then
      pending("strace is missing or not allowed to trace here")
      return
    end
    local log = os.tmpname()
    local script = os.tmpname()
    local fh = assert(io.open(script, "w"))
    fh:write([[
      local futures = require "cfut"
      local ex = futures.process_pool(2)
      local f = ex:submit(function ()
        futures.kill(futures.getpid(), "SIGKILL")
      end)
      print(pcall(f.result, f))
    ]])
    fh:close()
    local out = lines_of(table.concat({ "timeout -k 2", tostring(4 * LONG),
      "strace -f -qq -e trace=wait4,kill -o", shquote(log),
      shquote(helpers.cfut_bin()), shquote(script), "2>&1" }, " "))
    local text = helpers.read_file(log) or ""
    os.remove(log)
    os.remove(script)
    assert.matches("^false\tBrokenProcessPool", out[1] or "")
    local bad, nreaped = signal_after_reap(text)
    assert.is_true(nreaped >= 1, "no reap traced:\n" .. text)
    assert.is_nil(bad, text)
  end)
end)

describe("print in process workers with stdout a pipe (defect 7)", function ()
  it("never splices lines of two workers", function ()
    local script = os.tmpname()
    local out = os.tmpname()
    local fh = assert(io.open(script, "w"))
    fh:write([[
      local futures = require "cfut"
      local ex = futures.process_pool(2)
      local fs = {}
      for t = 1, 16 do
        fs[t] = ex:submit(function (t)
          local fill = string.char(64 + t)
          for j = 1, 2000 do
            local head = string.format("%02d:%04d:", t, j)
            print(head .. fill:rep(100 - #head))
          end
          io.write("tail", t, ";")   -- no newline: it comes out at the end
        end, t)
      end
      for _, f in ipairs(fs) do f:result() end
      ex:shutdown()
    ]])
    fh:close()
    local ok = os.execute(table.concat({ "timeout -k 2", tostring(4 * LONG),
      shquote(helpers.cfut_bin()), shquote(script), "| cat >", shquote(out) },
      " "))
    local text = helpers.read_file(out) or ""
    os.remove(script)
    os.remove(out)
    assert.is_true(ok)
    local seen, n, bad = {}, 0, nil
    for line in text:gmatch("[^\n]*\n") do
      line = line:gsub("^tail%d+;", "")    -- an io.write tail, then a line
      local t, j, rest = line:match("^(%d%d):(%d%d%d%d):(.*)\n$")
      t, j = tonumber(t), tonumber(j)
      if not t or #line ~= 101 or rest ~= string.char(64 + t):rep(92)
         or seen[t * 10000 + j] then
        bad = bad or line
      else
        seen[t * 10000 + j] = true
        n = n + 1
      end
    end
    assert.is_nil(bad)
    assert.equal(32000, n)
    local _, tails = text:gsub("tail%d+;", "")
    assert.equal(16, tails)
  end)
end)

describe("print in process workers with stdout a terminal", function ()
  -- Lines are batched for a pipe or a file; on a terminal each one goes
  -- at once, as stdio's line buffering did (a task's progress shows while
  -- it runs).  script(1) gives the child a terminal.
  it("shows each line at once", function ()
    if not works("script -qec true /dev/null") then
      pending("script(1) is missing")
      return
    end
    local dir = helpers.tmpdir()
    local gate = helpers.fgate()
    local src, log = dir .. "/tty.lua", dir .. "/typescript"
    helpers.write_file(src, [[
      local futures = require "cfut"
      local helpers = require "helpers"
      local ex = futures.process_pool(1)
      ex:submit(function (gate)
        print("first line")
        helpers.await_file(gate)
        print("second line")
      end, arg[1]):result()
    ]])
    local h = helpers.spawn(string.format([[
      os.exit(os.execute(%q) and 0 or 1)
    ]], table.concat({ "script -qfec", shquote(table.concat({
      shquote(helpers.cfut_bin()), shquote(src), shquote(gate.path) }, " ")),
      shquote(log) }, " ")))
    local seen = helpers.wait_until(function ()
      return (helpers.read_file(log) or ""):find("first line", 1, true)
    end)
    local early = helpers.read_file(log) or ""
    gate.open()
    assert.equal(0, h:wait())
    assert.truthy(seen, "the first line did not show while the task ran")
    assert.is_nil(early:find("second line", 1, true))
    assert.truthy((helpers.read_file(log) or ""):find("second line", 1, true))
  end)
end)

describe("a worker whose parent died before it asked to die with it", function ()
  -- The worker compared getppid() with getppid() read just before: the
  -- check could never fire.  Now the parent passes its pid in.  Here
  -- the worker's socket stays open (perl holds the other end) and the
  -- pid given is not its parent's: it must end at once, not serve.
  it("ends at once", function ()
    local chunk = "require('cfut')._procworker(1)"
    local perl = [[
      use Socket; use POSIX;
      open(my $hold, "<", "/dev/null") or die "open";   # the pair above 3
      socketpair(my $a, my $b, AF_UNIX, SOCK_STREAM, 0) or die "socketpair";
      POSIX::dup2(fileno($b), 3) or die "dup2";
      my $rc = system(@ARGV);
      print "status $rc\n";
    ]]
    local out = lines_of(table.concat({ "timeout -k 2", tostring(2 * LONG),
      "perl -e", shquote(perl), shquote(helpers.cfut_bin()), "-e",
      shquote(chunk), "2>&1" }, " "))
    assert.same({ "status 0" }, out)
  end)
end)
