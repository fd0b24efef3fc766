"""The hostile-input corpus: one table of named cases, each a record an outsider could write.

A case names the topic it attacks, how to build its bytes/key/headers (builders run once the
platform's paths and keys are known), and what must happen: a dead letter with one of
``expect`` reasons, or (``flag``) a record signed correctly but forged around the signature,
which books and which reconciliation must name. ``expect`` holds more than one reason only where
the contract leaves the choice open (e.g. a 5000-digit integer may be refused by the JSON bounds
or by the amount check); the tests still require exactly one dead letter.

Builders live in ``cases_generations.py`` (the agent's input) and ``cases_ledger.py`` (the
ledger's inputs); importing this module registers all of them.
"""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from royalflow import topics
from royalflow.contracts import AttributionRecord, ContributionEvent, GenerationEvent
from royalflow.contracts.events import to_json_bytes

from tests.hostile import keys
from tests.hostile.keys import Sign

FAMILY_ID = "digits-categorical"
FAMILY_VERSION = "1"
OTHER_VERSION = "2"  # a second served version: a sale re-sent under another family conflicts
DIFFUSION_ID = "hostile-diffusion"  # tests/hostile/diffusion.py: random UNets, for content by reference


@dataclass(frozen=True)
class Rec:
    topic: str  # short topic name from royalflow.topics
    key: bytes | None
    value: bytes | None
    headers: tuple[tuple[str, bytes], ...] = ()
    hostile: bool = False  # the record under test: its dead letter is looked up by position


@dataclass
class Built:
    records: list[Rec]  # publish order; at most one hostile
    events: list[GenerationEvent] = field(default_factory=list)  # extra agent-path goods (booked)
    ledger_events: list[GenerationEvent] = field(default_factory=list)  # goods written straight to the ledger topics
    forged: list[ContributionEvent] = field(default_factory=list)  # signed forgeries that book (flag cases)
    flag_ids: list[str] = field(default_factory=list)  # ids reconciliation must name
    reversed_ids: list[str] = field(default_factory=list)  # contributions a legitimate correction reverses
    absent_generation: str | None = None  # a generation id the ledger must never book
    first_revenue: tuple[str, int] | None = None  # (generation id, revenue) the first sale booked


@dataclass(frozen=True)
class Case:
    name: str
    category: str
    topic: str
    round: int
    expect: frozenset[str]
    flag: bool
    build: Callable[["Context"], Built]
    xfail: str | None = None

    @property
    def event_id(self) -> str:
        return "h-" + self.name.replace("_", "-")


CASES: list[Case] = []


def case(name: str, category: str, topic: str, *expect: str, flag: bool = False, round: int = 1,
         xfail: str | None = None) -> Callable[[Callable[["Context"], Built]], Callable[["Context"], Built]]:
    def register(build: Callable[["Context"], Built]) -> Callable[["Context"], Built]:
        if any(c.name == name for c in CASES):
            raise ValueError(f"duplicate case name {name}")
        CASES.append(Case(name, category, topic, round, frozenset(expect), flag, build, xfail))
        return build
    return register


def dumps(doc: Any) -> bytes:
    return json.dumps(doc, separators=(",", ":"), allow_nan=True).encode()


class Context:
    """What builders need: valid events to mutate, the agent's exact output for an event, the
    content root with its traps, and the test keys (``keys`` module)."""

    def __init__(self, *, content_root: Path, outside_file: Path, pipeline_output: Callable[[GenerationEvent],
                 tuple[list[ContributionEvent], AttributionRecord]]) -> None:
        self.content_root = content_root
        self.outside_file = outside_file
        self.pipeline_output = pipeline_output
        self.now = datetime.now(UTC)

    # -- generation events ---------------------------------------------------------------
    def event(self, event_id: str, *, label: int | None = None, revenue: int | None = None,
              version: str = FAMILY_VERSION, content: bytes | None = None,
              occurred_at: str | None = None) -> GenerationEvent:
        digest = int(hashlib.sha256(event_id.encode()).hexdigest()[:8], 16)
        label = digest % 10 if label is None else label
        revenue = 1_000_000 + digest % 49_000_000 if revenue is None else revenue
        data = content if content is not None else f"content of {event_id}".encode()
        return GenerationEvent.model_validate({
            "schema": "royalflow.generation.v1", "event_id": event_id,
            "occurred_at": occurred_at or (self.now - timedelta(minutes=5)).isoformat(), "producer": "hostile-suite",
            "model_family": {"id": FAMILY_ID, "version": version},
            "conditioning": {"class_label": label, "prompt": f"digit {label}"},
            "content": {"media_type": "image/png", "sha256": hashlib.sha256(data).hexdigest(),
                        "data_base64": base64.b64encode(data).decode()},
            "revenue": {"amount": revenue, "currency": "USD", "asset_scale": 9},
        })

    def doc(self, event_id: str, **kwargs: Any) -> dict[str, Any]:
        return json.loads(to_json_bytes(self.event(event_id, **kwargs)))

    def event_rec(self, event: GenerationEvent, *, hostile: bool = False) -> Rec:
        return Rec(topics.GENERATIONS, event.event_id.encode(), to_json_bytes(event), hostile=hostile)

    def raw_gen(self, event_id: str, value: bytes | None, *, key: bytes | None | str = "id") -> Built:
        """A hostile record on generations.v1 keyed by its event id (unless ``key`` says otherwise)."""
        k = event_id.encode() if key == "id" else key
        return Built([Rec(topics.GENERATIONS, k, value, hostile=True)])  # type: ignore[arg-type]

    def file_event(self, event_id: str, uri: str, data: bytes = b"file content", *, family: str = DIFFUSION_ID) -> bytes:
        """An event whose content is by reference; by default for the diffusion test family,
        which reads it (the categorical family only needs the class label)."""
        doc = self.doc(event_id, label=3)
        doc["content"] = {"media_type": "image/png", "sha256": hashlib.sha256(data).hexdigest(), "uri": uri}
        if family == DIFFUSION_ID:
            doc["model_family"] = {"id": DIFFUSION_ID, "version": "1"}
        return dumps(doc)

    # -- the ledger's inputs -------------------------------------------------------------
    def ledger_recs(self, parts: list[ContributionEvent], audit: AttributionRecord | None,
                    sign: Sign = keys.agent) -> list[Rec]:
        """Records exactly as the agent writes them (parts keyed by owner, audit by generation)."""
        recs = [self.signed(topics.CONTRIBUTIONS, p.owner_id.encode(), to_json_bytes(p), sign) for p in parts]
        if audit is not None:
            recs.append(self.signed(topics.ATTRIBUTIONS, audit.generation_id.encode(), to_json_bytes(audit), sign))
        return recs

    @staticmethod
    def signed(topic: str, key: bytes | None, value: bytes, sign: Sign = keys.agent, *, hostile: bool = False) -> Rec:
        return Rec(topic, key, value, tuple(sign(topic, key, value)), hostile=hostile)

    def part_doc(self, generation_id: str, *, owner: str = "owner-a") -> dict[str, Any]:
        """A well-formed contribution document of a real-looking generation (to mutate)."""
        parts, _ = self.pipeline_output(self.event(generation_id))
        part = next(p for p in parts if p.owner_id == owner)
        return json.loads(to_json_bytes(part))


def cases_by_name() -> dict[str, Case]:
    from tests.hostile import cases_corrections, cases_generations, cases_ledger  # noqa: F401  (registers the cases)

    return {c.name: c for c in CASES}
