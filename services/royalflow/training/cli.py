"""``royalflow families ...`` commands: train, import, list, show and evaluate model families
(offline work: the agent only loads what these write)."""

from __future__ import annotations

from pathlib import Path

import typer

families_app = typer.Typer(help="Model families: train, list and inspect the versioned registry.", no_args_is_help=True)
SHOWN_OWNERS = 10  # `families show`: the largest owners by data size; --json for all of them


@families_app.callback()
def _families() -> None:
    # Model libraries' warnings and progress bars are not for our users (training/quiet.py).
    from royalflow.training.quiet import quiet_libraries

    quiet_libraries()


def _fail(message: str) -> None:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(2)


@families_app.command("train")
def train(
    source: str = typer.Option("digits", help="'digits' (built-in demo corpus) or a folder: <folder>/<owner>/[<class>/]*.png, <folder>/_public for the base."),
    family_id: str = typer.Option("digits-diffusion", "--id", help="Family id."),
    version: str = typer.Option("1", help="Family version."),
    mode: str = typer.Option("exact", help="exact (2^n coalition models) or compositional (base + one per owner)."),
    pool_fraction: str = typer.Option("3/10", help="Share of revenue paid to owners, as a fraction."),
    device: str = typer.Option("auto", help="auto (CUDA when present), cpu, cuda, cuda:N."),
    kind: str = typer.Option("diffusion", help="diffusion (the digits demo kind) or lora (adapters over --base)."),
    base: Path = typer.Option(None, help="lora: a local diffusers text-to-image pipeline folder (never downloaded)."),
    rank: int = typer.Option(8, min=1, max=1024, help="lora: adapter rank."),
    resolution: int = typer.Option(None, min=8, max=4096, help="lora: image size (default: the VAE's sample_size)."),
    steps: int = typer.Option(400, min=1, max=1_000_000, help="lora: fine-tune steps per adapter (the same for every adapter)."),
) -> None:
    """Train a model family into ROYALFLOW_FAMILIES_DIR, with progress bars. Resumable: rerun
    the same command after an interruption and finished models are kept."""
    from royalflow.attribution.registry import family_ref_problem
    from royalflow.config import get_settings

    problem = family_ref_problem(family_id, version)
    if problem is not None:
        _fail(problem)
    from royalflow.training.quiet import quiet_libraries

    quiet_libraries(import_them=True)
    from royalflow.training.digits import DEMO_HOLDINGS, digits_corpus, folder_corpus, train_family

    if kind == "lora":
        _train_lora(base, source, family_id, version, mode, rank, resolution, steps, pool_fraction, device)
        return
    if kind != "diffusion":
        raise typer.BadParameter(f"--kind must be diffusion or lora, got {kind!r}")

    public, owners = digits_corpus(DEMO_HOLDINGS) if source == "digits" else folder_corpus(Path(source))
    if not owners:
        raise typer.BadParameter(f"no owner folders under {source}")
    path = train_family(Path(get_settings().families_dir), family_id, version, public, owners, mode=mode,
                        pool_fraction=pool_fraction, device=device)
    typer.echo(f"family written to {path}")


def _train_lora(base: Path | None, source: str, family_id: str, version: str, mode: str, rank: int,
                resolution: int | None, steps: int, pool_fraction: str, device: str) -> None:
    from royalflow.config import get_settings
    from royalflow.errors import ConfigurationError
    from royalflow.training.commands import train_lora

    if base is None or source == "digits":
        raise typer.BadParameter("--kind lora needs --base <pipeline folder> and --source <image folder>")
    try:
        path = train_lora(Path(get_settings().families_dir), base=base, source=Path(source), family_id=family_id,
                          version=version, mode=mode, rank=rank, resolution=resolution, steps=steps,
                          pool_fraction=pool_fraction, device=device)
    except ConfigurationError as exc:
        _fail(str(exc))
    typer.echo(f"family written to {path}")


