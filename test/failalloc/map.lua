-- map over a thread pool: a sequence, an iterator, bounded buffering,
-- chunks, and unordered (plain, chunked, buffered).
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
  sum = 0
  for i, v in ex:map{function (x) return x, -x end, xs, chunksize = 3} do
    fa.check(v == i, "chunked value")
    sum = sum + v
  end
  fa.check(sum == 210, "chunked sum")
  for _, opts in ipairs{ {}, { chunksize = 4 }, { buffersize = 3 } } do
    local seen, count = {}, 0
    local t = { function (x) return x * 2 end, xs, unordered = true }
    for key, v in pairs(opts) do t[key] = v end
    for i, v in ex:map(t) do
      fa.check(v == 2 * i and not seen[i], "unordered value")
      seen[i] = true
      count = count + 1
    end
    fa.check(count == 20, "unordered count")
  end
  ex:shutdown(true)
end)
