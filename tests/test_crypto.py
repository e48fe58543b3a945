"""Tests for :mod:`mktme_des.crypto`: NIST CAVP vectors, a cross-check against
the ``cryptography`` package, vectorised-vs-scalar equality, line tweaks, errors.
"""

from __future__ import annotations

import inspect
import random
import re
from pathlib import Path

import cryptography_vectors
import numpy as np
import pytest
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from hypothesis import given, settings
from hypothesis import strategies as st

from mktme_des.crypto import (
    LINE_BYTES,
    line_tweak,
    line_tweaks,
    xts_decrypt,
    xts_decrypt_lines,
    xts_encrypt,
    xts_encrypt_lines,
    xts_reencrypt,
)

XTS_DIR = Path(cryptography_vectors.__file__).parent / "ciphers" / "AES" / "XTS"
VECTOR_FILES = [
    "tweak-128hexstr/XTSGenAES128.rsp",
    "tweak-dataunitseqno/XTSGenAES128.rsp",
    "tweak-128hexstr/XTSGenAES256.rsp",
    "tweak-dataunitseqno/XTSGenAES256.rsp",
]
# Lower bound on full-block vectors per file, so an (almost) empty parse fails.
MIN_FULL_BLOCK_VECTORS = 500
CROSS_CHECK_CASES = 2400


# --------------------------------------------------------------------------
# NIST CAVP XTSGen files
# --------------------------------------------------------------------------


def parse_rsp(path: Path) -> list[dict[str, str]]:
    """Parse a CAVP ``.rsp`` file into entries (``section`` is ENCRYPT/DECRYPT)."""
    entries: list[dict[str, str]] = []
    section = None
    current: dict[str, str] | None = None
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("[") and line.endswith("]"):
            section = line[1:-1]
            current = None
            continue
        name, sep, value = line.partition("=")
        assert sep, f"unparsed line {raw!r} in {path}"
        name, value = name.strip(), value.strip()
        if name == "COUNT":
            assert section in ("ENCRYPT", "DECRYPT"), f"COUNT outside a section in {path}"
            current = {"section": section}
            entries.append(current)
        assert current is not None, f"field {name} before COUNT in {path}"
        assert name not in current, f"duplicate {name} in {path}"
        current[name] = value
    return entries


def count_full_block_entries(text: str) -> tuple[int, int]:
    """Independently of :func:`parse_rsp`, count (full-block, partial-block) entries."""
    lengths = [int(m) for m in re.findall(r"^\s*DataUnitLen\s*=\s*(\d+)", text, re.MULTILINE)]
    assert len(lengths) == len(re.findall(r"^\s*COUNT\s*=", text, re.MULTILINE))
    full = sum(1 for n in lengths if n % 128 == 0)
    return full, len(lengths) - full


def entry_tweak(entry: dict[str, str]) -> bytes:
    if "i" in entry:
        return bytes.fromhex(entry["i"])
    seq = int(entry["DataUnitSeqNumber"])
    tweak = seq.to_bytes(16, "little")
    # With a data unit of one line, the sequence number is exactly line_tweak.
    assert line_tweak(seq * LINE_BYTES) == tweak
    return tweak


