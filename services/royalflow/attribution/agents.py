"""The faust attribution agent: generation events in, contribution and audit events out.

Batches come from ``stream.take_events``; the heavy, batched model work (and all blocking I/O:
file:// content) runs in one worker thread so the event loop keeps heartbeating the consumer
group and answering probes. Offsets are acknowledged only after every output (or dead letter)
of the batch is on the broker: at-least-once delivery, made exactly-once in effect by the
ledger's idempotency keys.

The agent never stops consuming. A record that fails is dead-lettered by the pipeline; outputs
the broker refuses are delivered again record by record, so only the refused record is
dead-lettered; a batch that fails as a whole (a bug here) is dead-lettered record by record with
``processing_error`` and counted in ``royalflow_attribution_batch_failures_total``; a dead letter
the broker refuses goes out without the original bytes. Only when not even that gets through
does the process exit, before acknowledging anything, so that a restart redelivers the batch
(crash-only: offsets are never committed for records that went nowhere). Every wait is bounded.
"""

from __future__ import annotations

from royalflow import topics
import asyncio
import logging
import os
import threading
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import faust

from royalflow.attribution.claimstore import ClaimStore
from royalflow.attribution.diffusion.images import configure_content_root
from royalflow.attribution.family import FamilyRegistry
from royalflow.attribution.output import Output
from royalflow.attribution.pipeline import BatchOutcome, Pipeline, RawRecord, Rejected
from royalflow.config import Settings
from royalflow.contracts.keys import key_material
from royalflow.platform.deadletter import dead_letter
from royalflow.platform.process import lower_thread_priority
from royalflow.contracts.events import to_json_bytes
from royalflow.observability import metrics

log = logging.getLogger(__name__)

SERVICE = "attribution"
DELIVERY_ATTEMPTS = 3  # per batch; record by record after that, once each
DELIVERY_BACKOFF_SECONDS = 1.0  # times the attempt number
DELIVERY_TIMEOUT_SECONDS = 60.0  # per attempt (faust's own producer timeout is 20 minutes)
CLAIM_DELIVERY_TIMEOUT_SECONDS = 30.0
CLAIM_PURGE_INTERVAL_SECONDS = 3600.0
SHUTDOWN_GRACE_SECONDS = 60.0  # a batch in flight at shutdown gets this long to finish
MAX_DEAD_LETTER_KEY_BYTES = 1024  # an event id is at most 128 characters
EXIT_UNDELIVERABLE = 75  # EX_TEMPFAIL: the supervisor restarts the agent
PRELOAD_NICENESS = 10  # the imports at start yield to busier work on the host (see install_agent)

Send = tuple[Any, bytes, bytes, list[tuple[str, bytes]] | None]  # (Output topic, key, value, headers)


