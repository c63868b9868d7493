-- futures_thread_pool_submit.lua: port of the seed program
-- futures_thread_pool_submit.py (scheduling individual tasks).
local futures = require "cfut"

local function task (n)
  print(string.format("%s: sleeping %d", futures.thread_name(), n))
  futures.sleep(n / 10)
  print(string.format("%s: done with %d", futures.thread_name(), n))
  return n / 10
end

local ex = futures.thread_pool(2)
print("main: starting")
local f = ex:submit(task, 5)
print(string.format("main: future: %s", tostring(f)))
print("main: waiting for results")
local result = f:result()
print(string.format("main: result: %s", result))
print(string.format("main: future after result: %s", tostring(f)))
