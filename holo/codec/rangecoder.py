"""An adaptive binary range coder (LZMA's), compiled with numba, and value binarisations over it.

Why not a library: the codec's models choose each bit's probability from contexts that depend on
what was decoded just before (neighbouring pixels, sibling voxels), which needs a bit-level coder
driven from compiled code. numpy cannot express that loop; constriction (ANS) codes whole arrays
with fixed models, not adaptive per-bit contexts. This is LZMA's coder: 11-bit probabilities
adapting with shift 4, a 32-bit range, carry propagation through a cache byte.

The coder state is a tuple of int64 that every function takes and returns — numba keeps it in
registers (about 6 ns per coded bit here, three times faster than state held in arrays):

- encoder state ``(low, range, cache, cache_size, pos)``; bytes go to ``out`` (a uint8 array). Bytes
  past the end of ``out`` are counted in ``pos`` but not written, so a caller sees the overflow.
- decoder state ``(range, code, pos)`` over ``data``. Reading past the end yields zeros and never
  raises or overruns: a corrupt or truncated stream decodes to values the callers' own checks
  (counts, ranges, the packet CRC) reject.
"""

from __future__ import annotations

import numpy as np
from numba import njit

__all__ = [
    "PROB_INIT",
    "VALUE_CTX",
    "dec_bit",
    "dec_direct",
    "dec_init",
    "dec_uint",
    "dec_value",
    "enc_bit",
    "enc_direct",
    "enc_finish",
    "enc_init",
    "enc_uint",
    "enc_value",
]

PROB_BITS = 11
PROB_ONE = 1 << PROB_BITS
PROB_INIT = PROB_ONE // 2
MOVE_BITS = 4
TOP = 1 << 24

#: Contexts one enc_value/dec_value needs: zero flag, sign, then the magnitude's bucket flags.
MAX_BUCKET = 24
UINT_CTX = MAX_BUCKET + 1
VALUE_CTX = 2 + UINT_CTX


@njit(inline="always")
def enc_init() -> tuple[int, int, int, int, int]:
    return (0, 0xFFFFFFFF, 0, 1, 0)


@njit(inline="always")
def _shift_low(low, rng, cache, csize, pos, out):  # type: ignore[no-untyped-def]
    if low < 0xFF000000 or low >= 0x100000000:
        carry = low >> 32
        temp = cache
        while True:
            if pos < out.shape[0]:
                out[pos] = (temp + carry) & 0xFF
            pos += 1
            temp = 0xFF
            csize -= 1
            if csize == 0:
                break
        cache = (low >> 24) & 0xFF
    csize += 1
    low = (low & 0x00FFFFFF) << 8
    return low, rng, cache, csize, pos


@njit(inline="always")
def enc_bit(s, out, probs, ctx, bit):  # type: ignore[no-untyped-def]
    low, rng, cache, csize, pos = s
    p = np.int64(probs[ctx])
    bound = (rng >> PROB_BITS) * p
    if bit == 0:
        rng = bound
        probs[ctx] = p + ((PROB_ONE - p) >> MOVE_BITS)
    else:
        low += bound
        rng -= bound
        probs[ctx] = p - (p >> MOVE_BITS)
    while rng < TOP:
        rng <<= 8
        low, rng, cache, csize, pos = _shift_low(low, rng, cache, csize, pos, out)
    return (low, rng, cache, csize, pos)


@njit(inline="always")
def enc_direct(s, out, value, nbits):  # type: ignore[no-untyped-def]
    """Bypass-code the low ``nbits`` bits of ``value`` (probability 1/2 each)."""
    low, rng, cache, csize, pos = s
    for i in range(nbits - 1, -1, -1):
        rng >>= 1
        if (value >> i) & 1:
            low += rng
        while rng < TOP:
            rng <<= 8
            low, rng, cache, csize, pos = _shift_low(low, rng, cache, csize, pos, out)
    return (low, rng, cache, csize, pos)


