#!/usr/bin/env python3
"""Full-size attribution quality on the demo family (trains it on first use).

    python benchmarks/quality.py [--per-class N] [--quick]

Writes bench-results/quality.json.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from royalflow.attribution.quality import derive_compositional, evaluate
from royalflow.attribution.registry import DiskFamilyRegistry
from royalflow.attribution.training import DEMO_HOLDINGS, ensure_demo_family
from royalflow.config import get_settings

OUT = Path(__file__).resolve().parents[1] / "bench-results" / "quality.json"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--per-class", type=int, default=30, help="generations per digit class (default 30: 300)")
    parser.add_argument("--quick", action="store_true", help="10 per class")
    args = parser.parse_args()
    per_class = 10 if args.quick else args.per_class
    root = Path(get_settings().families_dir)
    started = time.perf_counter()
    family_id, version = ensure_demo_family(root)
    trained_seconds = time.perf_counter() - started
    derive_compositional(root, family_id, version, "digits-compositional")
    registry = DiskFamilyRegistry(root, device=get_settings().device)
    started = time.perf_counter()
    report = evaluate(registry.get(family_id, version), registry.get("digits-compositional", version), DEMO_HOLDINGS,
                      per_class=per_class, seed=11)
    print(report)
    OUT.parent.mkdir(exist_ok=True)
    OUT.write_text(json.dumps({**report.__dict__, "family_ready_seconds": trained_seconds,
                               "evaluation_seconds": time.perf_counter() - started}, indent=2))
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
