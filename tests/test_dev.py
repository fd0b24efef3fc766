"""dev.py installs with uv only where uv is told everything pip's configuration says."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def dev():  # type: ignore[no-untyped-def]
    spec = importlib.util.spec_from_file_location("dev", ROOT / "dev.py")
    module = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
    spec.loader.exec_module(module)  # type: ignore[union-attr]
    return module


def test_pip_options_become_uv_flags(dev) -> None:  # type: ignore[no-untyped-def]
    args, env = dev.uv_arguments({
        "index-url": "https://mirror.example/simple", "extra-index-url": "file:///a/simple file:///b/simple",
        "find-links": "/wheels", "constraint": "/etc/constraints.txt", "cert": "/etc/ca.crt",
        "default-timeout": "180", "disable-pip-version-check": "1",
    })
    assert args[:2] == ["--index-strategy", "unsafe-best-match"]  # pip's rule: the best version of any index
    pairs = list(zip(args[2::2], args[3::2]))
    assert ("--index-url", "https://mirror.example/simple") in pairs
    assert ("--extra-index-url", "file:///a/simple") in pairs and ("--extra-index-url", "file:///b/simple") in pairs
    assert ("--find-links", "/wheels") in pairs and ("--constraint", "/etc/constraints.txt") in pairs
    assert env == {"SSL_CERT_FILE": "/etc/ca.crt", "UV_HTTP_TIMEOUT": "180"}
    assert dev.uv_arguments({"no-index": "true"})[0][-1] == "--no-index"


def test_an_option_uv_cannot_honour_means_pip(dev) -> None:  # type: ignore[no-untyped-def]
    assert dev.uv_arguments({"require-hashes": "1"}) is None
    assert dev.uv_arguments({"trusted-host": "mirror.example"}) is None


def test_pip_configuration_reads_files_and_variables_in_pips_order(dev, tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    config = tmp_path / "pip.conf"
    config.write_text("[global]\nfind-links = /from-file\nextra-index-url = file:///x\n[install]\nconstraint = /c.txt\n")
    monkeypatch.setenv("PIP_CONFIG_FILE", str(config))
    monkeypatch.setenv("PIP_FIND_LINKS", "/from-env")
    monkeypatch.setattr(dev, "PY", Path(sys.executable))
    options = dev.pip_configuration()
    assert options["find-links"] == "/from-env"  # a PIP_* variable beats the files
    assert options["extra-index-url"] == "file:///x"
    assert options["constraint"] == "/c.txt"
