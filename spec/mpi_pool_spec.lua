-- spec/mpi_pool_spec.lua: futures.mpi_pool (API.md §5, docs/mpi.md), run by
-- `make test-mpi` (it needs Open MPI and cfut/mpi.so from `make mpi`).
--
-- Each case runs a script in a child process: MPI starts once per process
-- and ends at its exit, so a child is how "nothing is left behind" and the
-- exit status can be checked.  The child sees the same LUA_CPATH (with
-- lib/?.so for cfut.mpi) and the Open MPI settings make test-mpi exports.

local futures = require "cfut"
local helpers = require "helpers"

local LONG = helpers.LONG
local shquote = helpers.shquote
local ROOT = os.getenv("CFUT_ROOT") or "."

local BROKEN = "A process in the process pool was terminated abruptly "
               .. "while the future was running or pending."

after_each(helpers.cleanup)

-- Run 'src' as a script: spawn mode by default, or under mpiexec -n N
-- (opts.np) with -l cfut.mpi; opts.prog "lua5.4" for the stock
-- interpreter.  Returns status, stdout, stderr.
local function run (src, opts)
  opts = opts or {}
  local script, out, err = os.tmpname(), os.tmpname(), os.tmpname()
  local fh = assert(io.open(script, "wb"))
  fh:write(src)
  fh:close()
  local prog = opts.prog or helpers.cfut_bin()
  local cmd
  if prog == "lua5.4" then    -- under the sanitizers: with their runtime
    local stock = assert(helpers.stock_lua())
    if stock.env then
      opts.env = string.format("%s env LD_PRELOAD=%s", opts.env or "",
        shquote(stock.env.LD_PRELOAD .. " " .. (os.getenv("LD_PRELOAD")
                                                or "")))
    end
  end
  if opts.np then
    cmd = string.format("mpiexec -n %d %s -l cfut.mpi %s", opts.np,
                        shquote(prog), shquote(script))
  else
    cmd = shquote(prog) .. " " .. shquote(script)
  end
  local line = string.format("%s timeout -k 2 %d %s </dev/null >%s 2>%s",
                             opts.env or "", opts.timeout or 60, cmd,
                             shquote(out), shquote(err))
  local _, _, code = os.execute(line)
  local o = helpers.read_file(out) or ""
  local e = helpers.read_file(err) or ""
  os.remove(script); os.remove(out); os.remove(err)
  return code, o, e
end

