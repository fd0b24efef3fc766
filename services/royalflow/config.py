"""One typed settings object, read from environment variables.

``KAFKA_BOOTSTRAP_SERVERS`` and ``DATABASE_URL`` keep their conventional names. When
either is unset, :mod:`royalflow.platform` starts an embedded broker / PostgreSQL in
``ROYALFLOW_STATE_DIR`` instead. Everything else is prefixed ``ROYALFLOW_``.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from pydantic import AliasChoices, Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="ROYALFLOW_", extra="ignore")

    # --- external systems (unset -> embedded default) ---------------------------------
    kafka_bootstrap_servers: str | None = Field(
        default=None, validation_alias=AliasChoices("KAFKA_BOOTSTRAP_SERVERS", "ROYALFLOW_KAFKA_BOOTSTRAP_SERVERS")
    )
    database_url: str | None = Field(
        default=None, validation_alias=AliasChoices("DATABASE_URL", "ROYALFLOW_DATABASE_URL")
    )
    # Kafka security, accepted as-is by aiokafka and faust: PLAINTEXT, SSL, SASL_PLAINTEXT, SASL_SSL.
    kafka_security_protocol: str = "PLAINTEXT"
    kafka_sasl_mechanism: str | None = None  # PLAIN, SCRAM-SHA-256, SCRAM-SHA-512
    kafka_sasl_username: str | None = None
    kafka_sasl_password: str | None = None
    kafka_ssl_cafile: str | None = None
    # Longest a consumer's fetch waits on the broker when no records are there. Kafka answers a
    # waiting fetch as soon as records arrive; the embedded broker answers only at the end of the
    # wait, so this bounds every hop's latency there (aiokafka's 500 ms and faust's 1.5 s default
    # put 0.1-0.6 s on each hop). Idle cost: one fetch per consumer per wait.
    kafka_fetch_wait_seconds: float = Field(default=0.02, ge=0.005, le=5.0)
    # An agent that stops heartbeating loses its partitions after this long. It also bounds how
    # long a new group waits for its members on its first join: the embedded broker waits half
    # of it (Apache Kafka waits group.initial.rebalance.delay.ms). Apache Kafka refuses less than
    # its group.min.session.timeout.ms, 6 s by default; the embedded broker takes 3 s and up.
    kafka_session_timeout_seconds: float = Field(default=10.0, ge=3.0, le=300.0)
    # How long a producer lets a record batch fill before sending it (every producer of the
    # platform: make_producer and the agent's). Longer: fewer, larger record batches on the
    # broker, whose cost is mostly per request and per record batch, and above all per record
    # batch that a live consumer reads (measured on the embedded broker, 1,000 records/s into 8
    # partitions read by one consumer: 235 us of broker CPU per record at 5 ms, 155 us at 20 ms).
    kafka_linger_seconds: float = Field(default=0.02, ge=0.0, le=1.0)

    # --- embedded default ---------------------------------------------------------------
    state_dir: Path = Path(".royalflow")

    # --- record signing (see contracts/signing.py and README "Security") -------------------
    # Key sets as "kid:base64secret,..." (or Ed25519 specs). Unset: the keys in
    # <state_dir>/keys.json, generated once (mode 0600). repr=False: never in a repr or log.
    signing_keys: str | None = Field(default=None, repr=False)  # agent: contributions, attributions
    signing_key_id: str | None = None  # the agent signs with this one (rotation: add, switch, retire)
    admin_keys: str | None = Field(default=None, repr=False)  # admin: corrections (reversals)
    admin_key_id: str | None = None

    # --- topics -------------------------------------------------------------------------
    topic_prefix: str = "royalflow"
    topic_partitions: int = Field(default=8, ge=1, le=1024)
    topic_replication_factor: int = Field(default=1, ge=1, le=16)  # 3 on a production cluster

    # --- limits (TigerStyle: a limit on everything) -------------------------------------
    max_record_bytes: int = Field(default=1_048_576, ge=1024)  # larger records are dead-lettered
    max_revenue_amount: int = Field(default=10**15, ge=1)  # per generation, in asset-scale units
    attribution_batch_size: int = Field(default=256, ge=1, le=4096)
    # Family kinds whose code (torch, diffusers: 5-8 s of imports on a 2-core host) the agent
    # imports as it starts, before its first batch: "auto" = the kinds of the families on disk at
    # start, "" = none (each kind on first use), else a comma-separated list such as "diffusion":
    # the kinds the agent serves, and an agent listed without "lora" imports diffusers without
    # transformers and torch._dynamo (3.3 s less CPU; a LoRA family then fails to load, by name).
    attribution_preload: str = Field(default="auto", max_length=200)
    # Threads one agent evaluates a batch's models on, on CPU (the digits kind: its coalition
    # models side by side, one intra-op thread each, the same numbers bit for bit). One agent with
    # a thread per core settles as fast as an agent per core, without the second agent's imports.
    attribution_cpu_threads: int = Field(default=1, ge=1, le=64)
    # The agent's batch closes when full or after this long (a batch that fills while the last one
    # is processed goes at once). Each batch costs a produce request and a record batch per
    # partition it writes, which the broker pays for again when the ledger reads them: 40 ms
    # makes those a few dozen per second at any load, for about 20 ms more latency at 100/s.
    attribution_batch_seconds: float = Field(default=0.04, gt=0, le=5.0)
    ledger_batch_size: int = Field(default=5000, ge=1, le=100_000)
    # Longest wait of an idle fetch: below 10 ms an idle ledger spins; above 5 s it stops slowly.
    ledger_batch_seconds: float = Field(default=0.05, ge=0.01, le=5.0)
    reconcile_interval_seconds: float = Field(default=300.0, ge=0)  # the ledger re-checks its books; 0 = off
    reversal_wait_seconds: float = Field(default=300.0, gt=0, le=86_400)  # then an unknown contribution is dead-lettered
    attribution_grace_seconds: float = Field(default=300.0, ge=0, le=86_400)  # contributions without an audit record: reported after
    db_pool_max_size: int = Field(default=8, ge=1, le=256)

    # --- model families -----------------------------------------------------------------
    families_dir: Path = Path(".royalflow/families")
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    content_root: Path | None = None  # file:// content is read only from under here; unset: file:// refused

    # --- service ports (0 = pick a free port) -------------------------------------------
    attribution_port: int = 0
    ledger_port: int = 0
    api_port: int = 8080
    api_host: str = "127.0.0.1"

    # --- owner portal (pages under /portal of the API process) ------------------------------
    portal_session_seconds: int = Field(default=8 * 3600, ge=60, le=30 * 86_400)  # absolute session lifetime
    # The owner page's chart and top generations may lag settlement by this much (0 = always
    # fresh); the balance is always read live.
    portal_cache_seconds: float = Field(default=10.0, ge=0, le=3600)
    # The API withholds a generation's content and prompt from owners (the end customer's
    # output); a platform whose customers agreed to show them to the owners who are paid for
    # them sets this, and the portal then shows owners the picture and the prompt.
    portal_show_content_to_owners: bool = False

    @property
    def embedded_kafka(self) -> bool:
        return not self.kafka_bootstrap_servers

    @property
    def embedded_database(self) -> bool:
        return not self.database_url

    def topic(self, name: str) -> str:
        """Full topic name, e.g. ``royalflow.generations.v1``."""
        return f"{self.topic_prefix}.{name}"


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()
