"""The ``royalflow`` command line. Each domain owns its sub-commands; this file only mounts them."""

from __future__ import annotations

import typer

from royalflow.api.cli import app as api_app
from royalflow.attribution.cli import app as attribution_app
from royalflow.training.cli import families_app
from royalflow.ledger.cli import app as ledger_app
from royalflow.platform.cli import app as platform_app
from royalflow.demo import demo
from royalflow.producer.cli import app as producer_app

app = typer.Typer(
    name="royalflow",
    help=(
        "Streaming royalty settlement for generative AI.\n\n"
        "Generation events flow producer -> attribution (Shapley Royalty Shares from model "
        "likelihoods) -> ledger (exact, double-entry, exactly-once) -> balances API.\n\n"
        "With KAFKA_BOOTSTRAP_SERVERS / DATABASE_URL unset, an embedded Kafka-protocol broker and "
        "PostgreSQL are started under ROYALFLOW_STATE_DIR (default ./.royalflow)."
    ),
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
app.command("demo")(demo)
app.add_typer(platform_app, name="platform")
app.add_typer(producer_app, name="produce")
app.add_typer(attribution_app, name="attribution")
app.add_typer(families_app, name="families")
app.add_typer(ledger_app, name="ledger")
app.add_typer(api_app, name="api")


def main() -> None:
    app()
