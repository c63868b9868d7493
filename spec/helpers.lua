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
For after_each: open the gates still closed, then shut the tracked pools
down (cancelling what is still queued, waiting for the rest).
]]
function M.cleanup ()
  for i = #gates, 1, -1 do
    local g = gates[i]
    if not g:done() then pcall(g.set_result, g, true) end
    gates[i] = nil
  end
  for i = #pools, 1, -1 do
    local ex = pools[i]
    pools[i] = nil
    pcall(ex.shutdown, ex, true, true)
  end
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

-- The host program under test ($CFUT_BIN, set by `make spec`).
function M.cfut_bin ()
  local bin = os.getenv("CFUT_BIN")
  if not bin or bin == "" then
    error("CFUT_BIN is not set (run the specs through `make spec`)", 2)
  end
  return bin
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
  local cmd = { "timeout", "-k", "2", tostring(opts.timeout or LONG * 2),
                shquote(prog), shquote(script) }
  for _, a in ipairs(opts.args or {}) do cmd[#cmd + 1] = shquote(a) end
  local line = table.concat(cmd, " ") .. " <" .. shquote(inp)
               .. " >" .. shquote(out) .. " 2>" .. shquote(err)
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

-- }==================================================================

return M
