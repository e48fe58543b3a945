"""Recorded memory traces from ``valgrind --tool=lackey --trace-mem=yes``.

Lackey writes one line per guest memory event::

    I  04010173,3        instruction fetch of 3 bytes at 0x4010173
     L 1ffefffc98,8      load (data read) of 8 bytes
     S 1ffefffc90,8      store (data write) of 8 bytes
     M 0421ae0,4         modify: a load and a store of the same 4 bytes

next to valgrind's own messages, which start with ``==PID==``. :func:`read_lackey` turns such a
file (plain text or gzip, recognised by its magic bytes) into a :class:`Trace`: columnar numpy
arrays with one entry per access, where

* loads are reads, stores are writes, and ``M`` is a read followed by a write of the same bytes;
* instruction fetches are dropped unless ``include_instructions=True``, then they are reads;
* an access that straddles a 64-byte line boundary is split into one access per line touched, so
  every access lies inside one line (and so inside one page);
* virtual addresses are mapped to physical addresses by a first-touch page allocator: pages are
  given frames in the order they are first touched, from a deterministic frame sequence
  (consecutive frames from ``base_pa``, or with ``scatter=True`` a seeded pseudo-random
  permutation of ``frames`` frames from ``base_pa``, modelling a fragmented free list). The
  in-page offset is kept.

Parsing is vectorised: the text is read in chunks of a few MiB, lines in lackey's exact layout are
decoded with numpy, and only lines that differ from it (extra spaces, leading zeros, errors) go
through a per-line Python parser, which accepts the same meaning with looser spacing and names the
line of the first malformed one in a :class:`~mktme_des.errors.TraceError`.

The frame sequence does not depend on how many pages the trace touches, so a prefix of a trace
(``limit=``) is mapped exactly as the same accesses are in the whole trace.
"""

from __future__ import annotations

import gzip
import os
import zlib
from collections.abc import Iterator
from contextlib import closing
from dataclasses import dataclass
from typing import Any, BinaryIO

import numpy as np

from mktme_des.errors import TraceError, UserError

__all__ = [
    "LINE_BYTES",
    "MAX_ACCESS_BYTES",
    "DEFAULT_BASE_PA",
    "DEFAULT_SCATTER_BYTES",
    "OutOfFramesError",
    "Trace",
    "read_lackey",
    "summary",
]

LINE_BYTES = 64
"""Cache-line size: accesses crossing a multiple of this are split."""

MAX_ACCESS_BYTES = 4096
"""Largest size accepted on one trace line (lackey itself never reports more than a few hundred)."""

DEFAULT_BASE_PA = 0x1_0000_0000
"""First physical address handed out by the first-touch allocator (4 GiB)."""

DEFAULT_SCATTER_BYTES = 1 << 30
"""Size of the physical range scattered over when ``scatter=True`` and ``frames`` is not given."""

_LINE_SHIFT = LINE_BYTES.bit_length() - 1
_CHUNK_BYTES = 1 << 20
_U64_MAX = (1 << 64) - 1

# Access kinds, as codes in the per-line arrays.
_SKIP, _INSTR, _LOAD, _STORE, _MODIFY = 0, 1, 2, 3, 4
_KIND_CODES = {"I": _INSTR, "L": _LOAD, "S": _STORE, "M": _MODIFY}

# Byte -> digit value, 255 for anything that is not a digit.
_HEX_LUT = np.full(256, 255, dtype=np.uint8)
for _i, _c in enumerate(b"0123456789abcdef"):
    _HEX_LUT[_c] = _i
for _i, _c in enumerate(b"ABCDEF"):
    _HEX_LUT[_c] = 10 + _i
_DEC_LUT = np.full(256, 255, dtype=np.uint8)
for _i, _c in enumerate(b"0123456789"):
    _DEC_LUT[_c] = _i
_HEX_DIGITS = frozenset("0123456789abcdefABCDEF")


class OutOfFramesError(UserError):
    """The first-touch allocator ran out of physical frames for the trace's pages."""


