"""A fixed-seed fuzzer over scenario files, model overrides and command lines: whatever the
input, the command ends with exit status 0, 1 or 2 and never a traceback."""

from __future__ import annotations

import contextlib
import copy
import io
import random
import tomllib
from pathlib import Path
from typing import Any

from mktme_des.cli import main
from mktme_des.config.toml_write import dumps

ROOT = Path(__file__).resolve().parents[1]
SEED = 15
WEIRD: list[Any] = [
    float("inf"), float("nan"), -1, 0, 1, 63, 64, 99, 1e308, 1e-300, 10**18, -(10**18), "",
    "x\u0000y", "zz", "not:", "same-as-package-7", [1], [], {}, {"a": 1}, True, "a" * 5000,
    "zz+5ns", "zz+1e999us", "blocked", "L1D",
    [[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[1]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]],
]


def _leaves(node: Any, path: tuple = ()) -> list[tuple]:
    """Every (container path, key) of a parsed document, tables and arrays alike."""
    out = []
    items = node.items() if isinstance(node, dict) else enumerate(node) \
        if isinstance(node, list) else []
    for k, v in items:
        out.append((*path, k))
        out.extend(_leaves(v, (*path, k)))
    return out


def _mutate(data: dict, rng: random.Random) -> dict:
    data = copy.deepcopy(data)
    for _ in range(rng.randint(1, 3)):
        spots = _leaves(data)
        if not spots:
            break
        *where, key = rng.choice(spots)
        node = data
        for k in where:
            node = node[k]
        choice = rng.random()
        if choice < 0.7:
            node[key] = copy.deepcopy(rng.choice(WEIRD))
        elif choice < 0.85 and isinstance(node, dict):
            node[f"{key}x"] = node.pop(key)  # a misspelt key
        elif isinstance(node, dict):
            del node[key]
        else:
            node.pop(key)
    return data


def _cli(argv: list[str]) -> tuple[int, str]:
    err = io.StringIO()
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(err):
        code = main(argv)
    return code, err.getvalue()


def test_fuzzed_scenarios_never_end_in_a_traceback(tmp_path):
    rng = random.Random(SEED)
    sources = sorted((ROOT / "experiments" / "scenarios").glob("*.toml"))
    seen = {0: 0, 1: 0, 2: 0}
    for case in range(260):
        src = rng.choice(sources)
        data = _mutate(tomllib.loads(src.read_text()), rng)
        path = tmp_path / f"case{case}.toml"
        try:
            path.write_text(dumps(data))
        except (TypeError, ValueError):  # not writable as TOML (a NUL in a key): skip
            continue
        code, err = _cli(["scenario", "run", str(path)])
        assert code in seen, f"case {case} ({src.name}): exit {code}\n{err}"
        assert "Traceback" not in err
        if code == 2:
            assert len(err.strip().splitlines()) == 1 and str(path) in err, err
        seen[code] += 1
    assert seen[2] > 50 and seen[0] + seen[1] > 10  # both refused and run cases were met


def test_fuzzed_command_lines_never_end_in_a_traceback():
    rng = random.Random(SEED)
    fields = ["mktme.aes_latency_ns", "dram.bandwidth_gbps", "pconfig.latency_ns",
              "mktme.max_keys", "topology.packages", "cache", "mktme.keyid_bits",
              "interconnect.mesh_latency_ns", "ipi.local_ns", "mktme", "a.b", "memory"]
    workload = ["pattern", "cores", "mktme_fraction", "working_set_kib", "kind", "trace", "x"]
    for case in range(120):
        value = rng.choice(["inf", "nan", "-1", "0", "1e308", "1e-300", "[1]", "{a=1}", '""',
                            "zipf", "true", "9999999999999999999", "[" * 40 + "]" * 40])
        which = rng.random()
        if which < 0.4:
            argv = ["simulate", "client-1s", "-w", "accesses=50", "-m",
                    f"{rng.choice(fields)}={value}"]
        elif which < 0.7:
            argv = ["simulate", "client-1s", "-w", "accesses=50", "-w",
                    f"{rng.choice(workload)}={value}"]
        elif which < 0.85:
            argv = ["scenario", "explore", "s1-alias-read", "--runs", "2",
                    rng.choice(["--jitter-ns", "--seed", "--workers"]), value]
        else:
            argv = ["simulate", "client-1s", "-w", "accesses=50", "--seed", value]
        try:
            code, err = _cli(argv)
        except SystemExit as exc:  # argparse's own refusal of a malformed number
            code, err = exc.code, ""
        assert code in (0, 1, 2), f"case {case} {argv}: exit {code}\n{err}"
        assert "Traceback" not in err, f"case {case} {argv}\n{err}"
