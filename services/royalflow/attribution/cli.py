"""``royalflow attribution ...`` and ``royalflow families ...`` commands."""

from __future__ import annotations

import logging
from pathlib import Path

import typer

app = typer.Typer(help="Attribution agents: Shapley Royalty Shares from model likelihoods.", no_args_is_help=True)
families_app = typer.Typer(help="Model families: train, list and inspect the versioned registry.", no_args_is_help=True)


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
    from royalflow.platform.process import free_port
    from royalflow.platform.runtime import resolve_settings

    settings = resolve_settings(get_settings())
    web_port = port if port is not None else settings.attribution_port
    web_port = web_port or free_port()
    faust_app = create_app(settings, web_port=web_port)
    registry = DiskFamilyRegistry(Path(settings.families_dir), device=settings.device)
    install_agent(faust_app, settings, registry)
    install_views(faust_app, settings)
    logging.getLogger("royalflow").setLevel(loglevel)
    typer.echo(f"attribution agent: /metrics on port {web_port}", err=True)
    faust.Worker(faust_app, loglevel=loglevel, quiet=True).execute_from_commandline()