@dataclass(frozen=True, eq=False)
class Trace:
    """A memory trace as parallel numpy arrays, one entry per access, in program order.

    Every access lies inside one :data:`LINE_BYTES` line. ``pa`` is the physical address after
    first-touch page mapping (same in-page offset as ``vaddr``). ``pages`` counts distinct pages of
    ``page_bytes`` touched; ``source`` is the file name as it was given.
    """

    is_write: np.ndarray
    vaddr: np.ndarray
    pa: np.ndarray
    size: np.ndarray
    pages: int
    source: str
    page_bytes: int = 4096
    truncated: bool = False  # reading stopped at ``limit`` with more accesses in the file
    lines_read: int = 0  # trace lines read (valgrind's own included)

    def __post_init__(self) -> None:
        n = len(self.is_write)
        if not (len(self.vaddr) == len(self.pa) == len(self.size) == n):
            raise ValueError("Trace arrays must all have the same length")

    def __len__(self) -> int:
        return int(self.is_write.shape[0])

    @property
    def accesses(self) -> int:
        """Number of accesses (same as ``len(trace)``)."""
        return len(self)

    @property
    def line_pa(self) -> np.ndarray:
        """Physical address of the line each access falls in (``pa`` rounded down to 64 B)."""
        return self.pa & np.uint64(~(LINE_BYTES - 1) & _U64_MAX)

    def summary(self) -> dict[str, int]:
        """Counts describing the trace.

        ``accesses``, ``reads``, ``writes``, ``lines`` (distinct 64-byte lines), ``pages``
        (distinct pages), ``footprint_bytes`` (distinct lines x 64: the memory actually touched),
        ``bytes`` (sum of access sizes).
        """
        writes = int(np.count_nonzero(self.is_write))
        lines = int(np.unique(self.pa >> np.uint64(_LINE_SHIFT)).size)
        return {
            "accesses": len(self),
            "reads": len(self) - writes,
            "writes": writes,
            "lines": lines,
            "pages": int(self.pages),
            "footprint_bytes": lines * LINE_BYTES,
            "bytes": int(self.size.sum(dtype=np.uint64)),
        }


def summary(trace: Trace) -> dict[str, int]:
    """Same as :meth:`Trace.summary`."""
    return trace.summary()


