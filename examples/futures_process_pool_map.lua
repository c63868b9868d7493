-- futures_process_pool_map.lua: port of the seed program
-- futures_process_pool_map.py (map over a pool of worker processes).
local futures = require "cfut"

local function task (n)
  return n, futures.getpid()
end

local ex = futures.process_pool(2)
for _, n, pid in ex:map(task, {5, 4, 3, 2, 1}) do
  print(string.format("ran task %d in process %d", n, pid))
end
