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
from aiokafka.errors import KafkaError

from royalflow.observability import metrics

log = logging.getLogger(__name__)

END_OFFSETS_TIMEOUT_SECONDS = 10.0


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

    def __init__(self) -> None:
        self.beyond: dict[tuple[str, int], BeyondEnd] = {}
        self.checked = False  # True once an assignment was checked (the /readyz check waits for it)

    @property
    def ok(self) -> bool:
        return not self.beyond

    async def check(
        self, consumer: AIOKafkaConsumer, assigned: list[TopicPartition], stored: Mapping[tuple[str, int], int]
    ) -> list[BeyondEnd]:
        """Compare the stored offsets of a new assignment with the log ends; pause and report
        the partitions beyond. ``assigned`` is the whole new assignment (eager rebalancing)."""
        candidates = [tp for tp in assigned if stored.get((tp.topic, tp.partition), 0) > 0]
        found: list[BeyondEnd] = []
        if candidates:
            try:
                ends = await asyncio.wait_for(consumer.end_offsets(candidates), END_OFFSETS_TIMEOUT_SECONDS)
            except (KafkaError, TimeoutError) as exc:
                # Unknown is not stale: consume as usual, and say the check could not run.
                log.warning("ledger: could not read log ends to check stored offsets: %s", exc)
                ends = {}
            for tp in candidates:
                end = ends.get(tp)
                stored_offset = stored[(tp.topic, tp.partition)]
                if end is not None and stored_offset > end:
                    found.append(BeyondEnd(tp.topic, tp.partition, stored_offset, end))
        self.beyond = {(b.topic, b.partition): b for b in found}
        self.checked = True
        if found:
            consumer.pause(*[TopicPartition(b.topic, b.partition) for b in found])
            for b in found:
                log.error("ledger: %s; the database holds a history this broker does not (a new or emptied broker, "
                          "or the wrong cluster): partition paused, nothing read or skipped; /readyz fails 'offsets'", b)
        metrics.LEDGER_OFFSETS_BEYOND_END.set(sum(b.stored - b.log_end for b in found))
        return found