def read_lackey(
    path: str | os.PathLike[str],
    *,
    include_instructions: bool = False,
    page_bytes: int = 4096,
    base_pa: int = DEFAULT_BASE_PA,
    scatter: bool = False,
    seed: int = 0,
    frames: int | None = None,
    limit: int | None = None,
) -> Trace:
    """Read a lackey ``--trace-mem=yes`` log (plain or gzip) into a :class:`Trace`.

    ``page_bytes`` (a power of two, at least 64) is the page size of the first-touch allocator.
    Frames are taken consecutively from ``base_pa`` (page aligned), or with ``scatter=True`` in a
    pseudo-random order fixed by ``seed`` from the ``frames`` frames starting at ``base_pa``
    (default: :data:`DEFAULT_SCATTER_BYTES` worth). ``frames`` also caps the consecutive
    allocator; running out raises :class:`OutOfFramesError`. ``limit`` keeps only the first
    ``limit`` accesses (counted after ``M`` expansion and line splitting) and stops reading there.

    Raises :class:`~mktme_des.errors.TraceError` naming the file and line of the first malformed
    line, for a trace without accesses (line 0) and for a missing or unreadable file (line 0).
    """
    source = str(path)
    page_bytes, base_pa, seed, frames, limit = _check_args(page_bytes, base_pa, seed, frames, limit)
    page_shift = page_bytes.bit_length() - 1
    if frames is None and scatter:
        frames = max(1, DEFAULT_SCATTER_BYTES // page_bytes)

    parts: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
    total = 0
    lines_read = 0
    truncated = False
    with closing(_parse_chunks(path, source)) as chunks:
        for codes, addrs, sizes, bad, nlines in chunks:
            lines_read += nlines
            part = _expand(codes, addrs, sizes, include_instructions)
            parts.append(part)
            total += len(part[0])
            if limit is not None and total >= limit:
                # More accesses in this block, or another block behind it?
                after = next(chunks, None)
                truncated = total > limit or (after is not None and len(
                    _expand(after[0], after[1], after[2], include_instructions)[0]) > 0)
                break
            if bad is not None:
                raise TraceError(source, bad[0], bad[1])

    if total == 0:
        reason = f"no memory accesses in {lines_read} lines"
        if not include_instructions:
            reason += " (instruction fetches count only with include_instructions=True)"
        raise TraceError(source, 0, reason)

    is_write = np.concatenate([p[0] for p in parts])
    vaddr = np.concatenate([p[1] for p in parts])
    size = np.concatenate([p[2] for p in parts])
    if limit is not None and total > limit:
        is_write, vaddr, size = is_write[:limit], vaddr[:limit], size[:limit]

    pa, pages = _first_touch(vaddr, page_shift, base_pa, scatter, seed, frames)
    for arr in (is_write, vaddr, pa, size):
        arr.setflags(write=False)
    return Trace(
        is_write=is_write,
        vaddr=vaddr,
        pa=pa,
        size=size,
        pages=pages,
        source=source,
        page_bytes=page_bytes,
        truncated=truncated,
        lines_read=lines_read,
    )


# --------------------------------------------------------------------------------------------
# Argument checks


def _as_int(name: str, x: Any, low: int, high: int, what: str) -> int:
    """``x`` as a Python int in ``low..high``, else a UserError saying ``what`` is allowed."""
    if isinstance(x, bool) or not isinstance(x, int | np.integer) or not low <= int(x) <= high:
        raise UserError(f"{name} must be {what}, got {x!r}")
    return int(x)


def _check_args(
    page_bytes: Any, base_pa: Any, seed: Any, frames: Any, limit: Any
) -> tuple[int, int, int, int | None, int | None]:
    """Validate the allocator arguments; return them as Python ints."""
    page_bytes = _as_int(
        "page_bytes", page_bytes, LINE_BYTES, 1 << 63, f"a power of two of at least {LINE_BYTES}"
    )
    if page_bytes & (page_bytes - 1):
        raise UserError(
            f"page_bytes must be a power of two of at least {LINE_BYTES}, got {page_bytes}"
        )
    base_pa = _as_int("base_pa", base_pa, 0, _U64_MAX, "a 64-bit physical address")
    if base_pa % page_bytes:
        raise UserError(f"base_pa {base_pa:#x} is not aligned to page_bytes={page_bytes}")
    seed = _as_int("seed", seed, 0, _U64_MAX, "an integer from 0 to 2**64-1")
    if frames is not None:
        frames = _as_int("frames", frames, 1, 1 << 64, "a positive integer")
        if base_pa + frames * page_bytes > 1 << 64:
            raise UserError(
                f"frames={frames} of {page_bytes} bytes from base_pa {base_pa:#x} "
                "run past the 64-bit physical address space"
            )
    if limit is not None:
        limit = _as_int("limit", limit, 1, 1 << 63, "a positive integer")
    return page_bytes, base_pa, seed, frames, limit


# --------------------------------------------------------------------------------------------
# Reading and parsing


def _open(path: str | os.PathLike[str], source: str) -> tuple[BinaryIO, BinaryIO]:
    """Open the file: ``(raw file, stream of its text)``, gunzipping if it starts like gzip."""
    try:
        raw: BinaryIO = open(path, "rb")  # noqa: SIM115 - closed by _read_blocks
    except FileNotFoundError:
        raise TraceError(source, 0, "no such file") from None
    except OSError as e:
        raise TraceError(source, 0, f"cannot open: {e.strerror or e}") from None
    try:
        magic = raw.read(2)
        raw.seek(0)
    except OSError as e:
        raw.close()
        raise TraceError(source, 0, f"cannot read: {e.strerror or e}") from None
    if magic == b"\x1f\x8b":
        return raw, gzip.GzipFile(fileobj=raw, mode="rb")  # type: ignore[return-value]
    return raw, raw


def _read_blocks(path: str | os.PathLike[str], source: str) -> Iterator[bytes]:
    """Yield the file's text in blocks that each end at a line end (the last one may not)."""
    raw, stream = _open(path, source)
    try:
        carry = b""
        while True:
            try:
                block = stream.read(_CHUNK_BYTES)
            except (OSError, EOFError, zlib.error) as e:
                raise TraceError(source, 0, f"cannot read (corrupt gzip data?): {e}") from None
            if not block:
                break
            block = carry + block
            cut = block.rfind(b"\n") + 1
            if cut == 0:
                carry = block
                continue
            carry = block[cut:]
            yield block[:cut]
        if carry:
            yield carry
    finally:
        if stream is not raw:
            stream.close()
        raw.close()


def _parse_chunks(
    path: str | os.PathLike[str], source: str
) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray, tuple[int, str] | None, int]]:
    """Yield ``(codes, addrs, sizes, bad, nlines)`` per block of lines.

    ``codes``/``addrs``/``sizes`` hold the accesses of the block's lines, in order, up to the first
    malformed line; ``bad`` is that line's ``(line number, reason)`` or None. Parsing stops at the
    first malformed line.
    """
    line0 = 0
    with closing(_read_blocks(path, source)) as blocks:
        for block in blocks:
            codes, addrs, sizes, bad, nlines = _parse_block(block, line0)
            yield codes, addrs, sizes, bad, nlines
            if bad is not None:
                return
            line0 += nlines


