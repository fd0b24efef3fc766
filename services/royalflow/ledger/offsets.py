"""Stored offsets beyond the broker's log end: the ledger says so instead of sitting idle.

The ledger's next offsets live in PostgreSQL. If one is beyond its partition's log end, the
database has seen a history this broker does not have: a new or emptied broker (the embedded
one keeps topics in memory) behind an old database, or the wrong cluster. Seeking there would
wait for records that never come and then skip, silently, the first records the new broker
receives (their offsets are below the stored one). So such a partition is PAUSED (nothing
read, nothing skipped), a log line names topic, partition, stored offset and log end, the
gauge ``royalflow_ledger_offsets_beyond_log_end_records`` says by how much, and /readyz fails
its ``offsets`` check, until an operator resolves it (see infra/runbooks/alerts.md) and
restarts the ledger.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from dataclasses import dataclass

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.errors import KafkaError, OffsetOutOfRangeError

from royalflow.config import Settings
from royalflow.observability import metrics
from royalflow.platform.kafka import client_kwargs

log = logging.getLogger(__name__)

END_OFFSETS_TIMEOUT_SECONDS = 10.0
CONFIRM_SECONDS = 10.0  # a fetch at the last offset the database claims, to confirm a suspicion


@dataclass(frozen=True)
class BeyondEnd:
    topic: str
    partition: int
    stored: int  # next offset PostgreSQL holds
    log_end: int  # the broker's next offset to be written

    def __str__(self) -> str:
        return (f"topic {self.topic} partition {self.partition}: stored next offset {self.stored} is beyond the "
                f"log end {self.log_end}")


class OffsetGuard:
    """The partitions of this consumer whose stored offsets are beyond the log end."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.beyond: dict[tuple[str, int], BeyondEnd] = {}

    @property
    def ok(self) -> bool:
        return not self.beyond

    async def check(
        self, consumer: AIOKafkaConsumer, assigned: list[TopicPartition], stored: Mapping[tuple[str, int], int]
    ) -> list[BeyondEnd]:
        """Compare the stored offsets of a new assignment with the log ends; pause and report
        the partitions beyond. ``assigned`` is the whole new assignment (eager rebalancing)."""
        candidates = [tp for tp in assigned if stored.get((tp.topic, tp.partition), 0) > 0]
        suspects: dict[TopicPartition, int] = {}
        if candidates:
            try:
                ends = await asyncio.wait_for(consumer.end_offsets(candidates), END_OFFSETS_TIMEOUT_SECONDS)
            except (KafkaError, TimeoutError) as exc:
                # Unknown is not stale: consume as usual, and say the check could not run.
                log.warning("ledger: could not read log ends to check stored offsets: %s", exc)
                ends = {}
            suspects = {tp: ends[tp] for tp in candidates
                        if ends.get(tp) is not None and stored[(tp.topic, tp.partition)] > ends[tp]}
        found = await self._confirm(suspects, stored) if suspects else []
        self.beyond = {(b.topic, b.partition): b for b in found}
        if found:
            consumer.pause(*[TopicPartition(b.topic, b.partition) for b in found])
            for b in found:
                log.error("ledger: %s; the database holds a history this broker does not (a new or emptied broker, "
                          "or the wrong cluster): partition paused, nothing read or skipped; /readyz fails 'offsets'", b)
        metrics.LEDGER_OFFSETS_BEYOND_END.set(sum(b.stored - b.log_end for b in found))
        return found

    async def _confirm(self, suspects: dict[TopicPartition, int], stored: Mapping[tuple[str, int], int]) -> list[BeyondEnd]:
        """Fetch at the last offset the database claims (stored - 1). Some brokers answer the
        log-end query with less than the fetch high watermark (the embedded one: the last
        batch's base offset + 1), so a suspicion is confirmed only by a fetch: a record there,
        or a high watermark at or past the stored offset, clears it; an empty answer below it,
        or offset-out-of-range, confirms it. Unresolved within the limit counts as beyond."""
        checker = AIOKafkaConsumer(**client_kwargs(self.settings), group_id=None, enable_auto_commit=False,
                                   auto_offset_reset="none")
        await checker.start()
        pending = dict(suspects)
        confirmed: dict[TopicPartition, int] = {}
        try:
            checker.assign(list(pending))
            for tp in pending:
                checker.seek(tp, stored[(tp.topic, tp.partition)] - 1)
            loop = asyncio.get_running_loop()
            deadline = loop.time() + CONFIRM_SECONDS
            while pending and loop.time() < deadline:
                try:
                    fetched = await checker.getmany(*pending, timeout_ms=500)
                except OffsetOutOfRangeError as exc:
                    for tp in exc.args[0] if exc.args and isinstance(exc.args[0], dict) else list(pending):
                        confirmed[tp] = pending.pop(tp, suspects.get(tp, 0))
                    continue
                for tp in list(pending):
                    high = checker.highwater(tp)
                    if fetched.get(tp) or (high is not None and high >= stored[(tp.topic, tp.partition)]):
                        pending.pop(tp)  # the broker has that history: not beyond
                    elif high is not None:
                        confirmed[tp] = high
                        pending.pop(tp)
        finally:
            await checker.stop()
        for tp in pending:
            log.warning("ledger: could not confirm the log end of %s %d within %.0f s: treated as beyond",
                        tp.topic, tp.partition, CONFIRM_SECONDS)
        confirmed.update(pending)
        return [BeyondEnd(tp.topic, tp.partition, stored[(tp.topic, tp.partition)], end)
                for tp, end in sorted(confirmed.items())]
