"""The agent's last line of defence, without a broker: a batch that fails as a whole is
dead-lettered record by record and the agent goes on; deliveries are retried a bounded number
of times; when not even dead letters can be delivered the process exits before acknowledging."""

from __future__ import annotations

import asyncio

import pytest

from royalflow.attribution import agents
from royalflow.attribution.agents import DELIVERY_ATTEMPTS, EXIT_UNDELIVERABLE, deliver, handle_or_dead_letter
from royalflow.attribution.pipeline import RawRecord
from royalflow.observability import metrics


class Topic:
    """Records sends; the first ``failures`` sends raise (a broker that refuses, then recovers)."""

    def __init__(self, failures: int = 0) -> None:
        self.failures = failures
        self.sent: list[tuple[bytes, bytes]] = []

    async def send(self, *, key: bytes, value: bytes, headers: object) -> asyncio.Future[None]:
        if self.failures:
            self.failures -= 1
            raise ConnectionError("broker unavailable")
        self.sent.append((key, value))
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        done.set_result(None)
        return done


RECORDS = [RawRecord("t.generations.v1", 0, offset, f"gen-{offset}".encode(), b"{}") for offset in range(3)]


@pytest.fixture(autouse=True)
def no_backoff(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(agents, "DELIVERY_BACKOFF_SECONDS", 0.0)


def _failures() -> float:
    return metrics.ATTRIBUTION_BATCH_FAILURES._value.get()


async def test_delivery_is_retried_a_bounded_number_of_times() -> None:
    flaky = Topic(failures=DELIVERY_ATTEMPTS - 1)
    await deliver([(flaky, b"k", b"v", None)])
    assert flaky.sent == [(b"k", b"v")]
    dead = Topic(failures=DELIVERY_ATTEMPTS)
    with pytest.raises(ConnectionError):
        await deliver([(dead, b"k", b"v", None)])
    assert dead.sent == []


async def test_a_batch_that_fails_as_a_whole_is_dead_lettered_record_by_record() -> None:
    letters = Topic()

    async def broken(records: list[RawRecord]) -> None:
        raise AttributeError("a bug outside the per-record guards")

    def letter(record: RawRecord, reason: str, detail: str):  # type: ignore[no-untyped-def]
        return letters, record.key, f"{record.offset}:{reason}:{detail}".encode(), None

    before = _failures()
    await handle_or_dead_letter(RECORDS, broken, letter)  # returns: the agent goes on consuming
    assert _failures() == before + 1
    assert [v.decode().split(":")[:2] for _, v in letters.sent] == [["0", "processing_error"], ["1", "processing_error"],
                                                                    ["2", "processing_error"]]
    assert all("AttributeError: a bug outside" in v.decode() for _, v in letters.sent)


class Exited(BaseException):
    pass


async def test_undeliverable_dead_letters_exit_before_acknowledging(monkeypatch: pytest.MonkeyPatch) -> None:
    def fake_exit(code: int) -> None:
        raise Exited(code)

    monkeypatch.setattr(agents.os, "_exit", fake_exit)
    unreachable = Topic(failures=100 * DELIVERY_ATTEMPTS)

    async def broken(records: list[RawRecord]) -> None:
        await deliver([(unreachable, b"k", b"v", None)])

    def letter(record: RawRecord, reason: str, detail: str):  # type: ignore[no-untyped-def]
        return unreachable, record.key, b"letter", None

    with pytest.raises(Exited) as exited:
        await handle_or_dead_letter(RECORDS, broken, letter)
    assert exited.value.args == (EXIT_UNDELIVERABLE,) and unreachable.sent == []


class SizeLimitedTopic(Topic):
    """A broker that refuses records above a size, as Kafka does with message.max.bytes."""

    async def send(self, *, key: bytes, value: bytes, headers: object) -> asyncio.Future[None]:
        if len(key or b"") + len(value) > 100:
            raise ValueError("MessageSizeTooLargeError")
        return await super().send(key=key, value=value, headers=headers)


async def test_a_dead_letter_the_broker_refuses_goes_out_without_the_original_bytes() -> None:
    letters = SizeLimitedTopic()
    records = [*RECORDS[:1], RawRecord("t.generations.v1", 0, 9, b"k" * 500, b"{}"), *RECORDS[1:]]

    async def broken(batch: list[RawRecord]) -> None:
        raise RuntimeError("outputs refused")

    def letter(record: RawRecord, reason: str, detail: str):  # type: ignore[no-untyped-def]
        return letters, record.key, f"{record.offset}:{reason}:{len(record.value or b'')}".encode(), None

    await handle_or_dead_letter(records, broken, letter)  # no exit: the agent goes on
    expected = [(b"gen-0", b"0:processing_error:2"), (None, b"9:processing_error:0"),
                (b"gen-1", b"1:processing_error:2"), (b"gen-2", b"2:processing_error:2")]
    # Whole-batch attempts may have sent some letters before the refusal (harmless duplicates).
    assert letters.sent[-4:] == expected and set(letters.sent) == set(expected)


async def test_outputs_the_broker_refuses_cost_only_their_own_record() -> None:
    from royalflow.attribution.families.categorical import CategoricalFamily, demo_manifest
    from royalflow.attribution.pipeline import Pipeline
    from royalflow.contracts.events import to_json_bytes
    from royalflow.producer.samples import sample_events

    family = CategoricalFamily.from_manifest(demo_manifest())

    class Registry:
        def get(self, family_id: str, version: str) -> CategoricalFamily:
            return family

    events = sample_events(4, family_id=family.family_id, family_version="1", seed=1, run_id="size")
    # One event whose audit record (it carries the prompt) is larger than the broker takes.
    events[2] = events[2].model_copy(update={"conditioning": events[2].conditioning.model_copy(update={"prompt": "p" * 4000})})
    records = [RawRecord("t.generations.v1", 0, i, e.event_id.encode(), to_json_bytes(e)) for i, e in enumerate(events)]
    records.append(RawRecord("t.generations.v1", 0, 4, b"junk", b"{not json"))
    outcome = Pipeline(Registry(), max_record_bytes=2**20, max_revenue_amount=10**15).process(records)
    limit = max(len(v) for _, v, _ in outcome.audits if b"p" * 4000 not in v) + 1000

    class Broker(Topic):
        async def send(self, *, key: bytes, value: bytes, headers: object) -> asyncio.Future[None]:
            if len(value) > limit and b"p" * 4000 in value and b"royalflow.deadletter.v1" not in value:
                raise ValueError("MessageSizeTooLargeError")
            return await super().send(key=key, value=value, headers=headers)

    contributions, audits, letters = Broker(), Broker(), Broker()

    def letter(record: RawRecord, reason: str, detail: str):  # type: ignore[no-untyped-def]
        return letters, record.key, f"royalflow.deadletter.v1:{reason}:{detail}".encode(), None

    await agents.deliver_outcome(outcome, contributions, audits, letter)
    delivered = {key for key, _ in audits.sent}
    assert delivered == {e.event_id.encode() for i, e in enumerate(events) if i != 2}
    # No money for the refused record: its contributions never went out.
    assert events[2].event_id.encode() not in {v.split(b'"generation_id":"')[1].split(b'"')[0] for _, v in contributions.sent}
    assert len(contributions.sent) >= 3 * 4
    reasons = {key: value.decode().split(":")[1] for key, value in letters.sent}
    assert reasons == {events[2].event_id.encode(): "processing_error", b"junk": "malformed_json"}
    assert [(r.record.key, r.reason) for r in outcome.rejected] == [
        (b"junk", "malformed_json"), (events[2].event_id.encode(), "processing_error")]
