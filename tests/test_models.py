"""Model files: the shipped ones load, and each class of mistake is rejected clearly."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest

from mktme_des.config.model import load_model
from mktme_des.errors import ConfigError

MODELS_DIR = Path(__file__).resolve().parents[1] / "models"  # the repository's own files
SHIPPED = sorted(p.stem for p in MODELS_DIR.glob("*.toml"))


def test_three_models_ship():
    assert {"client-1s", "server-2s", "server-4s"} <= set(SHIPPED)


@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_model_loads(name):
    m = load_model(name)
    assert m.topology.packages >= 1
    # The KeyID field fits above the memory, and every cache geometry is whole.
    assert m.memory_bytes <= 1 << m.usable_address_bits
    for c in m.cache:
        assert c.sets * c.ways * 64 == c.size_kib * 1024


def test_packages_differ():
    assert [load_model(n).topology.packages for n in ("client-1s", "server-2s", "server-4s")] == [1, 2, 4]


def _write(tmp_path: Path, edit) -> Path:
    data = tomllib.loads((MODELS_DIR / "server-2s.toml").read_text())
    edit(data)
    out = tmp_path / "bad.toml"
    out.write_text(_dump(data))
    return out


def _dump(data: dict) -> str:
    """A minimal TOML writer for the test (tables, arrays of tables, scalars, string lists)."""
    lines: list[str] = []

    def scalar(v):
        if isinstance(v, bool):
            return "true" if v else "false"
        if isinstance(v, str):
            return '"' + v.replace('"', '\\"') + '"'
        if isinstance(v, list):
            return "[" + ", ".join(scalar(x) for x in v) + "]"
        return repr(v)

    for key, value in data.items():
        if isinstance(value, dict):
            lines.append(f"[{key}]")
            lines += [f"{k} = {scalar(v)}" for k, v in value.items()]
        elif isinstance(value, list) and value and isinstance(value[0], dict):
            for item in value:
                lines.append(f"[[{key}]]")
                lines += [f"{k} = {scalar(v)}" for k, v in item.items()]
        else:
            lines.insert(0, f"{key} = {scalar(value)}")
    return "\n".join(lines) + "\n"


def _error(tmp_path, edit) -> ConfigError:
    path = _write(tmp_path, edit)
    with pytest.raises(ConfigError) as info:
        load_model(path)
    err = info.value
    assert err.file == str(path)
    assert str(path) in str(err)
    return err


def test_unknown_key(tmp_path):
    err = _error(tmp_path, lambda d: d["dram"].__setitem__("acess_latency_ns", 50.0))
    assert err.field == "dram.acess_latency_ns"
    assert "unknown key" in err.reason and "access_latency_ns" in err.reason


def test_unknown_section(tmp_path):
    err = _error(tmp_path, lambda d: d.__setitem__("gpu", {"x": 1}))
    assert err.field == "gpu"


def test_wrong_type_string_for_number(tmp_path):
    err = _error(tmp_path, lambda d: d["topology"].__setitem__("packages", "2"))
    assert err.field == "topology.packages"
    assert "expected an integer" in err.reason


def test_wrong_type_float_for_integer(tmp_path):
    err = _error(tmp_path, lambda d: d["cache"][0].__setitem__("ways", 12.5))
    assert err.field == "cache[0].ways"


def test_wrong_type_number_for_bool(tmp_path):
    err = _error(tmp_path, lambda d: d["mktme"].__setitem__("tme_bypass", 1))
    assert err.field == "mktme.tme_bypass" and "true or false" in err.reason


def test_out_of_range(tmp_path):
    err = _error(tmp_path, lambda d: d["mktme"].__setitem__("keyid_bits", 16))
    assert err.field == "mktme.keyid_bits" and "at most 15" in err.reason


def test_negative_latency(tmp_path):
    err = _error(tmp_path, lambda d: d["dram"].__setitem__("access_latency_ns", -1.0))
    assert err.field == "dram.access_latency_ns" and "at least 0" in err.reason


def test_bad_choice(tmp_path):
    err = _error(tmp_path, lambda d: d["cache"][2].__setitem__("scope", "socket"))
    assert err.field == "cache[2].scope" and "'core'" in err.reason


def test_cache_geometry(tmp_path):
    err = _error(tmp_path, lambda d: d["cache"][0].__setitem__("size_kib", 40))
    assert err.field == "cache[0].size_kib" and "sets x ways" in err.reason


def test_keyid_bits_eat_the_memory(tmp_path):
    # 52-bit PA with 64 GiB x 2 needs 37 bits: 15 KeyID bits still fit, so shrink the PA.
    def edit(d):
        d["platform"]["physical_address_bits"] = 40
        d["mktme"]["keyid_bits"] = 6

    err = _error(tmp_path, edit)
    assert err.field == "mktme.keyid_bits" and "GiB" in err.reason


def test_more_keys_than_keyids(tmp_path):
    err = _error(tmp_path, lambda d: d["mktme"].__setitem__("max_keys", 64))
    assert err.field == "mktme.max_keys"


def test_missing_required(tmp_path):
    err = _error(tmp_path, lambda d: d["dram"].pop("banks"))
    assert err.field == "dram.banks" and "required" in err.reason


def test_unknown_algorithm(tmp_path):
    err = _error(tmp_path, lambda d: d["mktme"].__setitem__("algorithms", ["aes-gcm"]))
    assert err.field == "mktme.algorithms[0]"


def test_private_behind_shared(tmp_path):
    def edit(d):
        d["cache"][0]["scope"] = "package"

    err = _error(tmp_path, edit)
    assert err.field == "cache[1].scope"


def test_not_toml(tmp_path):
    bad = tmp_path / "x.toml"
    bad.write_text("[platform\nname=1")
    with pytest.raises(ConfigError) as info:
        load_model(bad)
    assert "not valid TOML" in str(info.value)


def test_missing_file(tmp_path):
    with pytest.raises(ConfigError) as info:
        load_model(tmp_path / "nope.toml")
    assert "no such file" in str(info.value)


SOURCE_TAG = re.compile(r"ASSUMPTION|\b(?:S[1-5]b?|K1?[0-9]|C[1-8]|P1?[0-9]a?b?|M[1-3])\b")


@pytest.mark.parametrize("path", sorted(MODELS_DIR.glob("*.toml")), ids=lambda p: p.stem)
def test_every_model_number_cites_a_source_or_is_an_assumption(path):
    """Project rule: each number in a model (and the boot tweak, a modelling choice) carries,
    on its line or the comment lines right below it, a fact-sheet source tag or ASSUMPTION."""
    lines = path.read_text().splitlines()
    for i, line in enumerate(lines):
        m = re.match(r"^(\w+) = (-?[0-9][0-9_.]*|\"per-boot\"|\"stable\")\s*(#.*)?$", line)
        if not m:
            continue
        comment = m.group(3) or ""
        j = i + 1
        while j < len(lines) and lines[j].lstrip().startswith("#") and not lines[j].startswith("#"):
            comment += lines[j]
            j += 1
        assert SOURCE_TAG.search(comment), f"{path.name}:{i + 1}: {line.strip()}"
        assert "can take ms" not in comment, f"{path.name}:{i + 1}: cites an unfound figure"


@pytest.mark.parametrize("name", ["client-1s", "server-2s", "server-4s"])
def test_aes_engine_per_controller_keeps_up_with_its_channel_by_default(name):
    """One engine per memory controller, no slower than the controller's channel unless a
    model says so (aes_throughput_x_channel); an override scales it."""
    from mktme_des.engine.time import ns
    from mktme_des.hw.platform import Platform

    m = load_model(name)
    channel = m.dram.bandwidth_gbps / 64  # lines per ns
    assert m.aes_lines_per_ns >= channel
    for factor in (0.25, 2.0):
        plat = Platform(load_model(name, {"mktme": {"aes_throughput_x_channel": factor}}), seed=0)
        for pkg in plat.packages:
            assert pkg.mc.engine.interval == max(1, ns(1.0 / (factor * channel)))


# -- packages without memory ------------------------------------------------------------------

def _memory(sizes, packages=2):
    def edit(d):
        d["memory"]["gib_per_package"] = sizes
        d["topology"]["packages"] = packages
    return edit


@pytest.mark.parametrize("sizes,packages,field,says", [
    ([64], 2, "memory.gib_per_package", "1 entries for 2 packages"),
    ([0, 0], 2, "memory.gib_per_package", "at least one package must have memory"),
    ([64, 32], 2, "memory.gib_per_package", "different sizes (32, 64 GiB)"),
    ([64, -1], 2, "memory.gib_per_package[1]", "must be at least 0"),
    ([64, "none"], 2, "memory.gib_per_package[1]", "expected an integer"),
    (0, 2, "memory.gib_per_package", "must be at least 1"),
    ("64", 2, "memory.gib_per_package", "expected an integer"),
])
def test_memory_per_package_mistakes(tmp_path, sizes, packages, field, says):
    err = _error(tmp_path, _memory(sizes, packages))
    assert err.field == field and says in err.reason


def test_a_list_of_equal_sizes_is_the_single_size(tmp_path):
    """One entry per package, all with memory, is the same machine as one size for all."""
    listed = load_model(_write(tmp_path, _memory([64, 64])))
    single = load_model("server-2s")
    assert listed.memory_homes == single.memory_homes == (0, 1)
    assert listed.memory_bytes == single.memory_bytes and listed.package_bytes == 64 << 30


def test_memoryless_model_extends_server_2s():
    m, base = load_model("server-2s-memoryless"), load_model("server-2s")
    assert m.memory_homes == (0,) and m.memory_bytes == 64 << 30
    assert m.topology == base.topology and m.cache == base.cache and m.mktme == base.mktme
    assert m.platform.name == "server-2s-memoryless"


def test_extends_mistakes(tmp_path):
    (tmp_path / "a.toml").write_text('extends = "' + str(tmp_path / "b.toml") + '"\n')
    (tmp_path / "b.toml").write_text('extends = "' + str(tmp_path / "a.toml") + '"\n')
    with pytest.raises(ConfigError) as info:
        load_model(tmp_path / "a.toml")
    assert info.value.field == "extends" and "cycle" in info.value.reason
    (tmp_path / "c.toml").write_text("extends = 3\n")
    with pytest.raises(ConfigError) as info:
        load_model(tmp_path / "c.toml")
    assert info.value.file == str(tmp_path / "c.toml") and info.value.field == "extends"
    (tmp_path / "d.toml").write_text('extends = "no-such-model"\n')
    with pytest.raises(ConfigError) as info:
        load_model(tmp_path / "d.toml")
    assert info.value.field == "extends" and "no such model" in info.value.reason
