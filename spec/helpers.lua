-- spec/helpers.lua: helpers shared by the cfut specs.
--
-- Waits here are always bounded: a condition is polled until a deadline,
-- never assumed after a fixed sleep.  Gates (futures completed by hand)
-- order the work of tasks against the main script deterministically: a task
-- waits on gate:result(timeout), the spec calls gate:set_result(...).
--
-- Typical use in a spec file:
--
--   local futures = require "cfut"
--   local helpers = require "helpers"
--   after_each(helpers.cleanup)       -- open gates, shut tracked pools down
--   ...
--   local ex = helpers.pool(1)        -- tracked: shut down in after_each
--   local gate = helpers.gate()
--   local busy = helpers.block(ex, gate, 1)   -- the one worker is now busy
--   local f = ex:submit(task)         -- so f stays pending until:
--   gate:set_result(true)

local futures = require "cfut"

local M = {}

-- Run under ASan/TSan (make asan / make tsan): everything is slower.
M.sanitized = os.getenv("CFUT_SANITIZED") == "1"

-- Bound for waits that are expected to succeed (a task's result, a gate).
M.LONG = M.sanitized and 30 or 5

-- Tolerance for "returned at once" measurements, in seconds.
M.QUICK = M.sanitized and 2 or 0.5

local LONG = M.LONG


-- {==================================================================
-- Waiting for conditions
-- ===================================================================

--[[
Poll 'pred' until it returns a true value or 'timeout' seconds (default
LONG) pass.  Between polls it runs this state's pending done-callbacks
(futures.poll) and sleeps a millisecond.  Returns pred's value, or false.
]]
function M.wait_until (pred, timeout)
  local deadline = futures.monotonic() + (timeout or LONG)
  while true do
    local v = pred()
    if v then return v end
    if futures.monotonic() > deadline then return false end
    futures.poll()
    futures.sleep(0.001)
  end
end

--[[
Like wait_until, but busy-waits and calls nothing that runs done-callbacks
(only 'pred' and futures.monotonic), for specs that check when callbacks
run.
]]
function M.spin_until (pred, timeout)
  local deadline = futures.monotonic() + (timeout or LONG)
  while true do
    local v = pred()
    if v then return v end
    if futures.monotonic() > deadline then return false end
  end
end

-- Seconds taken by fn(...), then a table.pack of its results.
function M.timed (fn, ...)
  local t0 = futures.monotonic()
  local r = table.pack(fn(...))
  return futures.monotonic() - t0, r
end

-- }==================================================================


-- {==================================================================
-- Gates and pools that cleanup() takes care of
-- ===================================================================

local gates = {}
local pools = {}

--[[
A gate: a hand-made future (futures.future()) that tasks wait on with
gate:result(timeout) and the spec opens with gate:set_result(...).
cleanup() opens every gate left closed, so a failing spec does not leave
workers blocked.
]]
function M.gate ()
  local g = futures.future()
  gates[#gates + 1] = g
  return g
end

-- futures.thread_pool(arg), shut down by cleanup().
function M.pool (arg)
  local ex = futures.thread_pool(arg)
  pools[#pools + 1] = ex
  return ex
end

-- Remember an executor made elsewhere, so that cleanup() shuts it down.
function M.track (ex)
  pools[#pools + 1] = ex
  return ex
end

--[[
For after_each: open the gates still closed (file gates too), then shut
the tracked pools down (cancelling what is still queued, waiting for the
rest), then end the processes started by spawn() and remove the
directories made by tmpdir().
]]
function M.cleanup ()
  for i = #gates, 1, -1 do
    local g = gates[i]
    if not g:done() then pcall(g.set_result, g, true) end
    gates[i] = nil
  end
  M.cleanup_files(true)
  for i = #pools, 1, -1 do
    local ex = pools[i]
    pools[i] = nil
    pcall(ex.shutdown, ex, true, true)
  end
  M.cleanup_files(false)
end

-- A task that waits for 'gate' to open, then returns 'v'.
local function gated (gate, v)
  gate:result(LONG)
  return v
end
M.gated = gated

--[[
Submit 'n' tasks to 'ex' that wait on 'gate', and wait until all of them
are running (so 'n' workers are busy).  Returns the list of their futures;
task i returns i once the gate opens.  Raises if they do not all start.
With 'nocallbacks' the wait busy-waits and runs no done-callbacks.
]]
function M.block (ex, gate, n, nocallbacks)
  local fs = {}
  for i = 1, n do fs[i] = ex:submit(gated, gate, i) end
  local waitfn = nocallbacks and M.spin_until or M.wait_until
  local ok = waitfn(function ()
    return M.count(fs, "running") == n
  end)
  if not ok then
    error(string.format("only %d of %d blocking tasks started",
                        M.count(fs, "running"), n), 2)
  end
  return fs
end

--[[
How many futures in 'fs' satisfy 'what': a method name ("running",
"done", "cancelled") or a predicate function(f).
]]
function M.count (fs, what)
  local n = 0
  for _, f in ipairs(fs) do
    local ok
    if type(what) == "function" then ok = what(f) else ok = f[what](f) end
    if ok then n = n + 1 end
  end
  return n
end

-- A future that is neither running nor done (still queued).
function M.is_pending (f)
  return not f:running() and not f:done()
end

-- }==================================================================


-- {==================================================================
-- Errors
-- ===================================================================

--[[
Call fn(...), which must fail; return its error value.  Raises (blaming
the caller) if it succeeded.
]]
function M.errof (fn, ...)
  local r = table.pack(pcall(fn, ...))
  if r[1] then
    local shown = {}
    for i = 2, r.n do shown[#shown + 1] = tostring(r[i]) end
    error("expected an error, got success: "
          .. table.concat(shown, ", "), 2)
  end
  return r[2]
end

-- The number of keys in table t.
function M.size (t)
  local n = 0
  for _ in pairs(t) do n = n + 1 end
  return n
end

-- A set {[v] = true} of the values of sequence t.
function M.set (t)
  local s = {}
  for _, v in ipairs(t) do s[v] = true end
  return s
end

-- }==================================================================


-- {==================================================================
-- Child processes (for what only stderr or the exit status shows)
-- ===================================================================

-- Quote s for /bin/sh.
local function shquote (s)
  return "'" .. tostring(s):gsub("'", "'\\''") .. "'"
end
M.shquote = shquote

local function readall (path)
  local fh = io.open(path, "rb")
  if not fh then return "" end
  local s = fh:read("a")
  fh:close()
  return s
end

-- "env NAME=value ..." for the shell, from a table (sorted names), or "".
local function envwords (env)
  if not env then return "" end
  local names, words = {}, { "env" }
  for k in pairs(env) do names[#names + 1] = k end
  table.sort(names)
  for _, k in ipairs(names) do
    words[#words + 1] = shquote(k .. "=" .. tostring(env[k]))
  end
  return table.concat(words, " ")
end

-- The host program under test ($CFUT_BIN, set by `make spec`).
function M.cfut_bin ()
  local bin = os.getenv("CFUT_BIN")
  if not bin or bin == "" then
    error("CFUT_BIN is not set (run the specs through `make spec`)", 2)
  end
  return bin
end

-- Options for M.run/M.spawn that run the stock lua5.4 on the module under
-- test; nil and a reason when it cannot run here.  A sanitized cfut.so
-- needs the sanitizer's runtime loaded first.
function M.stock_lua ()
  if not M.sanitized then return { prog = "lua5.4" } end
  local cpath = os.getenv("LUA_CPATH") or ""
  local lib = cpath:find("tsan", 1, true) and "libtsan.so" or "libasan.so"
  local p = io.popen("gcc -print-file-name=" .. lib .. " 2>/dev/null")
  local path = p and p:read("l")
  if p then p:close() end
  if not path or not path:find("/", 1, true) then
    return nil, "no " .. lib .. " to preload into lua5.4"
  end
  return { prog = "lua5.4", env = { LD_PRELOAD = path } }
end

--[[
Run the Lua source 'src' as a script in a child process and return a table
{ status = <exit code>, stdout = <text>, stderr = <text> }.
opts (optional):
  prog    the interpreter to run (default: $CFUT_BIN)
  args    sequence of extra script arguments
  stdin   text fed to the child's standard input
  timeout seconds after which the child is killed (default LONG * 2;
          needs coreutils' timeout(1); a killed child exits 124)
  env     table { NAME = value } of variables added to its environment
  cwd     directory it runs in
The child inherits the environment (LUA_PATH, LUA_CPATH...).
]]
function M.run (src, opts)
  opts = opts or {}
  local prog = opts.prog or M.cfut_bin()
  local script = os.tmpname()
  local out, err, inp = os.tmpname(), os.tmpname(), os.tmpname()
  local fh = assert(io.open(script, "wb"))
  fh:write(src)
  fh:close()
  fh = assert(io.open(inp, "wb"))
  fh:write(opts.stdin or "")
  fh:close()
  local cmd = { envwords(opts.env), "timeout", "-k", "2",
                tostring(opts.timeout or LONG * 2),
                shquote(prog), shquote(script) }
  for _, a in ipairs(opts.args or {}) do cmd[#cmd + 1] = shquote(a) end
  local line = table.concat(cmd, " ") .. " <" .. shquote(inp)
               .. " >" .. shquote(out) .. " 2>" .. shquote(err)
  if opts.cwd then line = "cd " .. shquote(opts.cwd) .. " && " .. line end
  local ok, how, code = os.execute(line)
  local r = {
    status = (how == "exit") and code or (128 + (code or 0)),
    ok = ok and true or false,
    stdout = readall(out),
    stderr = readall(err),
  }
  os.remove(script); os.remove(out); os.remove(err); os.remove(inp)
  return r
end

--[[
Run 'src', the body of a spec that makes cfut write to stderr on purpose
(a failing initializer or done-callback reports itself there), in a child
cfut, so that the report lands in a file and not between busted's marks.
'src' sees futures, helpers, luassert's assert, errof, pool (a thread
pool) and LONG as the spec does.  Raises with the child's output if it did
not run to its end; returns what it wrote to stderr, then to stdout.
]]
function M.in_child (src)
  local r = M.run("local futures = require 'cfut'\n"
                  .. "local helpers = require 'helpers'\n"
                  .. "local assert = require 'luassert'\n"
                  .. "local errof, pool = helpers.errof, helpers.pool\n"
                  .. "local LONG = helpers.LONG\n"
                  .. "do\n" .. src .. "\nend\n"
                  .. "helpers.cleanup()\n"
                  .. "io.stdout:write('in_child: done\\n')\n")
  local out = r.stdout:gsub("in_child: done\n$", "")
  if r.status ~= 0 or #out == #r.stdout then
    error(("the child failed (status %d):\n%s%s"):format(r.status, r.stdout,
                                                         r.stderr), 2)
  end
  return r.stderr, out
end

-- }==================================================================


-- {==================================================================
-- Files, and gates that cross processes
-- ===================================================================

--[[
Futures cannot cross to another process, so process-pool tasks and the
spec meet through files: a task writes a mark (write_file) that the spec
waits for (await_file), or waits for a file gate that the spec opens.
write_file and await_file use nothing but their arguments, 'futures' and
the standard library, so tasks can take them as upvalues.
]]

local tmpdirs = {}
local fgates = {}
local spawned = {}

-- Write s to 'path' at once: readers see no file or the whole of it.
function M.write_file (path, s)
  local tmp = path .. ".part" .. futures.getpid()
  local fh = assert(io.open(tmp, "wb"))
  fh:write(s)
  fh:close()
  assert(os.rename(tmp, path))
end

-- The contents of the file at 'path', or nil if there is none.
function M.read_file (path)
  local fh = io.open(path, "rb")
  if not fh then return nil end
  local s = fh:read("a")
  fh:close()
  return s
end

--[[
Wait until the file at 'path' exists, for at most 'timeout' seconds
(default LONG); return its contents, or nil when time runs out.  Usable
in tasks (it runs no done-callbacks).
]]
function M.await_file (path, timeout)
  local deadline = futures.monotonic() + (timeout or LONG)
  while true do
    local fh = io.open(path, "rb")
    if fh then
      local s = fh:read("a")
      fh:close()
      return s
    end
    if futures.monotonic() > deadline then return nil end
    futures.sleep(0.002)
  end
end

-- A new empty directory, removed by cleanup().
function M.tmpdir ()
  local dir = os.tmpname()
  os.remove(dir)
  assert(os.execute("mkdir -m 700 " .. shquote(dir)))
  tmpdirs[#tmpdirs + 1] = dir
  return dir
end

--[[
A gate that crosses processes: tasks wait with await_file(g.path, t), the
spec opens it with g:open().  cleanup() opens every gate left closed.
]]
function M.fgate ()
  local g = { path = M.tmpdir() .. "/open" }
  function g.open () M.write_file(g.path, "open") end
  function g.is_open () return M.read_file(g.path) ~= nil end
  fgates[#fgates + 1] = g
  return g
end

--[[
For cleanup(): with 'gates_only', open the file gates still closed; else
end the spawned processes still running and remove the temporary
directories.
]]
function M.cleanup_files (gates_only)
  if gates_only then
    for i = #fgates, 1, -1 do
      if not fgates[i].is_open() then pcall(fgates[i].open) end
      fgates[i] = nil
    end
    return
  end
  for i = #spawned, 1, -1 do
    spawned[i]:close()
    spawned[i] = nil
  end
  for i = #tmpdirs, 1, -1 do
    os.execute("rm -rf " .. shquote(tmpdirs[i]))
    tmpdirs[i] = nil
  end
end

-- }==================================================================


-- {==================================================================
-- Processes: open files, children, background scripts (Linux /proc)
-- ===================================================================

-- The lines a shell command prints.
local function lines_of (cmd)
  local p = assert(io.popen(cmd))
  local t = {}
  for l in p:lines() do t[#t + 1] = l end
  p:close()
  return t
end

local function numbers (t)
  local r = {}
  for _, v in ipairs(t) do r[#r + 1] = math.tointeger(tonumber(v)) end
  table.sort(r)
  return r
end

--[[
The open file descriptors of process 'pid' (default: this one), sorted,
not counting the pipe that lists them (popen may not have closed its
write end in this process yet when the listing runs).
]]
function M.fds (pid)
  pid = pid or futures.getpid()
  return numbers(lines_of("me=$(readlink /proc/$$/fd/1); find /proc/" .. pid
                          .. "/fd -mindepth 1 -printf '%f %l\\n' | "
                          .. "while read -r fd to; do "
                          .. "[ \"$to\" = \"$me\" ] || echo \"$fd\"; done"))
end

-- The child processes of process 'pid' (default: this one), sorted, not
-- counting the shell that finds them.
function M.children (pid)
  pid = pid or futures.getpid()
  local t = lines_of("echo $$; exec pgrep -P " .. pid)
  local shell = table.remove(t, 1)
  local r = {}
  for _, v in ipairs(t) do
    if v ~= shell then r[#r + 1] = v end
  end
  return numbers(r)
end

-- The state letter of process 'pid' (R, S, Z...), or nil if there is
-- no such process (it has exited and been reaped).
function M.proc_state (pid)
  local s = M.read_file("/proc/" .. pid .. "/stat")
  return s and s:match("^%d+ %b() (%a)")
end

-- Is process 'pid' still running (it exists and is not a zombie)?
function M.alive (pid)
  local st = M.proc_state(pid)
  return st ~= nil and st ~= "Z" and st ~= "X"
end

-- The values of sequence 'a' that are not in sequence 'b', in order.
function M.missing (a, b)
  local inb, r = M.set(b), {}
  for _, v in ipairs(a) do
    if not inb[v] then r[#r + 1] = v end
  end
  return r
end

local Spawned = {}
Spawned.__index = Spawned

-- Its exit status once it has ended, else nil.
function Spawned:status ()
  local s = M.read_file(self.rcfile)
  return s and tonumber(s:match("^(%d+)"))
end

-- Wait at most 'timeout' seconds (default LONG) for it to end; its exit
-- status, or nil.
function Spawned:wait (timeout)
  return M.wait_until(function () return self:status() end, timeout)
         or nil
end

function Spawned:stdout () return M.read_file(self.outfile) or "" end
function Spawned:stderr () return M.read_file(self.errfile) or "" end

-- Send it signal 'sig' (a name such as "SIGINT", or a number).
function Spawned:signal (sig)
  return futures.kill(self.pid, sig)
end

-- Kill it if it still runs (and the processes it leads), forget its files.
function Spawned:close ()
  if not self:status() and M.alive(self.pid) then
    pcall(futures.kill, self.pid, "SIGKILL")
    self:wait()
  end
  for _, f in ipairs{ self.script, self.outfile, self.errfile, self.rcfile,
                      self.pidfile } do
    os.remove(f)
  end
end

--[[
Start the Lua source 'src' as a script in a background child process and
return a handle: h.pid (the interpreter's pid, once known), h:status(),
h:wait(timeout), h:stdout(), h:stderr(), h:signal(sig), h:close().
cleanup() kills it if it still runs.  opts as for run() (prog, args, env,
timeout); its stdin is /dev/null.
]]
function M.spawn (src, opts)
  opts = opts or {}
  local prog = opts.prog or M.cfut_bin()
  local h = setmetatable({ script = os.tmpname(), outfile = os.tmpname(),
                           errfile = os.tmpname(), rcfile = os.tmpname(),
                           pidfile = os.tmpname() }, Spawned)
  os.remove(h.rcfile)
  os.remove(h.pidfile)
  local fh = assert(io.open(h.script, "wb"))
  fh:write(src)
  fh:close()
  local words = { shquote(prog), shquote(h.script) }
  for _, a in ipairs(opts.args or {}) do words[#words + 1] = shquote(a) end
  local inner = "echo $$ >" .. shquote(h.pidfile .. ".part") .. " && mv "
                .. shquote(h.pidfile .. ".part") .. " " .. shquote(h.pidfile)
                .. " && exec " .. table.concat(words, " ")
  local rcpart = h.rcfile .. ".part"
  local cmd = string.format(
    "(%s timeout -k 2 %s sh -c %s >%s 2>%s </dev/null; "
    .. "echo $? >%s && mv %s %s) >/dev/null 2>&1 &",
    envwords(opts.env), tostring(opts.timeout or LONG * 6), shquote(inner),
    shquote(h.outfile), shquote(h.errfile), shquote(rcpart), shquote(rcpart),
    shquote(h.rcfile))
  assert(os.execute(cmd))
  local pid = M.wait_until(function () return M.read_file(h.pidfile) end)
  h.pid = assert(math.tointeger(tonumber(pid)), "the child did not start")
  spawned[#spawned + 1] = h
  return h
end

-- }==================================================================

--[[
MARKS: the start of a child script whose tasks write marks (their pid) in
the directory arg[1]: mark(name) writes one at once (readers see no file or
the whole of it), marked(name) tells whether it is there.
]]
M.MARKS = [[
  local futures = require "cfut"
  local dir = arg[1]
  local function mark (name)
    local f = assert(io.open(dir .. "/" .. name .. ".part", "w"))
    f:write(futures.getpid())
    f:close()
    os.rename(dir .. "/" .. name .. ".part", dir .. "/" .. name)
  end
  local function marked (name)
    local f = io.open(dir .. "/" .. name)
    if f then f:close() end
    return f ~= nil
  end
]]

--[[
spawn_marked(src [, opts]): start MARKS .. src (helpers.spawn, with opts)
with a fresh directory as arg[1], and wait (bounded) until the script
has printed exactly "ready".  Returns the handle and the directory.
]]
function M.spawn_marked (src, opts)
  local dir = M.tmpdir()
  opts = opts or {}
  opts.args = { dir }
  local h = M.spawn(M.MARKS .. src, opts)
  assert(M.wait_until(function ()
    return h:stdout():find("ready", 1, true) or h:status()
  end), "the script did not start")
  assert(h:stdout() == "ready\n",
         "the script said " .. h:stdout() .. h:stderr())
  return h, dir
end

return M