def install_agent(app: faust.App, settings: Settings, registry: FamilyRegistry) -> None:
    configure_content_root(settings.content_root)
    generations = app.topic(settings.topic(topics.GENERATIONS))
    contributions = Output(app, settings.topic(topics.CONTRIBUTIONS), repeated_keys=True)  # keyed by owner
    audits = Output(app, settings.topic(topics.ATTRIBUTIONS))  # keyed by generation: every key new
    dead_letters = Output(app, settings.topic(topics.DEADLETTER), repeated_keys=True)  # keyed by topic
    claims = ClaimStore(app, settings)
    pipeline = Pipeline(
        registry, max_record_bytes=settings.max_record_bytes, max_revenue_amount=settings.max_revenue_amount,
        keys=key_material(settings),  # every contribution and audit record is signed
    )
    # One thread: models are resident and not shared across threads; torch uses the cores.
    executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="attribute")
    # The kinds' imports run while the agent joins its group, so the first batch waits only for
    # what is left of them (measured: 5-11 s of diffusers imports on a 2-core host otherwise
    # landed on the first batch). On a thread of their own at a lower CPU priority: on a first
    # demo run they would otherwise take half a core from the family's training, which starts
    # at the same moment. The executor's first job waits for them, so a batch never imports a
    # module the preload is still importing.
    kinds = preload_kinds(settings)
    complete = settings.attribution_preload.strip() not in ("auto", "")  # the setting names what it serves
    preloading = threading.Thread(target=_preload, args=(kinds, complete), name="preload", daemon=True)
    preloading.start()
    executor.submit(preloading.join)

    def letter(record: RawRecord, reason: str, detail: str) -> Send:
        key = record.key
        if key is not None and len(key) > MAX_DEAD_LETTER_KEY_BYTES:
            # Keys are not bounded by max_record_bytes: a huge one would make the dead letter itself
            # too large for the broker, and the batch could never be acknowledged.
            detail = f"{detail} (record key of {len(key)} bytes cut to {MAX_DEAD_LETTER_KEY_BYTES} here)"
            key = key[:MAX_DEAD_LETTER_KEY_BYTES]
        built = dead_letter(
            consumer=SERVICE, reason=reason, detail=detail, topic=record.topic, partition=record.partition,
            offset=record.offset, key=key, value=record.value, max_value_bytes=settings.max_record_bytes,
        )
        return dead_letters, record.topic.encode(), to_json_bytes(built), None

    async def handle(records: list[RawRecord]) -> None:
        await claims.ready()  # the claims of earlier runs are read back before the first batch
        with metrics.ATTRIBUTION_BATCH_DURATION.time():
            outcome: BatchOutcome = await asyncio.get_running_loop().run_in_executor(
                executor, pipeline.process, records, claims.lookup
            )
        if outcome.attributed_events:
            per_event = outcome.attribute_seconds / outcome.attributed_events
            for evaluations in outcome.model_evaluations:
                metrics.ATTRIBUTION_DURATION.observe(per_event)
                metrics.MODEL_EVALUATIONS.observe(evaluations)
        metrics.ATTRIBUTION_BATCH_SPLITS.inc(outcome.splits)
        claimed = await claims.record(outcome.claims)
        await deliver_outcome(outcome, contributions, audits, letter)
        metrics.RECORDS_PRODUCED.labels(SERVICE, contributions.get_topic_name()).inc(len(outcome.contributions))
        metrics.RECORDS_PRODUCED.labels(SERVICE, audits.get_topic_name()).inc(len(outcome.audits))
        for rejected in outcome.rejected:
            metrics.RECORDS_DEAD_LETTERED.labels(SERVICE, rejected.record.topic, rejected.reason).inc()
        if claimed:
            try:
                await asyncio.wait_for(asyncio.gather(*claimed), CLAIM_DELIVERY_TIMEOUT_SECONDS)
            except Exception:  # the claims hold in memory; after a restart the ledger is the backstop
                log.exception("claims of %d event ids did not reach the changelog", len(claimed))

    @app.agent(generations, name=f"{settings.topic_prefix}-attribute")
    async def attribute(stream: faust.StreamT) -> None:
        # The claims are read back beside the group join (seconds on a new group), not after it:
        # the load ends only after an idle second on the claims topic (claimstore.LOAD_IDLE_SECONDS).
        claims.start()
        async for events in stream.take_events(settings.attribution_batch_size, within=settings.attribution_batch_seconds):
            records = [
                RawRecord(e.message.topic, e.message.partition, e.message.offset, e.message.key, e.message.value)
                for e in events
            ]
            metrics.RECORDS_CONSUMED.labels(SERVICE, generations.get_topic_name()).inc(len(records))
            metrics.ATTRIBUTION_BATCH_SIZE.observe(len(records))
            batch = asyncio.ensure_future(handle_or_dead_letter(records, handle, letter))
            try:
                # Shielded: take_events acknowledges the batch when this body stops, even by
                # cancellation at shutdown, so the batch must be finished (or the process gone) first.
                await asyncio.shield(batch)
            except asyncio.CancelledError:
                done, _ = await asyncio.wait({batch}, timeout=SHUTDOWN_GRACE_SECONDS)
                if not done:
                    log.critical("a batch did not finish within the shutdown grace; exiting unacknowledged")
                    os._exit(EXIT_UNDELIVERABLE)
                raise

    @app.timer(CLAIM_PURGE_INTERVAL_SECONDS)
    async def purge_claims() -> None:
        dropped = await claims.purge()
        if dropped:
            log.info("dropped %d claims past their retention or bound", dropped)