@pytest.mark.parametrize("relpath", VECTOR_FILES)
def test_nist_full_block_vectors(relpath: str) -> None:
    path = XTS_DIR / relpath
    expected_full, expected_partial = count_full_block_entries(path.read_text())
    entries = parse_rsp(path)
    assert len(entries) == expected_full + expected_partial

    key_bytes = 32 if "AES128" in relpath else 64
    checked = {"ENCRYPT": 0, "DECRYPT": 0}
    for e in entries:
        bits = int(e["DataUnitLen"])
        if bits % 128:
            continue
        key, tweak = bytes.fromhex(e["Key"]), entry_tweak(e)
        pt, ct = bytes.fromhex(e["PT"]), bytes.fromhex(e["CT"])
        assert len(key) == key_bytes
        assert len(pt) == len(ct) == bits // 8
        where = f"{relpath} [{e['section']}] COUNT={e['COUNT']}"
        # The section's own direction first, then the other one.
        if e["section"] == "ENCRYPT":
            assert xts_encrypt(key, tweak, pt) == ct, where
            assert xts_decrypt(key, tweak, ct) == pt, where
        else:
            assert xts_decrypt(key, tweak, ct) == pt, where
            assert xts_encrypt(key, tweak, pt) == ct, where
        # The vectorised form on the same vector (n = 1).
        tw = np.frombuffer(tweak, dtype=np.uint8).reshape(1, 16)
        p_arr = np.frombuffer(pt, dtype=np.uint8).reshape(1, -1)
        c_arr = np.frombuffer(ct, dtype=np.uint8).reshape(1, -1)
        assert xts_encrypt_lines(key, tw, p_arr).tobytes() == ct, where
        assert xts_decrypt_lines(key, tw, c_arr).tobytes() == pt, where
        checked[e["section"]] += 1

    total = checked["ENCRYPT"] + checked["DECRYPT"]
    assert total == expected_full
    assert total >= MIN_FULL_BLOCK_VECTORS
    assert checked["ENCRYPT"] > 0 and checked["DECRYPT"] > 0


@pytest.mark.parametrize("relpath", VECTOR_FILES)
def test_nist_partial_block_vectors_rejected(relpath: str) -> None:
    """Vectors needing ciphertext stealing are refused, never silently mis-encrypted.

    A DataUnitLen such as 250 bits is stored as 32 whole bytes, which the
    byte-oriented API cannot tell from a full-block unit; for those, check only
    that the full-block result is not mistaken for the stolen-ciphertext one.
    """
    path = XTS_DIR / relpath
    _, expected_partial = count_full_block_entries(path.read_text())
    rejected = not_representable = 0
    for e in parse_rsp(path):
        bits = int(e["DataUnitLen"])
        if bits % 128 == 0:
            continue
        key, tweak = bytes.fromhex(e["Key"]), entry_tweak(e)
        pt, ct = bytes.fromhex(e["PT"]), bytes.fromhex(e["CT"])
        assert len(pt) == len(ct) == (bits + 7) // 8
        if len(pt) % 16 == 0:
            assert xts_encrypt(key, tweak, pt) != ct
            not_representable += 1
            continue
        with pytest.raises(ValueError, match="ciphertext stealing"):
            xts_encrypt(key, tweak, pt)
        with pytest.raises(ValueError, match="ciphertext stealing"):
            xts_decrypt(key, tweak, ct)
        rejected += 1
    assert rejected + not_representable == expected_partial
    assert rejected > 0


# --------------------------------------------------------------------------
# Cross-check against the independent ``cryptography`` package
# --------------------------------------------------------------------------


