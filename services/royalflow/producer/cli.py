"""``royalflow produce ...`` commands: publish generation events."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import typer

app = typer.Typer(help="Publish generation events to <prefix>.generations.v1.", no_args_is_help=True)


def _settings():  # type: ignore[no-untyped-def]
    from royalflow.config import get_settings
    from royalflow.platform.runtime import resolve_settings

    return resolve_settings(get_settings())


@app.command("sample")
def sample(
    count: int = typer.Option(200, min=1, max=1_000_000, help="How many events to publish."),
    family: str = typer.Option("digits-diffusion", help="Model family id the events name."),
    version: str = typer.Option("1", help="Model family version."),
    seed: int = typer.Option(0, help="Seed of labels, revenue and images (same seed, same events)."),
    run_id: str = typer.Option("sample", help="Prefix of the event ids."),
) -> None:
    """Publish COUNT sample events: real handwritten digits, revenue $0.001-$0.05 each."""
    from royalflow.producer.publisher import Publisher
    from royalflow.producer.samples import sample_events

    settings = _settings()
    events = sample_events(count, family_id=family, family_version=version, seed=seed, run_id=run_id)

    async def go() -> int:
        async with Publisher(settings) as publisher:
            return await publisher.publish(events)

    typer.echo(f"published {asyncio.run(go())} events to {settings.topic('generations.v1')}")


@app.command("file")
def from_file(path: Path = typer.Argument(..., exists=True, dir_okay=False, help="JSON Lines, one generation event per line.")) -> None:
    """Publish the events in a JSON Lines file, validating each against the contract first.

    Lines that break the contract are reported and not published (producers should not
    rely on the dead-letter topic for their own mistakes).
    """
    from royalflow.contracts import decode_generation
    from royalflow.errors import ContractError
    from royalflow.producer.publisher import Publisher

    settings = _settings()
    events, errors = [], 0
    for number, line in enumerate(path.read_bytes().splitlines(), start=1):
        if not line.strip():
            continue
        try:
            events.append(decode_generation(line, max_record_bytes=settings.max_record_bytes))
        except ContractError as exc:
            errors += 1
            typer.echo(f"{path}:{number}: {exc}", err=True)

    async def go() -> int:
        async with Publisher(settings) as publisher:
            return await publisher.publish(events)

    typer.echo(f"published {asyncio.run(go())} events; {errors} invalid line(s) skipped")
    if errors:
        raise typer.Exit(1)


@app.command("schema")
def schema() -> None:
    """Print the generation event JSON Schema (the contract for producers in any language)."""
    from royalflow.contracts.schema_files import schema_path

    typer.echo(json.dumps(json.loads(schema_path("generation-event.v1").read_text()), indent=2))