def _parse_block(
    block: bytes, line0: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, tuple[int, str] | None, int]:
    if b"\r" in block:
        block = block.replace(b"\r\n", b"\n")
    if not block.endswith(b"\n"):
        block += b"\n"
    n_bytes = len(block)
    # Padding lets the fixed-offset gathers below run past the last line without bounds checks.
    buf = np.frombuffer(block + b"\0" * 24, dtype=np.uint8)
    ends = np.flatnonzero(buf[:n_bytes] == 0x0A)
    nlines = len(ends)
    starts = np.empty_like(ends)
    starts[0] = 0
    starts[1:] = ends[:-1] + 1
    length = ends - starts

    c0 = buf[starts]
    c1 = buf[starts + 1]
    c2 = buf[starts + 2]
    skip = (length == 0) | ((length >= 2) & (c0 == ord("=")) & (c1 == ord("=")))

    codes = np.zeros(nlines, dtype=np.uint8)
    space = ord(" ")
    codes[(c0 == ord("I")) & (c1 == space)] = _INSTR
    lead = (c0 == space) & (c2 == space)
    codes[lead & (c1 == ord("L"))] = _LOAD
    codes[lead & (c1 == ord("S"))] = _STORE
    codes[lead & (c1 == ord("M"))] = _MODIFY
    codes[(c2 != space) | (length < 6) | skip] = _SKIP

    # The first comma of each line: between the address (from column 3) and the size.
    commas = np.flatnonzero(buf[:n_bytes] == ord(","))
    ci = np.searchsorted(commas, starts)
    comma = np.append(commas, n_bytes)[ci]
    addr_len = comma - starts - 3
    size_len = ends - comma - 1
    fast = (codes != _SKIP) & (addr_len >= 1) & (addr_len <= 16) & (size_len >= 1) & (size_len <= 4)

    addrs, addr_ok = _numbers(buf, starts + 3, addr_len, fast, _HEX_LUT, 16, np.uint64)
    sizes, size_ok = _numbers(buf, comma + 1, size_len, fast, _DEC_LUT, 10, np.uint32)
    ok = fast & addr_ok & size_ok & (sizes >= 1) & (sizes <= MAX_ACCESS_BYTES)
    # addr + size - 1 must not wrap around (checked without overflowing uint64)
    ok &= addrs <= np.uint64(_U64_MAX) - (sizes.astype(np.uint64) - np.uint64(1))

    # Everything else that is not skipped goes through the careful per-line parser, in order.
    bad: tuple[int, str] | None = None
    slow = np.flatnonzero(~ok & ~skip)
    keep = nlines
    for i in slow.tolist():
        text = block[starts[i] : ends[i]].decode("ascii", errors="replace")
        try:
            parsed = _parse_line(text)
        except ValueError as e:
            bad = (line0 + i + 1, str(e))
            keep = i
            break
        if parsed is None:
            codes[i] = _SKIP
        else:
            codes[i], addrs[i], sizes[i] = parsed
    if keep < nlines:
        codes, addrs, sizes = codes[:keep], addrs[:keep], sizes[:keep]
    return codes, addrs, sizes, bad, nlines


