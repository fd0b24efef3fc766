"""A topic the agent writes, sent through the faust app's Kafka producer directly.

faust's ``Topic.send`` wraps every record in its message, attachment and sensor machinery.
Measured with benchmarks/settlement.py (categorical family, a loaded 2-core host): delivering
one batch of about 30 generations (180 records) took 100-180 ms that way, and the agent could
not keep up with 250 generations/s. Sent here, the same batch takes 10-30 ms. The callers await
every acknowledgement exactly as before, so the delivery guarantees do not change; the producer
is faust's own (started before the agent, stopped after it).

``send_many`` goes one step further for a whole batch of outputs: one record batch per
partition, built here and handed over closed, so the producer keeps no per-record future and
the sender finds every batch ready at once. The broker's cost is mostly per request and per
partition batch (about 230 us and 25 us on the embedded broker, against 2 us per record), and
records handed over one by one, each partition batch with its own linger clock, went out in
two or three requests per agent batch.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

from aiokafka import AIOKafkaProducer
from aiokafka.errors import MessageSizeTooLargeError
from aiokafka.record.default_records import DefaultRecordBatchBuilder

Headers = list[tuple[str, bytes]]
Record = tuple[bytes | None, bytes | None, Headers | None, int | None]  # key, value, headers, partition (None: by key)


MAX_CACHED_KEYS = 65_536  # partitions remembered per output; the memo starts over past it


class Output:
    def __init__(self, app: Any, name: str, *, repeated_keys: bool = False) -> None:
        self.app = app
        self.name = name
        # Keys that repeat (owner ids, topic names) keep their partition: the producer's default
        # partitioner hashes every key in pure Python (murmur2, about 10 us a key measured alone,
        # four owners per generation). Deterministic per key and partition set, so the memo is
        # dropped whenever the topic's partitions change.
        self._memo: dict[bytes, int] | None = {} if repeated_keys else None
        self._memo_partitions: set[int] | None = None

    def get_topic_name(self) -> str:
        return self.name

    async def send(self, *, key: bytes | None, value: bytes | None, headers: Headers | None = None,
                   partition: int | None = None) -> Any:
        """The future of the record's acknowledgement (acks=all), once it is in the send buffer."""
        return await self.app.producer.send(self.name, key, value, partition, None, headers)

    async def send_many(self, records: Sequence[Record]) -> list[asyncio.Future[Any]]:
        """Hand every record over, one closed record batch per partition (more where a batch
        fills); the futures of the batches' acknowledgements. A record larger than the producer's
        request limit raises before any record is handed over, as ``send`` would for it alone.
        Without yielding to the event loop while the metadata is known: batches handed over in
        one stretch, by several outputs, leave in one produce request."""
        client = getattr(self.app.producer, "_producer", None)
        if not isinstance(client, AIOKafkaProducer):  # another producer (a threaded one, a test's)
            return [await self.send(key=k, value=v, headers=h, partition=p) for k, v, h, p in records]
        await client.client._wait_on_metadata(self.name)
        # 1. Partitions and sizes first, so that a refused record hands nothing over. The
        #    partitioner is the producer's own: a key lands where ``send`` would put it.
        memo = self._memo
        if memo is not None:
            partitions = client._metadata.partitions_for_topic(self.name)
            if partitions != self._memo_partitions:
                memo.clear()
                self._memo_partitions = set(partitions or ())
        placed = []
        for key, value, headers, partition in records:
            size = DefaultRecordBatchBuilder.estimate_size_in_bytes(key, value, headers or [])
            if size > client._max_request_size:
                raise MessageSizeTooLargeError(
                    f"a record of {size} bytes for {self.name} is larger than the producer's request limit")
            if memo is not None and partition is None and key is not None:
                partition = memo.get(key)
                if partition is None:
                    if len(memo) >= MAX_CACHED_KEYS:
                        memo.clear()
                    partition = memo[key] = client._partition(self.name, None, None, None, key, value)
            placed.append((client._partition(self.name, partition, None, None, key, value), key, value, headers or []))
        # 2. One builder per partition, in record order; a full one is handed over and replaced.
        builders: dict[int, Any] = {}
        futures = []
        for partition, key, value, headers in placed:
            builder = builders.get(partition)
            if builder is None:
                builder = builders[partition] = client.create_batch()
            if builder.append(timestamp=None, key=key, value=value, headers=headers) is None:
                futures.append(await self._hand_over(client, builder, partition))
                builder = builders[partition] = client.create_batch()
                builder.append(timestamp=None, key=key, value=value, headers=headers)  # the first record always fits
        for partition, builder in builders.items():
            futures.append(await self._hand_over(client, builder, partition))
        return futures

    async def _hand_over(self, client: AIOKafkaProducer, builder: Any, partition: int) -> asyncio.Future[Any]:
        builder.close()  # ready now: no linger, nothing else appended to it
        return await client.send_batch(builder, self.name, partition=partition)
