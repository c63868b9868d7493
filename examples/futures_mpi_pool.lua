-- futures_mpi_pool.lua: the same futures over MPI processes (docs/mpi.md).
--
-- Build the MPI module first (installs Open MPI from Debian):
--   make mpi
-- Spawn mode: a plain script; the pool starts its workers with
-- MPI_Comm_spawn (no mpiexec):
--   LUA_CPATH="$PWD/?.so;$PWD/lib/?.so;;" ./cfut examples/futures_mpi_pool.lua
-- Static mode: mpiexec starts every rank; rank 0 runs the script, ranks
-- 1..4 are the workers of futures.mpi_pool():
--   LUA_CPATH="$PWD/?.so;$PWD/lib/?.so;;" \
--     mpiexec -n 5 ./cfut -l cfut.mpi examples/futures_mpi_pool.lua
-- (As root, Open MPI also wants OMPI_ALLOW_RUN_AS_ROOT=1 and
-- OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1; for more ranks than cores,
-- mpiexec --oversubscribe or OMPI_MCA_rmaps_base_oversubscribe=1.)
local futures = require "cfut"

local function collatz (n)
  local steps = 0
  while n ~= 1 do
    n = (n % 2 == 0) and n // 2 or 3 * n + 1
    steps = steps + 1
  end
  return steps
end

local mode = require("cfut.mpi").info().mode
local ex <close> = futures.mpi_pool(mode == "static" and nil or 2)
local best, at = 0, 0
for i, steps in ex:map{collatz, (function ()
    local t = {}
    for k = 1, 100000 do t[k] = k end
    return t
  end)(), chunksize = 5000} do
  if steps > best then best, at = steps, i end
end
print(string.format("longest Collatz chain below 100000: %d steps, from %d",
                    best, at))
