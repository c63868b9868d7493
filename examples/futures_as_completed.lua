-- futures_as_completed.lua: port of the seed program
-- futures_as_completed.py (waiting for tasks in any order).
local futures = require "cfut"

-- Returns two values where Python returns the tuple (n, n / 10).
local function task (n)
  futures.sleep(math.random())
  return n, n / 10
end

local ex = futures.thread_pool(5)
print("main: starting")

local wait_for = {}
for i = 5, 1, -1 do
  wait_for[#wait_for + 1] = ex:submit(task, i)
end

for f in futures.as_completed(wait_for) do
  print(string.format("main: result: (%s, %s)", f:result()))
end
