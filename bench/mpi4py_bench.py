# mpi4py_bench.py: the process-pool workloads (P1..P5 of py_bench.py) on
# mpi4py.futures' MPIPoolExecutor with 2 spawned workers, for the MPI rows
# of `make bench` (docs/mpi.md).  Prints `M1 <tasks/s>`, `M2 <items/s>`,
# `M3 <speedup>`, `M4 <s>`, `M5 <us>`.
# Run: PYTHONPATH=bench /usr/bin/python3 bench/mpi4py_bench.py
# (Debian's python3-mpi4py; the workers import py_bench for the tasks.)
import sys

from mpi4py.futures import MPIPoolExecutor

import py_bench as pb


def main():
    sys.stdout.reconfigure(line_buffering=True)
    with MPIPoolExecutor(max_workers=2) as ex:
        pb.warm(ex)
        print("M1 %.0f" % (pb.N / pb.best_of(pb.PY_P1_REPS,
                                             lambda: pb.w1(ex))))
        print("M2 %.0f" % (pb.N / pb.best_of(pb.REPS,
                                             lambda: pb.w2(ex, pb.CHUNK))))
        print("M3 %.3f" % pb.w3(ex))
        print("M4 %.4f" % pb.trip(ex))
        print("M5 %.1f" % pb.w5(ex, pb.P_LAT_CALLS))


if __name__ == "__main__":
    main()
