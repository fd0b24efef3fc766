"""Registering LoRA files trained elsewhere (for example the ``pytorch_lora_weights.safetensors``
that diffusers' LoRA training scripts write) as a family: one file per coalition mask (exact)
or per owner (compositional), optionally a control for v(∅) (without one, v(∅) is the plain
base). Two forms: explicit KEY=FILE pairs (``import_lora_family``), or a folder holding
``<owner_id>.safetensors`` per owner, an optional ``_control.safetensors`` and
``data_sizes.json`` (``import_lora_folder``; compositional; owners in sorted order).

Every file is checked against the base UNet before anything is written, without loading it
into the UNet (``training/lorafiles.py`` reads the safetensors header and tensors directly),
and EVERY bad file is named in one error. Files are copied into the family folder (exact:
``adapters/<mask>/pytorch_lora_weights.safetensors``; compositional: ``components/<index>.safetensors``,
00000 the control, then the owners in order) with their sha256 checksums in the manifest.
"""

from __future__ import annotations

import json
from fractions import Fraction
from pathlib import Path

from royalflow.attribution.families.adapters import LORA_FILE
from royalflow.attribution.families.base import check_base_folder
from royalflow.attribution.families.manifest import (
    CONTROL, EXACT_MAX_OWNERS, LORA_ESTIMATOR_RULE, MAX_OWNERS, Estimator, check_owner_ids, component_file,
    owner_id_problem,
)
from royalflow.attribution.registry import check_family_ref
from royalflow.errors import ConfigurationError
from royalflow.training.images import ImageSet
from royalflow.training.lorafiles import LoraFileSummary, base_linear_shapes, copy_with_digest, inspect_lora_file, target_module

DATA_SIZES_FILE = "data_sizes.json"
MAX_DATA_SIZES_BYTES = 16 << 20  # bound on data_sizes.json: ~50 bytes per owner
MAX_PROBLEMS_SHOWN = 50  # an error lists every bad file up to this many, then counts the rest


def parse_adapter_keys(files: dict[str, Path], owners: list[str], mode: str) -> dict[int, Path]:
    """Keys are hex masks (``0x5``) or, in compositional mode, owner ids (and ``_control``)."""
    masks: dict[int, Path] = {}
    for key, file in files.items():
        if key == CONTROL:
            mask = 0
        elif key in owners:
            if mode != "compositional":
                raise ConfigurationError(f"exact mode takes one file per coalition mask (0x1..), not owner {key!r}")
            mask = 1 << owners.index(key)
        else:
            try:
                mask = int(key, 16)
            except ValueError:
                raise ConfigurationError(f"adapter key {key!r} is neither an owner nor a hex coalition mask") from None
            if not 0 <= mask < 1 << len(owners):
                raise ConfigurationError(f"adapter mask {key} names owners beyond the {len(owners)} given")
        if mask in masks:
            raise ConfigurationError(f"two files for coalition {hex(mask)}")
        masks[mask] = Path(file)
    n = len(owners)
    wanted = set(range(1, 1 << n)) if mode == "exact" else {1 << i for i in range(n)}
    missing = sorted(wanted - set(masks))
    if missing:
        raise ConfigurationError(f"{mode} mode needs a file for every coalition: missing {[hex(m) for m in missing]}")
    extra = sorted(set(masks) - wanted - {0})
    if extra:
        raise ConfigurationError(f"{mode} mode does not use coalitions {[hex(m) for m in extra]}")
    return masks


