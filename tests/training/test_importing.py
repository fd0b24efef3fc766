"""Importing LoRA files as a family (``training/importing.py``, ``training/lorafiles.py``) on the
tiny pipeline with random adapters (no training): a folder of one file per owner, every bad
file named in one error, ids no event can name refused, and 1,024 owners in seconds."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from royalflow.attribution.families.manifest import LoraManifest, parse_manifest
from royalflow.attribution.registry import read_manifest
from royalflow.errors import ConfigurationError
from royalflow.training.importing import import_lora_family, import_lora_folder
from royalflow.training.lorafiles import base_linear_shapes, inspect_lora_file
from royalflow.training.tiny import build_tiny_pipeline, write_random_lora



@pytest.fixture(scope="module")
def base(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("tiny-base") / "base"
    build_tiny_pipeline(folder)
    return folder


@pytest.fixture(scope="module")
def shapes(base: Path) -> dict[str, tuple[int, int]]:
    return base_linear_shapes(base)


def adapter_folder(folder: Path, shapes: dict[str, tuple[int, int]], owners: list[str], *,
                   control: bool = True) -> Path:
    for i, owner in enumerate(owners):
        write_random_lora(folder / f"{owner}.safetensors", shapes, seed=i + 1)
    if control:
        write_random_lora(folder / "_control.safetensors", shapes, seed=0)
    (folder / "data_sizes.json").write_text(json.dumps({"_base": 100, **{o: 10 + i for i, o in enumerate(owners)}}))
    return folder


def test_a_folder_of_owner_files_becomes_a_compositional_family(base: Path, shapes: dict, tmp_path: Path) -> None:  # type: ignore[type-arg]
    source = adapter_folder(tmp_path / "in", shapes, ["carol", "alice", "bob"])
    path = import_lora_folder(tmp_path / "families", "three", "1", base, source)
    manifest = parse_manifest(read_manifest(path), str(path))
    assert isinstance(manifest, LoraManifest)
    assert manifest.owners == ["alice", "bob", "carol"] and manifest.mode == "compositional"  # sorted ids
    assert manifest.rank == 8 and manifest.target_modules == ["to_k", "to_out.0", "to_q", "to_v"]
    assert manifest.data_sizes == {"_base": 100, "carol": 10, "alice": 11, "bob": 12}
    sources = ["_control", "alice", "bob", "carol"]
    for index, (slot, name) in enumerate(zip(manifest.slot_files(), sources, strict=True)):
        assert slot is not None and slot.file == f"components/{index:05d}.safetensors"
        copied = (path / slot.file).read_bytes()
        assert copied == (source / f"{name}.safetensors").read_bytes()
        assert hashlib.sha256(copied).hexdigest() == slot.sha256

    # What the import check accepts, diffusers' own loader accepts too (same layers, same rank).
    from diffusers import StableDiffusionPipeline
    from peft.tuners.lora import LoraLayer

    from royalflow.attribution.families.base import load_base

    unet = load_base(base, device=torch.device("cpu")).unet
    state, alphas = StableDiffusionPipeline.lora_state_dict(str(path / "components"), weight_name="00001.safetensors",
                                                            local_files_only=True)
    unet.load_lora_adapter(state, network_alphas=alphas, prefix="unet", adapter_name="alice")
    ranks = {m.r["alice"] for m in unet.modules() if isinstance(m, LoraLayer) and "alice" in m.r}
    assert ranks == {8}


def test_every_bad_file_among_twenty_is_named_and_nothing_is_written(base: Path, shapes: dict,  # type: ignore[type-arg]
                                                                    tmp_path: Path) -> None:
    owners = [f"owner-{i:02d}" for i in range(20)]
    source = adapter_folder(tmp_path / "in", shapes, owners)
    corrupt = source / "owner-03.safetensors"
    corrupt.write_bytes(corrupt.read_bytes()[:-64])  # truncated
    (source / "owner-07.safetensors").unlink()  # data_sizes.json still names it
    mismatched = source / "owner-15.safetensors"
    state = load_file(str(mismatched))
    save_file({k: torch.cat([v, v], dim=1) if k.endswith("lora.down.weight") else v for k, v in state.items()},
              str(mismatched), metadata={"format": "pt"})
    with pytest.raises(ConfigurationError) as caught:
        import_lora_folder(tmp_path / "families", "twenty", "1", base, source)
    message = str(caught.value)
    assert message.startswith("3 of 21 LoRA files refused")
    assert f"owner-03: LoRA file {corrupt} is not readable LoRA weights" in message
    assert f"owner-07: LoRA file {source / 'owner-07.safetensors'} does not exist" in message
    assert f"owner-15: LoRA file {mismatched} does not fit the base UNet" in message
    assert not (tmp_path / "families").exists()


def test_files_that_are_not_unet_lora_are_refused(shapes: dict, tmp_path: Path) -> None:  # type: ignore[type-arg]
    good = load_file(str(write_random_lora(tmp_path / "good.safetensors", shapes)))
    cases = {
        "text": ({"text_encoder.x.lora.down.weight": torch.ones(2, 2)}, "only UNet adapters"),
        "unknown": ({"unet.x.weight": torch.ones(2, 2)}, "holds no UNet LoRA layers"),
        "half": ({k: v for k, v in good.items() if "lora.up" not in k}, "without both factors"),
        "nan": ({k: v * float("nan") for k, v in good.items()}, "non-finite"),
        "absent": ({k.replace("mid_block", "side_block"): v for k, v in good.items()}, "no Linear layer side_block"),
    }
    for name, (state, message) in cases.items():
        save_file(state, str(tmp_path / f"{name}.safetensors"))
        found = inspect_lora_file(tmp_path / f"{name}.safetensors", shapes)
        assert isinstance(found, str) and message in found and f"{name}.safetensors" in found, (name, found)
    (tmp_path / "junk.safetensors").write_bytes(b"not a safetensors file")
    assert "is not readable LoRA weights" in str(inspect_lora_file(tmp_path / "junk.safetensors", shapes))


@pytest.mark.parametrize(("family_id", "version", "message"), [
    ("../../etc", "1", "family id '../../etc' must match"),
    ("BAD_ID", "1", "family id 'BAD_ID' must match"),
    ("fine", "..", "family version '..' must match"),
])
def test_ids_no_event_can_name_are_refused_before_anything_is_written(base: Path, shapes: dict, tmp_path: Path,  # type: ignore[type-arg]
                                                                      family_id: str, version: str,
                                                                      message: str) -> None:
    source = adapter_folder(tmp_path / "in", shapes, ["alice"], control=False)
    with pytest.raises(ConfigurationError, match=message):
        import_lora_folder(tmp_path / "families" / "inner", family_id, version, base, source)
    assert not (tmp_path / "families").exists() and not (tmp_path / "etc").exists()


def test_owner_problems_name_the_owner(base: Path, shapes: dict, tmp_path: Path) -> None:  # type: ignore[type-arg]
    source = adapter_folder(tmp_path / "in", shapes, ["alice", "bob"], control=False)
    files = {"alice": source / "alice.safetensors", "bob": source / "bob.safetensors"}
    sizes = {"_base": 1, "alice": 1, "bob": 1}
    with pytest.raises(ConfigurationError, match="owner 'alice' appears twice"):
        import_lora_family(tmp_path / "f", "dup", "1", base, ["alice", "bob", "alice"], files, mode="compositional",
                           data_sizes=sizes)
    with pytest.raises(ConfigurationError, match="pool fraction '3/2'"):
        import_lora_folder(tmp_path / "f", "frac", "1", base, source, pool_fraction="3/2")
    assert not (tmp_path / "f").exists()
    write_random_lora(source / "Bad Owner.safetensors", shapes)
    write_random_lora(source / "_base.safetensors", shapes)
    write_random_lora(source / "carol.safetensors", shapes)
    with pytest.raises(ConfigurationError) as caught:
        import_lora_folder(tmp_path / "f", "bad", "1", base, source)
    assert "owner id 'Bad Owner' must match" in str(caught.value)
    assert "owner id '_base' must match" in str(caught.value)
    assert "no image count for owner 'carol'" in str(caught.value)
    (source / "data_sizes.json").unlink()
    with pytest.raises(ConfigurationError, match="data_sizes.json is missing"):
        import_lora_folder(tmp_path / "f", "bad", "1", base, source)


def test_a_thousand_owners_import(base: Path, shapes: dict, tmp_path: Path) -> None:  # type: ignore[type-arg]
    # How fast is a benchmark's question (benchmarks/lora_import.py), not a test's.
    owners = [f"owner-{i:04d}" for i in range(1024)]
    source = adapter_folder(tmp_path / "in", shapes, owners)
    path = import_lora_folder(tmp_path / "families", "many", "1", base, source)
    manifest = parse_manifest(read_manifest(path), str(path))
    assert isinstance(manifest, LoraManifest) and manifest.owners == owners
    assert max(len(p.name) for p in (path / "components").iterdir()) == len("01024.safetensors")
