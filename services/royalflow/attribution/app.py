"""Builds the faust app of the attribution agent, and nothing else (agents live in agents.py)."""

from __future__ import annotations

import ssl
from typing import Any

import faust
from faust.sensors import Monitor
from faust.tables import TableManager
from faust.transport.drivers import aiokafka as faust_aiokafka

from royalflow.config import Settings
from royalflow.errors import ConfigurationError

APP_ID = "royalflow-attribution"
HEARTBEATS_PER_SESSION = 3  # Kafka's advice: a heartbeat at most a third of the session timeout


def _credentials(settings: Settings) -> object | None:
    protocol = settings.kafka_security_protocol
    context = ssl.create_default_context(cafile=settings.kafka_ssl_cafile) if protocol in ("SSL", "SASL_SSL") else None
    if protocol.startswith("SASL"):
        if not (settings.kafka_sasl_mechanism and settings.kafka_sasl_username and settings.kafka_sasl_password):
            raise ConfigurationError("SASL needs ROYALFLOW_KAFKA_SASL_MECHANISM, _USERNAME and _PASSWORD")
        return faust.SASLCredentials(
            username=settings.kafka_sasl_username,
            password=settings.kafka_sasl_password,
            mechanism=settings.kafka_sasl_mechanism,
            ssl_context=context,
        )
    return context


class _ConsumerThread(faust_aiokafka.AIOKafkaConsumerThread):
    """faust's consumer with the platform's fetch wait instead of faust's fixed 1.5 s (see
    Settings.kafka_fetch_wait_seconds: on the embedded broker that wait is every hop's latency)."""

    def _create_worker_consumer(self, transport: Any) -> Any:
        consumer = super()._create_worker_consumer(transport)
        # Read by AIOKafkaConsumer.start() when it builds its fetcher, which happens later.
        consumer._fetch_max_wait_ms = self.app.fetch_wait_ms  # type: ignore[attr-defined]
        return consumer


class _Consumer(faust_aiokafka.Consumer):
    def _new_consumer_thread(self) -> faust_aiokafka.AIOKafkaConsumerThread:
        return _ConsumerThread(self, loop=self.loop, beacon=self.beacon)


class _Transport(faust_aiokafka.Transport):
    Consumer = _Consumer


class _QuietMonitor(Monitor):
    """faust's monitor without its per-event bookkeeping: four sensor calls per event that keep
    latency deques and counters (13 us per event measured alone) for statistics nothing here
    reads; the platform's own metrics are counted per batch (agents.py)."""

    def on_message_in(self, tp: Any, offset: int, message: Any) -> None:
        return None

    def on_stream_event_in(self, tp: Any, offset: int, stream: Any, event: Any) -> None:
        return None

    def on_stream_event_out(self, tp: Any, offset: int, stream: Any, event: Any, state: Any = None) -> None:
        return None

    def on_message_out(self, tp: Any, offset: int, message: Any) -> None:
        return None


class _TableManager(TableManager):
    """faust's table manager without its unconditional 1 s sleep at start, which waits for tables
    declared late. The agent declares none (its claims are a plain topic, claimstore.py), and that
    second sat on the path to every agent's first group join: in a later demo run, 1 of the
    7.7 s before the first batch."""

    async def on_start(self) -> None:
        if not self.should_stop:
            await self._update_channels()
            await self.recovery.start()


class _App(faust.App):
    fetch_wait_ms = 1500  # faust's own; create_app sets the platform's

    def _new_transport(self) -> Any:
        return _Transport(self.conf.broker_consumer, self)


def create_app(settings: Settings, *, web_port: int) -> faust.App:
    if not settings.kafka_bootstrap_servers:
        raise ConfigurationError("the attribution agent needs KAFKA_BOOTSTRAP_SERVERS (or `royalflow platform up`)")
    datadir = settings.state_dir / "faust"
    datadir.mkdir(parents=True, exist_ok=True)
    servers = ";".join(f"kafka://{s.strip()}" for s in settings.kafka_bootstrap_servers.split(","))
    app = _App(
        f"{settings.topic_prefix}-attribution",
        broker=servers,
        broker_credentials=_credentials(settings),
        value_serializer="raw",
        key_serializer="raw",
        # Topics are created by `royalflow platform up` / compose's topic-init, with explicit
        # partitions and retention; the agent only reads and writes them.
        topic_allow_declare=False,
        topic_partitions=settings.topic_partitions,
        topic_disable_leader=True,
        consumer_auto_offset_reset="earliest",
        producer_acks=-1,
        # As the platform's other producers (platform/kafka.py). The outputs of a batch do not
        # wait for it: they are handed over as closed record batches (output.py).
        producer_linger=settings.kafka_linger_seconds,
        producer_max_batch_size=256 * 1024,
        producer_max_request_size=max(2 * settings.max_record_bytes, 1_048_576),
        # A short session timeout bounds how long a dead agent holds its partitions, and how long
        # a new group waits for members on its first join (Tansu waits half of it).
        broker_session_timeout=settings.kafka_session_timeout_seconds,
        broker_heartbeat_interval=settings.kafka_session_timeout_seconds / HEARTBEATS_PER_SESSION,
        # Offsets are committed every second or every 1,000 acknowledged events (every 100 put a
        # commit request and faust's commit path, about 1% of the agent's CPU in a profile, into
        # every tenth of a second at 1,000 events/s); a restart redelivers at most that much,
        # which the ledger's idempotency keys absorb.
        broker_commit_every=1000,
        broker_commit_interval=1.0,
        # No Kafka transactions: exactly-once effect comes from the ledger's idempotency keys.
        processing_guarantee="at_least_once",
        Monitor=_QuietMonitor,
        TableManager=_TableManager,
        web_enabled=True,
        web_port=web_port,
        web_bind="0.0.0.0",
        web_host="127.0.0.1",
        store="memory://",
        datadir=str(datadir),  # never the working directory
    )
    app.fetch_wait_ms = round(settings.kafka_fetch_wait_seconds * 1000)
    return app
