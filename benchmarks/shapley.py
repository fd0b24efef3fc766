#!/usr/bin/env python3
"""Shapley engine timings: exact enumeration once the 2^n utilities are known, and permutation
sampling with a cheap non-additive utility.

    python benchmarks/shapley.py [--quick]

Writes bench-results/shapley.json.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from royalflow.shapley import exact_shapley, sample_shapley

OUT = Path(__file__).resolve().parents[1] / "bench-results" / "shapley.json"


def median_seconds(fn, repeats: int) -> float:  # type: ignore[no-untyped-def]
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return float(np.median(times))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    repeats = 3 if args.quick else 5
    rng = np.random.default_rng(0)
    results: dict = {"exact": [], "permutation": []}
    print(f"{'method':<12}{'n':>6}{'detail':>28}{'median s':>12}")
    for n in (10, 15, 20):
        v = rng.normal(size=1 << n)
        seconds = median_seconds(lambda: exact_shapley(n, v), repeats)
        results["exact"].append({"n": n, "seconds": seconds})
        print(f"{'exact':<12}{n:>6}{f'{1 << n} utilities known':>28}{seconds:>12.4f}")
    for n in (64, 256, 1024):
        w = rng.random(n)
        utility = lambda c, w=w: np.sqrt(c @ w) + 0.1 * c[:, 0] * c[:, 1]  # noqa: E731
        result = sample_shapley(n, utility, seed=1, target_std_error=None, max_permutations=200)
        seconds = median_seconds(lambda: sample_shapley(n, utility, seed=1, max_permutations=200), repeats)
        results["permutation"].append({"n": n, "permutations": 200, "seconds": seconds,
                                       "max_std_error": float(result.std_errors.max())})
        print(f"{'permutation':<12}{n:>6}{'200 antithetic permutations':>28}{seconds:>12.4f}")
    OUT.parent.mkdir(exist_ok=True)
    OUT.write_text(json.dumps(results, indent=2))
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
