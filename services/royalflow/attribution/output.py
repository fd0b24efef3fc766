"""A topic the agent writes, sent through the faust app's Kafka producer directly.

faust's ``Topic.send`` wraps every record in its message, attachment and sensor machinery.
Measured with benchmarks/settlement.py (categorical family, a loaded 2-core host): delivering
one batch of about 30 generations (180 records) took 100-180 ms that way, and the agent could
not keep up with 250 generations/s. Sent here, the same batch takes 10-30 ms. The callers await
every acknowledgement exactly as before, so the delivery guarantees do not change; the producer
is faust's own (started before the agent, stopped after it).
"""

from __future__ import annotations

from typing import Any


class Output:
    def __init__(self, app: Any, name: str) -> None:
        self.app = app
        self.name = name

    def get_topic_name(self) -> str:
        return self.name

    async def send(self, *, key: bytes | None, value: bytes | None, headers: list[tuple[str, bytes]] | None = None,
                   partition: int | None = None) -> Any:
        """The future of the record's acknowledgement (acks=all), once it is in the send buffer."""
        return await self.app.producer.send(self.name, key, value, partition, None, headers)
