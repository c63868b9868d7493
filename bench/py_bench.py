# py_bench.py: the cfut bench workloads on Python 3's concurrent.futures
# (ThreadPoolExecutor, and ProcessPoolExecutor for W4 and P1..P5), for
# comparison.
# Run: python3 bench/py_bench.py [threads|processes]  (no argument: both)
# Prints machine-readable lines: `W1 <tasks/s>`, `W2 <items/s>`,
# `W3 <speedup>`, `W4 <s>`, `W5 <us>`, then `P1 <tasks/s>`,
# `P2 <items/s>`, `P3 <speedup>`, `P4 <s>`, `P5 <us>`.
import os
import statistics
import sys
import time
from concurrent import futures

N = 100_000              # W1, W2, P1, P2: tasks / items
FIB_N, FIB_TASKS = 30, 8
RECORDS = 100_000        # W4, P4
LAT_CALLS = 10_000       # W5
P_LAT_CALLS = 2_000      # P5
CHUNK = 1000             # P2: items per message
REPS = int(os.environ.get("BENCH_REPS", "3"))
W4_REPS = int(os.environ.get("BENCH_W4_REPS", "3"))
# P1 runs at about 10 000 tasks/s, some 10 s a repetition: one by default.
PY_P1_REPS = int(os.environ.get("BENCH_PY_P1_REPS", "1"))


def noop(x):
    return x


def fib(n):
    if n < 2:
        return n
    return fib(n - 1) + fib(n - 2)


def best_of(reps, fn):
    return min(fn() for _ in range(reps))


def w1(ex):
    t0 = time.perf_counter()
    fs = [ex.submit(noop, i) for i in range(1, N + 1)]
    total = sum(f.result() for f in fs)
    dt = time.perf_counter() - t0
    assert total == N * (N + 1) // 2
    return dt


def w2(ex, chunksize=1):
    xs = list(range(1, N + 1))
    t0 = time.perf_counter()
    total = sum(ex.map(noop, xs, chunksize=chunksize))
    dt = time.perf_counter() - t0
    assert total == N * (N + 1) // 2
    return dt


def w3(ex):
    def seq():
        t0 = time.perf_counter()
        for _ in range(FIB_TASKS):
            fib(FIB_N)
        return time.perf_counter() - t0

    def par():
        t0 = time.perf_counter()
        fs = [ex.submit(fib, FIB_N) for _ in range(FIB_TASKS)]
        assert all(f.result() == 832040 for f in fs)
        return time.perf_counter() - t0

    return best_of(REPS, seq) / best_of(REPS, par)


def trip(pex):
    records = [{"id": i, "name": "item" + str(i), "tags": ["a", "b"]}
               for i in range(1, RECORDS + 1)]

    def once():
        t0 = time.perf_counter()
        back = pex.submit(noop, records).result()
        dt = time.perf_counter() - t0
        assert len(back) == RECORDS
        assert back[-1]["name"] == "item%d" % RECORDS
        assert back[0]["tags"][1] == "b"
        return dt

    return best_of(W4_REPS, once)


def w4():
    with futures.ProcessPoolExecutor(max_workers=2) as pex:
        pex.submit(noop, 0).result()       # start a worker first
        return trip(pex)


def w5(ex, calls=LAT_CALLS):
    samples = []
    for i in range(calls):
        t0 = time.perf_counter()
        r = ex.submit(noop, i).result()
        samples.append(time.perf_counter() - t0)
        assert r == i
    return statistics.median(samples) * 1e6


def warm(ex):
    [f.result() for f in [ex.submit(noop, i) for i in range(100)]]


def threads():
    with futures.ThreadPoolExecutor(max_workers=2) as ex:
        warm(ex)
        print("W1 %.0f" % (N / best_of(REPS, lambda: w1(ex))))
        print("W2 %.0f" % (N / best_of(REPS, lambda: w2(ex))))
        print("W3 %.3f" % w3(ex))
        print("W4 %.4f" % w4())
        print("W5 %.1f" % w5(ex))


def processes():
    # The platform's default start method (fork on Linux before 3.14).
    with futures.ProcessPoolExecutor(max_workers=2) as ex:
        warm(ex)
        print("P1 %.0f" % (N / best_of(PY_P1_REPS, lambda: w1(ex))))
        print("P2 %.0f" % (N / best_of(REPS, lambda: w2(ex, CHUNK))))
        print("P3 %.3f" % w3(ex))
        print("P4 %.4f" % trip(ex))
        print("P5 %.1f" % w5(ex, P_LAT_CALLS))


def main():
    sys.stdout.reconfigure(line_buffering=True)
    part = sys.argv[1] if len(sys.argv) > 1 else "all"
    if part not in ("threads", "processes", "all"):
        sys.exit("usage: py_bench.py [threads|processes]")
    if part != "processes":
        threads()
    if part != "threads":
        processes()


if __name__ == "__main__":
    main()
