"""AES-XTS as used by MKTME, and the tweak of a memory line.

Intel MKTME encrypts every 64-byte cache line written to DRAM with AES-XTS
(IEEE 1619) under the key selected by the line's KeyID.  This module provides:

* :func:`xts_encrypt` / :func:`xts_decrypt` - the scalar form, one data unit
  (normally one line) at a time;
* :func:`xts_reencrypt` - the decryption under one key and tweak of the encryption
  under another, in one pass (a line written through one KeyID, read through another);
* :func:`xts_encrypt_lines` / :func:`xts_decrypt_lines` - the vectorised form,
  many lines at once as :mod:`numpy` arrays, byte for byte equal to the scalar
  form;
* :func:`line_tweak` / :func:`line_tweaks` - the single definition of the tweak
  of a line, used by the whole simulator.

pycryptodome has no XTS mode, so XTS is built here on top of AES-ECB.  A key is
the concatenation of the data key and the tweak key (32 bytes for
AES-XTS-128, 64 bytes for AES-XTS-256).  For block ``j`` of a data unit with
tweak ``i``::

    T_j = E(tweak_key, i) * alpha**j          (in GF(2**128))
    C_j = E(data_key, P_j ^ T_j) ^ T_j

where blocks are read as little-endian 128-bit integers and multiplying by
``alpha`` is a left shift by one bit reduced by ``x**128 + x**7 + x**2 + x + 1``
(``0x87``).  Only whole 16-byte blocks are supported: MKTME always encrypts whole
lines, so ciphertext stealing is not implemented.  There is no weak-key check
(the two key halves may be equal), as in hardware.

"""

from __future__ import annotations

import operator
from functools import lru_cache
from typing import Any

import numpy as np
from Crypto.Cipher import AES

__all__ = [
    "LINE_BYTES",
    "line_tweak",
    "line_tweaks",
    "xts_decrypt",
    "xts_decrypt_lines",
    "xts_encrypt",
    "xts_encrypt_lines",
    "xts_reencrypt",
]

LINE_BYTES = 64
"""Size in bytes of a cache line, the MKTME encryption unit."""

_BLOCK = 16
_KEY_SIZES = (32, 64)
_MASK128 = (1 << 128) - 1
_GF_POLY = 0x87
_U64 = np.dtype("<u8")


@lru_cache(maxsize=4096)
def _ciphers(key: bytes) -> tuple[Any, Any]:
    """Return cached ``(data_cipher, tweak_cipher)`` AES-ECB objects for *key*.

    ECB objects are stateless, so one pair can serve every call with that key.
    """
    half = len(key) // 2
    return AES.new(key[:half], AES.MODE_ECB), AES.new(key[half:], AES.MODE_ECB)


def _check_key(key: bytes) -> bytes:
    """Return *key* as :class:`bytes`, or raise :exc:`ValueError` on a bad size."""
    if len(key) not in _KEY_SIZES:
        raise ValueError(
            f"XTS key must be 32 bytes (AES-XTS-128) or 64 bytes (AES-XTS-256), "
            f"got {len(key)} bytes"
        )
    return key if type(key) is bytes else bytes(key)


def _check_length(nbytes: int) -> None:
    """Raise :exc:`ValueError` unless *nbytes* is a positive multiple of 16."""
    if nbytes <= 0:
        raise ValueError("XTS data must not be empty")
    if nbytes % _BLOCK:
        raise ValueError(
            f"XTS data length must be a multiple of 16 bytes, got {nbytes}: "
            f"ciphertext stealing is not supported (MKTME encrypts whole lines)"
        )


def _check_tweak(tweak: bytes) -> None:
    if len(tweak) != _BLOCK:
        raise ValueError(f"XTS tweak must be 16 bytes, got {len(tweak)} bytes")


def _mask(tweak_cipher: Any, tweak: bytes, nbytes: int) -> int:
    """The tweak mask of a whole data unit as one integer: block j's ``T_j`` at bits 128*j."""
    t = int.from_bytes(tweak_cipher.encrypt(tweak), "little")
    mask = t
    for shift in range(128, nbytes * 8, 128):
        t = ((t << 1) & _MASK128) ^ (_GF_POLY if t >> 127 else 0)
        mask |= t << shift
    return mask


def _xts(key: bytes, tweak: bytes, data: bytes, encrypt: bool) -> bytes:
    """Scalar XTS core shared by :func:`xts_encrypt` and :func:`xts_decrypt`."""
    key = _check_key(key)
    _check_tweak(tweak)
    nbytes = len(data)
    _check_length(nbytes)
    data_cipher, tweak_cipher = _ciphers(key)
    mask = _mask(tweak_cipher, tweak, nbytes)
    pp = (int.from_bytes(data, "little") ^ mask).to_bytes(nbytes, "little")
    cc = data_cipher.encrypt(pp) if encrypt else data_cipher.decrypt(pp)
    return (int.from_bytes(cc, "little") ^ mask).to_bytes(nbytes, "little")


