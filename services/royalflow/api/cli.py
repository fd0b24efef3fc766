"""``royalflow api ...`` commands."""

from __future__ import annotations

import asyncio

import typer

app = typer.Typer(help="The authenticated balances HTTP API.", no_args_is_help=True)
token_app = typer.Typer(help="Bearer tokens (stored hashed; shown once).", no_args_is_help=True)
app.add_typer(token_app, name="token")


def _settings():  # type: ignore[no-untyped-def]
    from royalflow.platform.runtime import cli_settings

    return cli_settings()


@app.command("serve")
def serve(host: str = typer.Option(None, help="Default ROYALFLOW_API_HOST."), port: int = typer.Option(None, help="Default ROYALFLOW_API_PORT.")) -> None:
    """Serve the API (OpenAPI at /docs and /openapi.json; /metrics, /healthz, /readyz).

    SIGTERM: requests in flight get at most 1 s to finish, and the process exits within its
    shutdown deadline (3 s) also when PostgreSQL is unreachable."""
    import uvicorn

    from royalflow.api.app import create_app
    from royalflow.platform.lifetime import STOP_STEP_SECONDS, arm_shutdown_deadline

    class Server(uvicorn.Server):
        def handle_exit(self, sig: int, frame) -> None:  # type: ignore[no-untyped-def]
            arm_shutdown_deadline(what="api")
            super().handle_exit(sig, frame)

    settings = _settings()
    config = uvicorn.Config(create_app(settings), host=host or settings.api_host, port=settings.api_port if port is None else port,
                            log_level="warning", timeout_graceful_shutdown=round(STOP_STEP_SECONDS))
    Server(config).run()


async def _with_pool(fn):  # type: ignore[no-untyped-def]
    from royalflow.ledger.migrate import with_migrated_pool

    return await with_migrated_pool(fn, max_size=1)


@token_app.command("create")
def create(
    owner: str = typer.Option(None, help="Owner id the token may read."),
    admin: bool = typer.Option(False, "--admin", help="An admin token (reads everything, closes periods, reconciles)."),
    label: str = typer.Option("", help="A note on who holds it."),
) -> None:
    """Create a token and print it once."""
    from royalflow.api.auth import create_token

    if admin == (owner is not None):
        raise typer.BadParameter("give exactly one of --owner ID or --admin")
    token_id, token = asyncio.run(_with_pool(lambda pool: create_token(pool, role="admin" if admin else "owner", owner_id=owner, label=label)))
    typer.echo(f"token id {token_id} (shown once, store it now):")
    typer.echo(token)


@token_app.command("revoke")
def revoke(token: str = typer.Argument(..., help="Token id, or the token's leading characters (rf_..., at least 7).")) -> None:
    """Revoke a token; requests with it get 401 from now on."""
    from royalflow.api.auth import resolve_token_id, revoke_token

    async def run(pool):  # type: ignore[no-untyped-def]
        token_id = await resolve_token_id(pool, token)
        return token_id, await revoke_token(pool, token_id)

    try:
        token_id, revoked = asyncio.run(_with_pool(run))
    except ValueError as exc:
        typer.echo(str(exc), err=True)
        raise typer.Exit(1) from None
    if not revoked:
        typer.echo(f"no active token {token_id}", err=True)
        raise typer.Exit(1)
    typer.echo(f"revoked token {token_id}")


@token_app.command("list")
def list_command() -> None:
    """Every token: id, public prefix, role, owner, label, created, revoked. Never the secret."""
    from royalflow.api.auth import list_tokens

    for t in asyncio.run(_with_pool(list_tokens)):
        state = f"revoked {t['revoked_at']:%Y-%m-%d %H:%M}" if t["revoked_at"] else "active"
        typer.echo(f"{t['token_id']:>6}  {t['token_prefix'] or '-':<11}  {t['role']:<5}  {t['owner_id'] or '-':<24}  {state:<24}  {t['label']}")
