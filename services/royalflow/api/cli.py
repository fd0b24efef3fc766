"""``royalflow api ...`` commands."""

import typer

app = typer.Typer(help="The authenticated balances HTTP API.", no_args_is_help=True)
