-- spec/mpi_pool_static_spec.lua: the process pool's behaviour specs
-- (spec/process_pool_spec.lua, one body for every pool) on futures.mpi_pool
-- in static mode, run by `make test-mpi` as
--
--   mpiexec -n 4 cfut -l cfut.mpi busted spec/mpi_pool_static_spec.lua
--
-- Rank 0 runs busted; ranks 1-3 serve its pools.  The cases that cannot
-- hold under mpiexec (a worker killed: Open MPI ends the whole job; a
-- worker that exits with its pool: ranks outlive pools) are reported as
-- pending with the reason.  spec/mpi_pool_spec.lua runs the same body in
-- spawn mode.

local futures = require "cfut"

local ROOT = os.getenv("CFUT_ROOT") or "."

describe("the process pool's behaviour specs on mpi_pool (static mode)",
         function ()
  local ok, mpi = pcall(require, "cfut.mpi")
  assert(ok and mpi.info().mode == "static", "this spec runs on rank 0 "
         .. "under mpiexec with -l cfut.mpi (make test-mpi): "
         .. tostring(ok and mpi.info().mode or mpi))
  assert(mpi.info().size >= 4, "it needs 3 worker ranks (mpiexec -n 4)")
  futures.mpi_pool(1):shutdown()
  CFUT_SPEC_POOL = "mpi_pool"
  local ok2, e = pcall(assert(loadfile(ROOT .. "/spec/process_pool_spec.lua",
                                       "t", _ENV)))
  CFUT_SPEC_POOL = nil
  assert(ok2, e)
end)
