"""``royalflow demo``: the main job, end to end on the embedded default.

1. start the platform (embedded broker + PostgreSQL unless configured) and the attribution
agent and the ledger as real processes, on a thread of its own, while 2. the demo model family
is made sure of (trained and cached on first run) and sample generation events are prepared,
3. publish them (plus a few malformed records, which must land on the dead-letter topic),
4. wait until every generation is settled, 5. print each owner's balance and check that the
books reconcile. Each phase prints its time since the start.
"""

from __future__ import annotations

import asyncio
import os
import time
import uuid
from pathlib import Path

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

console = Console()

MAX_AGENTS = 8  # the topics' default partition count: more members would idle
MAX_AUTO_CPU_THREADS = 8  # an agent's threads by default: one per core, up to this
SETTLE_POLL_SECONDS = 0.2  # how often the settled count is read (one indexed count)
DEMO_FETCH_WAIT_SECONDS = 0.25  # longest idle fetch of the demo's consumers (see demo())
DEMO_SESSION_TIMEOUT_SECONDS = 4.0  # on the embedded broker: the agents' first join waits half of it (see demo())
KAFKA_MIN_SESSION_TIMEOUT_SECONDS = 6.0  # Apache Kafka's group.min.session.timeout.ms by default

BAD_RECORDS: tuple[tuple[bytes, str], ...] = (
    (b"{this is not json", "malformed_json"),
    (b'{"schema": "royalflow.generation.v1", "event_id": "no-other-fields"}', "schema_violation"),
)


def demo(
    events: int = typer.Option(200, min=1, max=100_000, help="Generation events to publish."),
    family: str = typer.Option("diffusion", help="'diffusion' (demo family of diffusers UNets) or 'categorical' (cheap utility)."),
    seed: int = typer.Option(0, help="Seed of the sample events."),
    timeout: float = typer.Option(900.0, help="Seconds to wait for settlement before failing."),
    agents: int = typer.Option(0, min=0, max=MAX_AGENTS, help=(
        "Attribution agents, members of one consumer group, sharing the CPU cores (a thread per "
        f"core, at most {MAX_AUTO_CPU_THREADS}, evaluates the diffusion family's models). 0: one.")),
) -> None:
    """Run the main job: platform up, publish events, settle, print reconciled balances.

    Every run starts the embedded database empty: the embedded broker is memory-only, and stored
    offsets of an earlier run would point beyond its new, empty logs (README, "Configuration").
    A crashed agent or ledger is restarted with backoff, as under `royalflow platform up`."""
    from royalflow.attribution.heatmap import write_png
    from royalflow.config import get_settings
    from royalflow.errors import PlatformError
    from royalflow.platform.background import BackgroundPlatform
    from royalflow.platform.lifetime import exit_now

    clock = Clock()
    # The agents import the family's code (torch, diffusers) as they start, beside the training
    # or sampling here, not when the first events arrive ("auto" finds no family on a first run).
    # Consumers wait up to DEMO_FETCH_WAIT_SECONDS per idle fetch: the demo settles one burst, so
    # per-hop latency does not matter, while at the default 20 ms the idle agents, ledger and
    # broker took 0.25 of the 2 cores that train the family on a first run (0.07 at 0.25 s).
    # The agents' group forms once every agent has joined, after half the session timeout on the
    # embedded broker: 2 s at the demo's 4 s instead of the default's 5 s, on a later run's
    # critical path (heartbeats every 1.3 s; the agent's event loop is never busy for long, the
    # models run on other threads). Apache Kafka refuses less than 6 s.
    count, threads = _agent_plan(agents, family)
    configured = get_settings()
    session_seconds = DEMO_SESSION_TIMEOUT_SECONDS if configured.embedded_kafka else KAFKA_MIN_SESSION_TIMEOUT_SECONDS
    settings = configured.model_copy(update={
        "attribution_preload": family, "kafka_fetch_wait_seconds": DEMO_FETCH_WAIT_SECONDS,
        "kafka_session_timeout_seconds": session_seconds, "attribution_cpu_threads": threads})
    notify = lambda line: console.print(line, style="yellow", markup=False)  # noqa: E731 - restart notices
    # The broker, PostgreSQL, the ledger and the agent start on a thread of their own while this
    # one trains (first run) or loads the family and samples the events: both take seconds.
    services = ("ledger", *_agents(count))
    background = BackgroundPlatform(settings, services, notify=notify)
    try:
        family_id, version, image_source = _ensure_family(settings, family, background.start)
        clock.phase("model family ready")
        run_id = f"demo-{uuid.uuid4().hex[:8]}"
        with console.status(f"preparing {events} generation events..."):
            from royalflow.producer.samples import class_labels, sample_events

            if hasattr(image_source, "prefetch"):  # an ImagePool: its sampler runs all at once
                image_source.prefetch(class_labels(events, seed=seed))
            batch = sample_events(events, family_id=family_id, family_version=version, seed=seed, run_id=run_id,
                                  image_source=image_source)
        clock.phase(f"{events} generation events prepared")
        with console.status("starting broker, PostgreSQL, ledger and attribution agent..."):
            try:
                effective, supervisor = background.wait()
            except PlatformError as exc:  # e.g. stored offsets ahead of a new broker: say why
                console.print(f"[red]error:[/] {exc}")
                raise typer.Exit(1) from None
        clock.phase(f"platform up (started in {background.started_seconds:.1f}s, beside the work above): broker "
                    f"{effective.kafka_bootstrap_servers}, postgres {effective.database_url}")
        ok, heatmap = asyncio.run(_run(effective, supervisor, batch, run_id, timeout, clock))
        # The books are read: the platform stops while the heatmap is drawn (matplotlib: seconds).
        background.request_stop()
        if heatmap is not None:
            out_png = write_png(*heatmap, Path(effective.state_dir) / "share-heatmap.png")
            console.print(f"heatmap written to {out_png.resolve()}", markup=False)
    finally:
        with console.status("stopping the platform..."):
            background.stop()
    clock.phase("platform stopped")
    console.print(f"done in {clock.elapsed():.1f}s")
    # Everything is stopped and written; the interpreter's teardown would only free torch's and
    # diffusers' modules (0.6-1.6 s after a first run). The demo is a command, never run inside
    # another program's process (its tests run it as one).
    exit_now(0 if ok else 1)


