"""``royalflow ledger ...`` commands."""

import typer

app = typer.Typer(help="The settlement ledger: consume contributions into PostgreSQL, read balances, reconcile.", no_args_is_help=True)
