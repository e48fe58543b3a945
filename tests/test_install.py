"""The package installed the ordinary way (a wheel, not editable) works from any folder: the
shipped models, policies, experiments, scenarios and trace come with it as package data."""

from __future__ import annotations

import json
import os
import shutil
import site
import subprocess
import sys
import sysconfig
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SOURCES = ["pyproject.toml", "setup.py", "README.md", "MANIFEST.in", "mktme_des", "models",
           "experiments"]


def _run(argv: list[str], cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess:
    done = subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, f"{argv}: {done.stdout}\n{done.stderr}"
    return done


def test_wheel_installs_into_a_fresh_venv_and_runs_from_an_empty_folder(tmp_path):
    # A copy of the sources (the working tree's build artefacts left out), built as a wheel
    # without compiling (MKTME_DES_BUILD_PURE) and without fetching build dependencies.
    src = tmp_path / "src"
    src.mkdir()
    skip = shutil.ignore_patterns("*.c", "*.so", "__pycache__", "*.html", "build")
    for name in SOURCES:
        if (ROOT / name).is_dir():
            shutil.copytree(ROOT / name, src / name, ignore=skip)
        else:
            shutil.copy2(ROOT / name, src / name)
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "MKTME_DES_PATH")}
    env["MKTME_DES_BUILD_PURE"] = "1"
    dist = tmp_path / "dist"
    _run([sys.executable, "-m", "build", "--wheel", "--no-isolation", "--outdir", str(dist),
          str(src)], tmp_path, env)
    (wheel,) = dist.glob("mktme_des-*.whl")

    # A fresh venv; its dependencies are this test environment's (no download), reached
    # through a .pth file, which puts them after the venv's own site-packages.
    venv = tmp_path / "venv"
    _run([sys.executable, "-m", "venv", "--without-pip", str(venv)], tmp_path, env)
    py = venv / "bin" / "python"
    purelib = _run([str(py), "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
                   tmp_path, env).stdout.strip()
    Path(purelib, "test-deps.pth").write_text(
        "\n".join([sysconfig.get_path("purelib"), *site.getsitepackages()]) + "\n")
    _run([sys.executable, "-m", "pip", "--python", str(py), "install", "--quiet", "--no-deps",
          "--no-index", str(wheel)], tmp_path, env)

    empty = tmp_path / "empty"
    empty.mkdir()
    exe = str(venv / "bin" / "mktme-des")
    where = _run([str(py), "-c", "import mktme_des; print(mktme_des.__file__)"], empty, env)
    assert where.stdout.strip().startswith(purelib)
    listing = json.loads(_run([exe, "list", "--json"], empty, env).stdout)
    for kind, at_least in (("models", 3), ("policies", 6), ("experiments", 10),
                           ("scenarios", 40)):
        assert len(listing[kind]) >= at_least, kind
        assert {e["origin"] for e in listing[kind]} == {"shipped"}
        assert all(e["path"].startswith(purelib) for e in listing[kind])
    verdict = _run([exe, "scenario", "run", "s1-alias-read", "--json"], empty, env)
    assert json.loads(verdict.stdout)["ok"] is True
    stats = json.loads(_run([exe, "simulate", "client-1s", "-w", "kind=lackey", "-w",
                             "accesses=2000", "--json"], empty, env).stdout)
    assert stats["accesses"] == 2000  # the shipped trace, found from an empty folder
    assert list(empty.iterdir()) == []  # nothing written where nothing was asked for
