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

    The embedded broker keeps topics in memory, so with it the embedded database starts
    empty too (offsets and balances must describe the same history).
    """
    from royalflow.config import get_settings
    from royalflow.platform.runtime import LocalPlatform
    from royalflow.platform.supervisor import Supervisor

    settings = get_settings()
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    with LocalPlatform(settings) as effective:
        typer.echo(f"broker:     {effective.kafka_bootstrap_servers}")
        typer.echo(f"postgresql: {effective.database_url}")
        with Supervisor(effective, Path(effective.state_dir) / "logs") as supervisor:
            supervisor.start(*[s.strip() for s in services.split(",") if s.strip()])
            typer.echo(f"services:   {', '.join(supervisor.services)} (logs in {Path(effective.state_dir) / 'logs'})")
            typer.echo("Ctrl-C to stop.")
            try:
                while not stop.wait(1.0):
                    supervisor.check_alive()
            except KeyboardInterrupt:
                pass
            typer.echo("stopping...")