@families_app.command("import")
def import_family(
    base: Path = typer.Option(..., help="The local diffusers pipeline folder the adapters were trained on."),
    family_id: str = typer.Option(..., "--id", help="Family id (lowercase letters, digits and '-', as in events)."),
    version: str = typer.Option("1", help="Family version."),
    from_folder: Path = typer.Option(None, "--from-folder", help="A folder of <owner_id>.safetensors (one per owner), optional _control.safetensors and data_sizes.json {\"_base\": N, \"<owner>\": N}: a compositional family, owners in sorted order."),
    mode: str = typer.Option("exact", help="exact (a file per coalition mask) or compositional (a file per owner); --from-folder is compositional."),
    owner: list[str] = typer.Option([], help="Owner ids in player order (bit i of a mask is the i-th --owner)."),
    adapter: list[str] = typer.Option([], help="KEY=FILE: KEY a hex mask (0x5), an owner id (compositional) or _control (v(∅))."),
    data_size: list[str] = typer.Option([], help="NAME=COUNT images per owner and _base (compositional weights)."),
    resolution: int = typer.Option(None, min=8, max=4096, help="Image size (default: the VAE's sample_size)."),
    pool_fraction: str = typer.Option("3/10", help="Share of revenue paid to owners, as a fraction."),
    probe_images: Path = typer.Option(None, "--probe-images", help="A folder of public images (no owner's data). With it, the split defence runs without the owners' pictures: each adapter's own samples stand in for them, owners whose adapters explain each other's samples are paid as one cluster, and (compositional) the cluster is valued through its members' adapters merged. Without it every owner is its own player."),
) -> None:
    """Register LoRA files trained elsewhere (diffusers LoRA format, e.g. what
    save_lora_weights writes) as a lora family: every file is checked against the base UNet
    (all bad files named), copied, and checksummed in the manifest. Two forms: --from-folder DIR,
    or repeated --owner / --adapter KEY=FILE / --data-size NAME=COUNT."""
    from royalflow.config import get_settings
    from royalflow.errors import ConfigurationError
    from royalflow.training.quiet import quiet_libraries

    quiet_libraries(import_them=True)
    from royalflow.training.commands import import_lora, import_lora_folder

    root = Path(get_settings().families_dir)
    try:
        if from_folder is not None:
            if owner or adapter or data_size:
                raise ConfigurationError("--from-folder takes the owners, files and data sizes from the folder: "
                                         "leave out --owner, --adapter and --data-size")
            path = import_lora_folder(root, base=base, family_id=family_id, version=version, folder=from_folder,
                                      resolution=resolution, pool_fraction=pool_fraction, probe_images=probe_images)
        else:
            if not owner or not adapter:
                raise ConfigurationError("give --from-folder DIR, or --owner (repeated) and --adapter KEY=FILE (repeated)")
            path = import_lora(root, base=base, family_id=family_id, version=version, mode=mode, owners=owner,
                               adapters=adapter, data_sizes=data_size, resolution=resolution,
                               pool_fraction=pool_fraction, probe_images=probe_images)
    except ConfigurationError as exc:
        _fail(str(exc))
    typer.echo(f"family written to {path}")


@families_app.command("list")
def list_families() -> None:
    """List the families in the registry: id, version, kind, mode, owner count, pool fraction."""
    from royalflow.attribution.registry import DiskFamilyRegistry
    from royalflow.config import get_settings

    for family in DiskFamilyRegistry(Path(get_settings().families_dir)).list():
        owners = family["owners"] or []
        shown = ",".join(owners) if len(owners) <= 3 else f"{','.join(owners[:3])},..."
        typer.echo(f"{family['family_id']} v{family['version']}: {family['kind']} {family.get('mode') or ''} "
                   f"owners={len(owners)} ({shown}) pool={family['pool_fraction']}")


@families_app.command("show")
def show_family(
    family_id: str = typer.Argument(..., help="Family id."),
    version: str = typer.Argument(..., help="Family version."),
    as_json: bool = typer.Option(False, "--json", help="The whole manifest as JSON (every owner, file and checksum)."),
) -> None:
    """Show a family: kind, mode, owner count, the largest owners by data size, files,
    estimator settings, training provenance and suspected clusters (--json: the whole manifest)."""
    import json

    from royalflow.attribution.registry import DiskFamilyRegistry, read_manifest
    from royalflow.config import get_settings
    from royalflow.errors import ConfigurationError

    try:
        path = DiskFamilyRegistry(Path(get_settings().families_dir)).path(family_id, version)
    except ConfigurationError as exc:
        _fail(str(exc))
    if not (path / "manifest.json").is_file():
        typer.echo(f"no family {family_id!r} version {version!r} under {path.parent.parent}", err=True)
        raise typer.Exit(1)
    manifest = read_manifest(path)
    if as_json:
        typer.echo(json.dumps(manifest, indent=2, sort_keys=True))
        return
    proposal = manifest.get("estimator", {}).pop("timestep_proposal", None)
    if proposal is not None:  # 99 numbers: summarise
        manifest["estimator"]["timestep_proposal"] = f"{len(proposal)} probabilities (max {max(proposal):.4f})"
    evidence = manifest.pop("cluster_evidence", None) or []
    typer.echo(f"{path}")
    typer.echo(summary(manifest))
    typer.echo(suspected_clusters(manifest.get("clusters") or [], evidence))


