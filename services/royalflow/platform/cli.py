"""``royalflow platform ...`` commands: the local platform on the embedded default."""

from __future__ import annotations

import signal
import threading
from pathlib import Path

import typer

app = typer.Typer(help="Run the whole platform locally (embedded broker/PostgreSQL unless configured).", no_args_is_help=True)


@app.command("up")
def up(
    services: str = typer.Option("attribution,ledger,api", help="Comma-separated services to run."),
) -> None:
    """Start the broker and PostgreSQL (embedded unless KAFKA_BOOTSTRAP_SERVERS / DATABASE_URL are
    set), create topics, and run the services as child processes until Ctrl-C.

    Restarts: the embedded broker keeps topics in memory, so every start of it brings an empty
    broker, and the embedded database is then started EMPTY too (its balances, tokens and stored
    offsets are dropped: they must describe the same history as the broker). With the embedded
    broker and your own DATABASE_URL, start is refused when that database holds stored offsets.

    A crashed service is restarted with exponential backoff (0.5 s doubling to 30 s); the others
    keep running. After 5 restarts within 300 s the platform stops with an error naming the
    service and its last log lines (exit code 1).

    Nothing outlives it: the state folder is locked while it runs, its children die with it (also
    on kill -9: parent-death signal, and a watchdog for PostgreSQL), and leftovers of a killed
    run on the same folder are found and stopped at start.
    """
    from royalflow.config import get_settings
    from royalflow.errors import PlatformError
    from royalflow.platform.runtime import LocalPlatform
    from royalflow.platform.supervisor import Supervisor

    settings = get_settings()
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    platform = LocalPlatform(settings)
    try:
        effective = platform.start()
    except PlatformError as exc:  # e.g. stored offsets ahead of a new broker: say why, no traceback
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from None
    failed: PlatformError | None = None
    try:
        for leftover in platform.stopped_leftovers:
            typer.echo(f"stopped a leftover of a killed run: {leftover.describe()}", err=True)
        typer.echo(f"broker:     {effective.kafka_bootstrap_servers}")
        typer.echo(f"postgresql: {effective.database_url}")
        notify = lambda line: typer.echo(line, err=True)  # noqa: E731 - restart notices on stderr
        with Supervisor(effective, Path(effective.state_dir) / "logs", notify=notify) as supervisor:
            supervisor.start(*[s.strip() for s in services.split(",") if s.strip()])
            typer.echo(f"services:   {', '.join(supervisor.services)} (logs in {Path(effective.state_dir) / 'logs'})")
            typer.echo("Ctrl-C to stop.")
            try:
                while not stop.wait(1.0):
                    supervisor.check_alive()
            except KeyboardInterrupt:
                pass
            except PlatformError as exc:  # a service given up on: say which and why, then stop all
                failed = exc
                typer.echo(f"error: {exc}", err=True)
            typer.echo("stopping...")
    finally:
        platform.stop()
    if failed is not None:
        raise typer.Exit(1)
