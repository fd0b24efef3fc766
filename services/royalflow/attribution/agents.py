"""The faust attribution agent: generation events in, contribution and audit events out.

Batches come from ``stream.take_events``; the heavy, batched model work runs in one worker
thread so the event loop keeps heartbeating the consumer group. Offsets are acknowledged only
after every output (or dead letter) of the batch is on the broker: at-least-once delivery,
made exactly-once in effect by the ledger's idempotency keys.
"""

from __future__ import annotations

from royalflow import topics
import asyncio
import logging
from concurrent.futures import ThreadPoolExecutor

import faust

from royalflow.attribution.family import FamilyRegistry
from royalflow.attribution.pipeline import Pipeline, RawRecord
from royalflow.config import Settings
from royalflow.contracts.keys import key_material
from royalflow.platform.deadletter import dead_letter
from royalflow.contracts.events import to_json_bytes
from royalflow.observability import metrics

log = logging.getLogger(__name__)

SERVICE = "attribution"


def install_agent(app: faust.App, settings: Settings, registry: FamilyRegistry) -> None:
    generations = app.topic(settings.topic(topics.GENERATIONS))
    contributions = app.topic(settings.topic(topics.CONTRIBUTIONS))
    audits = app.topic(settings.topic(topics.ATTRIBUTIONS))
    dead_letters = app.topic(settings.topic(topics.DEADLETTER))
    pipeline = Pipeline(
        registry, max_record_bytes=settings.max_record_bytes, max_revenue_amount=settings.max_revenue_amount,
        keys=key_material(settings),  # every contribution and audit record is signed
    )
    # One thread: models are resident and not shared across threads; torch uses the cores.
    executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="attribute")

    @app.agent(generations, name=f"{settings.topic_prefix}-attribute")
    async def attribute(stream: faust.StreamT) -> None:
        async for events in stream.take_events(settings.attribution_batch_size, within=settings.attribution_batch_seconds):
            records = [
                RawRecord(e.message.topic, e.message.partition, e.message.offset, e.message.key, e.message.value)
                for e in events
            ]
            metrics.RECORDS_CONSUMED.labels(SERVICE, generations.get_topic_name()).inc(len(records))
            metrics.ATTRIBUTION_BATCH_SIZE.observe(len(records))
            with metrics.ATTRIBUTION_BATCH_DURATION.time():
                outcome = await asyncio.get_running_loop().run_in_executor(executor, pipeline.process, records)
            if outcome.attributed_events:
                per_event = outcome.attribute_seconds / outcome.attributed_events
                for evaluations in outcome.model_evaluations:
                    metrics.ATTRIBUTION_DURATION.observe(per_event)
                    metrics.MODEL_EVALUATIONS.observe(evaluations)
            # Send everything, then wait for every delivery before the batch is acked.
            pending = []
            for key, value, headers in outcome.contributions:
                pending.append(await contributions.send(key=key, value=value, headers=headers))
            for key, value, headers in outcome.audits:
                pending.append(await audits.send(key=key, value=value, headers=headers))
            for rejected in outcome.rejected:
                r = rejected.record
                letter = dead_letter(
                    consumer=SERVICE, reason=rejected.reason, detail=rejected.detail, topic=r.topic,
                    partition=r.partition, offset=r.offset, key=r.key, value=r.value,
                    max_value_bytes=settings.max_record_bytes,
                )
                pending.append(await dead_letters.send(key=r.topic.encode(), value=to_json_bytes(letter)))
                metrics.RECORDS_DEAD_LETTERED.labels(SERVICE, r.topic, rejected.reason).inc()
            if pending:
                await asyncio.gather(*pending)
            metrics.RECORDS_PRODUCED.labels(SERVICE, contributions.get_topic_name()).inc(len(outcome.contributions))
            metrics.RECORDS_PRODUCED.labels(SERVICE, audits.get_topic_name()).inc(len(outcome.audits))