def random_key(rng: random.Random, size: int) -> bytes:
    """A random XTS key whose halves differ (``cryptography`` rejects equal halves)."""
    while True:
        key = rng.randbytes(size)
        if key[: size // 2] != key[size // 2 :]:
            return key


def test_cross_check_with_cryptography() -> None:
    rng = random.Random(20240611)
    sizes = {32: 0, 64: 0}
    for _ in range(CROSS_CHECK_CASES):
        size = rng.choice((32, 64))
        key, tweak = random_key(rng, size), rng.randbytes(16)
        data = rng.randbytes(16 * rng.randint(1, 32))
        cipher = Cipher(algorithms.AES(key), modes.XTS(tweak))
        ct = cipher.encryptor().update(data)
        assert xts_encrypt(key, tweak, data) == ct
        assert xts_decrypt(key, tweak, ct) == data
        # Decrypting random bytes must agree too (not just round trips).
        assert xts_decrypt(key, tweak, data) == cipher.decryptor().update(data)
        sizes[size] += 1
    assert min(sizes.values()) > CROSS_CHECK_CASES // 4


@settings(max_examples=60, deadline=None)
@given(seed=st.integers(0, 2**32), sizes=st.sampled_from([(32, 32), (32, 64), (64, 32), (64, 64)]),
       blocks=st.integers(1, 8), same_tweak=st.booleans())
def test_reencrypt_is_decrypt_of_encrypt_under_another_key(seed, sizes, blocks, same_tweak):
    """Rule of ``xts_reencrypt``: the unit encrypted under (source key, tweak) and decrypted
    under (reader key, tweak), for any key sizes, tweaks and lengths; checked against the
    ``cryptography`` package."""
    rng = random.Random(seed)
    src, dst = random_key(rng, sizes[0]), random_key(rng, sizes[1])
    src_tweak = rng.randbytes(16)
    dst_tweak = src_tweak if same_tweak else rng.randbytes(16)
    data = rng.randbytes(16 * blocks)
    ct = Cipher(algorithms.AES(src), modes.XTS(src_tweak)).encryptor().update(data)
    want = Cipher(algorithms.AES(dst), modes.XTS(dst_tweak)).decryptor().update(ct)
    assert xts_reencrypt(src, src_tweak, dst, dst_tweak, data) == want
    assert xts_reencrypt(src, src_tweak, src, src_tweak, data) == data


# --------------------------------------------------------------------------
# Vectorised vs scalar
# --------------------------------------------------------------------------


@pytest.mark.parametrize("key_size", [32, 64])
@pytest.mark.parametrize(("n", "width"), [(1, 64), (2, 16), (7, 128), (3000, 64), (500, 512)])
def test_lines_equal_scalar(key_size: int, n: int, width: int) -> None:
    gen = np.random.default_rng(key_size * 100_003 + n * 31 + width)
    key = gen.bytes(key_size)
    tweaks = gen.integers(0, 256, size=(n, 16), dtype=np.uint8)
    lines = gen.integers(0, 256, size=(n, width), dtype=np.uint8)
    ct = xts_encrypt_lines(key, tweaks, lines)
    assert ct.dtype == np.uint8 and ct.shape == (n, width)
    pt = xts_decrypt_lines(key, tweaks, ct)
    assert np.array_equal(pt, lines)
    # Decrypting the plaintext as if it were ciphertext exercises decrypt on its own.
    dec_of_pt = xts_decrypt_lines(key, tweaks, lines)
    for r in range(n):
        t, p = tweaks[r].tobytes(), lines[r].tobytes()
        assert ct[r].tobytes() == xts_encrypt(key, t, p)
        assert dec_of_pt[r].tobytes() == xts_decrypt(key, t, p)


def test_lines_accepts_non_contiguous_and_leaves_inputs_alone() -> None:
    gen = np.random.default_rng(7)
    key = gen.bytes(32)
    big = gen.integers(0, 256, size=(40, 2 * LINE_BYTES), dtype=np.uint8)
    lines = big[::2, LINE_BYTES:]  # strided view
    tweaks = np.asfortranarray(gen.integers(0, 256, size=(20, 16), dtype=np.uint8))
    before = (lines.copy(), tweaks.copy())
    ct = xts_encrypt_lines(key, tweaks, lines)
    assert np.array_equal(lines, before[0]) and np.array_equal(tweaks, before[1])
    for r in range(20):
        assert ct[r].tobytes() == xts_encrypt(key, tweaks[r].tobytes(), lines[r].tobytes())


def test_lines_empty_batch() -> None:
    out = xts_encrypt_lines(bytes(32), np.zeros((0, 16), np.uint8), np.zeros((0, 64), np.uint8))
    assert out.shape == (0, 64) and out.dtype == np.uint8


def test_lines_with_line_tweaks_match_scalar_lines() -> None:
    gen = np.random.default_rng(11)
    key = gen.bytes(64)
    pas = gen.integers(0, 2**40, size=256, dtype=np.uint64) * np.uint64(LINE_BYTES)
    lines = gen.integers(0, 256, size=(256, LINE_BYTES), dtype=np.uint8)
    ct = xts_encrypt_lines(key, line_tweaks(pas, 12345), lines)
    for r in range(256):
        expected = xts_encrypt(key, line_tweak(int(pas[r]), 12345), lines[r].tobytes())
        assert ct[r].tobytes() == expected


# --------------------------------------------------------------------------
# Line tweaks
# --------------------------------------------------------------------------


def test_line_tweak_encoding() -> None:
    assert line_tweak(0) == bytes(16)
    assert line_tweak(64) == (1).to_bytes(16, "little")
    assert line_tweak(0x1234 * 64) == (0x1234).to_bytes(16, "little")
    assert line_tweak(64, boot_tweak=3) == (2).to_bytes(16, "little")
    assert line_tweak(0, boot_tweak=2**128 - 1) == b"\xff" * 16
    assert line_tweak(np.uint64(128)) == line_tweak(128)


def test_line_tweak_is_keyid_free_and_boot_dependent() -> None:
    # The tweak is a function of the address and boot value only: no KeyID.
    assert list(inspect.signature(line_tweak).parameters) == ["pa", "boot_tweak"]
    pa = 0xDEAD_BEEF * 64
    assert line_tweak(pa) == line_tweak(pa)
    assert line_tweak(pa) != line_tweak(pa + 64)
    assert line_tweak(pa, 1) != line_tweak(pa, 2)
    assert line_tweak(pa, 0) != line_tweak(pa, 1 << 100)
    # Ciphertext from one boot does not decrypt in the next.
    key, data = bytes(range(32)), bytes(range(64))
    ct = xts_encrypt(key, line_tweak(pa, 1), data)
    assert xts_decrypt(key, line_tweak(pa, 1), ct) == data
    assert xts_decrypt(key, line_tweak(pa, 2), ct) != data


@pytest.mark.parametrize("pa", [-64, -1, 1, 32, 63, 65, 4096 + 8])
def test_line_tweak_rejects_bad_address(pa: int) -> None:
    with pytest.raises(ValueError, match="multiple of 64"):
        line_tweak(pa)


@pytest.mark.parametrize("boot_tweak", [-1, 2**128])
def test_line_tweak_rejects_bad_boot_tweak(boot_tweak: int) -> None:
    with pytest.raises(ValueError, match="boot_tweak"):
        line_tweak(64, boot_tweak)
    with pytest.raises(ValueError, match="boot_tweak"):
        line_tweaks(np.array([64], dtype=np.uint64), boot_tweak)


@pytest.mark.parametrize("boot_tweak", [0, 1, 0xFFFF_FFFF_FFFF_FFFF, 2**64, 2**128 - 1, None])
def test_line_tweaks_equal_line_tweak(boot_tweak: int | None) -> None:
    gen = np.random.default_rng(3)
    if boot_tweak is None:
        boot_tweak = int.from_bytes(gen.bytes(16), "little")
    pas = gen.integers(0, 2**58, size=1000, dtype=np.uint64) * np.uint64(LINE_BYTES)
    pas[:3] = [0, 64, (2**58 - 1) * 64]
    got = line_tweaks(pas, boot_tweak)
    assert got.dtype == np.uint8 and got.shape == (1000, 16)
    expected = np.array(
        [np.frombuffer(line_tweak(int(pa), boot_tweak), dtype=np.uint8) for pa in pas]
    )
    assert np.array_equal(got, expected)


def test_line_tweaks_rejects_bad_addresses() -> None:
    with pytest.raises(ValueError, match="multiples of 64"):
        line_tweaks(np.array([0, 64, 100], dtype=np.uint64))
    with pytest.raises(ValueError, match="non-negative"):
        line_tweaks(np.array([0, -64], dtype=np.int64))
    with pytest.raises(ValueError, match="1-D integer"):
        line_tweaks(np.array([0.0, 64.0]))


# --------------------------------------------------------------------------
# Errors and argument handling
# --------------------------------------------------------------------------

GOOD_KEY, GOOD_TWEAK, GOOD_DATA = bytes(range(32)), bytes(16), bytes(64)


def xts_reencrypt_same(key: bytes, tweak: bytes, data: bytes) -> bytes:
    """``xts_reencrypt`` with the bad argument on the source's side and the reader's."""
    return xts_reencrypt(key, tweak, key, tweak, data)


@pytest.mark.parametrize("func", [xts_encrypt, xts_decrypt, xts_reencrypt_same])
@pytest.mark.parametrize("size", [0, 16, 24, 31, 33, 48, 63, 65])
def test_bad_key_length(func, size: int) -> None:
    with pytest.raises(ValueError, match="32 bytes .* or 64 bytes"):
        func(bytes(size), GOOD_TWEAK, GOOD_DATA)


@pytest.mark.parametrize("func", [xts_encrypt, xts_decrypt, xts_reencrypt_same])
@pytest.mark.parametrize("size", [0, 8, 15, 17, 32])
def test_bad_tweak_length(func, size: int) -> None:
    with pytest.raises(ValueError, match="tweak must be 16 bytes"):
        func(GOOD_KEY, bytes(size), GOOD_DATA)


@pytest.mark.parametrize("func", [xts_encrypt, xts_decrypt, xts_reencrypt_same])
def test_empty_data(func) -> None:
    with pytest.raises(ValueError, match="empty"):
        func(GOOD_KEY, GOOD_TWEAK, b"")


@pytest.mark.parametrize("func", [xts_encrypt, xts_decrypt, xts_reencrypt_same])
@pytest.mark.parametrize("size", [1, 15, 17, 63, 65])
def test_partial_block_data(func, size: int) -> None:
    with pytest.raises(ValueError, match="multiple of 16 .*ciphertext stealing"):
        func(GOOD_KEY, GOOD_TWEAK, bytes(size))


@pytest.mark.parametrize("func", [xts_encrypt_lines, xts_decrypt_lines])
def test_lines_argument_errors(func) -> None:
    tw, ln = np.zeros((2, 16), np.uint8), np.zeros((2, 64), np.uint8)
    with pytest.raises(ValueError, match="32 bytes .* or 64 bytes"):
        func(bytes(16), tw, ln)
    with pytest.raises(ValueError, match=r"shape \(n, 16\)"):
        func(GOOD_KEY, np.zeros((2, 8), np.uint8), ln)
    with pytest.raises(ValueError, match=r"shape \(n, L\)"):
        func(GOOD_KEY, tw, np.zeros((3, 64), np.uint8))
    with pytest.raises(ValueError, match="ciphertext stealing"):
        func(GOOD_KEY, tw, np.zeros((2, 60), np.uint8))
    with pytest.raises(ValueError, match="empty"):
        func(GOOD_KEY, tw, np.zeros((2, 0), np.uint8))
    with pytest.raises(ValueError, match="uint8"):
        func(GOOD_KEY, tw, np.zeros((2, 8), np.uint64))


def test_equal_key_halves_allowed() -> None:
    # No weak-key check, as in hardware: equal halves still give a working cipher.
    key = bytes(range(16)) * 2
    ct = xts_encrypt(key, GOOD_TWEAK, GOOD_DATA)
    assert ct != GOOD_DATA
    assert xts_decrypt(key, GOOD_TWEAK, ct) == GOOD_DATA


def test_bytes_like_arguments() -> None:
    key, tweak, data = bytes(range(64)), bytes(range(16)), bytes(range(128))
    expected = xts_encrypt(key, tweak, data)
    assert xts_encrypt(bytearray(key), memoryview(tweak), bytearray(data)) == expected
    assert xts_decrypt(memoryview(key), bytearray(tweak), memoryview(expected)) == data