def _numbers(buf: np.ndarray, first: np.ndarray, lengths: np.ndarray, rows: np.ndarray,
             lut: np.ndarray, base: int, dtype) -> tuple[np.ndarray, np.ndarray]:
    """For each line in ``rows``, the number written in ``base`` by the ``lengths`` digits from
    ``first`` (``lut`` maps a byte to its digit value, or more when it is not a digit): the
    values, and whether every digit was one. Lines are grouped by length, so each group is
    one vectorised pass per digit."""
    values = np.zeros(len(first), dtype=dtype)
    good = np.zeros(len(first), dtype=bool)
    scale = dtype(base)
    for k in np.unique(lengths[rows]).tolist():
        idx = np.flatnonzero(rows & (lengths == k))
        digits = lut[buf[first[idx][:, None] + np.arange(k)]]
        good[idx] = (digits < base).all(axis=1)
        val = np.zeros(len(idx), dtype=dtype)
        for j in range(k):
            val = val * scale + digits[:, j]
        values[idx] = val
    return values, good


def _parse_line(text: str) -> tuple[int, int, int] | None:
    """Parse one line the slow way: ``(code, address, size)``, None to skip, ValueError if bad."""
    s = text.strip()
    if not s or s.startswith("=="):
        return None
    kind, *tail = s.split(None, 1)
    rest = tail[0] if tail else ""
    if kind not in _KIND_CODES:
        shown = kind if len(kind) <= 20 else kind[:20] + "..."
        raise ValueError(f"unknown access kind {shown!r} (expected I, L, S or M)")
    rest = rest.strip()
    if not rest:
        raise ValueError(f"{kind} line has no address (expected 'ADDR,SIZE' in hex,decimal)")
    addr_s, comma, size_s = rest.partition(",")
    addr_s, size_s = addr_s.strip(), size_s.strip()
    if not comma or not size_s:
        raise ValueError(f"missing size after address {addr_s!r} (expected 'ADDR,SIZE')")
    if not addr_s or not set(addr_s) <= _HEX_DIGITS:
        raise ValueError(f"bad hex address {addr_s!r}")
    addr = int(addr_s, 16)
    if addr > _U64_MAX:
        raise ValueError(f"address {addr_s!r} does not fit in 64 bits")
    if not (size_s.isascii() and size_s.isdigit()):
        raise ValueError(f"bad size {size_s!r} (expected a decimal number of bytes)")
    size = int(size_s)
    if not 1 <= size <= MAX_ACCESS_BYTES:
        raise ValueError(f"size {size} out of range (1 to {MAX_ACCESS_BYTES} bytes)")
    if addr + size - 1 > _U64_MAX:
        raise ValueError(f"access {addr:#x}+{size} runs past the end of the 64-bit address space")
    return _KIND_CODES[kind], addr, size


# --------------------------------------------------------------------------------------------
# Accesses: M expansion and line splitting


