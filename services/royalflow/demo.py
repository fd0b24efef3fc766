"""``royalflow demo``: the main job, end to end on the embedded default.

1. start the platform (embedded broker + PostgreSQL unless configured), 2. make sure the
demo model family exists (trained and cached on first run), 3. run the attribution agent and
the ledger as real processes, 4. publish sample generation events (plus a few malformed
records, which must land on the dead-letter topic), 5. wait until every generation is
settled, 6. print each owner's balance and check that the books reconcile.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from pathlib import Path

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

console = Console()

BAD_RECORDS: tuple[tuple[bytes, str], ...] = (
    (b"{this is not json", "malformed_json"),
    (b'{"schema": "royalflow.generation.v1", "event_id": "no-other-fields"}', "schema_violation"),
)


def demo(
    events: int = typer.Option(200, min=1, max=100_000, help="Generation events to publish."),
    family: str = typer.Option("diffusion", help="'diffusion' (demo family of diffusers UNets) or 'categorical' (cheap utility)."),
    seed: int = typer.Option(0, help="Seed of the sample events."),
    timeout: float = typer.Option(900.0, help="Seconds to wait for settlement before failing."),
) -> None:
    """Run the main job: platform up, publish events, settle, print reconciled balances.

    Every run starts the embedded database empty: the embedded broker is memory-only, and stored
    offsets of an earlier run would point beyond its new, empty logs (README, "Configuration").
    A crashed agent or ledger is restarted with backoff, as under `royalflow platform up`."""
    from royalflow.config import get_settings
    from royalflow.errors import PlatformError
    from royalflow.platform.runtime import LocalPlatform
    from royalflow.platform.supervisor import Supervisor

    started = time.monotonic()
    settings = get_settings()
    family_id, version, image_source = _ensure_family(settings, family)
    with console.status("starting broker and PostgreSQL..."):
        platform = LocalPlatform(settings)
        try:
            effective = platform.start()
        except PlatformError as exc:  # e.g. stored offsets ahead of a new broker: say why
            console.print(f"[red]error:[/] {exc}")
            raise typer.Exit(1) from None
    try:
        console.print(f"[bold]platform[/] broker {effective.kafka_bootstrap_servers}, postgres {effective.database_url}")
        notify = lambda line: console.print(line, style="yellow", markup=False)  # noqa: E731 - restart notices
        with Supervisor(effective, Path(effective.state_dir) / "logs", notify=notify) as supervisor:
            supervisor.start("ledger", "attribution")
            ok = asyncio.run(_run(effective, supervisor, events, family_id, version, seed, image_source, timeout))
    finally:
        platform.stop()
    console.print(f"done in {time.monotonic() - started:.1f}s")
    if not ok:
        raise typer.Exit(1)


def _ensure_family(settings, family: str):  # type: ignore[no-untyped-def]
    if family == "categorical":
        from royalflow.attribution.families.categorical import demo_manifest, write_manifest
        from royalflow.producer.samples import digit_image

        manifest = demo_manifest()
        write_manifest(Path(settings.families_dir), manifest)
        return manifest["family_id"], manifest["version"], digit_image
    if family == "diffusion":
        from royalflow.attribution.diffusion.sampling import ImagePool
        from royalflow.attribution.registry import DiskFamilyRegistry
        from royalflow.training.digits import ensure_demo_family

        console.print("[bold]model family[/] digits demo: 4 owners, 16 coalition UNet2DModels (exact mode); trained on first run, then cached")
        family_id, version = ensure_demo_family(Path(settings.families_dir), progress=True, device=settings.device)
        registry = DiskFamilyRegistry(Path(settings.families_dir), device="cpu")
        # Generated content: DDPM samples of the grand-coalition model, conditioned on the label.
        return family_id, version, ImagePool(registry.get(family_id, version), batch=24)
    raise typer.BadParameter(f"unknown family kind {family!r}: use 'diffusion' or 'categorical'")


async def _run(settings, supervisor, count, family_id, version, seed, image_source, timeout) -> bool:  # type: ignore[no-untyped-def]
    from royalflow.ledger import queries
    from royalflow.ledger.reconcile import reconcile
    from royalflow.platform.database import create_pool
    from royalflow.producer.publisher import Publisher
    from royalflow.producer.samples import sample_events

    run_id = f"demo-{uuid.uuid4().hex[:8]}"
    with console.status(f"preparing {count} generation events..."):
        batch = sample_events(count, family_id=family_id, family_version=version, seed=seed, run_id=run_id,
                              image_source=image_source)
    async with Publisher(settings) as publisher:
        await publisher.publish(batch)
        await publisher.publish_raw([(f"{run_id}-bad-{i}".encode(), raw) for i, (raw, _) in enumerate(BAD_RECORDS)])
    console.print(f"[bold]published[/] {count} generation events and {len(BAD_RECORDS)} malformed records")

    pool = await create_pool(settings.database_url, max_size=2)
    try:
        settled = 0
        deadline = time.monotonic() + timeout
        with Progress(TextColumn("settling"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), console=console) as bar:
            task = bar.add_task("settle", total=count)
            while settled < count:
                if time.monotonic() > deadline:
                    console.print(f"[red]timed out[/] with {settled}/{count} generations settled")
                    return False
                supervisor.check_alive()
                settled = await queries.settled_generation_count(pool)
                bar.update(task, completed=settled)
                await asyncio.sleep(0.5)
        ok = await _report(pool, reconcile)
        await _share_report(pool, Path(settings.state_dir) / "share-heatmap.png")
        return ok
    finally:
        await pool.close()


async def _share_report(pool, out_png: Path) -> None:  # type: ignore[no-untyped-def]
    """Who is paid for what: mean share per class x owner, printed and as a heatmap PNG."""
    from royalflow.attribution.heatmap import class_shares, fetch_records, table_text, write_png

    rows, owners, matrix, counts = class_shares(await fetch_records(pool))
    if not rows:
        return
    console.print("[bold]mean royalty share per class x owner[/]", highlight=False)
    console.print(table_text(rows, owners, matrix, counts), markup=False, highlight=False)
    console.print(f"heatmap written to {write_png(rows, owners, matrix, out_png).resolve()}", markup=False)


async def _report(pool, reconcile) -> bool:  # type: ignore[no-untyped-def]
    from royalflow.ledger import queries
    from royalflow.money import currency_for

    balances = await queries.all_balances(pool)
    totals = await queries.settlement_totals(pool)
    table = Table(title="Owner balances (lifetime)")
    table.add_column("owner")
    table.add_column("currency")
    table.add_column("balance", justify="right")
    for row in balances:
        table.add_row(row["owner_id"], row["currency"], currency_for(row["currency"]).format(row["lifetime"]))
    console.print(table)
    ok = True
    for total in totals:
        cur = currency_for(total["currency"])
        owners_sum = sum(r["lifetime"] for r in balances if r["currency"] == total["currency"])
        check = owners_sum == total["pool"]
        ok &= check
        console.print(
            f"{'[green]OK[/]' if check else '[red]MISMATCH[/]'} {total['currency']}: owners {cur.format(owners_sum)}"
            f" == royalty pool {cur.format(total['pool'])}; platform keeps {cur.format(total['platform'])}"
            f" of revenue {cur.format(total['revenue'])}"
        )
    problems = await reconcile(pool)
    for problem in problems:
        console.print(f"[red]reconciliation:[/] {problem}")
    console.print("[green]reconciliation: all invariants hold[/]" if not problems else "[red]reconciliation failed[/]")
    dead = await queries.dead_letter_count(pool) if hasattr(queries, "dead_letter_count") else None
    if dead is not None:
        console.print(f"dead letters: {dead}")
    return ok and not problems