def import_lora_family(families_dir: Path, family_id: str, version: str, base_folder: Path, owners: list[str],
                       files: dict[str, Path], *, mode: str, data_sizes: dict[str, int], resolution: int | None = None,
                       samples: int = 16, pool_fraction: str = "3/10", show_progress: bool = False,
                       probes: ImageSet | None = None, rule: dict | None = None) -> Path:  # type: ignore[type-arg]
    """``files``: KEY -> file, KEY a hex mask, an owner id (compositional) or ``_control``.
    ``rule``: the estimator's timestep rule (``timesteps``, ``snr_cut``), e.g. the exact family's
    whose adapters these are; None: ``LORA_ESTIMATOR_RULE``.
    ``probes``: public images; with them, same-source owners are found from their adapters alone
    (``lora_clusters.py``: pairs close on the probes, confirmed on each adapter's own draws) and
    written in as clusters, each multi-owner cluster of a compositional family with its members'
    merged component."""
    if mode not in ("exact", "compositional"):
        raise ConfigurationError(f"mode must be exact or compositional, got {mode!r}")
    check_family_ref(family_id, version)
    _check_owner_count(owners, mode)
    check_owner_ids(owners)
    masks = parse_adapter_keys(files, owners, mode)
    slots: dict[str, tuple[Path, str]] = {}  # manifest key -> (source file, path in the family)
    for mask, file in sorted(masks.items()):
        if mode == "exact":
            slots[hex(mask)] = (file, f"adapters/0x{mask:x}/{LORA_FILE}")
        else:  # slot 0 the control, owner i slot i + 1
            slots[CONTROL if mask == 0 else owners[mask.bit_length() - 1]] = (file, component_file(mask.bit_length()))
    return _register(Path(families_dir) / family_id / version, family_id, version, Path(base_folder), owners, slots,
                     mode=mode, data_sizes=data_sizes, resolution=resolution, samples=samples,
                     pool_fraction=pool_fraction, show_progress=show_progress, probes=probes, rule=rule)


def import_lora_folder(families_dir: Path, family_id: str, version: str, base_folder: Path, folder: Path, *,
                       resolution: int | None = None, samples: int = 16, pool_fraction: str = "3/10",
                       show_progress: bool = False, probes: ImageSet | None = None) -> Path:
    """A compositional family from ``folder``: ``<owner_id>.safetensors`` per owner, optionally
    ``_control.safetensors``, and ``data_sizes.json`` ({"_base": N, "<owner>": N, ...}). The
    owners are every owner with a file or a data size, in sorted order (player i is the i-th)."""
    check_family_ref(family_id, version)
    folder = Path(folder)
    if not folder.is_dir():
        raise ConfigurationError(f"adapter folder {folder} does not exist")
    sizes = read_data_sizes(folder / DATA_SIZES_FILE)
    stems = {p.name[:-len(".safetensors")] for p in folder.glob("*.safetensors")}
    names = sorted((stems - {CONTROL}) | (set(sizes) - {CONTROL, "_base"}))  # a _base.safetensors is refused
    problems = [f"{folder / (o + '.safetensors')}: {owner_id_problem(o)}" for o in names if owner_id_problem(o)]
    problems += [f"{DATA_SIZES_FILE} has no image count for owner {o!r} ({o}.safetensors)"
                 for o in names if o in stems and o not in sizes]
    problems += [f"{DATA_SIZES_FILE}[{k!r}] must be a positive integer, got {v!r}" for k, v in sorted(sizes.items())
                 if isinstance(v, bool) or not isinstance(v, int) or v <= 0]
    if "_base" not in sizes:
        problems.append(f'{DATA_SIZES_FILE} needs "_base": the image count of the base (the mixture weight of v(∅))')
    if not names:
        problems.append(f"no <owner_id>.safetensors files under {folder}")
    if problems:
        raise ConfigurationError(_listing(f"adapter folder {folder} is not importable", problems))
    _check_owner_count(names, "compositional")
    slots = {o: (folder / f"{o}.safetensors", component_file(i + 1)) for i, o in enumerate(names)}
    if CONTROL in stems:
        slots = {CONTROL: (folder / f"{CONTROL}.safetensors", component_file(0)), **slots}
    return _register(Path(families_dir) / family_id / version, family_id, version, Path(base_folder), names, slots,
                     mode="compositional", data_sizes={k: int(v) for k, v in sizes.items()}, resolution=resolution,
                     samples=samples, pool_fraction=pool_fraction, show_progress=show_progress, probes=probes)


def read_data_sizes(path: Path) -> dict[str, object]:
    if not path.is_file():
        raise ConfigurationError(f"{path} is missing: it gives the image count of every owner and of _base "
                                 '({"_base": N, "<owner>": N, ...}), the compositional mixture weights')
    if path.stat().st_size > MAX_DATA_SIZES_BYTES:
        raise ConfigurationError(f"{path} is larger than {MAX_DATA_SIZES_BYTES} bytes")
    try:
        sizes = json.loads(path.read_text())
    except (ValueError, UnicodeDecodeError) as exc:
        raise ConfigurationError(f"{path} is not valid JSON: {exc}") from None
    if not isinstance(sizes, dict):
        raise ConfigurationError(f'{path} must hold one object {{"_base": N, "<owner>": N, ...}}')
    return sizes


