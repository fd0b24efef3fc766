"""The work behind ``royalflow families train --kind lora`` and ``royalflow families import``
(the typer commands in training/cli.py stay thin and import this lazily)."""

from __future__ import annotations

from pathlib import Path

from royalflow.errors import ConfigurationError

MAX_IMPORT_FILES = 4096  # exact mode with 12 owners


def train_lora(families_dir: Path, *, base: Path, source: Path, family_id: str, version: str, mode: str, rank: int,
               resolution: int | None, steps: int, pool_fraction: str, device: str) -> Path:
    from royalflow.attribution.families.base import check_base_folder
    from royalflow.attribution.registry import check_family_ref
    from royalflow.training.images import read_image_folders
    from royalflow.training.importing import base_resolution
    from royalflow.training.lora import LoraPlan, train_lora_family

    check_family_ref(family_id, version)  # before minutes of image loading
    check_base_folder(base)
    size = resolution or base_resolution(base)
    public, owners = read_image_folders(source, size)
    if not owners:
        raise ConfigurationError(f"no owner folders under {source}")
    return train_lora_family(families_dir, family_id, version, base, public, owners, mode=mode, resolution=size,
                             plan=LoraPlan(steps=steps, rank=rank), pool_fraction=pool_fraction, device=device)


def import_lora(families_dir: Path, *, base: Path, family_id: str, version: str, mode: str, owners: list[str],
                adapters: list[str], data_sizes: list[str], resolution: int | None, pool_fraction: str,
                probe_images: Path | None = None) -> Path:
    """``adapters``: KEY=FILE (KEY a hex mask, an owner id or _control); ``data_sizes``: NAME=COUNT."""
    from royalflow.attribution.families.manifest import check_owner_ids
    from royalflow.attribution.registry import check_family_ref
    from royalflow.training.importing import import_lora_family

    check_family_ref(family_id, version)
    check_owner_ids(owners)
    if len(adapters) > MAX_IMPORT_FILES:
        raise ConfigurationError(f"at most {MAX_IMPORT_FILES} adapter files")
    files = dict(_pair(a, "--adapter KEY=FILE") for a in adapters)
    sizes = {k: _count(v, k) for k, v in (_pair(s, "--data-size NAME=COUNT") for s in data_sizes)}
    if mode == "exact" and not sizes:
        sizes = {"_base": 1, **{o: 1 for o in owners}}  # exact mode does not weigh components
    missing = [o for o in ["_base", *owners] if o not in sizes]
    if missing:
        raise ConfigurationError(f"--data-size needed for {missing} (image counts weigh the compositional mixture)")
    return import_lora_family(families_dir, family_id, version, base, owners, {k: Path(v) for k, v in files.items()},
                              mode=mode, data_sizes=sizes, resolution=resolution, pool_fraction=pool_fraction,
                              show_progress=True, probes=_probes(probe_images, base, resolution))


def import_lora_folder(families_dir: Path, *, base: Path, family_id: str, version: str, folder: Path,
                       resolution: int | None, pool_fraction: str, probe_images: Path | None = None) -> Path:
    """``families import --from-folder``: a compositional family, one file per owner."""
    from royalflow.training.importing import import_lora_folder as from_folder

    return from_folder(families_dir, family_id, version, base, folder, resolution=resolution,
                       pool_fraction=pool_fraction, show_progress=True,
                       probes=_probes(probe_images, base, resolution))


def _probes(folder: Path | None, base: Path, resolution: int | None):  # type: ignore[no-untyped-def]
    """The public probe images of the split defence's profile evidence (None: no evidence)."""
    if folder is None:
        return None
    from royalflow.training.images import read_image_set
    from royalflow.training.importing import base_resolution

    probes = read_image_set(Path(folder), resolution or base_resolution(base))
    if len(probes) == 0:
        raise ConfigurationError(f"--probe-images {folder} holds no images")
    return probes


def _pair(text: str, form: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    if not sep or not key or not value:
        raise ConfigurationError(f"expected {form}, got {text!r}")
    return key, value


def _count(text: str, name: str) -> int:
    if not text.isdigit() or int(text) <= 0:
        raise ConfigurationError(f"data size of {name} must be a positive integer, got {text!r}")
    return int(text)
