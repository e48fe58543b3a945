"""The KeyID of each page of a workload's working set, computed when a page is asked for.

The rule (:class:`KeyIdLayout`): page ``i`` takes the ``i``-th uniform draw ``u_i`` of the
layout's stream (a :class:`numpy.random.Generator` over PCG64, one draw a page, in page order)
and is under MKTME KeyID ``1 + i % mktme_keys`` when ``u_i < mktme_fraction``, else under the
NO_ENCRYPT KeyID when ``u_i < mktme_fraction + no_encrypt_fraction``, else under KeyID 0.

No table is kept: ``u_i`` is computed from the stream's state by jumping the PCG64 generator
``i`` steps ahead, so a 64 GiB working set costs what a 4 KiB one does, and setting one up
costs no time per page. The draws are exactly those ``Generator.random`` gives: PCG64 is an
LCG on 128 bits, ``s' = M * s + inc`` (mod 2^128), whose ``k``-step jump is again affine,
``s -> A_k * s + C_k``; each output is the XSL-RR 64-bit function of the state stepped to,
and a double is ``(output >> 11) * 2^-53`` (numpy's ``random/src/pcg64/pcg64.h`` and
``distributions.c``, ``next_double``). The jumps by ``d * 256^l`` steps are tabled for each
digit ``d`` and level ``l``, so a page costs one 128-bit multiply-add per non-zero base-256
digit of its index. The generator itself is moved past the pages, as if every draw was made.
"""

from __future__ import annotations

from array import array

import numpy as np

from mktme_des.hw.dram import PageKeyIds

# PCG64's multiplier (numpy's PCG_DEFAULT_MULTIPLIER_HIGH << 64 | _LOW, from pcg64.h).
PCG64_MULT = 0x2360ED051FC65DA4_4385DF649FCCF645
MASK128 = (1 << 128) - 1
M64 = 0xFFFF_FFFF_FFFF_FFFF  # M64, M32, DIGIT: C unsigned long longs when compiled
M32 = 0xFFFF_FFFF
DIGIT = 256  # pages' indices are read in base 256: one table of jumps per digit position


def _jump_tables(inc: int, levels: int) -> tuple[array, array, array, array]:
    """``(A_lo, A_hi, C_lo, C_hi)``: entry ``l * 256 + d`` is the affine map of a jump by
    ``d * 256**l`` steps of PCG64 with increment ``inc``, split in 64-bit halves."""
    a_lo, a_hi, c_lo, c_hi = (array("Q") for _ in range(4))
    step_a, step_c = PCG64_MULT, inc  # one step of the current level
    for _ in range(levels):
        a, c = 1, 0  # the jump by 0 steps
        for _ in range(DIGIT):
            a_lo.append(a & M64)
            a_hi.append(a >> 64)
            c_lo.append(c & M64)
            c_hi.append(c >> 64)
            a, c = (step_a * a) & MASK128, (step_a * c + step_c) & MASK128
        step_a, step_c = a, c  # 256 steps of this level: one of the next
    return a_lo, a_hi, c_lo, c_hi


class KeyIdLayout(PageKeyIds):
    """The KeyIDs of ``pages`` pages by the module's rule, from ``rng`` as it stands (which
    is then advanced by ``pages`` draws, as drawing them one by one would)."""

    def __init__(self, pages: int, mktme_fraction: float, no_encrypt_fraction: float,
                 mktme_keys: int, noenc_keyid: int, rng: np.random.Generator) -> None:
        super().__init__(pages)
        state = rng.bit_generator.state
        if state["bit_generator"] != "PCG64":
            raise ValueError(f"a KeyID layout draws from PCG64, not {state['bit_generator']}")
        s = (PCG64_MULT * state["state"]["state"] + state["state"]["inc"]) & MASK128
        self.s_lo, self.s_hi = s & M64, s >> 64  # the state the first page's draw reads
        levels = max(1, -(-max(pages - 1, 1).bit_length() // 8))
        self.a_lo, self.a_hi, self.c_lo, self.c_hi = _jump_tables(state["state"]["inc"], levels)
        rng.bit_generator.advance(pages)
        self.mktme = mktme_fraction
        self.encrypted = mktme_fraction + no_encrypt_fraction
        self.mktme_keys = mktme_keys
        self.noenc = noenc_keyid
        # Whether any page's KeyID depends on its draw: u is in [0, 1), so with every share
        # 0 or 1 the draw u = 0 gives each page the KeyID its real draw would.
        self.draws = not (self.mktme >= 1.0 or (self.mktme <= 0.0 and
                                                 (self.encrypted >= 1.0 or self.encrypted <= 0.0)))

    def draw(self, page: int) -> float:
        """``u_page``: the uniform double in [0, 1) drawn for page ``page``."""
        hi = self.s_hi
        lo = self.s_lo
        j = page
        k = 0
        while j:
            d = j & (DIGIT - 1)
            if d:
                # (hi:lo) <- A * (hi:lo) + C mod 2^128, with 64-bit halves; the low product
                # from 32-bit halves, so that no intermediate needs more than 64 bits.
                alo = self.a_lo[k + d]
                x0 = alo & M32
                x1 = alo >> 32
                y0 = lo & M32
                y1 = lo >> 32
                p00 = x0 * y0
                p01 = x0 * y1
                p10 = x1 * y0
                mid = (p00 >> 32) + (p01 & M32) + (p10 & M32)
                plo = ((mid & M32) << 32) | (p00 & M32)
                phi = x1 * y1 + (p01 >> 32) + (p10 >> 32) + (mid >> 32)
                phi = (phi + alo * hi + self.a_hi[k + d] * lo) & M64
                lo = (plo + self.c_lo[k + d]) & M64
                hi = (phi + self.c_hi[k + d] + (lo < plo)) & M64
            j >>= 8
            k += DIGIT
        x = hi ^ lo  # XSL-RR: xor the halves, rotate right by the top 6 bits
        rot = hi >> 58
        out = ((x >> rot) | (x << ((64 - rot) & 63))) & M64
        return (out >> 11) * (1.0 / 9007199254740992.0)

    def keyid(self, page: int) -> int:
        if page < 0 or page >= self.pages:
            raise IndexError(f"page {page} outside the layout's {self.pages} pages")
        u = self.draw(page) if self.draws else 0.0
        if u < self.mktme:
            return 1 + page % self.mktme_keys
        if u < self.encrypted:
            return self.noenc
        return 0

    def keyids_of(self, pages: list) -> list:
        """The KeyIDs of the pages listed, in order."""
        return [self.keyid(p) for p in pages]
