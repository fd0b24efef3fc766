"""Kafka clients and topics, configured from :class:`~royalflow.config.Settings`.

Every service builds its aiokafka clients through here so that SASL/TLS settings apply
everywhere. Idempotent and transactional producers are deliberately not used: exactly-once
*effect* comes from idempotency keys and offsets stored in PostgreSQL (the embedded broker
lacks InitProducerId anyway).
"""

from __future__ import annotations

from royalflow import topics
import asyncio
import ssl
from dataclasses import dataclass, field
from typing import Any

from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError

from royalflow.config import Settings
from royalflow.errors import ConfigurationError

ADMIN_RETRIES = 10


@dataclass(frozen=True)
class TopicSpec:
    name: str  # short name, prefixed by Settings.topic()
    config: dict[str, str] = field(default_factory=dict)
    partitions: int | None = None  # None -> Settings.topic_partitions


# Every topic the platform uses. Retention is explicit; balances is compacted (latest per owner).
TOPICS: tuple[TopicSpec, ...] = (
    TopicSpec(topics.GENERATIONS, {"retention.ms": str(7 * 24 * 3600 * 1000)}),
    TopicSpec(topics.CONTRIBUTIONS, {"retention.ms": str(30 * 24 * 3600 * 1000)}),
    TopicSpec(topics.ATTRIBUTIONS, {"retention.ms": str(30 * 24 * 3600 * 1000)}),
    TopicSpec(topics.DEADLETTER, {"retention.ms": str(30 * 24 * 3600 * 1000)}),
    TopicSpec(topics.CORRECTIONS, {"retention.ms": str(365 * 24 * 3600 * 1000)}),
    TopicSpec(topics.BALANCES, {"cleanup.policy": "compact"}),
    # The agent's claims table (latest claim per event id), kept as long as generations.v1.
    TopicSpec(topics.GENERATION_CLAIMS, {"cleanup.policy": "compact,delete", "retention.ms": str(7 * 24 * 3600 * 1000)}),
)


def client_kwargs(settings: Settings) -> dict[str, Any]:
    """bootstrap + security keyword arguments accepted by every aiokafka client."""
    if not settings.kafka_bootstrap_servers:
        raise ConfigurationError("KAFKA_BOOTSTRAP_SERVERS is unset and no embedded broker was started")
    kwargs: dict[str, Any] = {
        "bootstrap_servers": settings.kafka_bootstrap_servers,
        "security_protocol": settings.kafka_security_protocol,
    }
    if settings.kafka_security_protocol in ("SSL", "SASL_SSL"):
        kwargs["ssl_context"] = ssl.create_default_context(cafile=settings.kafka_ssl_cafile)
    if settings.kafka_security_protocol.startswith("SASL"):
        if not (settings.kafka_sasl_mechanism and settings.kafka_sasl_username and settings.kafka_sasl_password):
            raise ConfigurationError("SASL needs ROYALFLOW_KAFKA_SASL_MECHANISM, _USERNAME and _PASSWORD")
        kwargs.update(
            sasl_mechanism=settings.kafka_sasl_mechanism,
            sasl_plain_username=settings.kafka_sasl_username,
            sasl_plain_password=settings.kafka_sasl_password,
        )
    return kwargs


def make_producer(settings: Settings, **overrides: Any) -> AIOKafkaProducer:
    """acks=all, no idempotence (see module doc), bounded batching and request size."""
    options: dict[str, Any] = {
        "acks": "all",
        "enable_idempotence": False,
        "linger_ms": round(settings.kafka_linger_seconds * 1000),
        "max_batch_size": 256 * 1024,
        "max_request_size": max(2 * settings.max_record_bytes, 1_048_576),
        "request_timeout_ms": 30_000,
    }
    options.update(overrides)
    return AIOKafkaProducer(**client_kwargs(settings), **options)


async def ensure_topics(settings: Settings, specs: tuple[TopicSpec, ...] = TOPICS) -> list[str]:
    """Create missing topics with explicit partitions and config; return their full names."""
    names = [settings.topic(spec.name) for spec in specs]
    admin = AIOKafkaAdminClient(**client_kwargs(settings))
    for attempt in range(ADMIN_RETRIES):
        try:
            await admin.start()
            break
        except Exception:  # broker still starting
            if attempt == ADMIN_RETRIES - 1:
                raise
            await asyncio.sleep(0.5)
    try:
        existing = set(await admin.list_topics())
        missing = [
            NewTopic(
                settings.topic(spec.name),
                num_partitions=spec.partitions or settings.topic_partitions,
                replication_factor=settings.topic_replication_factor,
                topic_configs=spec.config,
            )
            for spec in specs
            if settings.topic(spec.name) not in existing
        ]
        if missing:
            try:
                await admin.create_topics(missing)
            except TopicAlreadyExistsError:
                pass  # another service created them first
    finally:
        await admin.close()
    return names
