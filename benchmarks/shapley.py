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
   reach a standard error of 0.02, antithetic against plain sampling;
4. mixture_shapley (compositional families' mixture utility, royalflow.shapley.mixture):
   time per call at n = 16 .. 10,000 (first call: the data-size game is valued too; later
   calls: cached), against sample_shapley's time per permutation on the same utility; error
   against exact enumeration at n = 12 in five regimes (forcing the fast path), and agreement
   with long permutation-sampling runs at n = 50, 200, 1000 (|z| = |diff| / sampling SE).

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

from royalflow.shapley import coalition_matrix, exact_shapley, mixture_shapley, mixture_utility, sample_shapley

OUT = Path(__file__).resolve().parents[1] / "bench-results" / "shapley.json"
SAMPLING_PERMUTATIONS = 256
COVERAGE_TARGET_STD_ERROR = 0.02
MIXTURE_SIZES = (16, 64, 256, 1024, 10_000)
MIXTURE_REGIMES = ("one dominant", "few heavy", "comparable", "negligible", "mixed sizes")


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


def mixture_regime(name: str, n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(log w_0..w_n, l_0..l_n): base data 5000, owners 50-500 (mixed: 3-30,000), l ~ -3000 nats."""
    rng = np.random.default_rng(seed)
    log_w = np.log(np.concatenate([[5000.0], rng.integers(50, 500, n)]))
    gaps = {
        "one dominant": lambda: np.concatenate([[12.0], rng.normal(-4.0, 1.0, n - 1)]),
        "few heavy": lambda: np.concatenate([[4.0, 4.3, 3.8], rng.normal(-5.0, 1.0, n - 3)]),
        "comparable": lambda: rng.normal(2.3, 0.2, n),
        "negligible": lambda: rng.normal(-20.0, 2.0, n),
        "mixed sizes": lambda: rng.normal(0.0, 3.0, n),
    }[name]()
    if name == "mixed sizes":
        log_w = np.log(np.concatenate([[5000.0], 10.0 ** rng.uniform(0.5, 4.5, n)]))
    return log_w, -3000.0 + np.concatenate([[0.0], gaps])


def mixture_time_rows(repeats: int) -> list[dict]:  # type: ignore[type-arg]
    rows = []
    for n in MIXTURE_SIZES:
        for name in ("mixed sizes", "comparable"):
            log_w, ll = mixture_regime(name, n, seed=n)
            first_start = time.perf_counter()
            mixture_shapley(log_w, ll, exact_max_players=0)
            first = time.perf_counter() - first_start
            seconds = median_seconds(lambda: mixture_shapley(log_w, ll + 0.0, exact_max_players=0), repeats)
            # sample_shapley on the same utility: a few permutations, time per permutation.
            perms = 4 if n >= 10_000 else 8  # antithetic: two pairs at least
            utility = mixture_utility(log_w, ll)
            start = time.perf_counter()
            sample_shapley(n, utility, seed=1, max_permutations=perms)
            per_perm = (time.perf_counter() - start) / perms
            rows.append({"n": n, "regime": name, "first_call_seconds": first, "seconds": seconds,
                         "sampling_seconds_per_permutation": per_perm,
                         "sampling_2000_permutations_seconds": 2000 * per_perm})
    return rows


def mixture_exact_rows() -> list[dict]:  # type: ignore[type-arg]
    rows = []
    for name in MIXTURE_REGIMES:
        log_w, ll = mixture_regime(name, 12, seed=0)
        exact = mixture_shapley(log_w, ll)
        fast = mixture_shapley(log_w, ll, exact_max_players=0)
        error = np.abs(fast.values - exact.values)
        v = mixture_utility(log_w, ll)(np.array([[False] * 12, [True] * 12]))
        rows.append({"regime": name, "n": 12, "max_abs_error": float(error.max()),
                     "max_stated_error": float(fast.std_errors.max()), "covered": bool(np.all(error <= fast.std_errors)),
                     "efficiency_gap": float(fast.values.sum() - (v[1] - v[0]))})
    return rows


def mixture_sampling_rows(quick: bool) -> list[dict]:  # type: ignore[type-arg]
    rows = []
    budgets = {50: 4000, 200: 1000, 1000: 100} if quick else {50: 20_000, 200: 4000, 1000: 2000}
    for n, budget in budgets.items():
        log_w, ll = mixture_regime("mixed sizes", n, seed=n + 1)
        fast = mixture_shapley(log_w, ll)
        start = time.perf_counter()
        sampled = sample_shapley(n, mixture_utility(log_w, ll), seed=3, max_permutations=budget)
        seconds = time.perf_counter() - start
        z = np.abs(fast.values - sampled.values) / sampled.std_errors
        rows.append({"n": n, "permutations": budget, "sampling_seconds": seconds,
                     "max_sampling_std_error": float(sampled.std_errors.max()),
                     "max_abs_diff": float(np.abs(fast.values - sampled.values).max()),
                     "max_z": float(z.max()), "within_1_96_se": float(np.mean(z <= 1.96)),
                     "max_stated_error": float(fast.std_errors.max())})
    return rows


def print_mixture(times: list[dict], exact: list[dict], sampled: list[dict], repeats: int) -> None:  # type: ignore[type-arg]
    print(f"\nmixture_shapley, fast path (median of {repeats}; first call also values the data-size game)")
    print(f"{'n':>6} {'regime':<12} {'first ms':>9} {'ms':>8} {'sampling ms/perm':>17} {'2000 perms s':>13}")
    for row in times:
        print(f"{row['n']:>6} {row['regime']:<12} {1e3 * row['first_call_seconds']:>9.2f} {1e3 * row['seconds']:>8.2f}"
              f" {1e3 * row['sampling_seconds_per_permutation']:>17.2f} {row['sampling_2000_permutations_seconds']:>13.1f}")
    print("\nmixture_shapley vs exact enumeration, n = 12 (fast path forced)")
    print(f"{'regime':<13} {'max |err|':>10} {'stated max':>11} {'covered':>8} {'efficiency gap':>15}")
    for row in exact:
        print(f"{row['regime']:<13} {row['max_abs_error']:>10.1e} {row['max_stated_error']:>11.1e}"
              f" {str(row['covered']):>8} {row['efficiency_gap']:>15.1e}")
    print("\nmixture_shapley vs permutation sampling (mixed sizes regime)")
    print(f"{'n':>5} {'perms':>6} {'sampling s':>11} {'max SE':>8} {'max |diff|':>11} {'max z':>6} {'z<=1.96':>8}")
    for row in sampled:
        print(f"{row['n']:>5} {row['permutations']:>6} {row['sampling_seconds']:>11.1f} {row['max_sampling_std_error']:>8.1e}"
              f" {row['max_abs_diff']:>11.1e} {row['max_z']:>6.2f} {row['within_1_96_se']:>8.3f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="fewer repeats and coverage runs")
    parser.add_argument("--mixture-only", action="store_true", help="only part 4 (writes shapley-mixture.json)")
    args = parser.parse_args()
    repeats, seeds = (3, 100) if args.quick else (7, 400)
    if args.mixture_only:
        mixture_times = mixture_time_rows(repeats)
        mixture_exact = mixture_exact_rows()
        mixture_sampled = mixture_sampling_rows(args.quick)
        print_mixture(mixture_times, mixture_exact, mixture_sampled, repeats)
        out = OUT.with_name("shapley-mixture.json")
        OUT.parent.mkdir(exist_ok=True)
        out.write_text(json.dumps({"quick": args.quick, "python": platform.python_version(), "numpy": np.__version__,
                                   "times": mixture_times, "vs_exact": mixture_exact, "vs_sampling": mixture_sampled},
                                  indent=2) + "\n")
        print(f"\nwrote {out}")
        return

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

    mixture_times = mixture_time_rows(repeats)
    mixture_exact = mixture_exact_rows()
    mixture_sampled = mixture_sampling_rows(args.quick)
    print_mixture(mixture_times, mixture_exact, mixture_sampled, repeats)

    OUT.parent.mkdir(exist_ok=True)
    report = {
        "quick": args.quick,
        "python": platform.python_version(),
        "numpy": np.__version__,
        "machine": platform.machine(),
        "exact": exact,
        "permutation": sampling,
        "coverage": coverage,
        "mixture": {"times": mixture_times, "vs_exact": mixture_exact, "vs_sampling": mixture_sampled},
    }
    OUT.write_text(json.dumps(report, indent=2) + "\n")
    print(f"\nwrote {OUT}")


if __name__ == "__main__":
    main()
