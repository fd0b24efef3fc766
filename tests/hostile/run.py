"""The rounds: publish every case between valid records, wait, and take a snapshot of the books."""

from __future__ import annotations

import asyncio
import inspect
import time
import uuid
from collections import defaultdict
from pathlib import Path

import asyncpg
from aiokafka import AIOKafkaConsumer

from royalflow import topics
from royalflow.attribution.families.categorical import CategoricalFamily, demo_manifest, write_manifest
from royalflow.config import Settings
from royalflow.contracts import GenerationEvent
from royalflow.contracts.events import WIRE, DeadLetter
from royalflow.ledger.accounts import owner_account
from royalflow.ledger.migrate import migrate
from royalflow.ledger.reconcile import reconcile
from royalflow.platform.database import create_database, create_pool
from royalflow.platform.kafka import client_kwargs, ensure_topics
from royalflow.platform.supervisor import RestartPolicy, Supervisor

from tests.hostile import keys
from tests.hostile.diffusion import write_family as write_diffusion_family
from tests.hostile.corpus import FAMILY_ID, FAMILY_VERSION, OTHER_VERSION, Case, Context, Rec
from tests.hostile.harness import (
    MAX_RECORD_BYTES, OPTIONAL_SETTINGS, QUIET_SECONDS, RECONCILE_GRACE_SECONDS, REVERSAL_WAIT_SECONDS,
    SETTLE_TIMEOUT_SECONDS, Outcome, RawClient, free_port, make_pipeline_output, metric_values, prepare_content_root,
    probe, probe_text,
)

LETTER_EXTRA_SECONDS = 20.0  # after the valid records settled: how long to wait for missing dead letters
PERIODIC_WAIT_SECONDS = 20.0  # the ledger's reconciler runs every 5 s in this suite


def platform_settings(bootstrap: str, dsn: str, root: Path) -> tuple[Settings, list[str]]:
    fields: dict[str, object] = dict(
        kafka_bootstrap_servers=bootstrap, database_url=dsn, state_dir=root / "state", families_dir=root / "families",
        topic_prefix=f"h{uuid.uuid4().hex[:10]}", topic_partitions=4, max_record_bytes=MAX_RECORD_BYTES,
        ledger_port=free_port(), attribution_port=free_port(), **keys.settings_fields(),
    )
    wanted = {**OPTIONAL_SETTINGS, "content_root": root / "content"}
    known = Settings.model_fields
    fields.update({k: v for k, v in wanted.items() if k in known})
    return Settings(**fields), sorted(k for k in wanted if k not in known)  # type: ignore[arg-type]


class Letters:
    """Reads the dead-letter topic continuously (no group, from offset zero)."""

    def __init__(self, settings: Settings) -> None:
        self.consumer = AIOKafkaConsumer(settings.topic(topics.DEADLETTER), **client_kwargs(settings), group_id=None,
                                         auto_offset_reset="earliest", enable_auto_commit=False)
        self.items: list[DeadLetter] = []

    async def poll(self) -> None:
        batch = await self.consumer.getmany(timeout_ms=200, max_records=1000)
        for records in batch.values():
            self.items.extend(DeadLetter.model_validate_json(r.value, context=WIRE) for r in records)


async def _snapshot(pool: asyncpg.Pool, out: Outcome) -> None:
    rows = await pool.fetch("SELECT generation_id, revenue_amount, completed_at FROM generations")
    out.known_generations = {r["generation_id"]: r["revenue_amount"] for r in rows}
    out.completed = {r["generation_id"] for r in rows if r["completed_at"] is not None}
    rows = await pool.fetch("SELECT reference FROM journal_entries WHERE reference LIKE 'reversal:%'")
    out.reversed_entries = {r["reference"].removeprefix("reversal:") for r in rows}
    rows = await pool.fetch("SELECT c.contribution_id, c.amount, g.revenue_amount FROM contributions c "
                            "JOIN generations g USING (generation_id)")
    out.booked = {r["contribution_id"]: (r["amount"], r["revenue_amount"]) for r in rows}
    rows = await pool.fetch("SELECT account_id, sum(amount)::int8 AS amount FROM balances WHERE currency = 'USD' "
                            "GROUP BY account_id")
    out.balances = {r["account_id"]: r["amount"] for r in rows if r["amount"]}


