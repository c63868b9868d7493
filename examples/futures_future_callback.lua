-- futures_future_callback.lua: port of the seed program
-- futures_future_callback.py (a done-callback on a future).
local futures = require "cfut"

local function task (n)
  print(string.format("%d: sleeping", n))
  futures.sleep(0.5)
  print(string.format("%d: done", n))
  return n / 10
end

-- Runs in the main script's state, the next time it waits (here: in
-- f:result()), never on the worker thread.
local function done (fn)
  if fn:cancelled() then
    print(string.format("%s: canceled", fn.arg))
  elseif fn:done() then
    local err = fn:exception()
    if err then
      print(string.format("%s: error returned: %s", fn.arg, err))
    else
      local result = fn:result()
      print(string.format("%s: value returned: %s", fn.arg, result))
    end
  end
end

local ex = futures.thread_pool(2)
print("main: starting")
local f = ex:submit(task, 5)
f.arg = 5
f:add_done_callback(done)
local result = f:result()
