"""``royalflow families``: import --from-folder end to end in a child process (its output holds
our lines and progress bars only, none of the model libraries' warnings or bars), show and
list stay short for many owners, and ids no event can name exit 2 with a clear error."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import royalflow
from royalflow.training.lorafiles import base_linear_shapes
from royalflow.training.tiny import build_tiny_pipeline, write_random_lora

FOREIGN = ("[transformers]", "torchvision", "Writing model shards", "Loading pipeline components", "it/s]",
           "Warning", "warn")


def royalflow_command(args: list[str], families: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "ROYALFLOW_FAMILIES_DIR": str(families), "HF_HUB_OFFLINE": "1",
           "PYTHONPATH": str(Path(royalflow.__file__).parents[1])}
    for name in ("TRANSFORMERS_VERBOSITY", "DIFFUSERS_VERBOSITY", "HF_HUB_DISABLE_PROGRESS_BARS"):
        env.pop(name, None)  # the command must silence the libraries itself
    return subprocess.run([sys.executable, "-m", "royalflow", "families", *args], env=env, capture_output=True,
                          text=True, timeout=300, check=False)


@pytest.fixture(scope="module")
def adapters(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("cli")
    build_tiny_pipeline(root / "base")
    shapes = base_linear_shapes(root / "base")
    owners = [f"owner-{i:02d}" for i in range(40)]
    for i, owner in enumerate(owners):
        write_random_lora(root / "in" / f"{owner}.safetensors", shapes, seed=i)
    (root / "in" / "data_sizes.json").write_text(json.dumps({"_base": 500, **{o: 1 + i for i, o in enumerate(owners)}}))
    return root / "base", root / "in"


def test_import_show_and_list_print_only_what_the_user_needs(adapters: tuple[Path, Path], tmp_path: Path) -> None:
    base, folder = adapters
    families = tmp_path / "families"
    done = royalflow_command(["import", "--base", str(base), "--id", "forty", "--from-folder", str(folder)], families)
    assert done.returncode == 0, done.stderr
    output = done.stdout + done.stderr
    assert not [word for word in FOREIGN if word in output], output
    assert "checking LoRA files" in output and f"family written to {families / 'forty' / '1'}" in output

    shown = royalflow_command(["show", "forty", "1"], families)
    assert shown.returncode == 0, shown.stderr
    assert "mode compositional, 40 owners" in shown.stdout and "largest 10 of 40:" in shown.stdout
    assert "  owner-39: 40" in shown.stdout and "owner-29" not in shown.stdout  # the top 10 by data size only
    assert "adapter files: 40 (control v(∅): the plain base)" in shown.stdout
    assert len(shown.stdout.splitlines()) < 30
    full = json.loads(royalflow_command(["show", "forty", "1", "--json"], families).stdout)
    assert len(full["components"]) == 40

    listed = royalflow_command(["list"], families)
    assert "forty v1: lora compositional owners=40 (owner-00,owner-01,owner-02,...)" in listed.stdout


def test_train_prints_our_progress_bars_only(adapters: tuple[Path, Path], tmp_path: Path) -> None:
    """The command that loads the whole pipeline (text encoder, VAE) and saves adapters: where
    transformers warns about torchvision and the libraries draw their own bars."""
    from royalflow.training.styles import write_folders

    base, _ = adapters
    source = write_folders(tmp_path / "images", per_owner=2, public=2)
    done = royalflow_command(["train", "--kind", "lora", "--base", str(base), "--source", str(source), "--id", "t",
                              "--mode", "compositional", "--steps", "1", "--device", "cpu"], tmp_path / "families")
    assert done.returncode == 0, done.stderr
    output = done.stdout + done.stderr
    assert not [word for word in FOREIGN if word in output], output
    assert "component_00001" in output and "family written to" in output


@pytest.mark.parametrize("family_id", ["../../etc", "BAD_ID"])
def test_ids_no_event_can_name_exit_2(adapters: tuple[Path, Path], tmp_path: Path, family_id: str,
                                      monkeypatch: pytest.MonkeyPatch) -> None:
    from typer.testing import CliRunner

    from royalflow.cli import app
    from royalflow.config import get_settings

    base, folder = adapters
    monkeypatch.setenv("ROYALFLOW_FAMILIES_DIR", str(tmp_path / "families"))
    get_settings.cache_clear()
    try:
        runner = CliRunner()
        for args in (["import", "--base", str(base), "--id", family_id, "--from-folder", str(folder)],
                     ["train", "--kind", "lora", "--base", str(base), "--source", str(folder), "--id", family_id],
                     ["show", family_id, "1"]):
            result = runner.invoke(app, ["families", *args])
            assert result.exit_code == 2, (args, result.output)
            assert f"error: family id {family_id!r} must match" in result.output
        assert not (tmp_path / "families").exists() and not (tmp_path / "etc").exists()
        mixed = runner.invoke(app, ["families", "import", "--base", str(base), "--id", "x", "--from-folder",
                                    str(folder), "--owner", "a"])
        assert mixed.exit_code == 2 and "leave out --owner" in mixed.output
    finally:
        get_settings.cache_clear()


def test_import_with_probe_images_finds_same_source_owners_and_show_lists_them(
        adapters: tuple[Path, Path], tmp_path: Path) -> None:
    """Imported adapters without their images: close on the probes, confirmed on samples of each
    adapter. owner-b's file is owner-a's (a shell re-registering the same adapter); owner-c's is its own."""
    from royalflow.training.styles import write_folders

    base, _ = adapters
    shapes = base_linear_shapes(base)
    folder = tmp_path / "in"
    for owner, seed in (("owner-a", 1), ("owner-b", 1), ("owner-c", 2)):
        write_random_lora(folder / f"{owner}.safetensors", shapes, seed=seed)
    (folder / "data_sizes.json").write_text(json.dumps({"_base": 100, "owner-a": 10, "owner-b": 30, "owner-c": 20}))
    probes = write_folders(tmp_path / "images", per_owner=1, public=8) / "_public"
    families = tmp_path / "families"
    done = royalflow_command(["import", "--base", str(base), "--id", "three", "--from-folder", str(folder),
                              "--probe-images", str(probes)], families)
    assert done.returncode == 0, done.stderr
    manifest = json.loads((families / "three" / "1" / "manifest.json").read_text())
    assert manifest["clusters"] == [["owner-a", "owner-b"], ["owner-c"]]
    assert manifest["cluster_data_sizes"] == [40, 20] and manifest["training"]["clusters"]["profiles"]
    shown = royalflow_command(["show", "three", "1"], families).stdout
    assert "suspected clusters (1)" in shown and "owner-a + owner-b" in shown and "interchangeable" in shown
    # No pictures to train the cluster on: its component is its members' adapters merged (identical here).
    entry, single = manifest["cluster_components"]  # one per cluster; owner-c is its own component
    assert single is None
    assert entry["file"] == "components/clusters/00000.safetensors" and (families / "three" / "1" / entry["file"]).is_file()
