#!/usr/bin/env python3
"""Training the demo family (what ``royalflow demo`` does on its first run): sequential against
the process pool.

    python benchmarks/family_training.py [--quick] [--workers N]

Trains the README's demo family (digits, 4 owners, exact mode) twice into temporary folders,
each with its own empty cache: once with ``workers=1`` (one model after another, in-process)
and once with the pool (default: one worker per core). Wall seconds of each, the manifest's
per-phase seconds, and whether the two runs wrote the same weights (sha256 of every file).
``--quick``: a quarter of the training steps; ``--parallel-first`` swaps the order. On a shared host the wall times are noisy: run it
on a quiet machine for figures to compare. Writes bench-results/family_training.json.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parent))

from report import print_and_save  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="a quarter of the training steps")
    parser.add_argument("--workers", type=int, default=None, help="pool size (default: one per core)")
    parser.add_argument("--parallel-first", action="store_true", help="run the pool first (order bias on a busy host)")
    args = parser.parse_args()
    from royalflow.training.digits import DEMO_FAMILY, DEMO_HOLDINGS, TrainingPlan, digits_corpus, train_family

    plan = TrainingPlan()
    if args.quick:
        plan = replace(plan, steps_base=plan.steps_base // 4, steps_finetune=plan.steps_finetune // 4)
    public, owners = digits_corpus(DEMO_HOLDINGS)
    family_id, version = DEMO_FAMILY
    figures: dict[str, object] = {"cores": os.cpu_count() or 1, "steps_base": plan.steps_base,
                                  "steps_finetune": plan.steps_finetune}
    weights = {}
    with tempfile.TemporaryDirectory() as tmp:
        runs = [("sequential", 1), ("parallel", args.workers)]
        for label, workers in reversed(runs) if args.parallel_first else runs:
            figures[f"{label}_load_average_before"] = round(os.getloadavg()[0], 2)  # other work on the host
            started = time.perf_counter()
            path = train_family(Path(tmp) / label, family_id, version, public, owners, mode="exact", plan=plan,
                                device="cpu", progress=True, workers=workers)
            figures[f"{label}_seconds"] = round(time.perf_counter() - started, 1)
            manifest = json.loads((path / "manifest.json").read_text())
            figures[f"{label}_phase_seconds"] = manifest["training"]["seconds"]
            weights[label] = {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(path.glob("*.safetensors"))}
    figures["models"] = len(weights["sequential"])
    figures["bit_identical"] = weights["sequential"] == weights["parallel"]
    figures["speedup"] = round(float(figures["sequential_seconds"]) / float(figures["parallel_seconds"]), 2)  # type: ignore[arg-type]
    print_and_save("family_training", "Demo family training: sequential vs process pool", figures)


if __name__ == "__main__":
    main()
