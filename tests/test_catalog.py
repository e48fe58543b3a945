"""Names resolve in one place: the current folder, then MKTME_DES_PATH, then the shipped files;
`list` says where each came from."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from mktme_des import catalog
from mktme_des.cli import main
from mktme_des.errors import ConfigError

ROOT = Path(__file__).resolve().parents[1]


def _model(folder: Path, name: str, description: str) -> Path:
    text = (ROOT / "models" / "client-1s.toml").read_text()
    at = text.index("description")
    end = text.index("\n", at)
    path = folder / "models" / f"{name}.toml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text[:at] + f'description = "{description}"' + text[end:])
    return path


def test_shipped_files_are_found_from_any_folder(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv(catalog.PATH_VARIABLE, raising=False)
    assert catalog.find("model", "server-2s").name == "server-2s.toml"
    assert catalog.find("policy", "rfc-v2").parent.name == "kernel"
    assert catalog.find("scenario", "S2").name.startswith("s2-")
    assert catalog.find("experiment", "demo-sweep").is_file()
    assert catalog.trace_path("experiments/traces/kernel_mix.lackey.gz").is_file()
    assert {e.origin for e in catalog.entries("scenario")} == {"shipped"}


def test_user_folders_override_and_extend_in_order(tmp_path, monkeypatch, capsys):
    here, first, second = tmp_path / "here", tmp_path / "first", tmp_path / "second"
    mine = _model(here, "client-1s", "the current folder's own")
    _model(first, "client-1s", "from the first path entry")
    extra = _model(first, "extra", "only on the path")
    _model(second, "extra", "shadowed by the first entry")
    monkeypatch.chdir(here)
    monkeypatch.setenv(catalog.PATH_VARIABLE, f"{first}:{second}")
    assert catalog.find("model", "client-1s") == here / "models" / "client-1s.toml"
    assert catalog.find("model", "extra") == extra
    assert main(["list", "--json"]) == 0
    models = {m["name"]: m for m in json.loads(capsys.readouterr().out)["models"]}
    assert models["client-1s"]["origin"] == "current folder"
    assert models["client-1s"]["path"] == str(mine)
    assert models["client-1s"]["description"] == "the current folder's own"
    assert models["extra"]["origin"] == catalog.PATH_VARIABLE
    assert models["extra"]["description"] == "only on the path"
    assert models["server-2s"]["origin"] == "shipped"
    assert main(["list"]) == 0
    text = capsys.readouterr().out
    assert f"[{catalog.PATH_VARIABLE}: {extra}]" in text


def test_an_unknown_name_says_where_it_looked_and_what_exists(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ConfigError) as info:
        catalog.find("model", "server-9s")
    message = str(info.value)
    assert "server-9s: no such model" in message
    assert str(tmp_path / "models") in message and "server-2s" in message


def test_no_module_finds_data_beside_itself():
    """One place resolves names: no other module looks for data relative to its own file."""
    offenders = [p for p in (ROOT / "mktme_des").rglob("*.py")
                 if p.name != "catalog.py" and "__file__).resolve().parents" in p.read_text()]
    assert offenders == []
