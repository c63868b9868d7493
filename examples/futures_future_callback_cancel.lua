-- futures_future_callback_cancel.lua: port of the seed program
-- futures_future_callback_cancel.py (cancelling queued tasks).
local futures = require "cfut"

local function task (n)
  print(string.format("%d: sleeping", n))
  futures.sleep(0.5)
  print(string.format("%d: done", n))
  return n / 10
end

-- cancel() runs it at once for the futures it cancels; the two that run
-- get theirs when the main script next waits, in ex:shutdown().
local function done (fn)
  if fn:cancelled() then
    print(string.format("%s: canceled", fn.arg))
  elseif fn:done() then
    print(string.format("%s: not canceled", fn.arg))
  end
end

local ex = futures.thread_pool(2)
print("main: starting")
local tasks = {}

for i = 10, 1, -1 do
  print(string.format("main: submitting %d", i))
  local f = ex:submit(task, i)
  f.arg = i
  f:add_done_callback(done)
  tasks[#tasks + 1] = {i, f}
end

for k = #tasks, 1, -1 do
  local i, t = tasks[k][1], tasks[k][2]
  if not t:cancel() then
    print(string.format("main: did not cancel %d", i))
  end
end

ex:shutdown()
