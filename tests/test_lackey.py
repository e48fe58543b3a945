"""Tests for the valgrind lackey trace reader (mktme_des.workloads.lackey)."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import numpy as np
import pytest

from mktme_des.errors import TraceError, UserError
from mktme_des.workloads import lackey
from mktme_des.workloads.lackey import (
    DEFAULT_BASE_PA,
    LINE_BYTES,
    OutOfFramesError,
    Trace,
    read_lackey,
    summary,
)

SHIPPED = Path(__file__).resolve().parents[1] / "experiments" / "traces" / "kernel_mix.lackey.gz"
BASE = DEFAULT_BASE_PA


def write(tmp_path: Path, text: str, name: str = "t.lackey", *, gz: bool = False) -> Path:
    path = tmp_path / name
    data = text.encode()
    path.write_bytes(gzip.compress(data) if gz else data)
    return path


def accesses(trace: Trace) -> list[tuple[str, int, int]]:
    return [
        ("W" if w else "R", int(a), int(s))
        for w, a, s in zip(trace.is_write, trace.vaddr, trace.size, strict=True)
    ]


# --------------------------------------------------------------------------------------------
# Parsing


def test_loads_stores_and_dtypes(tmp_path: Path) -> None:
    p = write(tmp_path, " L 0421ae0,4\n S 1ffefffc90,8\n L 1ffefffc98,8\n")
    t = read_lackey(p)
    assert accesses(t) == [("R", 0x421AE0, 4), ("W", 0x1FFEFFFC90, 8), ("R", 0x1FFEFFFC98, 8)]
    assert len(t) == 3 == t.accesses
    assert t.is_write.dtype == np.bool_
    assert t.vaddr.dtype == np.uint64
    assert t.pa.dtype == np.uint64
    assert t.size.dtype == np.uint16
    assert t.source == str(p)


def test_modify_is_read_then_write(tmp_path: Path) -> None:
    t = read_lackey(write(tmp_path, " L 2000,8\n M 0421ae0,4\n S 3000,2\n"))
    assert accesses(t) == [
        ("R", 0x2000, 8),
        ("R", 0x421AE0, 4),
        ("W", 0x421AE0, 4),
        ("W", 0x3000, 2),
    ]


def test_instructions_dropped_unless_asked(tmp_path: Path) -> None:
    p = write(tmp_path, "I  04010173,3\n L 2000,8\nI  04010176,5\n S 2008,8\n")
    assert accesses(read_lackey(p)) == [("R", 0x2000, 8), ("W", 0x2008, 8)]
    assert accesses(read_lackey(p, include_instructions=True)) == [
        ("R", 0x4010173, 3),
        ("R", 0x2000, 8),
        ("R", 0x4010176, 5),
        ("W", 0x2008, 8),
    ]


def test_valgrind_messages_and_blank_lines_skipped(tmp_path: Path) -> None:
    text = (
        "==1234== Lackey, an example Valgrind tool\n"
        "==1234== \n"
        "\n"
        " L 2000,8\n"
        "   \n"
        "==1234== Counted 1 call to main()\n"
        " S 2000,8"  # no final newline
    )
    assert accesses(read_lackey(write(tmp_path, text))) == [("R", 0x2000, 8), ("W", 0x2000, 8)]


def test_lenient_spacing_case_and_leading_zeros(tmp_path: Path) -> None:
    text = "L 1000,4\r\n  S\t00000000000000000000ABCD , 2 \r\n M 1fFe0,8\r\n"
    t = read_lackey(write(tmp_path, text))
    assert accesses(t) == [("R", 0x1000, 4), ("W", 0xABCD, 2), ("R", 0x1FFE0, 8), ("W", 0x1FFE0, 8)]


def test_access_crossing_a_line_is_split(tmp_path: Path) -> None:
    text = " L 103c,8\n S 1038,8\n M 107e,4\n L 2000,130\n"
    t = read_lackey(write(tmp_path, text))
    assert accesses(t) == [
        ("R", 0x103C, 4),
        ("R", 0x1040, 4),
        ("W", 0x1038, 8),  # ends exactly at the line end: not split
        ("R", 0x107E, 2),
        ("R", 0x1080, 2),
        ("W", 0x107E, 2),
        ("W", 0x1080, 2),
        ("R", 0x2000, 64),
        ("R", 0x2040, 64),
        ("R", 0x2080, 2),
    ]
    assert (((t.vaddr % LINE_BYTES) + t.size) <= LINE_BYTES).all()
    assert (((t.pa % LINE_BYTES) + t.size) <= LINE_BYTES).all()


def test_split_at_page_boundary_maps_each_piece(tmp_path: Path) -> None:
    t = read_lackey(write(tmp_path, " L 1ffc,8\n"))
    assert accesses(t) == [("R", 0x1FFC, 4), ("R", 0x2000, 4)]
    assert t.pa.tolist() == [BASE + 0xFFC, BASE + 0x1000]
    assert t.pages == 2


def test_gzip_detected_by_magic_not_suffix(tmp_path: Path) -> None:
    text = " L 2000,8\n S 3000,4\n"
    expected = [("R", 0x2000, 8), ("W", 0x3000, 4)]
    assert accesses(read_lackey(write(tmp_path, text, "a.txt", gz=True))) == expected
    assert accesses(read_lackey(write(tmp_path, text, "b.gz"))) == expected
    assert accesses(read_lackey(write(tmp_path, text, "c.lackey.gz", gz=True))) == expected


def test_chunking_does_not_change_the_result(tmp_path: Path, monkeypatch) -> None:
    rng = np.random.default_rng(1)
    lines = []
    for i in range(400):
        kind = "ILSM"[i % 4]
        addr = int(rng.integers(0, 1 << 40))
        lines.append(f"{'I ' if kind == 'I' else ' ' + kind} {addr:08x},{1 + i % 70}")
        if i % 50 == 0:
            lines.append("==99== message")
    p = write(tmp_path, "\n".join(lines) + "\n")
    whole = read_lackey(p, include_instructions=True)
    monkeypatch.setattr(lackey, "_CHUNK_BYTES", 37)
    chunked = read_lackey(p, include_instructions=True)
    for name in ("is_write", "vaddr", "pa", "size"):
        assert np.array_equal(getattr(whole, name), getattr(chunked, name))
    assert whole.pages == chunked.pages


# --------------------------------------------------------------------------------------------
# Errors


@pytest.mark.parametrize(
    ("bad", "reason"),
    [
        (" X 1000,4", "unknown access kind"),
        (" l 1000,4", "unknown access kind"),
        ("hello world", "unknown access kind"),
        (" L", "no address"),
        (" L zz12,4", "bad hex address"),
        (" L 0x1000,4", "bad hex address"),
        (" L ,4", "bad hex address"),
        (" L 1000", "missing size"),
        (" L 1000,", "missing size"),
        (" L 1000,abc", "bad size"),
        (" L 1000,4,5", "bad size"),
        (" L 1000,-4", "bad size"),
        (" L 1000,0", "out of range"),
        (" L 1000,4097", "out of range"),
        (" L 10000000000000000,4", "64 bits"),
        (" L ffffffffffffffff,2", "address space"),
    ],
)
def test_malformed_line_names_file_and_line(tmp_path: Path, bad: str, reason: str) -> None:
    p = write(tmp_path, f"==1== hi\n L 2000,8\n{bad}\n S 2000,8\n L zz,1\n")
    with pytest.raises(TraceError) as info:
        read_lackey(p)
    err = info.value
    assert err.line == 3
    assert err.file == str(p)
    assert reason in err.reason
    assert f"{p}:3:" in str(err)


def test_size_limits_are_inclusive(tmp_path: Path) -> None:
    t = read_lackey(write(tmp_path, " L 1000,1\n L 2000,4096\n"))
    assert len(t) == 1 + 4096 // LINE_BYTES
    assert int(t.size.sum()) == 4097


def test_error_line_number_across_chunks(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(lackey, "_CHUNK_BYTES", 16)
    p = write(tmp_path, " L 2000,8\n" * 50 + " L 2000,q\n")
    with pytest.raises(TraceError) as info:
        read_lackey(p)
    assert info.value.line == 51


@pytest.mark.parametrize(
    "text",
    ["", "\n\n", "==1== Lackey\n==1== Exit code: 0\n", "I  04010173,3\nI  04010176,2\n"],
)
def test_trace_without_accesses_is_an_error(tmp_path: Path, text: str) -> None:
    with pytest.raises(TraceError) as info:
        read_lackey(write(tmp_path, text))
    assert info.value.line == 0
    assert "no memory accesses" in info.value.reason


def test_instructions_only_is_fine_with_include_instructions(tmp_path: Path) -> None:
    t = read_lackey(write(tmp_path, "I  04010173,3\n"), include_instructions=True)
    assert accesses(t) == [("R", 0x4010173, 3)]


def test_missing_file(tmp_path: Path) -> None:
    p = tmp_path / "nope.lackey"
    with pytest.raises(TraceError) as info:
        read_lackey(p)
    assert info.value.line == 0
    assert info.value.file == str(p)
    assert isinstance(info.value, UserError)


def test_corrupt_gzip(tmp_path: Path) -> None:
    p = tmp_path / "bad.gz"
    p.write_bytes(gzip.compress(b" L 2000,8\n" * 100)[:30])
    with pytest.raises(TraceError) as info:
        read_lackey(p)
    assert info.value.line == 0


@pytest.mark.parametrize(
    "kwargs",
    [
        {"page_bytes": 3000},
        {"page_bytes": 32},
        {"base_pa": 0x1234},
        {"base_pa": -4096},
        {"frames": 0},
        {"limit": 0},
        {"seed": -1},
        {"frames": 1 << 60},
    ],
)
def test_bad_arguments(tmp_path: Path, kwargs: dict) -> None:
    with pytest.raises(UserError):
        read_lackey(write(tmp_path, " L 2000,8\n"), **kwargs)


# --------------------------------------------------------------------------------------------
# First-touch page allocation


FIRST_TOUCH = " L 5000,8\n L 3004,4\n S 5010,8\n L 3ff8,8\n S 9123,1\n"


def test_first_touch_consecutive_frames(tmp_path: Path) -> None:
    t = read_lackey(write(tmp_path, FIRST_TOUCH))
    assert t.pa.tolist() == [
        BASE + 0x000,  # page 0x5 touched first: first frame
        BASE + 0x1004,  # page 0x3: next frame, offset kept
        BASE + 0x010,  # page 0x5 again: same frame
        BASE + 0x1FF8,
        BASE + 0x2123,  # page 0x9: third frame
    ]
    assert t.pages == 3


def test_first_touch_base_and_page_size(tmp_path: Path) -> None:
    t = read_lackey(write(tmp_path, FIRST_TOUCH), base_pa=0x4000_0000, page_bytes=8192)
    # 8 KiB pages: 0x5000 and 0x5010 are in virtual page 2, 0x3004 and 0x3ff8 in page 1, 0x9123
    # in page 4; they get frames 0, 1, 2 in that order.
    assert t.pa.tolist() == [
        0x4000_0000 + 0x1000,
        0x4000_2000 + 0x1004,
        0x4000_0000 + 0x1010,
        0x4000_2000 + 0x1FF8,
        0x4000_4000 + 0x1123,
    ]
    assert t.pages == 3


def test_frames_cap_and_out_of_frames(tmp_path: Path) -> None:
    p = write(tmp_path, FIRST_TOUCH)
    assert read_lackey(p, frames=3).pages == 3
    with pytest.raises(OutOfFramesError, match="3 distinct pages") as info:
        read_lackey(p, frames=2)
    assert isinstance(info.value, UserError)
    with pytest.raises(OutOfFramesError):
        read_lackey(p, scatter=True, frames=2)


def test_scatter_is_deterministic_distinct_and_in_range(tmp_path: Path) -> None:
    text = "".join(f" L {page * 4096 + 8 * (page % 512):x},8\n" for page in range(300))
    p = write(tmp_path, text + " S 5008,8\n")
    frames = 1000
    a = read_lackey(p, scatter=True, seed=7, frames=frames)
    b = read_lackey(p, scatter=True, seed=7, frames=frames)
    c = read_lackey(p, scatter=True, seed=8, frames=frames)
    assert np.array_equal(a.pa, b.pa)
    assert not np.array_equal(a.pa, c.pa)
    assert np.array_equal(a.pa % 4096, a.vaddr % 4096)
    frame = (a.pa - np.uint64(BASE)) // np.uint64(4096)
    assert (frame < frames).all()
    assert len(set(frame[:300].tolist())) == 300  # distinct pages get distinct frames
    assert frame[300] == frame[5]  # a repeat touch reuses the mapping
    assert not np.array_equal(frame[:300], np.arange(300))  # actually scattered
    # every frame of the range is reachable: a trace touching all of them gets each exactly once
    for n in (frames, 37, 2, 1):
        full = "".join(f" L {page * 4096:x},8\n" for page in range(n))
        t = read_lackey(write(tmp_path, full, f"full{n}.lackey"), scatter=True, seed=7, frames=n)
        assert sorted(((t.pa - np.uint64(BASE)) >> np.uint64(12)).tolist()) == list(range(n))


def test_scatter_default_range(tmp_path: Path) -> None:
    t = read_lackey(write(tmp_path, FIRST_TOUCH), scatter=True, seed=1)
    assert ((t.pa >= BASE) & (t.pa < BASE + lackey.DEFAULT_SCATTER_BYTES)).all()


def test_limit_keeps_a_prefix_with_the_same_mapping(tmp_path: Path) -> None:
    p = write(tmp_path, FIRST_TOUCH + " L zz,8\n")  # malformed line after the limit is not read
    for kwargs in ({}, {"scatter": True, "seed": 3, "frames": 64}):
        t = read_lackey(p, limit=3, **kwargs)
        assert len(t) == 3
        assert t.pages == 2
        whole = read_lackey(write(tmp_path, FIRST_TOUCH, "ok.lackey"), **kwargs)
        assert np.array_equal(t.pa, whole.pa[:3])
    with pytest.raises(TraceError):
        read_lackey(p, limit=6)


def test_arrays_are_read_only(tmp_path: Path) -> None:
    t = read_lackey(write(tmp_path, FIRST_TOUCH))
    with pytest.raises(ValueError):
        t.pa[0] = 0


def test_summary_small(tmp_path: Path) -> None:
    t = read_lackey(write(tmp_path, FIRST_TOUCH + " M 5038,16\n"))
    assert summary(t) == t.summary()
    assert t.summary() == {
        "accesses": 9,
        "reads": 5,
        "writes": 4,
        "lines": 5,  # 0x5000, 0x3000, 0x3fc0, 0x9100 (+0x5000 again), 0x5040
        "pages": 3,
        "footprint_bytes": 5 * 64,
        "bytes": 8 + 4 + 8 + 8 + 1 + 2 * 16,
    }


# --------------------------------------------------------------------------------------------
# The shipped trace


@pytest.fixture(scope="module")
def shipped() -> Trace:
    return read_lackey(SHIPPED)


def _reference(lines: list[str]) -> tuple[list[tuple[bool, int, int]], dict[str, int]]:
    """Plain-Python reading of lackey lines: accesses and summary, independent of the reader."""
    out: list[tuple[bool, int, int]] = []
    for line in lines:
        if not line.strip() or line.startswith("=="):
            continue
        kind, rest = line.split()
        addr_s, size_s = rest.split(",")
        addr, size = int(addr_s, 16), int(size_s)
        for write_ in {"I": [], "L": [False], "S": [True], "M": [False, True]}[kind]:
            a = addr
            while a < addr + size:
                nxt = min(addr + size, (a // 64 + 1) * 64)
                out.append((write_, a, nxt - a))
                a = nxt
    writes = sum(w for w, _, _ in out)
    lines_touched = {a // 64 for _, a, _ in out}
    return out, {
        "accesses": len(out),
        "reads": len(out) - writes,
        "writes": writes,
        "lines": len(lines_touched),
        "pages": len({a // 4096 for _, a, _ in out}),
        "footprint_bytes": 64 * len(lines_touched),
        "bytes": sum(s for _, _, s in out),
    }


def test_shipped_trace_loads(shipped: Trace) -> None:
    s = shipped.summary()
    assert s["accesses"] == len(shipped) > 200_000
    assert s["reads"] > 50_000
    assert s["writes"] > 50_000
    assert s["reads"] + s["writes"] == s["accesses"]
    assert shipped.pages > 200  # ~0.9 MiB working set
    assert s["pages"] == len(np.unique(shipped.vaddr >> np.uint64(12)))
    assert s["lines"] == len(np.unique(shipped.pa >> np.uint64(6)))
    assert s["bytes"] == int(shipped.size.sum())
    assert (((shipped.pa % LINE_BYTES) + shipped.size) <= LINE_BYTES).all()
    # first touch: the frames used are exactly the first `pages` frames from the base
    frames = np.unique((shipped.pa - np.uint64(BASE)) >> np.uint64(12))
    assert np.array_equal(frames, np.arange(shipped.pages))


def test_shipped_trace_prefix_matches_plain_python(shipped: Trace, tmp_path: Path) -> None:
    with gzip.open(SHIPPED, "rt") as f:
        head = [next(f) for _ in range(5000)]
    expected, expected_summary = _reference(head)
    assert 500 < len(expected) < 5000
    assert any(w for w, _, _ in expected) and not all(w for w, _, _ in expected)

    prefix = read_lackey(write(tmp_path, "".join(head), "head.lackey"))
    assert prefix.summary() == expected_summary
    got = list(
        zip(
            prefix.is_write.tolist(),
            prefix.vaddr.tolist(),
            prefix.size.tolist(),
            strict=True,
        )
    )
    assert got == expected
    # the same accesses, and the same mapping, at the start of the whole trace
    n = len(expected)
    assert shipped.vaddr[:n].tolist() == prefix.vaddr.tolist()
    assert shipped.is_write[:n].tolist() == prefix.is_write.tolist()
    assert shipped.pa[:n].tolist() == prefix.pa.tolist()


def test_shipped_trace_is_deterministic(shipped: Trace) -> None:
    again = read_lackey(SHIPPED, limit=100_000)
    for name in ("is_write", "vaddr", "pa", "size"):
        assert np.array_equal(getattr(again, name), getattr(shipped, name)[:100_000])


@pytest.mark.parametrize("limit, truncated", [(1000, True), (458_535, True), (458_536, False),
                                              (10**9, False), (None, False)])
def test_a_trace_says_whether_reading_stopped_before_its_end(limit, truncated):
    """The shipped trace has 458,536 data accesses: a limit below that cuts it, one at or
    above it does not (reading stops at the limit, so the reader looks one block further)."""
    t = read_lackey(SHIPPED, limit=limit)
    assert t.truncated is truncated
    assert len(t) == min(limit or 10**9, 458_536)


def test_simulate_says_how_much_of_a_trace_it_replayed(capsys):
    from mktme_des.cli import main

    assert main(["simulate", "server-2s", "-w", "kind=lackey", "-w", "accesses=5000",
                 "--json"]) == 0
    run = json.loads(capsys.readouterr().out)["run"]
    assert run["trace"]["accesses"] == 5000 and run["trace"]["truncated"] is True
    assert main(["simulate", "server-2s", "-w", "kind=lackey", "-w", "accesses=5000"]) == 0
    assert "raise -w accesses (now 5000)" in capsys.readouterr().out


def test_a_trace_workload_replays_the_whole_trace_unless_told(tmp_path: Path, capsys) -> None:
    """Without ``accesses`` a lackey workload replays every access of its trace, and says so;
    a synthetic stream still takes 100,000, and resolves exactly as when that was written
    out (an experiment's seeds come from the resolved configuration)."""
    from mktme_des.cli import main
    from mktme_des.config.schema import Context, build
    from mktme_des.workloads.synthetic import WorkloadSpec

    lines = [f" {'S' if i % 3 == 0 else 'L'} {0x10000 + 72 * i:08x},8" for i in range(40_000)]
    path = tmp_path / "t.lackey"
    path.write_text("==1== header\n" + "\n".join(lines) + "\n")
    n = len(read_lackey(path))
    assert n == 40_000
    assert main(["simulate", "client-1s", "-w", "kind=lackey", "-w", f"trace={path}",
                 "--json", "--no-progress"]) == 0
    run = json.loads(capsys.readouterr().out)
    assert run["accesses"] == n and run["run"]["trace"] == {
        "accesses": n, "trace_lines": 40_001, "truncated": False}
    assert main(["simulate", "client-1s", "-w", "kind=lackey", "-w", f"trace={path}",
                 "--no-progress"]) == 0
    assert f"trace: all {n} accesses" in capsys.readouterr().out

    ctx = Context("workload")
    default = build(WorkloadSpec, {}, ctx)
    assert default == build(WorkloadSpec, {"accesses": 100_000}, ctx)
    assert build(WorkloadSpec, {"kind": "lackey"}, ctx).accesses is None