def _agents(count: int) -> tuple[str, ...]:
    """Service names of ``count`` attribution agents: the first, then replicas attribution-2..."""
    return ("attribution", *[f"attribution-{i}" for i in range(2, count + 1)])


def _agent_plan(requested: int, family: str) -> tuple[int, int]:
    """(agents, CPU threads per agent). Attribution is the demo's costliest stage. On CPU one
    agent evaluates the family's models on a thread per core (Settings.attribution_cpu_threads):
    as fast as an agent per core, without the second agent's imports and start (3 s of CPU) or
    its partitions finishing apart. ``--agents N`` shares the cores among N agents. A family on
    a GPU uses one thread whatever this says (its kernels are the parallelism)."""
    agents = requested or 1
    cores = min(os.cpu_count() or 1, MAX_AUTO_CPU_THREADS)
    return agents, (max(1, cores // agents) if family == "diffusion" else 1)


class Clock:
    """Phase lines with the time since the start: where a run's time goes, for users too."""

    def __init__(self) -> None:
        self.started = time.monotonic()

    def elapsed(self) -> float:
        return time.monotonic() - self.started

    def phase(self, what: str) -> None:
        console.print(f"[dim]{self.elapsed():6.1f}s[/] {what}", highlight=False)


def _ensure_family(settings, family: str, start_platform):  # type: ignore[no-untyped-def]
    """The family, its id and version, and the events' image source; ``start_platform`` is called
    as early as helps: at once, or on a first run once the training code is imported (the
    platform's start then runs beside the base's training on one core, not beside the imports
    that come before it on both)."""
    if family == "categorical":
        start_platform()
        from royalflow.attribution.families.categorical import demo_manifest, write_manifest
        from royalflow.producer.samples import digit_image

        manifest = demo_manifest()
        write_manifest(Path(settings.families_dir), manifest)
        return manifest["family_id"], manifest["version"], digit_image
    if family == "diffusion":
        from royalflow.attribution.diffusion.sampling import ImagePool
        from royalflow.attribution.registry import DiskFamilyRegistry, read_manifest
        from royalflow.training import DEMO_FAMILY

        console.print("[bold]model family[/] digits demo: 4 owners, 16 coalition UNet2DModels (exact mode); trained on first run, then cached")
        registry = DiskFamilyRegistry(Path(settings.families_dir), device="cpu")
        family_id, version = DEMO_FAMILY
        if not (registry.path(family_id, version) / "manifest.json").exists():
            from royalflow.attribution.diffusion.lean import UNUSED_BY_DIGITS, import_diffusers_without

            import_diffusers_without(UNUSED_BY_DIGITS)  # 2 s less CPU before the base trains (lean.py)
            from royalflow.training.digits import ensure_demo_family  # torch and diffusers: first run only

            start_platform()
            ensure_demo_family(Path(settings.families_dir), progress=True, device=settings.device)
        else:
            start_platform()
        # Generated content: DDPM samples of the grand-coalition model, conditioned on the label.
        # Sampler runs are kept beside the family, like it: later runs do not sample again, and
        # load neither the family nor torch (the agents need the cores to start).
        return family_id, version, ImagePool(lambda: registry.get(family_id, version), batch=24,
                                             manifest=read_manifest(registry.path(family_id, version)),
                                             cache_dir=Path(settings.families_dir) / ".samples")
    raise typer.BadParameter(f"unknown family kind {family!r}: use 'diffusion' or 'categorical'")


async def _run(settings, supervisor, batch, run_id, timeout, clock):  # type: ignore[no-untyped-def]
    """Publish, wait for settlement, report: (books ok, heatmap arguments or None)."""
    import asyncpg

    from royalflow.ledger import queries
    from royalflow.ledger.reconcile import reconcile
    from royalflow.platform.database import create_pool
    from royalflow.producer.publisher import Publisher

    count = len(batch)
    async with Publisher(settings) as publisher:
        await publisher.publish(batch)
        await publisher.publish_raw([(f"{run_id}-bad-{i}".encode(), raw) for i, (raw, _) in enumerate(BAD_RECORDS)])
    clock.phase(f"published {count} generation events and {len(BAD_RECORDS)} malformed records")

    pool = await create_pool(settings.database_url, max_size=2)
    try:
        settled = 0
        deadline = time.monotonic() + timeout
        with Progress(TextColumn("settling"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), console=console) as bar:
            task = bar.add_task("settle", total=count)
            while settled < count:
                if time.monotonic() > deadline:
                    console.print(f"[red]timed out[/] with {settled}/{count} generations settled")
                    return False, None
                supervisor.check_alive()
                try:
                    settled = await queries.settled_generation_count(pool)
                except asyncpg.exceptions.UndefinedTableError:  # the ledger is still migrating: none yet
                    settled = 0
                bar.update(task, completed=settled)
                await asyncio.sleep(SETTLE_POLL_SECONDS)
        clock.phase(f"{count} generations settled")
        ok = await _report(pool, reconcile)
        heatmap = await _share_report(pool)
        clock.phase("books reconciled, shares reported")
        return ok, heatmap
    finally:
        await pool.close()


async def _share_report(pool):  # type: ignore[no-untyped-def]
    """Who is paid for what: mean share per class x owner, printed; returns the heatmap's
    (rows, owners, matrix) for write_png, or None when nothing settled."""
    from royalflow.attribution.heatmap import class_shares, fetch_records, table_text

    rows, owners, matrix, counts = class_shares(await fetch_records(pool))
    if not rows:
        return None
    console.print("[bold]mean royalty share per class x owner[/]", highlight=False)
    console.print(table_text(rows, owners, matrix, counts), markup=False, highlight=False)
    return rows, owners, matrix


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
