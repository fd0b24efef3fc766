"""``royalflow attribution ...`` and ``royalflow families ...`` commands."""

import typer

app = typer.Typer(help="Attribution agents: Shapley Royalty Shares from model likelihoods.", no_args_is_help=True)
families_app = typer.Typer(help="Model families: train, list and inspect the versioned registry.", no_args_is_help=True)
