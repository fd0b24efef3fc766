"""The metric catalogue follows Prometheus naming, is the only place metrics are defined, and
its helpers set the gauges they promise."""

from __future__ import annotations

import re
from pathlib import Path

import asyncpg
import pytest
from prometheus_client import REGISTRY

from royalflow.observability import metrics
from royalflow.platform.database import EmbeddedPostgres

SERVICES = Path(__file__).resolve().parents[2] / "services" / "royalflow"
# Labels whose values would be ids (unbounded cardinality) must never exist.
FORBIDDEN_LABELS = re.compile(r"^(owner|generation|user|token|path|url|key|offset)$|_id$|^id$")
UNIT_OR_COUNT = re.compile(
    r"_(seconds|bytes|records|units_total|total|info|size|evaluations|connections|generations|problems"
    r"|success|offset|passing|scale)$"
)


def test_catalogue_names_follow_prometheus_conventions() -> None:
    rows = metrics.catalogue()
    assert len(rows) == len({name for name, *_ in rows}) >= 25
    for name, kind, labels, documentation in rows:
        assert re.fullmatch(r"royalflow_[a-z][a-z0-9_]*", name), name
        assert documentation, name
        assert (kind == "counter") == name.endswith("_total"), f"{name}: _total is for counters only"
        assert UNIT_OR_COUNT.search(name), f"{name}: end with a base unit (seconds, bytes) or what is counted"
        assert not re.search(r"_(ms|milliseconds|minutes|kb|mb|percent)(_|$)", name), f"{name}: use base units"
        for label in labels:
            assert not FORBIDDEN_LABELS.search(label), f"{name}{{{label}}}: never an id as a label"


def test_every_royalflow_metric_in_the_registry_is_in_the_catalogue() -> None:
    catalogued = {name.removesuffix("_total") for name, *_ in metrics.catalogue()}
    registered = {family.name for family in REGISTRY.collect() if family.name.startswith("royalflow_")}
    assert registered <= catalogued, sorted(registered - catalogued)


def test_no_module_outside_observability_defines_a_metric() -> None:
    constructor = re.compile(r"\b(Counter|Gauge|Histogram|Summary|Info|Enum)\(\s*[\"']")
    offenders = [str(path.relative_to(SERVICES)) for path in SERVICES.rglob("*.py")
                 if path.parent.name != "observability" and constructor.search(path.read_text())]
    assert not offenders, f"define metrics in observability/metrics.py only: {offenders}"


def test_build_info_and_currency_scales() -> None:
    assert REGISTRY.get_sample_value("royalflow_build_info", {"version": metrics._version()}) == 1
    assert REGISTRY.get_sample_value("royalflow_currency_asset_scale", {"currency": "USD"}) == 9
    assert REGISTRY.get_sample_value("royalflow_currency_asset_scale", {"currency": "JPY"}) == 7


def test_observe_partitions_sets_lag_and_clamps_at_zero() -> None:
    metrics.observe_partitions("test", {("topic-a", 0): (120, 100), ("topic-a", 1): (50, 60)})
    lag = {"service": "test", "topic": "topic-a"}
    assert REGISTRY.get_sample_value("royalflow_consumer_lag_records", {**lag, "partition": "0"}) == 20
    assert REGISTRY.get_sample_value("royalflow_consumer_lag_records", {**lag, "partition": "1"}) == 0
    assert REGISTRY.get_sample_value("royalflow_consumer_committed_offset", {**lag, "partition": "1"}) == 60


def test_gpu_memory_is_a_no_op_without_cuda() -> None:
    torch = pytest.importorskip("torch")
    if torch.cuda.is_available():
        pytest.skip("CUDA present: covered by the gpu test")
    metrics.GPU_MEMORY_ALLOCATED.set(0)
    metrics.observe_gpu_memory()
    assert REGISTRY.get_sample_value("royalflow_gpu_memory_allocated_bytes") == 0


@pytest.mark.gpu
def test_gpu_memory_follows_an_allocation() -> None:
    torch = pytest.importorskip("torch")
    if not torch.cuda.is_available():
        pytest.skip("no CUDA device")
    block = torch.empty(64 * 1024 * 1024, dtype=torch.uint8, device="cuda")  # 64 MiB
    metrics.observe_gpu_memory()
    allocated = REGISTRY.get_sample_value("royalflow_gpu_memory_allocated_bytes")
    reserved = REGISTRY.get_sample_value("royalflow_gpu_memory_reserved_bytes")
    total = REGISTRY.get_sample_value("royalflow_gpu_memory_total_bytes")
    assert allocated is not None and reserved is not None and total is not None
    assert block.numel() <= allocated <= reserved <= total
    del block


@pytest.mark.integration
async def test_observe_pool_counts_connections_of_a_real_pool(postgres: EmbeddedPostgres) -> None:
    pool = await asyncpg.create_pool(postgres.dsn, min_size=1, max_size=3)
    try:
        async with pool.acquire():
            metrics.observe_pool("test", pool)
            state = {"service": "test"}
            assert REGISTRY.get_sample_value("royalflow_db_pool_connections", {**state, "state": "in_use"}) == 1
            assert REGISTRY.get_sample_value("royalflow_db_pool_connections", {**state, "state": "max"}) == 3
    finally:
        await pool.close()