async def run_corpus(bootstrap: str, admin_dsn: str, root: Path, cases: dict[str, Case], *,
                     kill_between_rounds: bool = False) -> Outcome:
    started = time.monotonic()
    dsn = await create_database(admin_dsn, f"hostile_{uuid.uuid4().hex[:10]}")
    settings, missing = platform_settings(bootstrap, dsn, root)
    families = {}
    for version in (FAMILY_VERSION, OTHER_VERSION):
        manifest = demo_manifest(FAMILY_ID, version)
        write_manifest(settings.families_dir, manifest)
        families[version] = CategoricalFamily.from_manifest(manifest)
    write_diffusion_family(settings.families_dir)
    prepare_content_root(root / "content", root / "outside-secret.png")
    pipeline_output = make_pipeline_output(families)
    ctx = Context(content_root=root / "content", outside_file=root / "outside-secret.png", pipeline_output=pipeline_output)
    out = Outcome(cases=cases, built={name: c.build(ctx) for name, c in cases.items()}, settings=settings,
                  missing_settings=missing)
    goods: dict[str, GenerationEvent] = {}  # generation id -> event expected to book (agent path or written directly)
    await ensure_topics(settings)
    pool = await create_pool(dsn, max_size=2)
    await migrate(pool)
    letters = Letters(settings)
    await letters.consumer.start()
    client = RawClient(settings)
    # Hostile input must never crash a child; the only restarts are the kills between rounds.
    supervisor = Supervisor(settings, root / "logs", policy=RestartPolicy(initial_backoff_seconds=0.2))
    try:
        supervisor.start("ledger", "attribution")
        for number in sorted({c.round for c in cases.values()}):
            tickets, good_tickets = _publish_round(number, cases, out, ctx, client, goods)
            await asyncio.to_thread(client.flush)
            out.positions.update({name: client.reports[t] for name, t in tickets.items()})
            out.good_positions.update(client.reports[t] for t in good_tickets)
            await _wait(pool, letters, out, goods, cases, number, supervisor)
            out.timings[f"round_{number}_seconds"] = time.monotonic() - started
            if number == 1 and kill_between_rounds:
                # kill -9 both consumers: round 2 meets restarted processes, which must still know
                # every sale and booking of round 1 (first payload wins across restarts too).
                for service in ("attribution", "ledger"):
                    supervisor.services[service].kill()
                out.killed = 2
        await asyncio.sleep(max(QUIET_SECONDS, RECONCILE_GRACE_SECONDS + 0.5, REVERSAL_WAIT_SECONDS + 0.5))
        await letters.poll()
        await letters.poll()
        out.letters = list(letters.items)
        await _snapshot(pool, out)
        out.problems = await _reconcile(pool)
        supervisor.check_alive()
        out.alive_at_end = {name: s.alive for name, s in supervisor.services.items()}
        out.restarts = supervisor.restart_count
        out.ready_at_end = {name: await asyncio.to_thread(probe, port, "/readyz") for name, port in
                            (("ledger", settings.ledger_port), ("attribution", settings.attribution_port))}
        out.periodic = await _periodic_reconciliation(settings.ledger_port, len(out.problems), published_at=time.time())
    finally:
        supervisor.stop()
        out.logs = {p.stem: p.read_text(errors="replace") for p in (root / "logs").glob("*.log")}
        await letters.consumer.stop()
        await pool.close()
    out.expected_balances = expected_balances(out, list(goods.values()), pipeline_output)
    out.timings["total_seconds"] = time.monotonic() - started
    return out


def _publish_round(number: int, cases: dict[str, Case], out: Outcome, ctx: Context, client: RawClient,
                   goods: dict[str, GenerationEvent]) -> tuple[dict[str, int], list[int]]:
    """Send every case of round ``number``, each hostile record between two valid generations on
    its own topic (events on generations.v1, the agent's signed output on the ledger's topics)."""
    tickets: dict[str, int] = {}
    good_tickets: list[int] = []
    for name, case in cases.items():
        if case.round != number:
            continue
        built = out.built[name]
        around: list[list[Rec]] = [[], []]
        if any(r.hostile for r in built.records):
            ids = [f"n-{case.event_id}-{side}" for side in ("before", "after")]
            out.neighbours[name] = ids
            for side, gid in enumerate(ids):
                event = goods[gid] = ctx.event(gid)
                if case.topic == topics.GENERATIONS:
                    around[side] = [ctx.event_rec(event)]
                else:
                    around[side] = ctx.ledger_recs(*ctx.pipeline_output(event))
        for event in built.events + built.ledger_events:
            goods.setdefault(event.event_id, event)
        for rec in around[0] + built.records + around[1]:
            ticket = client.send(rec)
            if rec.hostile:
                tickets[name], out.sent[name] = ticket, rec
            else:
                good_tickets.append(ticket)
    return tickets, good_tickets


