"""The compiled hot path (``setup.py``) is in use, up to date, and gives the same bytes as the
Python source it is compiled from."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

import mktme_des

ROOT = Path(__file__).resolve().parents[1]
PURE = bool(os.environ.get("MKTME_DES_PURE"))


def hot_modules() -> list[Path]:
    text = (ROOT / "setup.py").read_text()
    return [ROOT / line.strip().strip('",') for line in text.splitlines()
            if line.strip().startswith('"mktme_des/')]


def test_the_hot_path_runs_compiled_unless_told_otherwise():
    assert mktme_des.compiled() is not PURE


def test_every_compiled_module_is_newer_than_its_source():
    """An edited module whose build was not redone would be shadowed by the old build
    (``make`` rebuilds it; a bare ``pip install -e .`` does too)."""
    modules = hot_modules()
    assert len(modules) >= 5
    if PURE:
        return  # the builds are not used: whether they are current does not matter
    for src in modules:
        builds = list(src.parent.glob(src.stem + ".*.so"))
        assert len(builds) == 1, f"{src.name}: no single compiled build next to it"
        sources = [src] + [p for p in [src.with_suffix(".pxd")] if p.exists()]
        newest = max(p.stat().st_mtime for p in sources)
        assert builds[0].stat().st_mtime >= newest, f"{src.name} changed since it was compiled"


def cli(args: list[str], pure: bool) -> bytes:
    env = dict(os.environ)
    env.pop("MKTME_DES_PURE", None)
    if pure:
        env["MKTME_DES_PURE"] = "1"
    done = subprocess.run([sys.executable, "-m", "mktme_des", *args], cwd=ROOT, env=env,
                          capture_output=True, check=False)
    assert done.returncode in (0, 1), done.stderr.decode()
    return done.stdout


@pytest.mark.parametrize("args", [
    ["simulate", "server-2s", "-w", "pattern=random", "-w", "working_set_kib=4096", "-w",
     "read_fraction=0.6", "-w", "accesses=4000", "-w", "cores=3", "--json"],
    ["simulate", "client-1s", "-w", "pattern=zipf", "-w", "accesses=4000", "-w", "cores=2",
     "-w", "prefetch_distance=4", "-m", "core.fill_buffers=6", "--json"],
    ["simulate", "server-2s", "-w", "kind=lackey", "-w", "accesses=20000", "--json"],
    # Many cores interleaving: the wake-ups and driver of engine/wakeup.py at work.
    ["simulate", "server-2s", "-w", "pattern=sequential", "-w", "working_set_kib=16", "-w",
     "accesses=3000", "-w", "cores=4", "--json"],
    ["simulate", "server-2s", "-w", "pattern=random", "-w", "working_set_kib=65536", "-w",
     "accesses=800", "-w", "cores=16", "-m", "core.fill_buffers=4", "--json"],
    # Parked streams (engine/wakeup.py) over lines the cores share, stores included.
    ["simulate", "server-2s", "-w", "pattern=random", "-w", "working_set_kib=64", "-w",
     "sharing=shared", "-w", "read_fraction=0.5", "-w", "accesses=1500", "-w", "cores=4",
     "--json"],
    ["simulate", "server-2s", "-w", "kind=lackey", "-w", "accesses=3000", "-w", "cores=4",
     "-w", "warmup=500", "--json"],
    ["scenario", "run", "s2-stale-writeback-no-flush", "--json"],
    ["scenario", "run", "s7-hotplug-offline-migrates", "--json"],
    ["scenario", "run", "s14-key-per-customer", "--json"],
    # A package without memory: the compiled inline home of a miss is its address-map slot.
    ["simulate", "server-2s-memoryless", "-w", "pattern=random", "-w", "accesses=3000", "-w",
     "cores=2", "-w", "placement=remote", "-m", "memory.interleave_bytes=4096", "--json"],
])
def test_compiled_and_python_source_give_the_same_bytes(args):
    compiled, source = cli(args, pure=False), cli(args, pure=True)
    assert compiled and compiled == source