-- The numbers printed after "pids:" by a script, as a list.
local function pids_of (text)
  local t = {}
  for line in text:gmatch("pids:([^\n]*)") do
    for p in line:gmatch("%d+") do t[#t + 1] = math.tointeger(tonumber(p)) end
  end
  return t
end

-- Is process pid gone (or a zombie nobody runs)?
local function gone (pid)
  local st = helpers.proc_state(pid)
  return st == nil or st == "Z"
end

local function all_gone (pids)
  return helpers.wait_until(function ()
    for _, p in ipairs(pids) do if not gone(p) then return false end end
    return true
  end, LONG)
end

-- Prints "pids: ..." with the script's own children (Open MPI's daemon
-- and, under it, the workers), for all_gone after the script ended.
local KIDS = [[
local function kids ()
  local p = io.popen("ps -o pid= --ppid " .. futures.getpid())
  local s = p:read("a") p:close()
  local list = {}
  for n in s:gmatch("%d+") do
    list[#list + 1] = n
    local q = io.popen("ps -o pid= --ppid " .. n)
    for m in q:read("a"):gmatch("%d+") do list[#list + 1] = m end
    q:close()
  end
  print("pids: " .. table.concat(list, " "))
end
]]

local function expect_ok (code, out, err)
  assert.equal(0, code, "exit status " .. tostring(code) .. "\n" .. out
               .. "\n" .. err)
end

describe("futures.mpi_pool, spawn mode", function ()

  it("runs tasks in MPI worker processes: results, errors with the "
     .. "worker's traceback, map with chunksize", function ()
    local code, out, err = run([[
local futures = require "cfut"
local ex = futures.mpi_pool(2)
print(tostring(ex):match("^<(%w+) at"))
local a, b, pid = ex:submit(function (x, y) return x + y, x * y,
                                              futures.getpid() end,
                            3, 4):result()
print(a, b, pid ~= futures.getpid())
local f = ex:submit(function () local function inner () error("deep") end
                                inner() end)
local e, tb = f:exception()
print(e)
print(tb:find("in local 'inner'", 1, true) ~= nil)
local n, sum = 0, 0
local t = {}
for i = 1, 1000 do t[i] = i end
for i, v in ex:map{function (x) return x * x end, t, chunksize = 64} do
  n = n + 1
  sum = sum + v
end
print(n, sum)
local ok, m = pcall(function ()
  for _ in ex:map(function (x) if x == 3 then error("bad item") end
                                return x end, {1, 2, 3, 4}) do end
end)
print(ok, m)
ex:shutdown()
print(pcall(ex.submit, ex, print))
]])
    expect_ok(code, out, err)
    local lines = {}
    for l in out:gmatch("[^\n]+") do lines[#lines + 1] = l end
    assert.equal("MPIPoolExecutor", lines[1])
    assert.equal("7\t12\ttrue", lines[2])
    assert.matches(":%d+: deep$", lines[3])
    assert.equal("true", lines[4])
    assert.equal("1000\t333833500", lines[5])
    assert.matches("^false\t.*:%d+: bad item$", lines[6])
    assert.matches("^false\tShutdownError: cannot schedule new futures "
                   .. "after shutdown", lines[7])
  end)

  it("brings back closures, objects with methods and deep values "
     .. "(issue 11)", function ()
    local code, out, err = run([[
local futures = require "cfut"
local ex = futures.mpi_pool(1)
local inc, get = ex:submit(function ()
  local n = 10
  return function () n = n + 1 end, function () return n end
end):result()
inc()
print(get())
local Point = {}
Point.__index = Point
function Point:norm2 () return self.x * self.x + self.y * self.y end
local p = ex:submit(function () return setmetatable({x = 3, y = 4}, Point)
                    end):result()
print(p:norm2())
local l = ex:submit(function (n)
  local head = nil
  for i = n, 1, -1 do head = {v = i, next = head} end
  return head
end, 5000):result()
local k = 0
while l do k = k + 1; l = l.next end
print(k)
ex:shutdown()
]])
    expect_ok(code, out, err)
    assert.equal("11\n25\n5000\n", out)
  end)

  it("stops a running task with task_timeout and cancel{force = true} "
     .. "by replacing its worker, without breaking the pool", function ()
    local code, out, err = run([[
local futures = require "cfut"
local ex = futures.mpi_pool{max_workers = 1, task_timeout = 1}
local pid = ex:submit(futures.getpid):result()
local f = ex:submit(function () while true do end end)
print(pcall(f.result, f, 30))
print(ex:submit(function (x) return x * 2 end, 21):result(30))
local gate = ex:submit(function () futures.sleep(100) end)
local t0 = futures.monotonic()
while not gate:running() and futures.monotonic() - t0 < 20 do
  futures.sleep(0.01)
end
print(gate:cancel{force = true}, gate:cancelled())
print(ex:submit(function (x) return x * 3 end, 5):result(30))
print(ex:submit(futures.getpid):result(30) ~= pid)
ex:shutdown()
]])
    expect_ok(code, out, err)
    local lines = {}
    for l in out:gmatch("[^\n]+") do lines[#lines + 1] = l end
    assert.equal("false\tTimeoutError: task ran longer than 1 s", lines[1])
    assert.equal("42", lines[2])
    assert.equal("true\ttrue", lines[3])
    assert.equal("15", lines[4])
    assert.equal("true", lines[5])
  end)

  it("a stop of a task sent ahead kills no other task (none runs twice)",
     function ()
    -- the relay carries no stop value: the worker is killed once the
    -- stopped task comes first, not at once (which ran the tasks before it
    -- again on its replacement)
    local code, out, err = run([[
local futures = require "cfut"
local log = os.tmpname()
local ex = futures.mpi_pool(1)
ex:submit(function () end):result(30)
local function task (i, log)
  local f = io.open(log, "a"); f:write(i, "\n"); f:close()
  if i == 1 then futures.sleep(1) end
  if i == 20 then while true do end end
  return i
end
local fs = {}
for i = 1, 40 do fs[i] = ex:submit(task, i, log) end
local t0 = futures.monotonic()
while not fs[20]:running() and futures.monotonic() - t0 < 20 do
  futures.sleep(0.01)
end
print(fs[20]:cancel{force = true})
local ok = true
for i = 1, 40 do
  if i ~= 20 and fs[i]:result(30) ~= i then ok = false end
end
local n = {}
for l in io.lines(log) do n[l] = (n[l] or 0) + 1 end
os.remove(log)
for i = 1, 40 do if i ~= 20 and n[tostring(i)] ~= 1 then ok = false end end
print(ok)
ex:shutdown()
]])
    expect_ok(code, out, err)
    assert.equal("true\ntrue\n", out)
  end)

  it("runs under the stock lua5.4 too", function ()
    local code, out, err = run([[
local futures = require "cfut"
local ex <close> = futures.mpi_pool(1)
print(ex:submit(function () return "from " .. futures.thread_name() end)
        :result())
]], { prog = "lua5.4" })
    expect_ok(code, out, err)
    assert.equal("from MainThread\n", out)
  end)

  it("gives the seed programs the process pool's output", function ()
    for _, name in ipairs{ "futures_process_pool_map.lua",
                           "futures_process_pool_broken.lua" } do
      local src = assert(helpers.read_file(ROOT .. "/examples/" .. name))
      local c1, want, e1 = run(src)
      expect_ok(c1, want, e1)
      local c2, got, e2 = run((src:gsub("process_pool", "mpi_pool")))
      expect_ok(c2, got, e2)
      assert.equal(want:gsub("%d%d+", "N"), (got:gsub("%d%d+", "N")))
    end
  end)

  it("fails the futures with BrokenMPIPool within 5 s when a worker is "
     .. "killed, and leaves no process behind", function ()
    local code, out, err = run([[
local futures = require "cfut"
]] .. KIDS .. [[
local ex = futures.mpi_pool(2)
local pid = ex:submit(futures.getpid):result()
local f = ex:submit(function () futures.sleep(30) end)
local g = ex:submit(function () futures.sleep(30) end)
futures.sleep(0.2)
kids()
local t0 = futures.monotonic()
futures.kill(pid, "SIGKILL")
local e = f:exception(10)
print("took", futures.monotonic() - t0 < 5)
print(futures.is(e, futures.BrokenMPIPool),
      futures.is(e, futures.BrokenProcessPool))
print(e.message)
print(futures.is(g:exception(10), futures.BrokenMPIPool))
local ok, e2 = pcall(ex.submit, ex, print)
print(ok, futures.is(e2, futures.BrokenMPIPool))
]])
    expect_ok(code, out, err)
    assert.matches("took\ttrue\n", out, 1, true)
    assert.matches("true\ttrue\n" .. BROKEN .. "\ntrue\nfalse\ttrue\n", out,
                   1, true)
    local pids = pids_of(out)
    assert.is_true(#pids >= 3, out)
    assert.is_true(all_gone(pids), "processes left: " .. out)
  end)

  it("leaves no process behind after a normal exit", function ()
    local code, out, err = run([[
local futures = require "cfut"
]] .. KIDS .. [[
local ex = futures.mpi_pool(2)
local fs = {}
for i = 1, 4 do fs[i] = ex:submit(function () futures.sleep(0.05) end) end
for _, f in ipairs(fs) do f:result() end
kids()
]])
    expect_ok(code, out, err)
    local pids = pids_of(out)
    assert.is_true(#pids >= 3, out)
    assert.is_true(all_gone(pids), "processes left: " .. out)
  end)

  it("keeps idle workers and the script under 5 % of a core", function ()
    local code, out, err = run([[
local futures = require "cfut"
local ex = futures.mpi_pool(2)
local fs = {}
for i = 1, 2 do
  fs[i] = ex:submit(function () futures.sleep(0.2) return futures.getpid() end)
end
local pids = { futures.getpid(), fs[1]:result(), fs[2]:result() }
local function ticks (pid)
  local f = io.open("/proc/" .. pid .. "/stat")
  local s = f:read("a") f:close()
  local fields = {}
  for w in s:match("%) (.*)"):gmatch("%S+") do fields[#fields + 1] = w end
  return tonumber(fields[12]) + tonumber(fields[13])
end
local before = {}
for i, p in ipairs(pids) do before[i] = ticks(p) end
local t0 = futures.monotonic()
futures.sleep(5)
local secs = futures.monotonic() - t0
for i, p in ipairs(pids) do
  print(string.format("cpu %.4f", (ticks(p) - before[i]) / 100 / secs))
end
]], { timeout = 90 })
    expect_ok(code, out, err)
    local n = 0
    for share in out:gmatch("cpu ([%d.]+)") do
      n = n + 1
      assert.is_true(tonumber(share) < 0.05, "a process used " .. share
                     .. " of a core while idle")
    end
    assert.equal(3, n, out)
  end)

  it("fails with BrokenMPIPool when no worker can be spawned", function ()
    -- More workers than Open MPI has slots for, without oversubscribing.
    local code, out, err = run([[
local futures = require "cfut"
local ex = futures.mpi_pool(futures.cpu_count() + 3)
local t0 = futures.monotonic()
local e = ex:submit(print):exception(30)
print(futures.is(e, futures.BrokenMPIPool), futures.monotonic() - t0 < 5)
print(e.message)
]], { env = "env OMPI_MCA_rmaps_base_oversubscribe=0" })
    expect_ok(code, out, err)
    assert.matches("^true\ttrue\nNo worker process could be started, the "
                   .. "process pool is not usable anymore: MPI_Comm_spawn "
                   .. "failed: ", out)
  end)

  it("fails with BrokenMPIPool within 5 s when a host does not answer",
     function ()
    -- Open MPI 4.1 prints why its daemon could not start there, and its
    -- MPI_Comm_spawn never returns: no worker starts on this host.
    local code, out, err = run([[
local futures = require "cfut"
local ex = futures.mpi_pool{ max_workers = 1, hosts = "cfut-nohost.invalid" }
local t0 = futures.monotonic()
local e = ex:submit(print):exception(30)
local took = futures.monotonic() - t0
print(futures.is(e, futures.BrokenMPIPool), took < 5 or took)
print(e.message)
]])
    expect_ok(code, out, err)
    assert.matches("^true\ttrue\nNo worker process could be started, the "
                   .. "process pool is not usable anymore: ", out)
    if os.execute("command -v ssh >/dev/null") then
      assert.matches("no MPI worker started within 4 s (MPI_Comm_spawn did "
                     .. "not return: a host that does not answer?)", out, 1,
                     true)
    end
  end)

  it("rejects max_tasks_per_child and unknown options, naming them",
     function ()
    local e = helpers.errof(futures.mpi_pool, { max_tasks_per_child = 2 })
    assert.matches("bad argument #1 to '[%w_.]*mpi_pool' %(field "
                   .. "'max_tasks_per_child' is not offered", e)
    e = helpers.errof(futures.mpi_pool, { thread_name_prefix = "x" })
    assert.matches("unknown option 'thread_name_prefix'", e)
    e = helpers.errof(futures.mpi_pool, 0)
    assert.matches("max_workers must be a positive integer", e)
  end)

  it("says how to install MPI when cfut.mpi cannot be loaded", function ()
    local code, out, err = run([[
local futures = require "cfut"
package.cpath = ""
package.loaded["cfut.mpi"] = nil
local ok, e = pcall(futures.mpi_pool, 1)
print(ok, e)
print(futures.thread_pool(1):submit(function () return "still works" end)
        :result())
]])
    expect_ok(code, out, err)
    assert.matches("^false\t.*make mpi.*apt%-get install openmpi%-bin "
                   .. "libopenmpi%-dev", out)
    assert.matches("still works", out, 1, true)
  end)

  it("ends every process within 2 s on Ctrl-C", function ()
    local h = helpers.spawn([[
local futures = require "cfut"
]] .. KIDS .. [[
local ex = futures.mpi_pool(2)
local fs = {}
for i = 1, 2 do
  fs[i] = ex:submit(function () local x = 0 while true do x = x + 1 end end)
end
futures.sleep(0.5)
kids()
io.stdout:flush()
for _, f in ipairs(fs) do f:result() end
]], { timeout = 60 })
    assert.is_true(helpers.wait_until(function ()
      return #pids_of(h:stdout()) > 0 or h:status()
    end, 30), "the script did not start: " .. h:stderr())
    local pids = pids_of(h:stdout())
    assert.is_true(#pids >= 3, h:stdout() .. h:stderr())
    h:signal("INT")
    local t0 = futures.monotonic()
    assert.truthy(helpers.wait_until(function () return h:status() end, 5))
    assert.is_true(all_gone(pids), "processes left")
    assert.is_true(futures.monotonic() - t0 < 2 + 0.5 * 2,
                   "took " .. futures.monotonic() - t0 .. " s")
    assert.matches("interrupted!", h:stderr(), 1, true)
  end)
end)

describe("futures.mpi_pool, static mode (mpiexec -n N cfut -l cfut.mpi)",
         function ()

  local SRC = [[
local futures = require "cfut"
local ex = futures.mpi_pool()
local seen, n = {}, 0
for i, pid in ex:map(function () futures.sleep(0.05)
                                 return futures.getpid() end,
                     {1, 2, 3, 4, 5, 6}) do
  if not seen[pid] then seen[pid] = true n = n + 1 end
end
print("workers", n)
print("pids: " .. table.concat((function ()
  local t = {} for p in pairs(seen) do t[#t + 1] = p end return t end)(),
  " "))
ex:shutdown()
local ex2 = futures.mpi_pool(1)
print(ex2:submit(function (x) return x * 2 end, 21):result())
local ok, e = pcall(futures.mpi_pool, 5)
print(ok, e)
]]

  it("ends every rank within 2 s on Ctrl-C to mpiexec", function ()
    local wrapper = os.tmpname()
    local fh = assert(io.open(wrapper, "w"))
    fh:write("#!/bin/sh\nexec mpiexec -n 3 " .. shquote(helpers.cfut_bin())
             .. " -l cfut.mpi \"$@\"\n")
    fh:close()
    os.execute("chmod +x " .. shquote(wrapper))
    local h = helpers.spawn([[
local futures = require "cfut"
local ex = futures.mpi_pool()
local fs = {}
for i = 1, 2 do
  fs[i] = ex:submit(function ()
    print("pids: " .. futures.getpid())
    io.stdout:flush()
    local x = 0 while true do x = x + 1 end
  end)
end
print("pids: " .. futures.getpid())
io.stdout:flush()
for _, f in ipairs(fs) do f:result() end
]], { prog = wrapper, timeout = 60 })
    assert.is_true(helpers.wait_until(function ()
      return #pids_of(h:stdout()) >= 3 or h:status()
    end, 30), "the ranks did not start: " .. h:stdout() .. h:stderr())
    local pids = pids_of(h:stdout())
    h:signal("INT")
    local t0 = futures.monotonic()
    assert.truthy(helpers.wait_until(function () return h:status() end, 5))
    assert.is_true(all_gone(pids), "ranks left")
    assert.is_true(futures.monotonic() - t0 < 2 + 0.5 * 2,
                   "took " .. futures.monotonic() - t0 .. " s")
    assert.are_not.equal(0, h:status())
    os.remove(wrapper)
  end)

  for _, prog in ipairs{ "cfut", "lua5.4" } do
    it("rank 0 runs the script, the other ranks serve its pools (" .. prog
       .. ")", function ()
      local code, out, err = run(SRC, { np = 3, prog = prog == "lua5.4"
                                        and "lua5.4" or nil })
      expect_ok(code, out, err)
      assert.matches("workers\t2\n", out, 1, true)
      assert.matches("\n42\n", out, 1, true)
      assert.matches("false\t.*max_workers is 5, but mpiexec started 2 "
                     .. "worker ranks", out)
      assert.is_true(all_gone(pids_of(out)), "ranks left")
    end)
  end
end)

-- The process pool's behaviour specs, one body for both pools
-- (spec/process_pool_spec.lua; its cases about local worker processes
-- themselves stay with the process pool).  MPI starts first, so that
-- Open MPI's own daemon is not taken for a worker left behind.
describe("the process pool's behaviour specs on mpi_pool (spawn mode)",
         function ()
  futures.mpi_pool(1):shutdown()
  CFUT_SPEC_POOL = "mpi_pool"
  local ok, e = pcall(assert(loadfile(ROOT .. "/spec/process_pool_spec.lua",
                                      "t", _ENV)))
  CFUT_SPEC_POOL = nil
  assert(ok, e)
end)