async def _periodic_reconciliation(port: int, want_problems: int, *, published_at: float) -> dict[str, float]:
    """The ledger's own periodic run, read from its /metrics: wait (bounded) for a run that
    started after everything was published, and return its gauges."""
    gauges: dict[str, float] = {}
    loop = asyncio.get_running_loop()
    deadline = loop.time() + PERIODIC_WAIT_SECONDS
    while loop.time() < deadline:
        status, text = await asyncio.to_thread(probe_text, port, "/metrics")
        gauges = {name: value for name, value in metric_values(text).items() if name.startswith("royalflow_reconciliation_")}
        if gauges.get("royalflow_reconciliation_last_run_timestamp_seconds", 0) > published_at \
                and gauges.get("royalflow_reconciliation_problems") == want_problems:
            break
        await asyncio.sleep(1.0)
    return gauges


async def _reconcile(pool: asyncpg.Pool) -> list[str]:
    params = inspect.signature(reconcile).parameters
    extra = {k: RECONCILE_GRACE_SECONDS for k in ("grace_seconds", "attribution_grace_seconds") if k in params}
    return list(await reconcile(pool, **extra))  # type: ignore[arg-type]


async def _wait(pool, letters, out, goods, cases, number, supervisor) -> None:  # type: ignore[no-untyped-def]
    """Until every valid record so far settled and every hostile one has its dead letter (bounded)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + SETTLE_TIMEOUT_SECONDS
    letters_deadline: float | None = None
    want_letters = {out.positions[n] for n, c in cases.items() if c.round <= number and c.expect and n in out.positions}
    while True:
        supervisor.check_alive()  # restarts a killed child (with backoff); raises if it gives up
        await letters.poll()
        # Settled: complete AND its audit record stored (they travel on different topics; the
        # reconciliation's grace period must not be what tells them apart).
        done = {r["generation_id"] for r in await pool.fetch(
            "SELECT g.generation_id FROM generations g JOIN attributions a USING (generation_id) "
            "WHERE g.completed_at IS NOT NULL AND g.generation_id = ANY($1::text[])", list(goods))}
        seen = {(x.source_topic, x.source_partition, x.source_offset) for x in letters.items}
        settled = len(done) == len(goods)
        if settled and want_letters <= seen:
            return
        now = loop.time()
        if settled and letters_deadline is None:
            letters_deadline = now + LETTER_EXTRA_SECONDS
        if now > deadline or (letters_deadline is not None and now > letters_deadline):
            out.timed_out.append(f"round {number}: {len(goods) - len(done)} valid generations unsettled "
                                 f"(e.g. {sorted(set(goods) - done)[:5]}), {len(want_letters - seen)} dead letters missing")
            return
        await asyncio.sleep(0.5)


def expected_balances(out: Outcome, goods: list, pipeline_output) -> dict[str, int]:  # type: ignore[no-untyped-def]
    """Owner/unattributed/platform balances from the valid records alone, plus the signed forgeries
    that book by design (flag cases) and the legitimate control reversal."""
    totals: dict[str, int] = defaultdict(int)
    parts_by_id = {}
    for event in goods:
        parts, audit = pipeline_output(event)
        totals["platform:revenue_share"] += audit.revenue_amount - audit.pool_amount
        for p in parts:
            totals[owner_account(p.owner_id)] += p.amount
            parts_by_id[p.contribution_id] = p
    for built in out.built.values():
        if built.forged:
            totals["platform:revenue_share"] += built.forged[0].revenue_amount - built.forged[0].pool_amount
        for p in built.forged:
            totals[owner_account(p.owner_id)] += p.amount
        for cid in built.reversed_ids:
            p = parts_by_id[cid]
            totals[owner_account(p.owner_id)] -= p.amount
            totals["unattributed"] += p.amount
    return {k: v for k, v in totals.items() if v}
