"""Runs the whole corpus against the real services in a few rounds and records what happened.

One database and one topic prefix for the suite; the attribution agent and the ledger run as
real child processes (``Supervisor``); hostile bytes go in through a raw librdkafka client
(confluent-kafka, idempotence off) exactly as an outsider would write them. Each hostile record
is published between two valid ones on the same topic; delivery reports give its partition and
offset, which is how its dead letter is found.
"""

from __future__ import annotations

import functools
import os
import socket
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from confluent_kafka import Producer

from royalflow import topics
from royalflow.attribution.families.categorical import CategoricalFamily
from royalflow.attribution.pipeline import Pipeline, RawRecord
from royalflow.config import Settings
from royalflow.contracts import AttributionRecord, ContributionEvent, GenerationEvent
from royalflow.contracts.events import WIRE, DeadLetter, to_json_bytes

from tests.hostile.cases_generations import ROOT_FILES
from tests.hostile.corpus import Built, Case, Rec

MAX_RECORD_BYTES = 512 * 1024  # oversized cases are just above it, everything else below
SETTLE_TIMEOUT_SECONDS = 150.0  # per round, on a busy 2-core machine
QUIET_SECONDS = 3.0  # after everything expected arrived: time for unexpected extra dead letters
REVERSAL_WAIT_SECONDS = 2.0  # the ledger's bounded wait for a reversal's contribution
RECONCILE_GRACE_SECONDS = 2.0  # a contribution without its audit record is reported after this
CONTENT_FILE_MAX_BYTES = 4 * 1024 * 1024

# Settings the platform gets when it knows them (names of features landing in parallel).
OPTIONAL_SETTINGS = {
    "reversal_wait_seconds": REVERSAL_WAIT_SECONDS,
    "attribution_grace_seconds": RECONCILE_GRACE_SECONDS,
    "reconcile_interval_seconds": 5.0,
}


@dataclass
class Outcome:
    cases: dict[str, Case]
    built: dict[str, Built]
    positions: dict[str, tuple[str, int, int]] = field(default_factory=dict)  # case -> (topic, partition, offset)
    sent: dict[str, Rec] = field(default_factory=dict)  # case -> its hostile record
    neighbours: dict[str, list[str]] = field(default_factory=dict)  # case -> generation ids around it
    good_positions: set[tuple[str, int, int]] = field(default_factory=set)
    letters: list[DeadLetter] = field(default_factory=list)
    completed: set[str] = field(default_factory=set)
    known_generations: dict[str, int] = field(default_factory=dict)  # generation id -> stored revenue
    reversed_entries: set[str] = field(default_factory=set)  # contribution ids with a reversal entry
    booked: dict[str, tuple[int, int]] = field(default_factory=dict)  # contribution id -> (amount, its generation's revenue)
    balances: dict[str, int] = field(default_factory=dict)
    expected_balances: dict[str, int] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)
    alive_at_end: dict[str, bool] = field(default_factory=dict)
    killed: int = 0  # children the harness killed on purpose (between rounds)
    restarts: int = 0  # restarts the supervisor made
    ready_at_end: dict[str, int] = field(default_factory=dict)  # service -> /readyz status
    periodic: dict[str, float] = field(default_factory=dict)  # the ledger's royalflow_reconciliation_* gauges
    logs: dict[str, str] = field(default_factory=dict)
    settings: Settings | None = None
    missing_settings: list[str] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)
    timed_out: list[str] = field(default_factory=list)

    def letters_at(self, position: tuple[str, int, int]) -> list[DeadLetter]:
        return [x for x in self.letters if (x.source_topic, x.source_partition, x.source_offset) == position]


class _Registry:
    def __init__(self, families: dict[str, CategoricalFamily]) -> None:
        self.families = families

    def get(self, family_id: str, version: str) -> CategoricalFamily:
        return self.families[version]


