"""Every Prometheus metric royalflow exports, in one catalogue.

Naming follows Prometheus conventions: base units (seconds, bytes), ``_total`` on counters,
and never an owner or generation id as a label value (unbounded cardinality). Labels are
bounded sets: service, topic, partition, reason, currency, account type, state, method,
route (the route template, never a raw path), status, check.

Everything lives in prometheus-client's default ``REGISTRY``, so the process_* and python_*
collectors come for free. Python imports a module once, so importing this catalogue from
every service (and every test) registers each metric exactly once.

Dashboards (infra/grafana) and alert rules (infra/prometheus) may only query names defined
here; tests/infra checks that statically and against a live run.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping
from importlib import metadata

from prometheus_client import Counter, Gauge, Histogram, disable_created_metrics
from prometheus_client.metrics import MetricWrapperBase

from royalflow.money.currency import CURRENCIES

# The *_created series double the series count and no dashboard or rule reads them.
disable_created_metrics()

LATENCY_BUCKETS_SECONDS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 120)
ACCOUNT_TYPES = ("owner", "platform", "unattributed")

# --- build -------------------------------------------------------------------------------
BUILD_INFO = Gauge("royalflow_build_info", "Always 1; the labels name the running build.", ["version"])
# Asset scale per currency, so dashboards can show decimals: units / 10 ^ scale (display only).
CURRENCY_ASSET_SCALE = Gauge(
    "royalflow_currency_asset_scale", "Decimal digits of one asset unit: 1 unit = 10^-scale of the currency.",
    ["currency"],
)

# --- records on topics (every service) ---------------------------------------------------
RECORDS_CONSUMED = Counter(
    "royalflow_records_consumed_total", "Records consumed from a topic (dead-lettered ones included).",
    ["service", "topic"],
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
CONSUMER_COMMITTED_OFFSET = Gauge(
    "royalflow_consumer_committed_offset",
    "Next offset to consume as committed (for the ledger: stored with its postings), per partition.",
    ["service", "topic", "partition"],
)

# --- attribution ------------------------------------------------------------------------
ATTRIBUTION_DURATION = Histogram(
    "royalflow_attribution_duration_seconds",
    "Model time per attributed generation (batch time / batch size). SLO: 99% under 2 s.",
    buckets=LATENCY_BUCKETS_SECONDS,
)
ATTRIBUTION_BATCH_DURATION = Histogram(
    "royalflow_attribution_batch_duration_seconds",
    "Wall time to attribute one batch, decode to royalty parts.",
    buckets=LATENCY_BUCKETS_SECONDS,
)
ATTRIBUTION_BATCH_SIZE = Histogram(
    "royalflow_attribution_batch_size", "Generation events per attribution batch.",
    buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 4096),
)
MODEL_EVALUATIONS = Histogram(
    "royalflow_attribution_model_evaluations",
    "Model forward evaluations (coalition or component models x timesteps) per generation.",
    buckets=(1, 4, 16, 64, 256, 1024, 4096, 16384, 65536),
)
ATTRIBUTION_BATCH_SPLITS = Counter(
    "royalflow_attribution_batch_splits_total",
    "Batched attribute calls that failed and were split in halves to isolate the failing records.",
)
ATTRIBUTION_BATCH_FAILURES = Counter(
    "royalflow_attribution_batch_failures_total",
    "Batches the agent could not process or deliver as a whole; their records were dead-lettered "
    "and the agent kept consuming.",
)
GPU_MEMORY_ALLOCATED = Gauge(
    "royalflow_gpu_memory_allocated_bytes", "torch.cuda.memory_allocated on the agent's device."
)
GPU_MEMORY_RESERVED = Gauge(
    "royalflow_gpu_memory_reserved_bytes", "torch.cuda.memory_reserved (caching allocator) on the agent's device."
)
GPU_MEMORY_TOTAL = Gauge("royalflow_gpu_memory_total_bytes", "Total memory of the agent's device.")

# --- ledger ------------------------------------------------------------------------------
LEDGER_POSTINGS = Counter("royalflow_ledger_postings_total", "Postings written to the journal.", ["currency"])
LEDGER_SETTLED_AMOUNT = Counter(
    "royalflow_ledger_settled_amount_units_total",
    "Amount credited, in integer asset-scale units of the currency (USD: 1 unit = 1e-9 USD).",
    ["currency", "account_type"],  # account_type: one of ACCOUNT_TYPES
)
LEDGER_BATCH_DURATION = Histogram(
    "royalflow_ledger_batch_duration_seconds", "Time to apply one batch in one PostgreSQL transaction.",
    buckets=LATENCY_BUCKETS_SECONDS,
)
LEDGER_BATCH_SIZE = Histogram(
    "royalflow_ledger_batch_records", "Records per ledger transaction.",
    buckets=(1, 10, 100, 500, 1000, 2000, 5000, 10000, 20000, 50000, 100000),
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
LEDGER_PENDING_REVERSALS = Gauge(
    "royalflow_ledger_pending_reversal_records",
    "Reversals waiting for their contribution; dead-lettered unknown_contribution after reversal_wait_seconds.",
)
LEDGER_OFFSETS_BEYOND_END = Gauge(
    "royalflow_ledger_offsets_beyond_log_end_records",
    "How far the next offsets stored in PostgreSQL are ahead of the broker's log ends, summed over the "
    "ledger's partitions (0 = fine). Not 0: the database holds a history the broker does not (a new or "
    "emptied broker); /readyz fails its 'offsets' check and the log names each partition.",
)
RECONCILIATION_OK = Gauge(
    "royalflow_reconciliation_last_success", "1 if the last reconciliation found no problem (0 before the first run)."
)
RECONCILIATION_PROBLEMS = Gauge("royalflow_reconciliation_problems", "Problems the last reconciliation found.")
RECONCILIATION_TIMESTAMP = Gauge(
    "royalflow_reconciliation_last_run_timestamp_seconds", "Unix time of the last reconciliation run (0: never)."
)
DB_POOL_CONNECTIONS = Gauge(
    "royalflow_db_pool_connections", "asyncpg pool connections by state: in_use, idle, max.", ["service", "state"]
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

# --- probes (observability/server.py and the API's /readyz) ---------------------------------
READINESS_CHECK = Gauge(
    "royalflow_readiness_check_passing", "1 if the named readiness check passed when /readyz last ran.", ["check"]
)


def _version() -> str:
    try:
        return metadata.version("royalflow")
    except metadata.PackageNotFoundError:  # running from a source tree without an install
        return "unknown"


BUILD_INFO.labels(_version()).set(1)
for _code, _currency in CURRENCIES.items():
    CURRENCY_ASSET_SCALE.labels(_code).set(_currency.asset_scale)


def catalogue() -> list[tuple[str, str, tuple[str, ...], str]]:
    """(exposed name, type, label names, help) of every metric above, in definition order.

    Counters are listed with their ``_total``; histograms by family name (they expose
    ``_bucket``, ``_sum`` and ``_count``)."""
    rows = []
    for value in list(globals().values()):
        if isinstance(value, MetricWrapperBase):
            family = value.describe()[0]
            name = family.name + "_total" if family.type == "counter" else family.name
            rows.append((name, family.type, tuple(value._labelnames), family.documentation))
    return rows


def observe_partitions(service: str, offsets: Mapping[tuple[str, int], tuple[int, int]]) -> None:
    """Set lag and committed offset per partition from ``{(topic, partition): (end, committed)}``.

    Lag is clamped at 0: the end offset is fetched separately and can be older than the commit."""
    for (topic, partition), (end_offset, committed_offset) in offsets.items():
        CONSUMER_LAG.labels(service, topic, str(partition)).set(max(0, end_offset - committed_offset))
        CONSUMER_COMMITTED_OFFSET.labels(service, topic, str(partition)).set(committed_offset)


def observe_gpu_memory(device: object | None = None) -> None:
    """Refresh the GPU gauges for ``device`` (default: the current CUDA device).

    A no-op without CUDA. torch is only looked up if this process already imported it, so
    the ledger and the API never pay for importing torch on a scrape."""
    torch = sys.modules.get("torch")
    if torch is None or not torch.cuda.is_available():
        return
    GPU_MEMORY_ALLOCATED.set(torch.cuda.memory_allocated(device))
    GPU_MEMORY_RESERVED.set(torch.cuda.memory_reserved(device))
    GPU_MEMORY_TOTAL.set(torch.cuda.get_device_properties(device if device is not None else torch.cuda.current_device()).total_memory)


def observe_pool(service: str, pool: object) -> None:
    """Refresh pool gauges from an asyncpg pool."""
    size = pool.get_size()  # type: ignore[attr-defined]
    idle = pool.get_idle_size()  # type: ignore[attr-defined]
    DB_POOL_CONNECTIONS.labels(service, "in_use").set(size - idle)
    DB_POOL_CONNECTIONS.labels(service, "idle").set(idle)
    DB_POOL_CONNECTIONS.labels(service, "max").set(pool.get_max_size())  # type: ignore[attr-defined]