@njit(inline="always")
def enc_finish(s, out):  # type: ignore[no-untyped-def]
    """Flush; returns the number of bytes the stream needs (may exceed ``len(out)``)."""
    low, rng, cache, csize, pos = s
    for _ in range(5):
        low, rng, cache, csize, pos = _shift_low(low, rng, cache, csize, pos, out)
    return pos


@njit(inline="always")
def _next_byte(data, pos):  # type: ignore[no-untyped-def]
    b = np.int64(data[pos]) if pos < data.shape[0] else 0
    return b, pos + 1


@njit(inline="always")
def dec_init(data, pos):  # type: ignore[no-untyped-def]
    code = 0
    for _ in range(5):
        b, pos = _next_byte(data, pos)
        code = ((code << 8) | b) & 0xFFFFFFFF
    return (0xFFFFFFFF, code, pos)


@njit(inline="always")
def dec_bit(d, data, probs, ctx):  # type: ignore[no-untyped-def]
    rng, code, pos = d
    p = np.int64(probs[ctx])
    bound = (rng >> PROB_BITS) * p
    if code < bound:
        rng = bound
        probs[ctx] = p + ((PROB_ONE - p) >> MOVE_BITS)
        bit = 0
    else:
        code -= bound
        rng -= bound
        probs[ctx] = p - (p >> MOVE_BITS)
        bit = 1
    while rng < TOP:
        rng <<= 8
        b, pos = _next_byte(data, pos)
        code = ((code << 8) | b) & 0xFFFFFFFF
    return (rng, code, pos), bit


@njit(inline="always")
def dec_direct(d, data, nbits):  # type: ignore[no-untyped-def]
    rng, code, pos = d
    value = 0
    for _ in range(nbits):
        rng >>= 1
        bit = 0
        if code >= rng:
            code -= rng
            bit = 1
        value = (value << 1) | bit
        while rng < TOP:
            rng <<= 8
            b, pos = _next_byte(data, pos)
            code = ((code << 8) | b) & 0xFFFFFFFF
    return (rng, code, pos), value


@njit(inline="always")
def enc_uint(s, out, probs, base, value):  # type: ignore[no-untyped-def]
    """A non-negative integer: k = bit length of value+1 in unary (contexts base+k), then k raw bits."""
    v = value + 1
    k = 0
    while (v >> (k + 1)) != 0:
        k += 1
    for i in range(k):
        s = enc_bit(s, out, probs, base + min(i, MAX_BUCKET), 1)
    if k < 62:
        s = enc_bit(s, out, probs, base + min(k, MAX_BUCKET), 0)
    if k > 0:
        s = enc_direct(s, out, v, k)
    return s


@njit(inline="always")
def dec_uint(d, data, probs, base):  # type: ignore[no-untyped-def]
    k = 0
    while k < 62:
        d, bit = dec_bit(d, data, probs, base + min(k, MAX_BUCKET))
        if bit == 0:
            break
        k += 1
    if k == 0:
        return d, 0
    d, low = dec_direct(d, data, k)
    return d, ((1 << k) | low) - 1


@njit(inline="always")
def enc_value(s, out, probs, base, value):  # type: ignore[no-untyped-def]
    """A signed integer over contexts base .. base+VALUE_CTX-1: zero flag, sign, magnitude-1."""
    if value == 0:
        return enc_bit(s, out, probs, base, 0)
    s = enc_bit(s, out, probs, base, 1)
    s = enc_bit(s, out, probs, base + 1, 1 if value < 0 else 0)
    return enc_uint(s, out, probs, base + 2, abs(value) - 1)


@njit(inline="always")
def dec_value(d, data, probs, base):  # type: ignore[no-untyped-def]
    d, nonzero = dec_bit(d, data, probs, base)
    if nonzero == 0:
        return d, 0
    d, negative = dec_bit(d, data, probs, base + 1)
    d, magnitude = dec_uint(d, data, probs, base + 2)
    magnitude += 1
    return d, (-magnitude if negative else magnitude)