def preload_kinds(settings: Settings) -> list[str]:
    """The family kinds to import at start (Settings.attribution_preload)."""
    from royalflow.attribution.registry import kinds_on_disk

    wanted = settings.attribution_preload.strip()
    if wanted == "auto":
        return kinds_on_disk(settings.families_dir)
    return [kind.strip() for kind in wanted.split(",") if kind.strip()]


def _preload(kinds: list[str], complete: bool) -> None:
    """Import the kinds' code; ``complete``: they are all it serves (lean.unused_by_agent)."""
    from royalflow.attribution.diffusion.lean import UNUSED_BY_AGENTS, import_diffusers_without, unused_by_agent
    from royalflow.attribution.families import KIND_MODULES, preload

    lower_thread_priority(PRELOAD_NICENESS)
    try:
        if {"diffusion", "lora"} & set(kinds):
            import_diffusers_without(unused_by_agent(kinds) if complete else UNUSED_BY_AGENTS)  # lean.py: 1.5-3.3 s less CPU
        done = preload(kinds)
        if len(done) != len(kinds):  # a typo in the setting: say so rather than import nothing quietly
            log.warning("ROYALFLOW_ATTRIBUTION_PRELOAD names unknown family kinds %s (known: %s)",
                        sorted(set(kinds) - set(done)), ", ".join(sorted(KIND_MODULES)))
    except Exception:  # the family's first load reports it again, per event, as it does today
        log.exception("preloading the code of family kinds %s failed", kinds)


async def deliver_outcome(
    outcome: BatchOutcome, contributions: Any, audits: Any, letter: Callable[[RawRecord, str, str], Send]
) -> None:
    """Every output and dead letter of a batch on the broker, or the process gone (see module doc).
    Records whose outputs the broker refuses are added to ``outcome.rejected``."""
    per_record = _outputs_per_record(outcome, contributions, audits)
    letters = [letter(r.record, r.reason, r.detail) for r in outcome.rejected]
    rejected_letters = list(zip(outcome.rejected, letters, strict=True))
    try:
        await deliver([send for _, group in per_record for send in group] + letters)
    except Exception:
        # Record by record, so that outputs the broker refuses (one record near the size
        # limit, say) cost only their own record: it is dead-lettered, the others go out.
        log.exception("delivery of a batch failed; delivering it record by record")
        for record, group in per_record:
            try:
                await deliver(group, attempts=1)
            except Exception as exc:
                detail = f"the broker refused this record's outputs: {type(exc).__name__}: {exc}"
                await _deliver_or_stub(record, letter(record, "processing_error", detail), letter, detail)
                outcome.rejected.append(Rejected(record, "processing_error", detail))
        for rejected, one in rejected_letters:
            await _deliver_or_stub(rejected.record, one, letter, rejected.detail, rejected.reason)


def _outputs_per_record(outcome: BatchOutcome, contributions: Any, audits: Any) -> list[tuple[RawRecord, list[Send]]]:
    """Each attributed record with its contribution parts and audit record, in batch order."""
    groups: list[tuple[RawRecord, list[Send]]] = []
    start = 0
    for (record, parts), audit in zip(outcome.attributed, outcome.audits, strict=True):
        group: list[Send] = [(contributions, k, v, h) for k, v, h in outcome.contributions[start:start + parts]]
        # The audit record first: if the producer refuses it (the larger record, checked when it
        # is handed over), none of the record's contributions are handed over and no money moves.
        # A refusal by the broker itself comes later; reconciliation then reports contributions
        # without their audit record.
        groups.append((record, [(audits, *audit), *group]))
        start += parts
    return groups


