#!/usr/bin/env python3
"""NumPy float32 matmul GFLOP/s (the BLAS sgemm it links), the yardstick for benches/matmul.rs.

Run with the BLAS tuning variables of this machine cleared, e.g.
    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python3 benches/numpy_matmul.py
Prints which BLAS and how many threads NumPy uses, then the best of several runs per size.
"""

import os
import sys
import time

import numpy as np

SIZES = [int(s) for s in (sys.argv[1:] or ["128", "256", "512", "1024"])]
RUNS = 10


def describe_blas():
    for var in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE", "OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS"):
        print(f"{var}={os.environ.get(var, 'unset')}")
    try:
        from threadpoolctl import threadpool_info

        for pool in threadpool_info():
            print(
                "threadpool: {} {} ({}), {} threads, arch {}".format(
                    pool.get("internal_api"),
                    pool.get("version"),
                    pool.get("filepath"),
                    pool.get("num_threads"),
                    pool.get("architecture"),
                )
            )
    except ImportError:
        print("threadpoolctl not installed; numpy build config:")
        np.show_config()


def best_gflops(n):
    rng = np.random.default_rng(0)
    a = rng.random((n, n), dtype=np.float32)
    b = rng.random((n, n), dtype=np.float32)
    a @ b  # warm up (thread pool start, page faults)
    flops = 2.0 * n * n * n
    # Repeat small sizes within one sample: about 1 GFLOP (~20 ms) per sample.
    reps = max(1, int(1e9 / flops))
    best = float("inf")
    for _ in range(RUNS):
        t = time.perf_counter()
        for _ in range(reps):
            a @ b
        best = min(best, (time.perf_counter() - t) / reps)
    return flops / best / 1e9, best


def main():
    print(f"numpy {np.__version__}, {os.cpu_count()} logical CPUs")
    describe_blas()
    for n in SIZES:
        g, t = best_gflops(n)
        print(f"numpy float32 {n}x{n}x{n}: {g:.2f} GFLOP/s (best of {RUNS}, {t * 1e3:.3f} ms)")


if __name__ == "__main__":
    main()
