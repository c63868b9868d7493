-- futures_context_manager.lua: port of the seed program
-- futures_context_manager.py (the executor as a context manager).
local futures = require "cfut"

local function task (n)
  print(n)
end

do
  -- <close> plays the part of Python's `with`: ex:shutdown(true) at the
  -- end of the block, also when the block raises an error.
  local ex <close> = futures.thread_pool(2)
  print("main: starting")
  ex:submit(task, 1)
  ex:submit(task, 2)
  ex:submit(task, 3)
  ex:submit(task, 4)
end

print("main: done")