async def handle_or_dead_letter(
    records: list[RawRecord],
    handle: Callable[[list[RawRecord]], Awaitable[None]],
    letter: Callable[[RawRecord, str, str], Send],
) -> None:
    """Run ``handle`` on a batch; if it fails as a whole, dead-letter every record of it."""
    try:
        await handle(records)
    except Exception as exc:
        # A bug outside the per-record guards, or outputs the broker keeps refusing: the batch
        # goes to the dead-letter topic (replayable: outputs are deterministic, the ledger
        # deduplicates any that did get out) and the agent moves on.
        log.exception("a batch of %d records failed in the agent; dead-lettering it", len(records))
        metrics.ATTRIBUTION_BATCH_FAILURES.inc()
        detail = f"the agent could not process or deliver this record's batch: {type(exc).__name__}: {exc}"
        letters = [letter(r, "processing_error", detail) for r in records]
        try:
            await deliver(letters)
        except Exception:
            # One by one: a dead letter the broker refuses (too large, say) is replaced by one
            # without the original bytes, so that no single record can stop the agent for good.
            for record, one in zip(records, letters, strict=True):
                await _deliver_or_stub(record, one, letter, detail)
        for record in records:
            metrics.RECORDS_DEAD_LETTERED.labels(SERVICE, record.topic, "processing_error").inc()


async def _deliver_or_stub(
    record: RawRecord, one: Send, letter: Callable[[RawRecord, str, str], Send], detail: str,
    reason: str = "processing_error",
) -> None:
    try:
        await deliver([one], attempts=1)
        return
    except Exception:
        log.exception("the dead letter of %s[%d]@%d was refused; sending it without the original bytes",
                      record.topic, record.partition, record.offset)
    stub = RawRecord(record.topic, record.partition, record.offset, None, b"")
    try:
        await deliver([letter(stub, reason, f"{detail} (original bytes left out: the broker refused "
                                            f"the dead letter that carried them)")], attempts=1)
    except Exception:
        # Not even a small record gets through: the broker is unreachable. Exit before the batch is
        # acknowledged, so that a restart redelivers it.
        log.critical("dead letters undeliverable; exiting before acknowledging the batch", exc_info=True)
        os._exit(EXIT_UNDELIVERABLE)


async def deliver(sends: list[Send], *, attempts: int = DELIVERY_ATTEMPTS) -> None:
    """Send every record, then wait for every acknowledgement; retried as a whole (duplicates
    are harmless downstream), at most ``attempts`` times of DELIVERY_TIMEOUT_SECONDS each."""
    for attempt in range(1, attempts + 1):
        try:
            # A timeout scope, not wait_for: wait_for runs the sends in a new task, so the
            # producer's sender ran first and sent what was handed over before (the batch's
            # claims) in a request of its own.
            async with asyncio.timeout(DELIVERY_TIMEOUT_SECONDS):
                await _send_all(sends)
            return
        except Exception:
            if attempt == attempts:
                raise
            log.warning("delivery of %d records failed (attempt %d of %d)", len(sends), attempt, attempts,
                        exc_info=True)
            await asyncio.sleep(DELIVERY_BACKOFF_SECONDS * attempt)


async def _send_all(sends: list[Send]) -> None:
    # 1. By topic, in order of first appearance (the audit records before the contributions:
    #    see _outputs_per_record); each output hands its records over in one batch per partition.
    by_topic: dict[int, tuple[Any, list[tuple[bytes, bytes, list[tuple[str, bytes]] | None]]]] = {}
    for topic, key, value, headers in sends:
        by_topic.setdefault(id(topic), (topic, []))[1].append((key, value, headers))
    pending = []
    for topic, records in by_topic.values():
        if isinstance(topic, Output):
            pending.extend(await topic.send_many([(k, v, h, None) for k, v, h in records]))
        else:
            pending.extend([await topic.send(key=k, value=v, headers=h) for k, v, h in records])
    # 2. Every acknowledgement.
    if pending:
        await asyncio.gather(*pending)
