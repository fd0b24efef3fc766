"""``royalflow ledger ...`` commands."""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime

import typer
from rich.console import Console
from rich.table import Table

app = typer.Typer(help="The settlement ledger: consume contributions into PostgreSQL, read balances, reconcile.", no_args_is_help=True)
console = Console()


def _settings():  # type: ignore[no-untyped-def]
    from royalflow.platform.runtime import cli_settings

    return cli_settings()


async def _with_pool(fn):  # type: ignore[no-untyped-def]
    from royalflow.ledger.migrate import with_migrated_pool

    return await with_migrated_pool(fn, max_size=2)


@app.command("run")
def run(
    port: int = typer.Option(None, help="Port of /metrics, /healthz, /readyz (default ROYALFLOW_LEDGER_PORT; 0 = free port)."),
    group: str = typer.Option(None, help="Consumer group (default <prefix>-ledger). Its offsets live in PostgreSQL; "
                              "a new group replays every topic from offset zero, which changes nothing."),
    instance_id: str = typer.Option(None, envvar="ROYALFLOW_LEDGER_INSTANCE_ID",
                                    help="Static group membership id, unique per ledger instance (e.g. the pod name): "
                                    "a restarted instance gets its partitions back without waiting for a session timeout."),
) -> None:
    """Consume <prefix>.contributions.v1 and <prefix>.attributions.v1 into PostgreSQL until SIGTERM.

    Each batch commits postings and consumer offsets in one transaction; duplicates and replays
    change nothing. Bad records go to <prefix>.deadletter.v1 with a reason.
    """
    from royalflow.ledger.server import serve

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    asyncio.run(serve(_settings(), port, group_id=group, instance_id=instance_id))


@app.command("balances")
def balances() -> None:
    """Print every owner's balance per currency, exact to the asset unit, with totals."""
    from royalflow.ledger import queries
    from royalflow.money import currency_for

    rows = asyncio.run(_with_pool(queries.all_balances))
    table = Table(title="Owner balances")
    table.add_column("owner")
    table.add_column("currency")
    table.add_column("balance", justify="right")
    totals: dict[str, int] = {}
    for row in rows:
        table.add_row(row["owner_id"], row["currency"], currency_for(row["currency"]).format(row["lifetime"]))
        totals[row["currency"]] = totals.get(row["currency"], 0) + row["lifetime"]
    for currency, total in totals.items():
        table.add_row("[bold]total[/]", currency, f"[bold]{currency_for(currency).format(total)}[/]")
    console.print(table)


@app.command("reconcile")
def reconcile() -> None:
    """Check every ledger invariant; exit 1 and name the offending records on any mismatch."""
    from royalflow.ledger.reconcile import reconcile as run_checks

    problems = asyncio.run(_with_pool(run_checks))
    for problem in problems:
        console.print(f"[red]FAIL[/] {problem}")
    if problems:
        raise typer.Exit(1)
    console.print("[green]OK[/] all ledger invariants hold")


@app.command("generations")
def generations(limit: int = typer.Option(100, min=1, max=10_000)) -> None:
    """List generations that are incomplete (parts missing) or inconsistent."""
    from royalflow.ledger import queries

    rows = asyncio.run(_with_pool(lambda pool: queries.incomplete_generations(pool, limit=limit)))
    table = Table(title=f"Incomplete or inconsistent generations ({len(rows)})")
    for col in ("generation", "parts", "amount / pool", "first seen", "problem"):
        table.add_column(col)
    for r in rows:
        table.add_row(r["generation_id"], f"{r['parts_received']}/{r['parts_total']}",
                      f"{r['amount_received']}/{r['pool_amount']}", r["first_seen_at"].astimezone(UTC).isoformat(),
                      r["inconsistent"] or "waiting for parts")
    console.print(table)


@app.command("close-period")
def close_period(
    period_end: datetime = typer.Option(None, help="End of the period (UTC); default now."),
    currency: str = typer.Option("USD", help="Currency whose period closes."),
) -> None:
    """Close a settlement period: one payout per owner, rounded down to the minor unit; the
    sub-unit remainder stays on the owner's balance (carried forward)."""
    from royalflow.ledger.payouts import close_period as close

    end = (period_end or datetime.now(UTC)).replace(tzinfo=(period_end.tzinfo if period_end else UTC) or UTC)
    summary = asyncio.run(_with_pool(lambda pool: close(pool, end, currency=currency)))
    console.print(summary)


@app.command("statement")
def statement(
    owner: str = typer.Argument(..., help="Owner id."),
    period: str = typer.Argument(..., help="Period id (see close-period)."),
    fmt: str = typer.Option("csv", "--format", help="csv or json."),
) -> None:
    """Print an owner's statement for a closed period, as CSV or JSON."""
    import json

    from royalflow.ledger.statements import statement as build, statement_csv

    data = asyncio.run(_with_pool(lambda pool: build(pool, owner, period)))
    typer.echo(statement_csv(data) if fmt == "csv" else json.dumps(data, indent=2, default=str))


@app.command("withdraw-family")
def withdraw_family(
    family_id: str = typer.Argument(...),
    version: str = typer.Argument(...),
) -> None:
    """Withdraw a model-family version: compensating entries move every owner credit it produced
    to the unattributed account (history is never edited)."""
    from royalflow.ledger.corrections import withdraw_family as withdraw

    count = asyncio.run(_with_pool(lambda pool: withdraw(pool, family_id, version)))
    console.print(f"posted {count} compensating entries for {family_id} v{version}")
