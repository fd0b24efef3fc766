#!/usr/bin/env python3
"""Shapley engine: timings and error-bar quality.

    python benchmarks/shapley.py [--quick]

1. exact_shapley for n = 10, 15, 20 once the 2^n utilities are known (a table), and for a
   callable utility at n = 20 (the engine builds the coalition matrix in chunks);
2. sample_shapley for n = 64, 256, 1024 with a fixed permutation budget, on a cheap
   additive + neighbour-interaction utility, and on a utility that costs nothing (the engine's
   own overhead: prefix matrices, differences, running moments);
3. error bars: on two 6-player games with exact values, the fraction of players whose exact
   value lies within +-1.96 SE of the estimate (nominal 0.95), and the permutations needed to
   reach a standard error of 0.02, antithetic against plain sampling.

Medians of a few repeats (time.perf_counter). Writes bench-results/shapley.json.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from royalflow.shapley import coalition_matrix, exact_shapley, sample_shapley

OUT = Path(__file__).resolve().parents[1] / "bench-results" / "shapley.json"
SAMPLING_PERMUTATIONS = 256
COVERAGE_TARGET_STD_ERROR = 0.02


def median_seconds(fn: Callable[[], object], repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return float(np.median(times))


def interaction_utility(n: int, seed: int) -> Callable[[np.ndarray], np.ndarray]:
    """v(S) = sqrt(sum_{i in S} w_i) + sum_{i, i+1 both in S} u_i: a saturating additive part plus
    neighbour synergies. (A purely pairwise game would be too easy: antithetic pairs value it
    exactly, with zero standard error.)"""
    rng = np.random.default_rng(seed)
    w = rng.random(n).astype(np.float32)
    u = (0.1 * rng.random(n - 1)).astype(np.float32)

    def utility(c: np.ndarray) -> np.ndarray:
        additive = c.astype(np.float32) @ w
        synergy = (c[:, :-1] & c[:, 1:]).astype(np.float32) @ u
        return np.sqrt(additive, dtype=np.float64) + synergy

    return utility


def exact_rows(repeats: int) -> list[dict]:  # type: ignore[type-arg]
    rng = np.random.default_rng(0)
    rows = []
    for n in (10, 15, 20):
        v = rng.normal(size=1 << n)
        seconds = median_seconds(lambda: exact_shapley(n, v), repeats)
        rows.append({"n": n, "utility": "table", "coalitions": 1 << n, "seconds": seconds})
    n = 20
    utility = interaction_utility(n, seed=1)
    seconds = median_seconds(lambda: exact_shapley(n, utility), max(1, repeats // 2))
    rows.append({"n": n, "utility": "callable", "coalitions": 1 << n, "seconds": seconds})
    return rows


def sampling_rows(repeats: int) -> list[dict]:  # type: ignore[type-arg]
    rows = []
    for n in (64, 256, 1024):
        cheap = interaction_utility(n, seed=n)
        free = lambda c: np.zeros(len(c))  # noqa: E731
        run = lambda u: sample_shapley(n, u, seed=1, max_permutations=SAMPLING_PERMUTATIONS)  # noqa: E731
        result = run(cheap)
        seconds = median_seconds(lambda: run(cheap), repeats)
        engine_seconds = median_seconds(lambda: run(free), repeats)
        rows.append({
            "n": n,
            "permutations": SAMPLING_PERMUTATIONS,
            "evaluations": result.n_evaluations,
            "seconds": seconds,
            "engine_only_seconds": engine_seconds,
            "evaluations_per_second": result.n_evaluations / seconds,
            "max_std_error": float(result.std_errors.max()),
        })
    return rows


def smooth(c: np.ndarray) -> np.ndarray:
    weights = np.array([0.3, 1.2, 0.7, 2.0, 0.1, 0.9])
    x = c.astype(float)
    return np.sqrt(x @ weights) + 0.5 * x[:, 1] * x[:, 3] - 0.8 * x[:, 0] * x[:, 4] * x[:, 5]


def vote(c: np.ndarray) -> np.ndarray:
    return (c @ np.array([4, 3, 2, 2, 1, 1]) >= 7).astype(float)


def coverage_rows(seeds: int) -> list[dict]:  # type: ignore[type-arg]
    rows = []
    for name, game in (("smooth", smooth), ("voting [7;4,3,2,2,1,1]", vote)):
        exact = exact_shapley(6, game).values
        for antithetic in (True, False):
            covered = 0
            permutations = []
            for seed in range(seeds):
                est = sample_shapley(
                    6, game, seed=seed, target_std_error=COVERAGE_TARGET_STD_ERROR, max_permutations=100_000,
                    antithetic=antithetic,
                )
                covered += int(np.sum(np.abs(est.values - exact) <= 1.96 * est.std_errors))
                permutations.append(est.n_permutations)
            rows.append({
                "game": name,
                "antithetic": antithetic,
                "runs": seeds,
                "coverage": covered / (6 * seeds),
                "mean_permutations_to_target": float(np.mean(permutations)),
            })
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="fewer repeats and coverage runs")
    args = parser.parse_args()
    repeats, seeds = (3, 100) if args.quick else (7, 400)

    exact = exact_rows(repeats)
    print(f"\nexact_shapley (median of {repeats})")
    print(f"{'n':>4} {'utility':<9} {'coalitions':>11} {'seconds':>9}")
    for row in exact:
        print(f"{row['n']:>4} {row['utility']:<9} {row['coalitions']:>11,} {row['seconds']:>9.4f}")

    sampling = sampling_rows(repeats)
    print(f"\nsample_shapley, {SAMPLING_PERMUTATIONS} antithetic permutations (median of {repeats})")
    print(f"{'n':>5} {'evaluations':>12} {'seconds':>9} {'engine s':>9} {'evals/s':>11} {'max SE':>8}")
    for row in sampling:
        print(
            f"{row['n']:>5} {row['evaluations']:>12,} {row['seconds']:>9.4f} {row['engine_only_seconds']:>9.4f}"
            f" {row['evaluations_per_second']:>11,.0f} {row['max_std_error']:>8.4f}"
        )

    coverage = coverage_rows(seeds)
    print(f"\nerror bars: +-1.96 SE covers the exact value (nominal 0.95), target SE {COVERAGE_TARGET_STD_ERROR}")
    print(f"{'game':<24} {'sampling':<11} {'runs':>5} {'coverage':>9} {'perms to target':>16}")
    for row in coverage:
        kind = "antithetic" if row["antithetic"] else "plain"
        print(
            f"{row['game']:<24} {kind:<11} {row['runs']:>5} {row['coverage']:>9.3f}"
            f" {row['mean_permutations_to_target']:>16.0f}"
        )

    OUT.parent.mkdir(exist_ok=True)
    report = {
        "quick": args.quick,
        "python": platform.python_version(),
        "numpy": np.__version__,
        "machine": platform.machine(),
        "exact": exact,
        "permutation": sampling,
        "coverage": coverage,
    }
    OUT.write_text(json.dumps(report, indent=2) + "\n")
    print(f"\nwrote {OUT}")


if __name__ == "__main__":
    main()
