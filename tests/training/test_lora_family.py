"""The LoRA family kind on the tiny pipeline: batched multi-adapter evaluation equals peft's
switch-per-adapter, results repeat from the event id, import checks files against the base,
and a base folder missing a file is an error that names it."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file

from royalflow.attribution.families import load_family
from royalflow.attribution.families.adapters import LORA_FILE
from royalflow.attribution.families.content import png
from royalflow.attribution.families.lora import LoraFamily
from royalflow.attribution.registry import DiskFamilyRegistry, read_manifest
from royalflow.errors import ConfigurationError, ContractError
from royalflow.producer.events import generation_event
from royalflow.training.importing import import_lora_family
from tests.training.conftest import FAMILY, TinyLora


@pytest.fixture(scope="module")
def family(tiny_lora: TinyLora) -> LoraFamily:
    return DiskFamilyRegistry(tiny_lora.families, device="cpu").get(*FAMILY)  # type: ignore[return-value]


def _prepared(family: LoraFamily, pixels: np.ndarray, event_id: str, prompt: str | None):  # type: ignore[no-untyped-def]
    return family.prepare(generation_event(event_id=event_id, family_id=family.family_id, family_version=family.version,
                                           revenue_amount=1000, currency="USD", content=png(pixels), prompt=prompt))


def test_batched_multi_adapter_forward_equals_switching(family: LoraFamily, tiny_lora: TinyLora) -> None:
    batch = [_prepared(family, tiny_lora.generations["owner-blue"][i], f"e{i}", "a blue striped square" if i else None)
             for i in range(2)]
    batched = family.utility_samples(batch)
    switching = family.utility_samples(batch, strategy="switching")
    assert batched.shape == (8, 2, family.estimator.samples)
    torch.testing.assert_close(batched, switching, rtol=1e-4, atol=1e-3)
    # Adapters differ from each other and from the control (the bank really selects per row).
    means = batched.mean(dim=2)
    assert len({round(float(v), 3) for v in means[:, 0]}) == 8
    # Determinism from the event id: the same event gives the same numbers in another batch.
    again = family.utility_samples(batch[1:])
    torch.testing.assert_close(again[:, 0], batched[:, 1], rtol=1e-5, atol=1e-4)


def test_attribution_carries_standard_errors_and_refuses_labels(family: LoraFamily, tiny_lora: TinyLora) -> None:
    [result] = family.attribute([_prepared(family, tiny_lora.generations["owner-red"][0], "one", None)])
    assert result.mode == "exact" and result.method == "exact"
    assert np.all(np.isfinite(result.shapley_values)) and np.all(result.std_errors > 0)
    assert set(result.coalition_utilities) == {hex(m) for m in range(8)}
    event = generation_event(event_id="lab", family_id=family.family_id, family_version=family.version,
                             revenue_amount=1, currency="USD", content=png(tiny_lora.generations["owner-red"][0]),
                             class_label=2)
    with pytest.raises(ContractError, match="class_label"):
        family.prepare(event)


def _import_compositional(tiny_lora: TinyLora, root: Path) -> tuple[Path, dict, list[str]]:  # type: ignore[type-arg]
    adapters = tiny_lora.family_path / "adapters"
    owners = list(read_manifest(tiny_lora.family_path)["owners"])
    files = {"_control": adapters / "0x0" / LORA_FILE, **{o: adapters / hex(1 << i) / LORA_FILE for i, o in enumerate(owners)}}
    sizes = {"_base": 192, **{o: 48 for o in owners}}
    path = import_lora_family(root, "imported", "1", tiny_lora.base, owners, files, mode="compositional",
                              data_sizes=sizes)
    return path, files, owners


def test_import_compositional_family_and_refuse_files_that_do_not_fit(tiny_lora: TinyLora, tmp_path: Path) -> None:
    adapters = tiny_lora.family_path / "adapters"
    path, files, owners = _import_compositional(tiny_lora, tmp_path / "families")
    manifest = read_manifest(path)
    assert manifest["mode"] == "compositional" and manifest["adapters"] == {}
    assert {"timesteps": "stratified", "snr_cut": 1.0}.items() <= manifest["estimator"].items()  # as trained ones
    assert {k: v["file"] for k, v in manifest["components"].items()} == {
        "_control": "components/00000.safetensors",
        **{o: f"components/{i + 1:05d}.safetensors" for i, o in enumerate(owners)}}
    sizes = manifest["data_sizes"]

    # A file whose layers have other shapes than the base UNet's: refused, naming the file.
    state = load_file(str(adapters / "0x1" / LORA_FILE))
    bad = tmp_path / "bad"
    bad.mkdir()
    save_file({k: torch.cat([v, v], dim=-1) if "lora_A" in k or "lora.down" in k else v for k, v in state.items()},
              str(bad / LORA_FILE))
    with pytest.raises(ConfigurationError, match=f"{bad / LORA_FILE}.*does not fit"):
        import_lora_family(tmp_path / "families", "bad", "1", tiny_lora.base, owners,
                           {**files, owners[0]: bad / LORA_FILE}, mode="compositional", data_sizes=sizes)
    # A file naming layers the base does not have.
    save_file({k.replace("down_blocks", "side_blocks"): v for k, v in state.items()}, str(bad / LORA_FILE))
    with pytest.raises(ConfigurationError, match="does not fit"):
        import_lora_family(tmp_path / "families", "bad", "1", tiny_lora.base, owners,
                           {**files, owners[0]: bad / LORA_FILE}, mode="compositional", data_sizes=sizes)


def test_an_imported_compositional_family_attributes_and_checks_its_files(tiny_lora: TinyLora, tmp_path: Path) -> None:
    path, _, owners = _import_compositional(tiny_lora, tmp_path / "families")
    manifest = read_manifest(path)
    composed = load_family(manifest, path, "cpu")
    [result] = composed.attribute([_prepared(composed, tiny_lora.generations["owner-green"][0], "c", "a green dotted triangle")])
    assert result.mode == "compositional" and np.all(np.isfinite(result.shapley_values))
    assert len(set(np.round(result.shapley_values, 6))) > 1  # the components are really loaded
    # A family whose file changed after import fails its checksum on load.
    (path / manifest["components"][owners[0]]["file"]).write_bytes((path / manifest["components"][owners[1]]["file"]).read_bytes())
    with pytest.raises(ConfigurationError, match="checksum"):
        load_family(manifest, path, "cpu")


def test_a_base_folder_missing_a_file_names_it(tiny_lora: TinyLora, tmp_path: Path) -> None:
    from royalflow.attribution.families.base import check_base_folder

    base = tmp_path / "base"
    shutil.copytree(tiny_lora.base, base)
    check_base_folder(base)
    (base / "vae" / "diffusion_pytorch_model.safetensors").unlink()
    with pytest.raises(ConfigurationError, match=r"missing .*vae/diffusion_pytorch_model.safetensors"):
        check_base_folder(base)
    shutil.rmtree(base / "tokenizer")
    (base / "vae" / "diffusion_pytorch_model.safetensors").write_bytes(b"")
    with pytest.raises(ConfigurationError, match=r"tokenizer/vocab.json"):
        check_base_folder(base)


def test_cli_import_and_train_errors(tiny_lora: TinyLora, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from typer.testing import CliRunner

    from royalflow.cli import app
    from royalflow.config import get_settings

    monkeypatch.setenv("ROYALFLOW_FAMILIES_DIR", str(tmp_path / "families"))
    get_settings.cache_clear()
    try:
        runner = CliRunner()
        adapters = tiny_lora.family_path / "adapters"
        owners = list(read_manifest(tiny_lora.family_path)["owners"])
        args = ["families", "import", "--base", str(tiny_lora.base), "--id", "cli", "--mode", "exact"]
        for owner in owners:
            args += ["--owner", owner]
        for mask in range(1, 8):
            args += ["--adapter", f"{hex(mask)}={adapters / hex(mask) / LORA_FILE}"]
        result = runner.invoke(app, args)
        assert result.exit_code == 0, result.output
        assert (tmp_path / "families" / "cli" / "1" / "manifest.json").is_file()
        listed = runner.invoke(app, ["families", "list"])
        assert "cli v1: lora exact" in listed.output
        missing = runner.invoke(app, [*args[:args.index("--adapter")], "--adapter", f"0x1={adapters / '0x1' / LORA_FILE}"])
        assert missing.exit_code == 2 and "missing ['0x2'" in missing.output
        train = runner.invoke(app, ["families", "train", "--kind", "lora", "--base", str(tmp_path / "nowhere"),
                                    "--source", str(tiny_lora.source)])
        assert train.exit_code == 2 and "nowhere does not exist" in train.output
        # The command end to end (2 steps per adapter: the wiring, not the quality).
        train = runner.invoke(app, ["families", "train", "--kind", "lora", "--base", str(tiny_lora.base), "--source",
                                    str(tiny_lora.source), "--id", "cli-trained", "--mode", "compositional",
                                    "--steps", "2", "--rank", "4", "--device", "cpu"])
        assert train.exit_code == 0, train.output
        manifest = read_manifest(tmp_path / "families" / "cli-trained" / "1")
        assert manifest["rank"] == 4 and manifest["adapters"] == {}
        assert sorted(manifest["components"]) == ["_control", *sorted(manifest["owners"])]
        assert [manifest["components"][k]["file"] for k in ["_control", *manifest["owners"]]] == [
            f"components/{i:05d}.safetensors" for i in range(4)]
        assert manifest["training"]["fairness"]["control"] == "shuffled_captions"
        # New families are valued by the rate down to SNR 1 with stratified timesteps (elbo.py (6)).
        assert manifest["estimator"]["snr_cut"] == 1.0 and manifest["estimator"]["timesteps"] == "stratified"
    finally:
        get_settings.cache_clear()


def test_identical_data_train_identical_adapters(tmp_path: Path) -> None:
    """The fair schedule includes the initialisation: a twin owner's adapter equals its original's."""
    from royalflow.attribution.families.base import load_base
    from royalflow.training.images import read_image_folders
    from royalflow.training.lora import LoraPlan, encode_set, train_adapter
    from royalflow.training.styles import write_folders
    from royalflow.training.tiny import RESOLUTION, build_tiny_pipeline

    build_tiny_pipeline(tmp_path / "base")
    base = load_base(tmp_path / "base", device=torch.device("cpu"))
    _, owners = read_image_folders(write_folders(tmp_path / "images", per_owner=4, public=2), RESOLUTION)
    data = encode_set(base, owners["owner-red"])
    empty = base.encode_prompts([""]).float()[0]
    plan = LoraPlan(steps=2, batch=4)
    first = train_adapter(base, data, None, empty, "first", plan, public_mix=0.0)
    torch.rand(7)  # the global generator moves between the two: the adapters must not notice
    second = train_adapter(base, data, None, empty, "second", plan, public_mix=0.0)
    assert first.keys() == second.keys() and len(first) > 0
    assert all(torch.equal(first[k], second[k]) for k in first)
