-- cfut.loop: futures.await(f [, timeout]), for coroutines run by an event
-- loop that waits on futures.fileno() and calls futures.poll() when it is
-- readable (src/lloop.c).  With luv:
--
--   local poll = uv.new_poll(futures.fileno())
--   poll:start("r", function () futures.poll() end)
--   coroutine.wrap(function () print(futures.await(f)) end)()
--   uv.run()        -- poll:close() once nothing is left to await
--
-- await adds a done-callback that resumes the coroutine, and yields; the
-- callback runs in futures.poll().  A timeout arms the timerfd behind
-- fileno(), and futures.poll() resumes the coroutines whose time ran out.

local type, error, tostring, pairs, ipairs =
      type, error, tostring, pairs, ipairs
local running, yield, resume, isyieldable =
      coroutine.running, coroutine.yield, coroutine.resume,
      coroutine.isyieldable
local traceback = debug.traceback

return function (M, C)
  local monotonic = M.monotonic
  local pending = {}          -- awaits with a deadline: w -> true

  -- Arm the timer for the earliest deadline, or disarm it.
  local function arm ()
    local first
    for w in pairs(pending) do
      if not first or w.deadline < first then first = w.deadline end
    end
    C.arm(first)
  end

  -- Resume the coroutine of w, which has yielded in await.  It runs under
  -- futures.poll() (or any wait that runs callbacks): an error it raises
  -- there is written to stderr, as a done-callback's is.
  local function wake (w, why)
    if w.over then return end
    w.over = why
    if pending[w] then
      pending[w] = nil
      arm()
    end
    if not w.yielded then return end        -- await has not yielded yet
    local ok, err = resume(w.co)
    if not ok then
      io.stderr:write("cfut: exception in a coroutine resumed by "
                      .. "futures.await:\n", traceback(w.co, tostring(err)),
                      "\n")
      io.stderr:flush()
    end
  end

  function C.expire ()
    local now, due = monotonic(), {}
    for w in pairs(pending) do
      if w.deadline <= now then due[#due + 1] = w end
    end
    for _, w in ipairs(due) do wake(w, "timeout") end
    return #due
  end

  -- futures.await(f [, timeout]): yield until f is done, then return like
  -- f:result().  Raises TimeoutError when 'timeout' seconds pass first.
  function M.await (f, timeout)
    if not C.isfuture(f) then
      error(("bad argument #1 to 'await' (cfut.Future expected, got %s)")
            :format(type(f)), 2)
    end
    if timeout ~= nil and (type(timeout) ~= "number" or timeout ~= timeout)
    then
      error("bad argument #2 to 'await' (timeout must be a number)", 2)
    end
    if f:done() then return f:result(0) end
    local co, main = running()
    if main or not isyieldable() then
      error("futures.await must run in a coroutine of an event loop "
            .. "(outside one, use f:result())", 2)
    end
    local w = { co = co }
    f:add_done_callback(function () wake(w, "done") end)
    if timeout and not w.over then
      w.deadline = monotonic() + (timeout > 0 and timeout or 0)
      pending[w] = true
      arm()
    end
    while not w.over do
      w.yielded = true
      yield()
    end
    if w.over == "timeout" then error(M.TimeoutError(""), 2) end
    return f:result(0)
  end
end