def xts_reencrypt(src_key: bytes, src_tweak: bytes, dst_key: bytes, dst_tweak: bytes,
                  data: bytes) -> bytes:
    """``xts_decrypt(dst_key, dst_tweak, xts_encrypt(src_key, src_tweak, data))``, in one
    pass: what a unit written under one key and tweak reads as under another.

    Arguments and errors are as for :func:`xts_encrypt`.
    """
    src_key, dst_key = _check_key(src_key), _check_key(dst_key)
    _check_tweak(src_tweak)
    _check_tweak(dst_tweak)
    nbytes = len(data)
    _check_length(nbytes)
    src_data, src_tweak_cipher = _ciphers(src_key)
    dst_data, dst_tweak_cipher = _ciphers(dst_key)
    src_mask = _mask(src_tweak_cipher, src_tweak, nbytes)
    dst_mask = _mask(dst_tweak_cipher, dst_tweak, nbytes)
    cc = src_data.encrypt((int.from_bytes(data, "little") ^ src_mask).to_bytes(nbytes, "little"))
    # The ciphertext's own mask comes off and the reader's goes on in one xor.
    pp = dst_data.decrypt((int.from_bytes(cc, "little") ^ src_mask ^ dst_mask)
                          .to_bytes(nbytes, "little"))
    return (int.from_bytes(pp, "little") ^ dst_mask).to_bytes(nbytes, "little")


def xts_encrypt(key: bytes, tweak: bytes, data: bytes) -> bytes:
    """Encrypt one XTS data unit and return the ciphertext.

    *key* is 32 bytes (AES-XTS-128: data key ``key[:16]``, tweak key
    ``key[16:]``) or 64 bytes (AES-XTS-256: 32 + 32).  *tweak* is the 16-byte
    tweak value that is encrypted with the tweak key (the ``i`` of NIST CAVP
    files; see :func:`line_tweak` for memory lines).  *data* is a non-empty
    multiple of 16 bytes.

    Raises :exc:`ValueError` for a bad key or tweak size, empty data, or a
    length that would need ciphertext stealing.
    """
    return _xts(key, tweak, data, True)


def xts_decrypt(key: bytes, tweak: bytes, data: bytes) -> bytes:
    """Decrypt one XTS data unit and return the plaintext.

    Arguments and errors are as for :func:`xts_encrypt`; ``xts_decrypt(k, t,
    xts_encrypt(k, t, p)) == p``.
    """
    return _xts(key, tweak, data, False)


def _xts_lines(key: bytes, tweaks: np.ndarray, lines: np.ndarray, encrypt: bool) -> np.ndarray:
    """Vectorised XTS core shared by the ``*_lines`` functions."""
    key = _check_key(key)
    tweaks = np.asarray(tweaks)
    lines = np.asarray(lines)
    if tweaks.dtype != np.uint8 or lines.dtype != np.uint8:
        raise ValueError(f"tweaks and lines must be uint8, got {tweaks.dtype} and {lines.dtype}")
    if tweaks.ndim != 2 or tweaks.shape[1] != _BLOCK:
        raise ValueError(f"tweaks must have shape (n, 16), got {tweaks.shape}")
    if lines.ndim != 2 or lines.shape[0] != tweaks.shape[0]:
        raise ValueError(
            f"lines must have shape (n, L) with n = {tweaks.shape[0]} tweaks, got {lines.shape}"
        )
    n, nbytes = lines.shape
    _check_length(nbytes)
    if n == 0:
        return np.empty((0, nbytes), dtype=np.uint8)
    data_cipher, tweak_cipher = _ciphers(key)
    nblocks = nbytes // _BLOCK

    # T_0 for every line in one ECB call, as (lo, hi) little-endian 64-bit words.
    t = np.frombuffer(
        tweak_cipher.encrypt(np.ascontiguousarray(tweaks).tobytes()), dtype=_U64
    ).reshape(n, 2)
    mask = np.empty((n, nblocks, 2), dtype=_U64)
    mask[:, 0] = t
    lo, hi = t[:, 0], t[:, 1]
    one, sixty_three, poly = np.uint64(1), np.uint64(63), np.uint64(_GF_POLY)
    for j in range(1, nblocks):
        carry = hi >> sixty_three
        hi = (hi << one) | (lo >> sixty_three)
        lo = (lo << one) ^ (carry * poly)
        mask[:, j, 0] = lo
        mask[:, j, 1] = hi
    mask = mask.reshape(n, nblocks * 2)

    pp = np.ascontiguousarray(lines).view(_U64) ^ mask
    cc = data_cipher.encrypt(pp.tobytes()) if encrypt else data_cipher.decrypt(pp.tobytes())
    out = np.frombuffer(cc, dtype=_U64).reshape(n, nblocks * 2) ^ mask
    return out.view(np.uint8).reshape(n, nbytes)


