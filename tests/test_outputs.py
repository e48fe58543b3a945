"""Output files: checked before the work, written whole or not at all, through links, never
creating folders outside the current one; Ctrl-C and SIGTERM end a command in one line."""

from __future__ import annotations

import errno
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from mktme_des import outputs
from mktme_des.cli import main

ROOT = Path(__file__).resolve().parents[1]
S1 = "s1-alias-read"


def refused(capsys, *argv: str, says: str) -> str:
    code = main(list(argv))
    err = capsys.readouterr().err
    assert code == 2, err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    assert says in err, err
    return err


@pytest.mark.parametrize("flag, value, says", [
    ("--plot", "/", "is a folder"),
    ("--plot", "out.txt", "must end in .png, .svg, .pdf"),
    ("--chrome-trace", ".", "is a folder"),
    ("--chrome-trace", "/dev/null", "not a regular file"),
    ("--plot", "/nonexistent-mktme-des/dir/x.png", "does not exist"),
])
def test_bad_output_paths_are_refused_before_the_run(capsys, tmp_path, monkeypatch, flag, value,
                                                     says):
    monkeypatch.chdir(tmp_path)
    refused(capsys, "scenario", "run", S1, flag, value, says=says)
    assert not Path("/nonexistent-mktme-des").exists()
    assert list(tmp_path.iterdir()) == []


def test_explore_save_onto_a_file(capsys, tmp_path):
    target = tmp_path / "file.txt"
    target.write_text("mine")
    refused(capsys, "scenario", "explore", S1, "--runs", "2", "--save", str(target),
            says="exists and is not a folder")
    assert target.read_text() == "mine"


def test_missing_folders_are_created_under_the_current_folder(capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(["scenario", "run", S1, "--chrome-trace", "a/b/t.json"]) == 0
    capsys.readouterr()
    assert (tmp_path / "a" / "b" / "t.json").is_file()


def test_a_link_is_written_through(capsys, tmp_path):
    real = tmp_path / "real.json"
    real.write_text("old")
    link = tmp_path / "link.json"
    link.symlink_to(real)
    assert main(["scenario", "run", S1, "--chrome-trace", str(link)]) == 0
    capsys.readouterr()
    assert link.is_symlink() and os.readlink(link) == str(real)
    assert real.read_text().startswith('{\n "traceEvents"')


@pytest.mark.parametrize("fail, reason", [
    ("fsync", errno.ENOSPC),     # a full disk
    ("replace", errno.EACCES),   # a read-only folder
])
def test_a_failed_write_leaves_no_file_behind(capsys, tmp_path, monkeypatch, fail, reason):
    def broken(*args, **kwargs):
        raise OSError(reason, os.strerror(reason))

    monkeypatch.setattr(outputs.os, fail, broken)
    out = tmp_path / "t.json"
    refused(capsys, "scenario", "run", S1, "--chrome-trace", str(out),
            says=f"cannot write: {os.strerror(reason)}")
    assert list(tmp_path.iterdir()) == []


def test_results_folder_that_cannot_be_created(capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    refused(capsys, "run", "demo-sweep", "--workers", "0", "--out",
            "/nonexistent-mktme-des/out", says="does not exist")


@pytest.mark.parametrize("argv, target", [
    (["simulate", "client-1s", "-w", "accesses=10"], "mktme_des.simulate.simulate"),
    (["scenario", "run", S1], "mktme_des.scenarios.runner.run_scenario"),
    (["scenario", "explore", S1, "--runs", "2"], "mktme_des.scenarios.explore.explore_data"),
])
def test_ctrl_c_is_one_line_and_130(capsys, monkeypatch, argv, target):
    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(target, interrupted)
    code = main(argv)
    err = capsys.readouterr().err
    assert code == 130 and err == "mktme-des: interrupted\n"


def _start(*argv: str) -> subprocess.Popen:
    env = {k: v for k, v in os.environ.items() if k != "MKTME_DES_PATH"}
    env["PYTHONPATH"] = str(ROOT)
    return subprocess.Popen([sys.executable, "-m", "mktme_des", *argv], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)


def _children(proc: subprocess.Popen, n: int) -> list[psutil.Process]:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        kids = psutil.Process(proc.pid).children()
        if len(kids) >= n:
            time.sleep(1.0)  # let them finish starting (their initializer runs first)
            return psutil.Process(proc.pid).children()
        time.sleep(0.1)
    raise AssertionError("the workers never started")


def test_sigterm_is_handled_like_ctrl_c():
    proc = _start("scenario", "explore", S1, "--runs", "100000")
    time.sleep(3)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130
    assert err == "mktme-des: interrupted\n"


def test_workers_die_with_their_parent():
    proc = _start("scenario", "explore", S1, "--runs", "100000", "--workers", "2")
    workers = [p for p in _children(proc, 2) if "resource_tracker" not in " ".join(p.cmdline())]
    assert workers
    proc.kill()  # SIGKILL: the parent runs no cleanup at all
    proc.communicate(timeout=30)
    _, alive = psutil.wait_procs(workers, timeout=20)
    assert alive == []


def test_a_second_run_into_the_same_folder_says_who_holds_it(capsys, tmp_path):
    from mktme_des.experiments.store import Store

    out = tmp_path / "out"
    with Store(out).lock():
        refused(capsys, "run", "demo-sweep", "--workers", "0", "--out", str(out),
                says=f"process {os.getpid()} is running an experiment into this folder")
        assert not (out / "points").exists()  # the second run touched nothing
    assert main(["run", "demo-sweep", "--workers", "0", "--out", str(out)]) == 0
    capsys.readouterr()
    assert (out / "table.csv").is_file()
