-- futures_future_exception.lua: port of the seed program
-- futures_future_exception.py (an error raised by a task).
local futures = require "cfut"

local function task (n)
  print(string.format("%d: starting", n))
  -- Level 0: the message without a "file:line:" prefix, as Python's
  -- ValueError prints.
  error(string.format("the value %d is no good", n), 0)
end

local ex = futures.thread_pool(2)
print("main: starting")
local f = ex:submit(task, 5)

local err = f:exception()
print(string.format("main: error: %s", err))

local ok, e = pcall(f.result, f)
if not ok then
  print(string.format('main: saw error "%s" when accessing result', e))
end
