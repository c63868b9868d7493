-- luv_loop.lua: cfut inside a luv event loop (API.md §2 "Event loops").
-- A luv timer ticks every 10 ms while 100 tasks run on a thread pool.
-- Each task is awaited by a coroutine with futures.await; the loop waits
-- on futures.fileno() with its timer and never blocks in result(), so the
-- timer keeps ticking.  The results go to stdout; how the timer fared
-- (ticks, the longest gap between two) goes to stderr, as it varies from
-- run to run.
local futures = require "cfut"
local uv = require "luv"

-- A light task: a short sleep, then the sum of the squares up to n.
local function work (n)
  futures.sleep(0.005)
  local s = 0
  for i = 1, n do s = s + i * i end
  return s
end

local ex <close> = futures.thread_pool(4)

-- The few lines that put cfut into the loop: futures.poll() runs the
-- callbacks (and resumes the awaits) that are due when fileno() is readable.
local poll = uv.new_poll(futures.fileno())
poll:start("r", function () futures.poll() end)

local ticks, longest, last = 0, 0, uv.hrtime()
local timer = uv.new_timer()
timer:start(10, 10, function ()
  local now = uv.hrtime()
  if now - last > longest then longest = now - last end
  last = now
  ticks = ticks + 1
end)

local results, left = {}, 100
for i = 1, 100 do
  coroutine.wrap(function ()
    results[i] = futures.await(ex:submit(work, i))
    left = left - 1
    if left == 0 then         -- all in: close the handles, the loop ends
      poll:close()
      timer:close()
    end
  end)()
end
print("main: 100 tasks submitted, the loop runs")
uv.run()

local sum = 0
for i = 1, 100 do sum = sum + results[i] end
print(("main: 100 results, in order: %d, %d, ..., %d"):format(
      results[1], results[2], results[100]))
print(("main: their sum: %d"):format(sum))
io.stdout:flush()
io.stderr:write(("main: the timer ticked %d times while they ran; "
                 .. "longest gap %.1f ms\n"):format(ticks, longest / 1e6))