def _expand(
    codes: np.ndarray, addrs: np.ndarray, sizes: np.ndarray, include_instructions: bool
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-line events -> ``(is_write, vaddr, size)`` accesses, each inside one line."""
    keep = codes >= (_INSTR if include_instructions else _LOAD)
    codes, addrs, sizes = codes[keep], addrs[keep], sizes[keep]

    # M -> a read then a write of the same bytes
    is_mod = codes == _MODIFY
    if is_mod.any():
        reps = np.where(is_mod, 2, 1)
        first = np.cumsum(reps) - reps
        is_write = np.repeat(codes == _STORE, reps)
        is_write[first[is_mod] + 1] = True
        addrs = np.repeat(addrs, reps)
        sizes = np.repeat(sizes, reps)
    else:
        is_write = codes == _STORE

    # split accesses that cross a line boundary
    shift = np.uint64(_LINE_SHIFT)
    last = addrs + (sizes.astype(np.uint64) - np.uint64(1))
    first_line = addrs >> shift
    pieces = (last >> shift) - first_line + np.uint64(1)
    if len(pieces) and pieces.max() > 1:
        pieces = pieces.astype(np.int64)
        is_write = np.repeat(is_write, pieces)
        start = np.repeat(addrs, pieces)
        last = np.repeat(last, pieces)
        offset = np.arange(len(start), dtype=np.int64) - np.repeat(
            np.cumsum(pieces) - pieces, pieces
        )
        line = np.repeat(first_line, pieces) + offset.astype(np.uint64)
        lo = np.maximum(start, line << shift)
        hi = np.minimum(last, (line << shift) | np.uint64(LINE_BYTES - 1))
        addrs = lo
        sizes = hi - lo + np.uint64(1)
    return is_write, addrs.astype(np.uint64, copy=False), sizes.astype(np.uint16)


# --------------------------------------------------------------------------------------------
# First-touch page allocation


def _first_touch(
    vaddr: np.ndarray,
    page_shift: int,
    base_pa: int,
    scatter: bool,
    seed: int,
    frames: int | None,
) -> tuple[np.ndarray, int]:
    """Physical addresses for ``vaddr`` and the number of distinct pages touched."""
    shift = np.uint64(page_shift)
    vpn = vaddr >> shift
    uniq, first_idx, inverse = np.unique(vpn, return_index=True, return_inverse=True)
    pages = len(uniq)
    page_bytes = 1 << page_shift
    available = frames if frames is not None else ((1 << 64) - base_pa) >> page_shift
    if pages > available:
        raise OutOfFramesError(
            f"the trace touches {pages} distinct pages of {page_bytes} bytes but only "
            f"{available} frames are available from base_pa {base_pa:#x}; "
            "give more frames (frames=) or a larger page size, or read fewer accesses (limit=)"
        )
    # rank[u] = position of unique page u in first-touch order
    rank = np.empty(pages, dtype=np.int64)
    rank[np.argsort(first_idx, kind="stable")] = np.arange(pages)
    if scatter:
        assert frames is not None
        frame_idx = _scattered_frames(pages, frames, seed)
    else:
        frame_idx = np.arange(pages, dtype=np.uint64)
    frame_pa = np.uint64(base_pa) + (frame_idx << shift)
    offset = vaddr & np.uint64(page_bytes - 1)
    pa = frame_pa[rank][inverse.reshape(-1)] | offset
    return pa, pages


def _splitmix64(x: int) -> int:
    x = (x + 0x9E3779B97F4A7C15) & _U64_MAX
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & _U64_MAX
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & _U64_MAX
    return x ^ (x >> 31)


def _scattered_frames(count: int, frames: int, seed: int, rounds: int = 6) -> np.ndarray:
    """The first ``count`` values of a seeded pseudo-random permutation of ``range(frames)``.

    A balanced Feistel network over the smallest even number of bits covering ``frames``, with
    cycle walking to stay inside the range: a true permutation (no frame handed out twice), cheap
    for any range size, and prefix-stable (the i-th frame does not depend on ``count``).
    """
    bits = max(2, (frames - 1).bit_length())
    bits += bits & 1
    half = np.uint64(bits // 2)
    mask = np.uint64((1 << (bits // 2)) - 1)
    keys = []
    state = seed & _U64_MAX
    for _ in range(rounds):
        state = _splitmix64(state)
        keys.append(np.uint64(state))
    m1, m2 = np.uint64(0xBF58476D1CE4E5B9), np.uint64(0x94D049BB133111EB)

    def permute(x: np.ndarray) -> np.ndarray:
        left, right = x >> half, x & mask
        for key in keys:
            f = right ^ key
            f = (f ^ (f >> np.uint64(30))) * m1
            f = (f ^ (f >> np.uint64(27))) * m2
            f ^= f >> np.uint64(31)
            left, right = right, left ^ (f & mask)
        return (left << half) | right

    out = permute(np.arange(count, dtype=np.uint64))
    limit = np.uint64(frames)
    outside = np.flatnonzero(out >= limit)
    while outside.size:
        out[outside] = permute(out[outside])
        outside = outside[out[outside] >= limit]
    return out
