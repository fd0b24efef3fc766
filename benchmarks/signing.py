#!/usr/bin/env python3
"""Cost of authenticating money records: sign and verify per record, HMAC-SHA256 vs Ed25519.

    python benchmarks/signing.py            # 20,000 records per figure
    python benchmarks/signing.py --quick    # 4,000

Records are real contribution events (about 500 bytes of JSON, keyed by owner). Besides the
bare sign/verify cost it times the ledger's whole decode step (size check, verify, bounded
JSON parse, pydantic validation, money checks) with each algorithm, against parsing alone,
so the share of the decode step that signatures take is measured, not guessed. Best of
five rounds (other processes share the cores). Prints a table and writes
bench-results/signing.json.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import platform
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "services"))

from rich.console import Console  # noqa: E402
from rich.table import Table  # noqa: E402

from royalflow import topics  # noqa: E402
from royalflow.contracts.decode import decode_contribution, decode_ledger_record  # noqa: E402
from royalflow.contracts.events import to_json_bytes  # noqa: E402
from royalflow.contracts.keys import new_hmac_spec  # noqa: E402
from royalflow.contracts.signing import KeySet, Verifier  # noqa: E402

sys.path.insert(0, str(ROOT))
from benchmarks.ledger import contributions  # noqa: E402

ROUNDS = 5


def _best_us(fn, items: list, rounds: int = ROUNDS) -> float:  # type: ignore[type-arg, no-untyped-def]
    """Best per-item time in microseconds over ``rounds`` passes."""
    best = float("inf")
    for _ in range(rounds):
        started = time.perf_counter()
        for item in items:
            fn(item)
        best = min(best, time.perf_counter() - started)
    return best / len(items) * 1e6


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
    parse_us = _best_us(lambda kv: decode_contribution(kv[1]), records)
    figures["decode_without_signature_us"] = round(parse_us, 2)
    for name, (signing, verifying) in keysets().items():
        signer = signing.signer("k1")
        verifier = Verifier({topic: verifying})
        signed = [(k, v, signer.headers(topic, k, v)) for k, v in records]
        sign_us = _best_us(lambda kv: signer.headers(topic, kv[0], kv[1]), records)
        verify_us = _best_us(lambda kvh: verifier.verify(topic, kvh[0], kvh[1], kvh[2]), signed)
        decode_us = _best_us(lambda kvh: decode_ledger_record(topic, kvh[1], verifier=verifier, key=kvh[0], headers=kvh[2]), signed)
        figures[f"{name}_sign_us"] = round(sign_us, 2)
        figures[f"{name}_verify_us"] = round(verify_us, 2)
        figures[f"{name}_decode_with_verify_us"] = round(decode_us, 2)
        figures[f"{name}_verify_share_of_decode_percent"] = round(100 * verify_us / decode_us, 1)
    figures.update(cpu_count=os.cpu_count(), python=platform.python_version(),
                   measured_at=datetime.now(UTC).isoformat(timespec="seconds"))
    return figures


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="4,000 records instead of 20,000")
    args = parser.parse_args()
    figures = bench(4_000 if args.quick else 20_000)
    table = Table(title="Record signatures: cost per record (best of 5)")
    table.add_column("figure")
    table.add_column("value", justify="right")
    for key, value in figures.items():
        table.add_row(key, f"{value:,}" if isinstance(value, int) else str(value))
    Console().print(table)
    out = ROOT / "bench-results" / "signing.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(figures, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