def _check_owner_count(owners: list[str], mode: str) -> None:
    limit = EXACT_MAX_OWNERS if mode == "exact" else MAX_OWNERS
    if not 1 <= len(owners) <= limit:
        raise ConfigurationError(f"{mode} mode takes 1..{limit} owners, got {len(owners)}")


def _listing(headline: str, problems: list[str]) -> str:
    shown = problems[:MAX_PROBLEMS_SHOWN]
    more = [f"... and {len(problems) - len(shown)} more"] if len(problems) > len(shown) else []
    return "\n  ".join([f"{headline}:", *shown, *more])


def _register(out: Path, family_id: str, version: str, base_folder: Path, owners: list[str],
              slots: dict[str, tuple[Path, str]], *, mode: str, data_sizes: dict[str, int], resolution: int | None,
              samples: int, pool_fraction: str, show_progress: bool, probes: ImageSet | None = None,
              rule: dict | None = None) -> Path:  # type: ignore[type-arg]
    """Check every file against the base (all problems in one error), then copy and write the manifest."""
    from royalflow.training.lora import progress_bar, write_manifest

    check_base_folder(base_folder)
    # The manifest's rules (checked again when it is written), before any file is copied.
    try:
        fraction: Fraction | None = Fraction(pool_fraction)
        Estimator(samples=samples, **(rule or {}))
    except (ValueError, ZeroDivisionError):  # pydantic's ValidationError is a ValueError
        fraction = None
    if fraction is None or not 0 <= fraction <= 1:
        raise ConfigurationError(f"pool fraction {pool_fraction!r} must be a fraction within [0, 1], "
                                 f"and estimator samples within [2, 1024] with a valid rule, got {rule}")
    unsized = [name for name in ["_base", *owners] if not isinstance(data_sizes.get(name), int) or data_sizes[name] <= 0]
    if unsized:
        raise ConfigurationError(f"data sizes need a positive image count for {len(unsized)} of the owners and _base: "
                                 f"{unsized[:MAX_PROBLEMS_SHOWN]}")
    shapes = base_linear_shapes(base_folder)
    summaries: dict[str, LoraFileSummary] = {}
    problems = []
    with progress_bar(disable=not show_progress) as progress:
        task = progress.add_task("checking LoRA files", total=len(slots))
        for key, (source, _) in slots.items():
            found = inspect_lora_file(source, shapes)
            if isinstance(found, str):
                problems.append(f"{key}: {found}")
            else:
                summaries[key] = found
            progress.advance(task)
        if problems:
            raise ConfigurationError(_listing(f"{len(problems)} of {len(slots)} LoRA files refused, nothing imported",
                                              problems))
        task = progress.add_task("copying into the family", total=len(slots))
        files = {}
        for key, (source, relative) in slots.items():
            files[key] = {"file": relative, "sha256": copy_with_digest(source, out / relative)}
            progress.advance(task)
    manifest = {
        "kind": "lora", "family_id": family_id, "version": version, "owners": owners, "pool_fraction": pool_fraction,
        "mode": mode, "base": str(base_folder.resolve()), "resolution": resolution or base_resolution(base_folder),
        "rank": max(s.rank for s in summaries.values()),
        "target_modules": sorted({target_module(layer) for s in summaries.values() for layer in s.layers}),
        "adapters": files if mode == "exact" else {}, "components": files if mode == "compositional" else {},
        "data_sizes": data_sizes, "estimator": {"samples": samples, **(LORA_ESTIMATOR_RULE if rule is None else rule)},
        "training": {"imported": True},  # how the files were trained is not known: no fairness rule
    }
    write_manifest(out, manifest)
    if probes is not None and len(probes) and len(owners) > 1:  # profile evidence: adapters + public probes
        from royalflow.training.lora_clusters import add_clusters

        updated, _ = add_clusters(out, manifest, probes, None, device="auto")
        if mode == "compositional":
            from royalflow.training.cluster_components import write_merged_components

            write_merged_components(out, updated)  # no pictures to train a cluster on: its members merged
    return out


def base_resolution(base: Path) -> int:
    """The image size the base pipeline's VAE was built for (its config's sample_size)."""
    return int(json.loads((Path(base) / "vae" / "config.json").read_text())["sample_size"])
