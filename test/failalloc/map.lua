-- map over a thread pool: a sequence, an iterator, bounded buffering.
local fa = require "fa"
fa.run(function (fa)
  local futures = require "cfut"
  local ex = fa.executor(futures.thread_pool(2))
  local xs = {}
  for i = 1, 20 do xs[i] = i end
  local sum = 0
  for i, v in ex:map(function (x) return x * x end, xs) do
    fa.check(v == i * i, "map value")
    sum = sum + v
  end
  fa.check(sum == 2870, "map sum")
  local k = 0
  local function gen () k = k + 1; if k <= 10 then return k end end
  local n = 0
  for i, v in ex:map{function (x) return -x end, gen, buffersize = 3} do
    fa.check(v == -i, "buffered value")
    n = n + 1
  end
  fa.check(n == 10, "buffered count")
  ex:shutdown(true)
end)
