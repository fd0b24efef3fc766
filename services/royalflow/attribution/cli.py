"""``royalflow attribution ...`` commands: run the agent, explain a settled generation."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import typer

STRAY_TASK_POLLS = 10  # at shutdown, tasks still running are awaited this many times...
STRAY_TASK_POLL_SECONDS = 0.02  # ...this long each, then cancelled
LAST_LOOP_TURN_SECONDS = 0.05  # the loop's last turn before it closes (transports finish closing)

app = typer.Typer(help="Attribution agents: Shapley Royalty Shares from model likelihoods.", no_args_is_help=True)


@app.command("run")
def run(
    port: int = typer.Option(None, help="Port of /metrics, /healthz, /readyz (default ROYALFLOW_ATTRIBUTION_PORT; 0 = free port)."),
    loglevel: str = typer.Option("WARNING", help="Log level of the faust worker."),
) -> None:
    """Run the faust attribution agent until SIGTERM/Ctrl-C.

    Consumes <prefix>.generations.v1 in batches, evaluates the event's model family
    (loaded once from ROYALFLOW_FAMILIES_DIR and kept resident on ROYALFLOW_DEVICE), and emits
    one contribution per owner to <prefix>.contributions.v1 plus an audit record to
    <prefix>.attributions.v1. Bad input goes to <prefix>.deadletter.v1 with a reason.
    """
    import faust

    from royalflow.attribution.agents import install_agent
    from royalflow.attribution.app import create_app
    from royalflow.attribution.registry import DiskFamilyRegistry
    from royalflow.attribution.views import install_views
    from royalflow.config import get_settings
    from royalflow.platform.lifetime import arm_shutdown_deadline, exit_now
    from royalflow.platform.process import free_port
    from royalflow.platform.runtime import resolve_settings

    settings = resolve_settings(get_settings())
    web_port = port if port is not None else settings.attribution_port
    web_port = web_port or free_port()
    faust_app = create_app(settings, web_port=web_port)
    registry = DiskFamilyRegistry(Path(settings.families_dir), device=settings.device,
                                  cpu_threads=settings.attribution_cpu_threads)
    install_agent(faust_app, settings, registry)
    install_views(faust_app, settings)
    logging.getLogger("royalflow").setLevel(loglevel)
    typer.echo(f"attribution agent: /metrics on port {web_port}", err=True)

    class Worker(faust.Worker):
        def _schedule_shutdown(self, signal) -> None:  # type: ignore[no-untyped-def]
            # faust's graceful stop commits offsets and leaves the group through the broker; with
            # the broker gone it never ends. Processed events not yet committed are redelivered
            # and settle once (the ledger's idempotency keys), so a hard exit after the deadline
            # loses nothing.
            arm_shutdown_deadline(what="attribution agent")
            super()._schedule_shutdown(signal)

        # mode's loop shutdown, after faust has committed, flushed and left the group: up to
        # 1 s waiting for stray tasks, then an unconditional 1 s "sentinel" sleep. That was 2 of
        # the 2.4-2.9 s every agent took to stop (so of every demo run's and test's stop). The
        # same steps, with a bounded wait of 0.2 s and one short last turn of the loop.
        def _gather_all(self) -> None:
            for _ in range(STRAY_TASK_POLLS):
                if not asyncio.all_tasks(loop=self.loop):
                    break
                self.loop.run_until_complete(asyncio.sleep(STRAY_TASK_POLL_SECONDS))
            for task in asyncio.all_tasks(loop=self.loop):
                task.cancel()

        async def _sentinel_task(self) -> None:
            await asyncio.sleep(LAST_LOOP_TURN_SECONDS)

        def on_setup_root_logger(self, logger: logging.Logger, level: int) -> None:
            super().on_setup_root_logger(logger, level)
            # faust's terminal spinner lowers the root logger to DEBUG (it spins on every record),
            # so every debug call of aiokafka, faust and mode built a record that no handler
            # wrote: aiokafka logs one per record sent. Measured with benchmarks/settlement.py.
            logger.setLevel(level or logging.WARNING)

    try:
        Worker(faust_app, loglevel=loglevel, quiet=True).execute_from_commandline()
    except SystemExit as stopped:  # faust has committed, flushed and left the group by now
        exit_now(stopped.code)  # without freeing torch's modules one by one (~1 s of CPU)


@app.command("explain")
def explain(
    generation_id: str = typer.Argument(..., help="The generation (event) id."),
    out: Path = typer.Option(None, help="PNG to write (default ./explain-<generation>.png)."),
) -> None:
    """Explain a settled generation: a PNG of the image beside owner shares with error bars,
    and a table of Shapley values, standard errors, shares and amounts (from the ledger's audit)."""
    import asyncio

    from royalflow.attribution.explain import render
    from royalflow.config import get_settings
    from royalflow.contracts import AttributionRecord
    from royalflow.ledger.queries import generation_audit
    from royalflow.platform.database import create_pool
    from royalflow.platform.runtime import resolve_settings

    settings = resolve_settings(get_settings())

    async def fetch():  # type: ignore[no-untyped-def]
        pool = await create_pool(settings.database_url or "", max_size=1)
        try:
            return await generation_audit(pool, generation_id)
        finally:
            await pool.close()

    audit = asyncio.run(fetch())
    if audit is None or audit.get("attribution") is None:
        typer.echo(f"no audit record for generation {generation_id!r}", err=True)
        raise typer.Exit(1)
    record = AttributionRecord.model_validate(audit["attribution"])
    amounts = {p["owner_id"]: p["amount"] for p in audit["parts"]}
    target = out or Path(f"explain-{generation_id}.png")
    typer.echo(render(record, target, amounts))
    typer.echo(f"wrote {target}")
