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
