#!/usr/bin/env python3
"""Run every benchmark in this folder, one process each, and summarise bench-results/*.json.

    python3 dev.py bench            # full size
    python3 dev.py bench --quick    # smaller, for a smoke run

Benchmarks are measurements, not tests: they print their figures and never fail on a target.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ORDER = ("shapley", "attribution", "lora", "ledger", "settlement", "portal", "quality", "lora_quality")


def main(argv: list[str]) -> int:
    names = [p.stem for p in sorted(HERE.glob("*.py")) if p.stem not in ("run", "report", "__init__", "probes", "stages")]
    names.sort(key=lambda n: ORDER.index(n) if n in ORDER else len(ORDER))
    only = [a for a in argv if not a.startswith("-")]
    flags = [a for a in argv if a.startswith("-")]
    failed = []
    for name in names:
        if only and name not in only:
            continue
        print(f"\n=== benchmarks/{name}.py {' '.join(flags)}", flush=True)
        started = time.monotonic()
        code = subprocess.run([sys.executable, str(HERE / f"{name}.py"), *flags], cwd=HERE.parent).returncode
        print(f"=== {name}: exit {code} in {time.monotonic() - started:.0f}s", flush=True)
        if code:
            failed.append(name)
    if failed:
        print(f"benchmarks that failed to run: {', '.join(failed)}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
