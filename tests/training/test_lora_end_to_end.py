"""The tiny text-to-image pipeline's LoRA family through the REAL attribution agent and the
REAL ledger: generations sampled from the grand coalition, with and without their prompts,
settle to exact pools, and the owner whose style a generation shows wins its top share."""

from __future__ import annotations

import asyncio
import shutil
from pathlib import Path

import pytest

from royalflow.attribution.families.content import png
from royalflow.config import Settings
from royalflow.ledger import queries
from royalflow.ledger.migrate import migrate
from royalflow.platform.database import create_pool
from royalflow.platform.deadletter import read_dead_letters
from royalflow.platform.kafka import ensure_topics
from royalflow.platform.supervisor import Supervisor
from royalflow.producer import Publisher
from royalflow.producer.events import generation_event
from tests.training.conftest import FAMILY, TinyLora
from royalflow.training.styles import STYLES

pytestmark = pytest.mark.integration

# Measured by this test (recipe in conftest.py: base UNet pre-trained 2000 steps, adapters 300,
# all from one seeded init): image-to-image edits 94% of 36 (with prompt 18/18, prompt-only
# 16/18); text-to-image drawings 78% of 36 (with prompt 15/18, prompt-only 13/18). Drawings are
# the weak cell: a drawing made WITH classifier-free guidance is a sharper picture of the prompt
# than the adapters' models of the style, and prompt-only events score it under the empty prompt
# (caption dropout 0.15; 0.3 measured no better). Bars sit two to three misses under the
# measurement, for other CPUs' float rounding in training.
EDIT_BAR = 0.88
DRAWING_BAR = 0.69


async def test_generations_settle_and_the_style_owner_wins(tiny_lora: TinyLora, settings: Settings, tmp_path: Path,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    shutil.copytree(tiny_lora.family_path, Path(settings.families_dir) / FAMILY[0] / FAMILY[1])
    await ensure_topics(settings)
    events, style, kind = [], {}, {}
    for owner in sorted(tiny_lora.generations):
        caption = STYLES[owner][3]
        for source, images in (("edit", tiny_lora.generations[owner]), ("drawing", tiny_lora.drawings[owner])):
            for i, pixels in enumerate(images):
                # Every other event is prompt-only content: no prompt, no label (the empty-prompt embedding).
                event = generation_event(event_id=f"{owner}-{source}-{i}", family_id=FAMILY[0], family_version=FAMILY[1],
                                         revenue_amount=10_000 + i, currency="USD", content=png(pixels),
                                         prompt=caption if i % 2 == 0 else None)
                events.append(event)
                style[event.event_id], kind[event.event_id] = owner, source
    labelled = generation_event(event_id="with-a-label", family_id=FAMILY[0], family_version=FAMILY[1],
                                revenue_amount=100, currency="USD", content=png(tiny_lora.generations["owner-red"][0]),
                                class_label=3)
    pool = await create_pool(settings.database_url, max_size=2)
    try:
        await migrate(pool)
        with Supervisor(settings, tmp_path / "logs") as supervisor:
            supervisor.start("ledger", "attribution")
            async with Publisher(settings) as publisher:
                await publisher.publish([*events, labelled])
            loop = asyncio.get_running_loop()
            deadline = loop.time() + 360
            while await queries.settled_generation_count(pool) < len(events):
                supervisor.check_alive()
                assert loop.time() < deadline, "generations did not settle in time"
                await asyncio.sleep(0.5)
        audits = {e.event_id: await queries.generation_audit(pool, e.event_id) for e in events}
    finally:
        await pool.close()

    hits = {(source, prompted): 0 for source in ("edit", "drawing") for prompted in (True, False)}
    for event in events:
        audit = audits[event.event_id]
        assert audit is not None and audit["complete"] and not audit["inconsistent"]
        assert audit["pool_amount"] == event.revenue.amount * 3 // 10
        assert sum(p["amount"] for p in audit["parts"]) == audit["pool_amount"]
        assert audit["attribution"]["mode"] == "exact" and audit["attribution"]["fairness"]["control"] == "shuffled_captions"
        top = max(audit["parts"], key=lambda p: (p["amount"], float(p["shapley_value"])))
        hits[kind[event.event_id], event.conditioning.prompt is not None] += top["owner_id"] == style[event.event_id]
    quarter = len(events) // 4
    rates = {source: (hits[source, True] + hits[source, False]) / (2 * quarter) for source in ("edit", "drawing")}
    print("\nstyle owner wins the top share: " + "; ".join(
        f"{source}s {rates[source]:.0%} of {2 * quarter} (with prompt {hits[source, True]}/{quarter}, "
        f"prompt-only {hits[source, False]}/{quarter})" for source in rates))
    assert rates["edit"] >= EDIT_BAR and rates["drawing"] >= DRAWING_BAR, rates

    letters = await read_dead_letters(settings, timeout_seconds=10)
    assert [(letter.reason, "class_label" in letter.detail) for letter in letters] == [("bad_content", True)]
