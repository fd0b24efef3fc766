#!/usr/bin/env python3
"""Cost of authenticating money records: sign and verify per record, HMAC-SHA256 vs Ed25519.

    python benchmarks/signing.py            # 20,000 records per figure
    python benchmarks/signing.py --quick    # 4,000

Records are real contribution events (about 500 bytes of JSON, keyed by owner). Besides the
bare sign/verify cost it times the ledger's whole decode step (size check, verify, bounded
JSON parse, pydantic validation, money checks) with each algorithm, against parsing alone,
so the share of the decode step that signatures take is measured, not guessed. CPU time,
best of five interleaved rounds (other processes share the cores). Prints a table and writes
bench-results/signing.json.
"""

from __future__ import annotations

import argparse
import base64
import os
import platform
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "services"))


from royalflow import topics  # noqa: E402
from royalflow.contracts.decode import decode_contribution, decode_ledger_record  # noqa: E402
from royalflow.contracts.events import to_json_bytes  # noqa: E402
from royalflow.contracts.keys import new_hmac_spec  # noqa: E402
from royalflow.contracts.signing import KeySet, Verifier  # noqa: E402

sys.path.insert(0, str(ROOT))
from benchmarks.ledger import contributions  # noqa: E402
from benchmarks.report import print_and_save  # noqa: E402

ROUNDS = 5


def _best_us(cases: dict[str, tuple[object, list]], rounds: int = ROUNDS) -> dict[str, float]:  # type: ignore[type-arg]
    """Best per-item CPU time in microseconds of each case over ``rounds`` passes. Cases are
    interleaved within each round, so drifting load from other processes hits all of them
    alike; CPU time, not wall time, so waiting for the cores costs nothing."""
    best = {name: float("inf") for name in cases}
    for _ in range(rounds):
        for name, (fn, items) in cases.items():
            started = time.process_time()
            for item in items:
                fn(item)  # type: ignore[operator]
            best[name] = min(best[name], time.process_time() - started)
    return {name: best[name] / len(cases[name][1]) * 1e6 for name in cases}


def keysets() -> dict[str, tuple[KeySet, KeySet]]:
    """(signing set, verifying set) per algorithm; Ed25519 verifiers hold only the public key."""
    seed = base64.b64encode(os.urandom(32)).decode()
    ed_private = KeySet.parse("agent", f"k1:ed25519:{seed}")
    ed_public = KeySet.parse("agent", ed_private.keys["k1"].public_spec())  # type: ignore[attr-defined]
    hmac_keys = KeySet.parse("agent", new_hmac_spec("k1"))
    return {"hmac-sha256": (hmac_keys, hmac_keys), "ed25519": (ed_private, ed_public)}


def bench(count: int) -> dict[str, object]:
    records = contributions(count, seed=3)
    topic = topics.CONTRIBUTIONS
    figures: dict[str, object] = {"records": len(records), "mean_record_bytes": round(sum(len(v) for _, v in records) / len(records))}
    cases: dict[str, tuple[object, list]] = {"decode_without_signature": (lambda kv: decode_contribution(kv[1]), records)}  # type: ignore[type-arg]
    for name, (signing, verifying) in keysets().items():
        signer = signing.signer("k1")
        verifier = Verifier({topic: verifying})
        signed = [(k, v, signer.headers(topic, k, v)) for k, v in records]
        cases[f"{name}_sign"] = (lambda kv, s=signer: s.headers(topic, kv[0], kv[1]), records)
        cases[f"{name}_verify"] = (lambda kvh, v=verifier: v.verify(topic, kvh[0], kvh[1], kvh[2]), signed)
        cases[f"{name}_decode_with_verify"] = (
            lambda kvh, v=verifier: decode_ledger_record(topic, kvh[1], verifier=v, key=kvh[0], headers=kvh[2]), signed)
    best = _best_us(cases)
    figures.update({f"{name}_us": round(us, 2) for name, us in best.items()})
    for name in keysets():
        figures[f"{name}_verify_share_of_decode_percent"] = round(100 * best[f"{name}_verify"] / best[f"{name}_decode_with_verify"], 1)
    figures.update(cpu_count=os.cpu_count(), python=platform.python_version(),
                   measured_at=datetime.now(UTC).isoformat(timespec="seconds"))
    return figures


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="4,000 records instead of 20,000")
    args = parser.parse_args()
    figures = bench(4_000 if args.quick else 20_000)
    print_and_save("signing", "Record signatures: cost per record (best of 5)", figures)
    return 0


if __name__ == "__main__":
    sys.exit(main())