def prepare_content_root(root: Path, outside: Path) -> None:
    """The traps inside the content root (see ``cases_generations.ROOT_FILES``)."""
    root.mkdir(parents=True, exist_ok=True)
    outside.write_bytes(b"a secret outside the content root")
    os.mkfifo(root / "pipe")
    (root / "escape").symlink_to(outside)
    with open(root / "huge.png", "wb") as sparse:
        sparse.truncate(CONTENT_FILE_MAX_BYTES * 4)
    (root / "real.png").write_bytes(b"real bytes, not the ones the event's hash names")
    missing = [name for name in ROOT_FILES if not (root / name).exists() and not (root / name).is_symlink()]
    if missing:
        raise RuntimeError(f"content root traps not created: {missing}")


def make_pipeline_output(families: dict[str, CategoricalFamily]):  # type: ignore[no-untyped-def]
    """The agent's exact (unsigned) output for one event, computed in-process (deterministic)."""
    pipeline = Pipeline(_Registry(families), max_record_bytes=MAX_RECORD_BYTES, max_revenue_amount=10**15)

    @functools.lru_cache(maxsize=4096)
    def output(raw: bytes, event_id: str) -> tuple[tuple[ContributionEvent, ...], AttributionRecord]:
        result = pipeline.process([RawRecord(topics.GENERATIONS, 0, 0, event_id.encode(), raw)])
        if result.rejected or not result.audits:
            raise RuntimeError(f"the valid event {event_id} did not attribute: {result.rejected}")
        parts = tuple(ContributionEvent.model_validate_json(c[1], context=WIRE) for c in result.contributions)
        return parts, AttributionRecord.model_validate_json(result.audits[0][1], context=WIRE)

    def pipeline_output(event: GenerationEvent) -> tuple[list[ContributionEvent], AttributionRecord]:
        parts, audit = output(to_json_bytes(event), event.event_id)
        return list(parts), audit

    return pipeline_output


class RawClient:
    """The outsider: librdkafka, idempotence off, every delivery report kept."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.producer = Producer({
            "bootstrap.servers": settings.kafka_bootstrap_servers, "enable.idempotence": False, "acks": "all",
            "linger.ms": 5, "message.max.bytes": 4 * 1024 * 1024, "compression.type": "none",
            "max.in.flight.requests.per.connection": 1,  # keep the publish order: hostile between good ones
        })
        self.reports: dict[int, tuple[str, int, int]] = {}
        self.errors: list[str] = []
        self._next = 0

    def send(self, rec: Rec) -> int:
        ticket = self._next
        self._next += 1

        def delivered(err, msg) -> None:  # type: ignore[no-untyped-def]
            if err is not None:
                self.errors.append(f"{rec.topic}: {err}")
            else:
                self.reports[ticket] = (msg.topic(), msg.partition(), msg.offset())

        kwargs = {"headers": list(rec.headers)} if rec.headers else {}
        self.producer.produce(self.settings.topic(rec.topic), value=rec.value, key=rec.key, on_delivery=delivered, **kwargs)
        self.producer.poll(0)
        return ticket

    def flush(self) -> None:
        left = self.producer.flush(60)
        if left or self.errors:
            raise RuntimeError(f"raw client: {left} undelivered, errors {self.errors[:3]}")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def probe_text(port: int, path: str) -> tuple[int, str]:
    """GET a service endpoint on loopback: (status, body); (0, "") when nothing answers."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as response:
            return response.status, response.read().decode(errors="replace")
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode(errors="replace")
    except OSError:
        return 0, ""


def probe(port: int, path: str) -> int:
    return probe_text(port, path)[0]


def metric_values(text: str) -> dict[str, float]:
    """Unlabelled samples of a Prometheus text exposition."""
    values = {}
    for line in text.splitlines():
        if line and not line.startswith("#") and "{" not in line:
            name, _, value = line.partition(" ")
            try:
                values[name] = float(value.split(" ")[0])
            except ValueError:
                continue
    return values
