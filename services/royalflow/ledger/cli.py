"""``royalflow ledger ...`` commands."""

from __future__ import annotations

import asyncio
import gc
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
    settings = _settings()
    _tune_collector()
    asyncio.run(serve(settings, port, group_id=group, instance_id=instance_id))


# Young-generation threshold of the ledger process (CPython's default is 700).
GC_YOUNG_THRESHOLD = 50_000


def _tune_collector() -> None:
    """The ledger holds whole fetched batches (Kafka records, decoded events, column arrays)
    between fetch and commit, and allocates several containers per record: with CPython's
    default thresholds the cyclic collector ran every 700 allocations and kept re-scanning
    those batches and every object of start-up (modules, classes), about 15% of the decode
    step's CPU (measured in the decode loop). Start-up objects are frozen out of collection and
    young collections run every GC_YOUNG_THRESHOLD allocations. Reference counting still frees
    every acyclic object at once; only garbage cycles wait a little longer."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(GC_YOUNG_THRESHOLD, 20, 100)


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

    grace = _settings().attribution_grace_seconds
    problems = asyncio.run(_with_pool(lambda pool: run_checks(pool, attribution_grace_seconds=grace)))
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


def _report(published, wait_seconds: float) -> None:  # type: ignore[no-untyped-def]
    from royalflow.ledger.admin import wait_applied

    for cid in published.unknown:
        console.print(f"[red]unknown[/] {cid}: no such contribution in the ledger; nothing published")
    console.print(f"published {len(published.reversal_ids)} signed reversal(s) to corrections.v1")
    if wait_seconds > 0 and published.reversal_ids:
        counts = asyncio.run(_with_pool(lambda pool: wait_applied(pool, published.reversal_ids, timeout_seconds=wait_seconds)))
        console.print("ledger outcome: " + ", ".join(f"{k} {v}" for k, v in sorted(counts.items()) if v))
        if counts.get("pending"):
            console.print("[yellow]some reversals are not applied yet[/]: is `royalflow ledger run` running?")
            raise typer.Exit(2)
    if published.unknown:
        raise typer.Exit(1)


@app.command("keygen")
def keygen(
    key_id: str = typer.Argument(..., help="Key id, e.g. agent-2026-11 (letters, digits, . _ -; at most 64)."),
    ed25519: bool = typer.Option(False, "--ed25519", help="An Ed25519 key pair instead of an HMAC-SHA256 secret."),
) -> None:
    """Print a new signing key spec for ROYALFLOW_SIGNING_KEYS / ROYALFLOW_ADMIN_KEYS (stdout only,
    nothing is stored). With --ed25519, the second line is the public key for the verifiers."""
    import base64
    import os

    from royalflow.contracts.keys import new_hmac_spec
    from royalflow.contracts.signing import parse_key
    from royalflow.errors import ConfigurationError

    spec = f"{key_id}:ed25519:{base64.b64encode(os.urandom(32)).decode()}" if ed25519 else new_hmac_spec(key_id)
    try:
        key = parse_key(spec)  # validates the key id
    except ConfigurationError as exc:
        console.print(f"[red]{exc}[/]")
        raise typer.Exit(2) from None
    typer.echo(spec)
    if ed25519:
        typer.echo(key.public_spec())  # type: ignore[attr-defined]


@app.command("reverse")
def reverse(
    contribution_ids: list[str] = typer.Argument(..., help="Contribution ids to reverse."),
    wait_seconds: float = typer.Option(30.0, min=0, max=3600, help="Wait this long for the ledger to apply them (0: do not wait)."),
) -> None:
    """Reverse contributions: publish ADMIN-SIGNED reversal events to <prefix>.corrections.v1.

    The ledger verifies the signature and posts compensating entries moving each credit to the
    unattributed account (history is never edited). Needs the admin key (ROYALFLOW_ADMIN_KEYS
    and ROYALFLOW_ADMIN_KEY_ID, or the embedded platform's key file). Running it twice is a no-op.
    Exit 1: an id is unknown; 2: not applied within --wait-seconds."""
    from royalflow.ledger.admin import publish_reversals

    settings = _settings()
    published = asyncio.run(_with_pool(lambda pool: publish_reversals(settings, pool, list(contribution_ids))))
    _report(published, wait_seconds)


@app.command("withdraw-family")
def withdraw_family(
    family_id: str = typer.Argument(...),
    version: str = typer.Argument(...),
    wait_seconds: float = typer.Option(60.0, min=0, max=3600, help="Wait this long for the ledger to apply them (0: do not wait)."),
) -> None:
    """Withdraw a model-family version: one ADMIN-SIGNED reversal per owner credit it produced,
    published to <prefix>.corrections.v1; the ledger moves each credit to the unattributed
    account (history is never edited). Running it again publishes only what is not reversed."""
    from royalflow.ledger.admin import withdraw_family as withdraw

    settings = _settings()
    published = asyncio.run(_with_pool(lambda pool: withdraw(settings, pool, family_id, version)))
    console.print(f"{family_id} v{version}:")
    _report(published, wait_seconds)