def xts_encrypt_lines(key: bytes, tweaks: np.ndarray, lines: np.ndarray) -> np.ndarray:
    """Encrypt *n* lines at once under one key; return a new ``(n, L)`` uint8 array.

    *tweaks* is a uint8 array of shape ``(n, 16)`` (row ``r`` is the tweak of
    line ``r``, e.g. from :func:`line_tweaks`); *lines* is a uint8 array of
    shape ``(n, L)`` with ``L`` a positive multiple of 16 (normally
    :data:`LINE_BYTES`).  Row ``r`` of the result equals
    ``xts_encrypt(key, tweaks[r].tobytes(), lines[r].tobytes())``.

    Raises :exc:`ValueError` as :func:`xts_encrypt` does, or for bad shapes or
    dtypes.
    """
    return _xts_lines(key, tweaks, lines, True)


def xts_decrypt_lines(key: bytes, tweaks: np.ndarray, lines: np.ndarray) -> np.ndarray:
    """Decrypt *n* lines at once under one key; the inverse of :func:`xts_encrypt_lines`.

    Row ``r`` of the result equals
    ``xts_decrypt(key, tweaks[r].tobytes(), lines[r].tobytes())``.
    """
    return _xts_lines(key, tweaks, lines, False)


def _check_boot_tweak(boot_tweak: int) -> None:
    if not 0 <= boot_tweak <= _MASK128:
        raise ValueError(f"boot_tweak must be in 0..2**128-1, got {boot_tweak}")


def line_tweak(pa: int, boot_tweak: int = 0) -> bytes:
    """Return the 16-byte XTS tweak of the 64-byte line at physical address *pa*.

    *pa* is the physical address with the KeyID bits already removed: the KeyID
    selects the key but never enters the tweak, as on real hardware.  It must
    be non-negative and 64-byte aligned, else :exc:`ValueError`.

    The tweak is the 128-bit value ``(pa // 64) ^ boot_tweak`` encoded
    little-endian, like an XTS data-unit sequence number where the data unit is
    one cache line.  *boot_tweak* (``0 .. 2**128 - 1``) is a per-boot platform
    value: changing it makes ciphertext written in one boot unreadable in the
    next; ``0`` models a platform with a stable tweak.
    """
    pa = operator.index(pa)
    if pa < 0 or pa % LINE_BYTES:
        raise ValueError(f"pa must be a non-negative multiple of {LINE_BYTES}, got {pa:#x}")
    _check_boot_tweak(boot_tweak)
    unit = pa // LINE_BYTES
    if unit > _MASK128:
        raise ValueError(f"pa {pa:#x} is too large for a 128-bit tweak")
    return (unit ^ boot_tweak).to_bytes(_BLOCK, "little")


def line_tweaks(pas: np.ndarray, boot_tweak: int = 0) -> np.ndarray:
    """Vectorised :func:`line_tweak`: return a ``(n, 16)`` uint8 array of tweaks.

    *pas* is a 1-D array of physical addresses (normally uint64; any integer
    dtype is accepted).  Row ``r`` equals ``line_tweak(int(pas[r]), boot_tweak)``.
    Raises :exc:`ValueError` if any address is negative or not 64-byte aligned.
    """
    pas = np.asarray(pas)
    if pas.ndim != 1 or pas.dtype.kind not in "iu":
        raise ValueError(f"pas must be a 1-D integer array, got {pas.dtype} {pas.shape}")
    if pas.dtype.kind == "i" and (pas < 0).any():
        raise ValueError("pas must be non-negative")
    pas = pas.astype(np.uint64, copy=False)
    if (pas & np.uint64(LINE_BYTES - 1)).any():
        raise ValueError(f"pas must be multiples of {LINE_BYTES}")
    _check_boot_tweak(boot_tweak)
    out = np.empty((pas.shape[0], 2), dtype=_U64)
    out[:, 0] = (pas >> np.uint64(6)) ^ np.uint64(boot_tweak & 0xFFFF_FFFF_FFFF_FFFF)
    out[:, 1] = boot_tweak >> 64
    return out.view(np.uint8).reshape(pas.shape[0], _BLOCK)
