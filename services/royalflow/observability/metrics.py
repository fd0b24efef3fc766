"""Every Prometheus metric royalflow exports, in one catalogue.

Naming follows Prometheus conventions: base units (seconds, bytes), ``_total`` on counters,
and never an owner or generation id as a label value (unbounded cardinality). Labels are
bounded sets: service, topic, reason, currency, account type, partition, state, method,
route (the route template, never a raw path), status.
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram, Info

LATENCY_BUCKETS_SECONDS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 120)

BUILD = Info("royalflow_build", "Version of the running royalflow build.")

# --- records on topics (every service) ---------------------------------------------------
RECORDS_CONSUMED = Counter(
    "royalflow_records_consumed_total", "Records consumed from a topic.", ["service", "topic"]
)
RECORDS_PRODUCED = Counter(
    "royalflow_records_produced_total", "Records produced to a topic.", ["service", "topic"]
)
RECORDS_DEAD_LETTERED = Counter(
    "royalflow_records_dead_lettered_total",
    "Records sent to the dead-letter topic, by source topic and reason.",
    ["service", "topic", "reason"],
)
CONSUMER_LAG = Gauge(
    "royalflow_consumer_lag_records",
    "End offset minus committed offset, per partition.",
    ["service", "topic", "partition"],
)

# --- attribution ------------------------------------------------------------------------
ATTRIBUTION_DURATION = Histogram(
    "royalflow_attribution_duration_seconds",
    "Model time per attributed generation (batch time / batch size).",
    buckets=LATENCY_BUCKETS_SECONDS,
)
ATTRIBUTION_BATCH_DURATION = Histogram(
    "royalflow_attribution_batch_duration_seconds",
    "Wall time to attribute one batch, decode to royalty parts.",
    buckets=LATENCY_BUCKETS_SECONDS,
)
ATTRIBUTION_BATCH_SIZE = Histogram(
    "royalflow_attribution_batch_size", "Generation events per attribution batch.",
    buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256, 512),
)
MODEL_EVALUATIONS = Histogram(
    "royalflow_attribution_model_evaluations",
    "Model forward evaluations (coalition or component models x timesteps) per generation.",
    buckets=(1, 4, 16, 64, 256, 1024, 4096, 16384, 65536),
)
GPU_MEMORY_ALLOCATED = Gauge("royalflow_gpu_memory_allocated_bytes", "torch.cuda.memory_allocated on the agent's device.")
GPU_MEMORY_RESERVED = Gauge("royalflow_gpu_memory_reserved_bytes", "torch.cuda.memory_reserved on the agent's device.")

# --- ledger ------------------------------------------------------------------------------
LEDGER_POSTINGS = Counter("royalflow_ledger_postings_total", "Postings written to the journal.", ["currency"])
LEDGER_SETTLED_AMOUNT = Counter(
    "royalflow_ledger_settled_amount_units_total",
    "Amount credited, in integer asset-scale units of the currency (USD: 1e-9 USD).",
    ["currency", "account_type"],  # account_type: owner | platform | unattributed
)
LEDGER_BATCH_DURATION = Histogram(
    "royalflow_ledger_batch_duration_seconds", "Time to apply one batch in one PostgreSQL transaction.",
    buckets=LATENCY_BUCKETS_SECONDS,
)
LEDGER_BATCH_SIZE = Histogram(
    "royalflow_ledger_batch_records", "Records per ledger transaction.",
    buckets=(1, 10, 100, 500, 1000, 2000, 5000, 10000, 20000),
)
LEDGER_DUPLICATES = Counter(
    "royalflow_ledger_duplicates_total", "Contributions already settled (redeliveries, replays): no effect."
)
SETTLEMENT_LATENCY = Histogram(
    "royalflow_settlement_latency_seconds",
    "Generation event time to the commit of its last contribution part.",
    buckets=LATENCY_BUCKETS_SECONDS,
)
INCOMPLETE_GENERATIONS = Gauge(
    "royalflow_ledger_incomplete_generations", "Generations still waiting for some of their parts."
)
RECONCILIATION_OK = Gauge("royalflow_reconciliation_last_success", "1 if the last reconciliation found no problem.")
RECONCILIATION_PROBLEMS = Gauge("royalflow_reconciliation_problems", "Problems the last reconciliation found.")
RECONCILIATION_TIMESTAMP = Gauge(
    "royalflow_reconciliation_last_run_timestamp_seconds", "Unix time of the last reconciliation run."
)
DB_POOL_CONNECTIONS = Gauge(
    "royalflow_db_pool_connections", "asyncpg pool connections by state.", ["service", "state"]
)
OUTBOX_PENDING = Gauge("royalflow_outbox_pending_records", "Balance changes not yet published.")

# --- HTTP API ----------------------------------------------------------------------------
HTTP_REQUESTS = Counter(
    "royalflow_http_requests_total", "HTTP requests by route template and status.", ["method", "route", "status"]
)
HTTP_DURATION = Histogram(
    "royalflow_http_request_duration_seconds", "HTTP request duration.", ["method", "route"],
    buckets=LATENCY_BUCKETS_SECONDS,
)


def observe_gpu_memory() -> None:
    """Refresh the GPU gauges; no-op without CUDA (torch is imported only if already loaded)."""
    import sys

    torch = sys.modules.get("torch")
    if torch is None or not torch.cuda.is_available():
        return
    GPU_MEMORY_ALLOCATED.set(torch.cuda.memory_allocated())
    GPU_MEMORY_RESERVED.set(torch.cuda.memory_reserved())


def observe_pool(service: str, pool: object) -> None:
    """Refresh pool gauges from an asyncpg pool."""
    size = pool.get_size()  # type: ignore[attr-defined]
    idle = pool.get_idle_size()  # type: ignore[attr-defined]
    DB_POOL_CONNECTIONS.labels(service, "in_use").set(size - idle)
    DB_POOL_CONNECTIONS.labels(service, "idle").set(idle)
    DB_POOL_CONNECTIONS.labels(service, "max").set(pool.get_max_size())  # type: ignore[attr-defined]
