-- Done-callbacks: on hand-made futures and pool futures, before and after
-- completion.  A callback that fails is reported on stderr (API.md), so a
-- missing run is acceptable only if the failure was a memory error: the
-- driver then finds "not enough memory" on stderr.
local fa = require "fa"
fa.run(function (fa)
  local futures = require "cfut"
  local ran = 0
  local function cb (f) ran = ran + 1 end
  local h = futures.future()   -- hand-made: left pending if the body fails
  h:add_done_callback(cb)
  h:add_done_callback(cb)
  h:set_result(1, 2)
  local ex = fa.executor(futures.thread_pool(1))
  local f = fa.future(ex:submit(function () return "x" end))
  f:add_done_callback(cb)
  fa.check(f:result(10) == "x", "result")
  f:add_done_callback(cb)
  local g = fa.future(ex:submit(function () error("boom") end))
  g:add_done_callback(cb)
  futures.wait({g}, 10)
  futures.poll()
  ex:shutdown(true)
  if ran ~= 5 then error("callbacks ran " .. ran .. " of 5") end
end)