def summary(manifest: dict) -> str:  # type: ignore[type-arg]
    """A family's manifest for a reader: counts and the largest owners, not one line per owner."""
    import json

    owners = list(manifest.get("owners") or [])
    sizes = manifest.get("data_sizes") or {}
    lines = [f"family {manifest.get('family_id')} v{manifest.get('version')}: kind {manifest.get('kind')}, "
             f"mode {manifest.get('mode') or '-'}, {len(owners)} owners, pool fraction {manifest.get('pool_fraction')}"]
    for key in ("base", "resolution", "rank", "target_modules", "levels", "null_class", "content_only"):
        if manifest.get(key) is not None:
            lines.append(f"{key}: {manifest[key] if not isinstance(manifest[key], list) else ', '.join(manifest[key])}")
    files = {**(manifest.get("adapters") or {}), **(manifest.get("components") or {})}
    if files:
        control = "_control" in files or "0x0" in files
        lines.append(f"adapter files: {len(files)} (control v(∅): {'trained' if control else 'the plain base'})")
    if manifest.get("weights"):
        lines.append(f"weight files: {len(manifest['weights'])}")
    if sizes:
        ranked = sorted(owners, key=lambda o: (-int(sizes.get(o, 0)), o))
        total = sum(int(sizes.get(o, 0)) for o in owners)
        lines.append(f"data sizes: base {sizes.get('_base')}, owners {total} in all; "
                     f"largest {min(SHOWN_OWNERS, len(owners))} of {len(owners)}:")
        lines += [f"  {o}: {sizes.get(o)}" for o in ranked[:SHOWN_OWNERS]]
    else:
        lines.append(f"owners: {', '.join(owners[:SHOWN_OWNERS])}{', ...' if len(owners) > SHOWN_OWNERS else ''}")
    for key in ("estimator", "training"):
        if manifest.get(key):
            lines.append(f"{key}: {json.dumps(manifest[key], sort_keys=True)}"[:2000])
    return "\n".join(lines)


EVIDENCE_FIGURES = ("duplicate_fraction", "remainder_copies", "profile_distance", "pair_distance", "cross_fit")


def suspected_clusters(clusters: list[list[str]], evidence: list[dict]) -> str:  # type: ignore[type-arg]
    """Clusters of owners paid as one player (same-source evidence found at training time), for
    human review: a wrong merge pays honest owners by data size instead of by contribution."""
    merged = [c for c in clusters if len(c) > 1]
    if not merged:
        return "suspected clusters: none (every owner is paid as its own player)"
    lines = [f"suspected clusters ({len(merged)}), paid as one player each and split by data size; review them:"]
    for cluster in merged:
        lines.append(f"  {' + '.join(cluster)}")
        for row in evidence:
            if row.get("merged") and set(row["owners"]) <= set(cluster):
                detail = ", ".join(f"{k} {row[k]}" for k in EVIDENCE_FIGURES if k in row)
                lines.append(f"    {row['owners'][0]} ~ {row['owners'][1]}: {', '.join(row['reasons'])} ({detail})")
    return "\n".join(lines)


@families_app.command("evaluate")
def evaluate_family(per_class: int = typer.Option(10, min=1, max=1000, help="Generations per digit class.")) -> None:
    """Measure attribution quality on the demo family (trains it if needed)."""
    from royalflow.training.quality import derive_compositional, evaluate
    from royalflow.attribution.registry import DiskFamilyRegistry
    from royalflow.training.digits import DEMO_HOLDINGS, ensure_demo_family
    from royalflow.config import get_settings

    root = Path(get_settings().families_dir)
    family_id, version = ensure_demo_family(root)
    derive_compositional(root, family_id, version, "digits-compositional")
    registry = DiskFamilyRegistry(root, device=get_settings().device)
    typer.echo(evaluate(registry.get(family_id, version), registry.get("digits-compositional", version), DEMO_HOLDINGS, per_class=per_class))
