-- futures_thread_pool_map.lua: port of the seed program
-- futures_thread_pool_map.py (map() with a basic thread pool).
local futures = require "cfut"

local function task (n)
  print(string.format("%s: sleeping %d", futures.thread_name(), n))
  futures.sleep(n / 10)
  print(string.format("%s: done with %d", futures.thread_name(), n))
  return n / 10
end

-- Python's repr of a list: [0.5, 0.4, 0.3].
local function list_repr (t)
  local parts = {}
  for i = 1, #t do parts[i] = tostring(t[i]) end
  return "[" .. table.concat(parts, ", ") .. "]"
end

local ex = futures.thread_pool(2)
print("main: starting")
local results = ex:map(task, {5, 4, 3, 2, 1})
print(string.format("main: unprocessed results %s", tostring(results)))
print("main: waiting for real results")
local real_results = {}
for i, value in results do real_results[i] = value end
print(string.format("main: results: %s", list_repr(real_results)))
