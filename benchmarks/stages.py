"""Per-stage cost of the settlement path, each stage run alone in this process on the same kind
of events the live run settles (categorical family, 4 owners): CPU microseconds per generation
(time.process_time, one thread), and for the ledger's transaction the wall time per batch
against the real PostgreSQL. Used by benchmarks/settlement.py; the production code is called
as it is, stage by stage, with nothing added to it.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable

from royalflow import topics
from royalflow.attribution.pipeline import Pipeline, RawRecord
from royalflow.attribution.registry import DiskFamilyRegistry
from royalflow.attribution.royalty import royalty_parts
from royalflow.config import Settings
from royalflow.contracts import GenerationEvent, decode_generation
from royalflow.contracts.decode import decode_attribution, decode_contribution
from royalflow.contracts.events import to_json_bytes
from royalflow.contracts.keys import key_material
from royalflow.ledger.journal import apply_batch
from royalflow.ledger.migrate import migrate
from royalflow.platform.database import create_database, create_pool

AGENT_BATCH = 32  # a batch of the agent (its limit is Settings.attribution_batch_size; under load batches are this size and more)


def _cpu_us(fn: Callable[[], object], per: int, repeat: int = 3) -> float:
    """Best of ``repeat`` runs: CPU microseconds of ``fn`` divided by ``per`` generations."""
    best = float("inf")
    for _ in range(repeat):
        started = time.process_time()
        fn()
        best = min(best, time.process_time() - started)
    return round(best / per * 1e6, 1)


async def stage_costs(settings: Settings, admin_dsn: str, events: list[GenerationEvent]) -> dict[str, object]:
    n = len(events)
    keys = key_material(settings)
    family = DiskFamilyRegistry(settings.families_dir).get(events[0].model_family.id, events[0].model_family.version)
    raws = [(e.event_id.encode(), to_json_bytes(e)) for e in events]
    decoded = [decode_generation(v) for _, v in raws]
    prepared = [family.prepare(e) for e in decoded]
    batches = [prepared[i:i + AGENT_BATCH] for i in range(0, n, AGENT_BATCH)]
    attributions = [a for b in batches for a in family.attribute(b)]
    parts = [royalty_parts(p, family, a) for p, a in zip(prepared, attributions, strict=True)]
    encoded = [([(c.owner_id.encode(), to_json_bytes(c)) for c in cs], (a.generation_id.encode(), to_json_bytes(a)))
               for cs, a in parts]
    c_signer, a_signer = keys.signer(topics.CONTRIBUTIONS), keys.signer(topics.ATTRIBUTIONS)
    signed = [([(k, v, c_signer.headers(topics.CONTRIBUTIONS, k, v)) for k, v in cs],
               (ak, av, a_signer.headers(topics.ATTRIBUTIONS, ak, av))) for cs, (ak, av) in encoded]
    verifier = keys.verifier()
    pipeline = Pipeline(DiskFamilyRegistry(settings.families_dir), max_record_bytes=settings.max_record_bytes,
                        max_revenue_amount=settings.max_revenue_amount, keys=keys)
    records = [RawRecord("generations", 0, i, k, v) for i, (k, v) in enumerate(raws)]
    pipeline.process(records[:AGENT_BATCH])  # loads the family once

    def verify_all() -> None:
        for cs, (ak, av, ah) in signed:
            for k, v, h in cs:
                verifier.verify(topics.CONTRIBUTIONS, k, v, h)
            verifier.verify(topics.ATTRIBUTIONS, ak, av, ah)

    def parse_all() -> None:
        for cs, (_, av, _) in signed:
            for _, v, _ in cs:
                decode_contribution(v)
            decode_attribution(av)

    cpu = {
        "producer: event to JSON": _cpu_us(lambda: [to_json_bytes(e) for e in events], n),
        "agent: decode + validate generation": _cpu_us(lambda: [decode_generation(v) for _, v in raws], n),
        "agent: prepare content": _cpu_us(lambda: [family.prepare(e) for e in decoded], n),
        f"agent: attribution (categorical, batches of {AGENT_BATCH})": _cpu_us(lambda: [family.attribute(b) for b in batches], n),
        "agent: royalty split + JSON of parts and audit": _cpu_us(
            lambda: [[to_json_bytes(x) for x in (*cs, a)] for cs, a in
                     (royalty_parts(p, family, at) for p, at in zip(prepared, attributions, strict=True))], n),
        "agent: signing (4 parts + audit)": _cpu_us(
            lambda: [([c_signer.headers(topics.CONTRIBUTIONS, k, v) for k, v in cs],
                      a_signer.headers(topics.ATTRIBUTIONS, ak, av)) for cs, (ak, av) in encoded], n),
        f"agent: whole pipeline (all of the above, batches of {AGENT_BATCH})": _cpu_us(
            lambda: [pipeline.process(records[i:i + AGENT_BATCH]) for i in range(0, n, AGENT_BATCH)], n),
        "ledger: verify signatures (4 parts + audit)": _cpu_us(verify_all, n),
        "ledger: decode + validate (4 parts + audit)": _cpu_us(parse_all, n),
    }
    contributions = [[decode_contribution(v) for _, v, _ in cs] for cs, _ in signed]
    audits = [decode_attribution(av) for _, (_, av, _) in signed]
    transaction = await _transaction_costs(admin_dsn, contributions, audits)
    return {"cpu_us_per_generation": cpu, "ledger_transaction": transaction, "sample_generations": n}


async def _transaction_costs(admin_dsn: str, contributions: list, audits: list) -> dict[str, object]:  # type: ignore[type-arg]
    """Wall time of the ledger's one transaction (apply_batch + commit) at two batch sizes, on a
    fresh database: the fixed cost per transaction (round trips) against the cost per record."""
    dsn = await create_database(admin_dsn, f"stages_{uuid.uuid4().hex[:8]}")
    pool = await create_pool(dsn, max_size=1)
    out: dict[str, object] = {}
    try:
        await migrate(pool)
        offset = start = 0
        for size, count in ((1, 200), (100, 3)):  # fresh generations each time (a repeat is a no-op)
            chunks = [(sum(contributions[i:i + size], []), audits[i:i + size])
                      for i in range(start, start + size * count, size)]
            start += size * count
            walls, cpus = [], []
            async with pool.acquire() as conn:
                for cs, aus in chunks:
                    offset += 1
                    started, cpu0 = time.perf_counter(), time.process_time()
                    async with conn.transaction():
                        await apply_batch(conn, cs, aus, {("bench", 0): offset}, group_id="stages", shard=0)
                    walls.append(time.perf_counter() - started)
                    cpus.append(time.process_time() - cpu0)
            walls.sort()
            out[f"batch_of_{size}_generations"] = {
                "median_wall_ms": round(walls[len(walls) // 2] * 1000, 2),
                "client_cpu_ms": round(sorted(cpus)[len(cpus) // 2] * 1000, 2),
                "wall_us_per_contribution": round(walls[len(walls) // 2] / (4 * size) * 1e6, 1),
            }
    finally:
        await pool.close()
    return out
