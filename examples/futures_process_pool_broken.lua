-- futures_process_pool_broken.lua: port of the seed program
-- futures_process_pool_broken.py (a worker process killed under the pool).
local futures = require "cfut"

do
  local ex <close> = futures.process_pool(2)
  print("getting the pid for one worker")
  local f1 = ex:submit(futures.getpid)
  local pid1 = f1:result()

  print(string.format("killing process %d", pid1))
  futures.kill(pid1, "SIGHUP")

  print("submitting another task")
  local ok, e = pcall(function ()
    local f2 = ex:submit(futures.getpid)
    return f2:result()
  end)
  if not ok then
    if futures.is(e, futures.BrokenProcessPool) then
      print(string.format("could not start new tasks: %s", e.message))
    else
      error(e, 0)
    end
  end
end
