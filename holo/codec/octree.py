"""Holo's codec for unorganised point clouds: an octree for the geometry, a projected image for colour.

For clouds that carry no pixel grid — several cameras fused, or an arbitrary PLY — so nothing is
known about their order. :func:`encode_unorganized` quantises positions to a grid of ``step_m``
(every point moves at most ``step_m / 2`` per axis, as with Draco's quantisation), merges points that
fall in the same voxel (averaging their colours) and returns two payloads; :func:`decode_unorganized`
returns the voxel centres and their colours, in Morton order.

Geometry payload
    Morton codes (a lookup table), one LSD radix sort of code and point index packed in one integer,
    then a breadth-first octree over the distinct voxels, every node's occupancy coded with the
    adaptive binary range coder of :mod:`holo.codec.rangecoder`. Contexts come from neighbours at
    the node's own level: the -x, -y, -z face neighbours precede a node in Morton order, so their
    occupancy bytes are known to the decoder; of the +x, +y, +z ones only their existence (from the
    level above). Neighbours are found by following the parent's neighbours down (no search), and
    a node's and its neighbours' children's bytes are packed in 64-bit words so that the eight
    children's neighbour bytes come out of a few shifts.

    - Every level but the last: the eight child bits in order, each with the child-level voxels
      one and two steps back along x, y and z (a sibling's bit or a neighbour's child), whether
      the neighbour nodes on the child's three sides exist, and how many bits are set so far.
    - The last level, where nearly every node has one child (a depth camera samples a surface
      every two or three voxels): the child count first (unary, with the neighbours' child counts
      as context; skipped altogether when every node there has one child). A single child's
      position is then three bits with contexts from where the neighbours' children sit: along
      x, which halves the -x neighbour and the one beyond it occupy and whether +x neighbours
      exist, plus the -y neighbour's x halves (a row of samples continues); likewise for y; the z
      bit from the z halves of the -x, -y, -z neighbours and the ones beyond. On camera clouds
      this costs 0.6-0.8 bits per point where the child's position is 3 bits. Nodes with more
      children code their bits as above, knowing how many are left.

    The encoder computes every (context, bit) first into a buffer and runs a branch-free copy of
    the coder's bit step over it; the decoder does both at once with the coder's own functions.

Colour payload
    The decoded voxels are projected to an image and coded with JPEG (libjpeg-turbo via OpenCV);
    the decoder repeats the projection from the decoded geometry. Perspective from the coordinate
    origin when every voxel is in front of it (a camera-frame cloud), else orthographic along the
    principal axis that hides the fewest points. A cloud from one depth camera sits on that
    camera's pixel lattice: a Fourier peak over the points' x/z and y/z finds its focal length and
    phase, and the image then has one voxel per pixel and no holes, as the camera's own image.
    Otherwise the grid is a little finer than the point spacing and holes are filled. Voxels that
    share a pixel go to further layers (the nearest first; on orthographic or lattice-free
    projections the far side of a closed surface gets its own layers, not the near side's gaps);
    layers that are dense are stacked into one canvas, the few voxels in sparse ones are packed in
    Morton order into 8x8 blocks below. Tiny clouds store their colours verbatim.

Both payloads start with a small header (magic, version, counts, the grid) ending in a CRC-32 of
header and body; the decoder checks every count against ``max_points`` before allocating and
refuses anything inconsistent with :class:`~holo.errors.CodecError`.
"""

from __future__ import annotations

import logging
import math
import struct
import zlib

import numpy as np
from numba import njit

from holo.codec.rangecoder import (
    MOVE_BITS,
    PROB_BITS,
    PROB_INIT,
    PROB_ONE,
    TOP,
    _shift_low,
    dec_bit,
    dec_init,
    enc_finish,
    enc_init,
)
from holo.errors import CodecError

__all__ = ["MAX_DEPTH", "decode_unorganized", "encode_unorganized"]

logger = logging.getLogger(__name__)

#: Most grid bits per axis: Morton codes of three axes must fit a signed 64-bit integer.
MAX_DEPTH = 20

_M32 = np.int64(0xFFFFFFFF)
_M16 = np.int64(0x0000FFFF0000FFFF)
_M16H = np.int64(0xFFFF0000FFFF0000 - (1 << 64))
_M8 = np.int64(0x00FF00FF00FF00FF)
_M8H = np.int64(0xFF00FF00FF00FF00 - (1 << 64))

# -- lookup tables ---------------------------------------------------------------------------------


def _tables() -> tuple[np.ndarray, ...]:
    pop = np.zeros(256, np.int64)
    ctz = np.zeros(256, np.int64)
    rank = np.zeros((256, 8), np.int64)
    axw = np.zeros(256, np.int64)
    sp3 = np.zeros(256, np.int64)
    ns_count = np.zeros((256, 8), np.int64)
    ns_plain = np.zeros((256, 8), np.int64)
    stop_count = np.zeros(256, np.int64)
    stop_plain = np.zeros(256, np.int64)
    for o in range(256):
        n = bin(o).count("1")
        pop[o] = n
        ctz[o] = (o & -o).bit_length() - 1 if o else 0
        for k in range(8):
            rank[o, k] = bin(o & ((1 << k) - 1)).count("1")
            if (o >> k) & 1:
                sp3[o] |= 1 << (3 * k)
        # per axis: 0 no child, 1 children only on the low side, 2 only high, 3 both
        for a, low in enumerate((0x0F, 0x33, 0x55)):
            s = (1 if o & low else 0) | (2 if o & (255 ^ low) else 0)
            axw[o] |= s << (2 * a)
        stop_count[o] = 8
        stop_plain[o] = 7 if (o & 0x7F) == 0 else 8
        for k in range(8):
            nset = rank[o, k]
            ns_count[o, k] = min(n - nset, 3) * 4 + min(nset, 3)
            ns_plain[o, k] = min(nset, 3)
            if stop_count[o] == 8 and (nset == n or n - nset == 8 - k):
                stop_count[o] = k
    return pop, ctz, rank, axw, sp3, ns_count, ns_plain, stop_count, stop_plain


POP, CTZ, RANK, AXW, SP3, NS_COUNT, NS_PLAIN, STOP_COUNT, STOP_PLAIN = _tables()

# -- context layout (per level group) --------------------------------------------------------------

_C_BIT = 0  # ns(16) x b1(8) x adj(8) x b2(8) x k(8)
_C_CNT = _C_BIT + 65536  # c0(8) x ex(7) x flag(8)
_C_SX = _C_CNT + 448  # single child's x bit: cx(256)
_C_SY = _C_SX + 256  # y bit: cy(256) x x(2)
_C_SZ = _C_SY + 512  # z bit: cz(2048) x x(2) x y(2)
_C_GROUP = _C_SZ + 8192
_GROUPS = 4  # separate statistics: the last level, the one above, the one above that, the rest
_COUNT_LEVELS = 1  # levels (from the bottom) that code the child count first
_BUF = 1 << 15


# -- quantisation, Morton order --------------------------------------------------------------------


@njit(inline="always")
def _compact(v):  # type: ignore[no-untyped-def]
    """Every third bit of 60 back to 20 bits (one Morton axis)."""
    v &= 0x1249249249249249
    v = (v ^ (v >> 2)) & 0x10C30C30C30C30C3
    v = (v ^ (v >> 4)) & 0x100F00F00F00F00F
    v = (v ^ (v >> 8)) & 0x1F0000FF0000FF
    v = (v ^ (v >> 16)) & 0x1F00000000FFFF
    v = (v ^ (v >> 32)) & 0xFFFFF
    return v


def _spread_table() -> np.ndarray:
    table = np.zeros(1024, np.int64)
    for v in range(1024):
        for b in range(10):
            table[v] |= ((v >> b) & 1) << (3 * b)
    return table


SPREAD10 = _spread_table()  # 10 bits -> every third bit of 30


@njit(inline="always")
def _spread(q):  # type: ignore[no-untyped-def]
    """A grid coordinate (0 <= q < 2**20) to every third bit of 60 (one Morton axis)."""
    return SPREAD10[q & 1023] | (SPREAD10[q >> 10] << 30)


@njit(cache=True)
def _morton_keys(points, origin, inv_step, maxq, idxbits, width, npass):  # type: ignore[no-untyped-def]
    """Per point: its Morton code << idxbits | its index (so one array sorts both), and the radix
    sort's digit histograms."""
    n = points.shape[0]
    keys = np.empty(n, np.int64)
    mask = (1 << width) - 1
    hist = np.zeros((npass, 1 << width), np.int64)
    ox = origin[0]
    oy = origin[1]
    oz = origin[2]
    for i in range(n):
        qx = min(max(np.int64((np.float64(points[i, 0]) - ox) * inv_step), 0), maxq)  # >= 0: floor
        qy = min(max(np.int64((np.float64(points[i, 1]) - oy) * inv_step), 0), maxq)
        qz = min(max(np.int64((np.float64(points[i, 2]) - oz) * inv_step), 0), maxq)
        c = (_spread(qx) << 2) | (_spread(qy) << 1) | _spread(qz)
        keys[i] = (c << idxbits) | i
        for p in range(npass):
            hist[p, (c >> (p * width)) & mask] += 1
    return keys, hist


@njit(cache=True)
def _sort_keys(keys, hist, idxbits, width, npass):  # type: ignore[no-untyped-def]
    """LSD radix sort of the keys by their code bits, digit histograms given."""
    n = keys.shape[0]
    mask = (1 << width) - 1
    a = keys
    b = np.empty_like(keys)
    for p in range(npass):
        h = hist[p]
        total = 0
        for j in range(1 << width):
            c = h[j]
            h[j] = total
            total += c
        shift = idxbits + p * width
        for i in range(n):
            k = a[i]
            d = (k >> shift) & mask
            t = h[d]
            h[d] = t + 1
            b[t] = k
        a, b = b, a
    return a


@njit(cache=True)
def _merge_keys(keys, colors, idxbits):  # type: ignore[no-untyped-def]
    """Distinct codes of sorted keys and each voxel's mean colour."""
    n = keys.shape[0]
    imask = (1 << idxbits) - 1
    ucodes = np.empty(n, np.int64)
    ucol = np.empty((n, 3), np.uint8)
    m = 0
    i = 0
    while i < n:
        c = keys[i] >> idxbits
        j = i + 1
        while j < n and (keys[j] >> idxbits) == c:
            j += 1
        if j == i + 1:
            o = keys[i] & imask
            ucol[m, 0] = colors[o, 0]
            ucol[m, 1] = colors[o, 1]
            ucol[m, 2] = colors[o, 2]
        else:
            r = 0
            g = 0
            b = 0
            for t in range(i, j):
                o = keys[t] & imask
                r += colors[o, 0]
                g += colors[o, 1]
                b += colors[o, 2]
            cnt = j - i
            ucol[m, 0] = (r + cnt // 2) // cnt
            ucol[m, 1] = (g + cnt // 2) // cnt
            ucol[m, 2] = (b + cnt // 2) // cnt
        ucodes[m] = c
        m += 1
        i = j
    return ucodes[:m], ucol[:m]


@njit(cache=True)
def _bounds(points):  # type: ignore[no-untyped-def]
    """Per-axis minimum and maximum (float64), and whether every coordinate is finite."""
    lx = ly = lz = np.inf
    hx = hy = hz = -np.inf
    poison = 0.0  # stays 0 unless a NaN or an infinity passes (x * 0 is NaN for those)
    for i in range(points.shape[0]):
        x = float(points[i, 0])
        y = float(points[i, 1])
        z = float(points[i, 2])
        lx = min(lx, x)
        ly = min(ly, y)
        lz = min(lz, z)
        hx = max(hx, x)
        hy = max(hy, y)
        hz = max(hz, z)
        poison += x * 0.0 + y * 0.0 + z * 0.0
    return np.array([lx, ly, lz]), np.array([hx, hy, hz]), poison == 0.0


@njit(cache=True)
def _morton(points, origin, inv_step, maxq):  # type: ignore[no-untyped-def]
    n = points.shape[0]
    codes = np.empty(n, np.int64)
    ox = origin[0]
    oy = origin[1]
    oz = origin[2]
    for i in range(n):
        fx = (np.float64(points[i, 0]) - ox) * inv_step
        fy = (np.float64(points[i, 1]) - oy) * inv_step
        fz = (np.float64(points[i, 2]) - oz) * inv_step
        qx = min(max(np.int64(fx), 0), maxq)  # fx >= 0: truncation is floor
        qy = min(max(np.int64(fy), 0), maxq)
        qz = min(max(np.int64(fz), 0), maxq)
        codes[i] = (_spread(qx) << 2) | (_spread(qy) << 1) | _spread(qz)
    return codes


@njit(cache=True)
def _merge_voxels(codes, order, colors):  # type: ignore[no-untyped-def]
    """Distinct codes (sorted input; ``order`` maps to the points) and each voxel's mean colour."""
    n = codes.shape[0]
    ucodes = np.empty(n, np.int64)
    ucol = np.empty((n, 3), np.uint8)
    m = 0
    i = 0
    while i < n:
        c = codes[i]
        j = i + 1
        while j < n and codes[j] == c:
            j += 1
        r = 0
        g = 0
        b = 0
        for t in range(i, j):
            o = order[t]
            r += colors[o, 0]
            g += colors[o, 1]
            b += colors[o, 2]
        cnt = j - i
        ucol[m, 0] = (r + cnt // 2) // cnt
        ucol[m, 1] = (g + cnt // 2) // cnt
        ucol[m, 2] = (b + cnt // 2) // cnt
        ucodes[m] = c
        m += 1
        i = j
    return ucodes[:m], ucol[:m]


@njit(cache=True)
def _build_levels(leaves, depth):  # type: ignore[no-untyped-def]
    """Occupancy bytes of the octree over sorted distinct leaf codes, level by level in one flat array
    (bottom level first; each level preceded by a zero sentinel so that index 0 means "no node"):
    level ``l`` is ``occ[start[l] - 1 : start[l] + size[l]]``."""
    n = leaves.shape[0]
    occ = np.empty(max(n * depth, 1) + depth + 1, np.uint8)
    start = np.zeros(depth + 1, np.int64)
    size = np.zeros(depth + 1, np.int64)
    size[depth] = n
    cur = leaves.copy()
    m = n
    pos = 0
    for level in range(depth - 1, -1, -1):
        occ[pos] = 0
        pos += 1
        start[level] = pos
        j = -1
        prev = -1
        acc = 0
        for i in range(m):
            c = cur[i]
            p = c >> 3
            if p != prev:
                if j >= 0:
                    occ[pos + j] = acc
                j += 1
                cur[j] = p
                prev = p
                acc = 0
            acc |= 1 << (c & 7)
        occ[pos + j] = acc
        m = j + 1
        size[level] = m
        pos += m
    return occ, start, size


# -- the octree coder ------------------------------------------------------------------------------


@njit(inline="always")
def _byte(w, j):  # type: ignore[no-untyped-def]
    return (w >> (8 * j)) & 255


@njit(inline="always")
def _face(o_lo, f_lo, o_hi, f_hi, h, j):  # type: ignore[no-untyped-def]
    """Index (1-based; 0 = none) of child ``j`` of the low (h=0) or high (h=1) candidate parent."""
    so = o_lo + (o_hi - o_lo) * h
    sf = f_lo + (f_hi - f_lo) * h
    return (sf + RANK[so, j]) * ((so >> j) & 1)


@njit(inline="always")
def _single_ctx(onx, ony, onz, on2x, on2y, fx, fy, ez):  # type: ignore[no-untyped-def]
    ax = AXW[onx]
    ay = AXW[ony]
    cx = (((ax & 3) * 4 + (AXW[on2x] & 3)) * 4 + fx) * 4 + (ay & 3)
    cy = ((((ay >> 2) & 3) * 4 + ((AXW[on2y] >> 2) & 3)) * 4 + fy) * 4 + ((ax >> 2) & 3)
    cz = (
        ((((ax >> 4) * 4 + (ay >> 4)) * 4 + (AXW[onz] >> 4)) * 2 + ez) * 16
        + (AXW[on2x] >> 4) * 4
        + (AXW[on2y] >> 4)
    )
    return cx, cy, cz


@njit(inline="always")
def _bit_words(onx, ony, onz, o, ex_x, ex_y, ex_z):  # type: ignore[no-untyped-def]
    """Per child k, 3-bit fields at bit 3k: child-level voxels one step back along x/y/z (needs the
    node's own occupancy ``o`` only below k), two steps back, and existing neighbours on the child's
    sides."""
    b1 = SP3[((onx >> 4) & 0x0F) | ((o & 0x0F) << 4)]
    b1 |= SP3[((ony >> 2) & 0x33) | ((o & 0x33) << 2)] << 1
    b1 |= SP3[((onz >> 1) & 0x55) | ((o & 0x55) << 1)] << 2
    b2 = SP3[onx] | (SP3[ony] << 1) | (SP3[onz] << 2)
    ax = ex_x * 0xF0 + (onx != 0) * 0x0F
    ay = ex_y * 0xCC + (ony != 0) * 0x33
    az = ex_z * 0xAA + (onz != 0) * 0x55
    adj = SP3[ax] | (SP3[ay] << 1) | (SP3[az] << 2)
    return b1, b2, adj


@njit(inline="always")
def _siblings(o, k):  # type: ignore[no-untyped-def]
    """_bit_words' sibling part for child k (siblings below k only), placed at bit 3k."""
    s = 0
    if k & 4:
        s |= (o >> (k - 4)) & 1
    if k & 2:
        s |= ((o >> (k - 2)) & 1) << 1
    if k & 1:
        s |= ((o >> (k - 1)) & 1) << 2
    return s << (3 * k)


@njit(inline="always")
def _bit_ctx(k, ns, b1, b2, adj):  # type: ignore[no-untyped-def]
    s = 3 * k
    return ((((ns * 8 + ((b1 >> s) & 7)) * 8 + ((adj >> s) & 7)) * 8 + ((b2 >> s) & 7)) << 3) | k


@njit(inline="always")
def _flush(buf, nbuf, probs, out, low, rng, cache, csize, pos):  # type: ignore[no-untyped-def]
    """Range-code ``nbuf`` decisions (context << 1 | bit); rangecoder.enc_bit without branches on
    the bit (bit-exact with its decoder)."""
    for t in range(nbuf):
        e = buf[t]
        ctx = e >> 1
        p = np.int64(probs[ctx])
        bound = (rng >> PROB_BITS) * p
        m = -(e & 1)
        low += bound & m
        rng = bound + ((rng - 2 * bound) & m)
        probs[ctx] = p + ((((PROB_ONE - p) >> MOVE_BITS) & ~m) - ((p >> MOVE_BITS) & m))
        if rng < TOP:
            rng <<= 8
            low, rng, cache, csize, pos = _shift_low(low, rng, cache, csize, pos, out)
    return low, rng, cache, csize, pos


@njit(inline="always")
def _level_records(occ_l, occ_next):  # type: ignore[no-untyped-def]
    """Per node of a level (row 0 = no node): [its children's occupancy bytes, first child << 8 | occ]."""
    n = occ_l.shape[0] - 1
    rec = np.empty((n + 1, 2), np.int64)
    rec[0, 0] = 0
    rec[0, 1] = 0
    t = 1
    for j in range(1, n + 1):
        oc = np.int64(occ_l[j])
        w = 0
        rem = oc
        while rem:
            c = CTZ[rem]
            rem &= rem - 1
            w |= np.int64(occ_next[t]) << (8 * c)
            t += 1
        rec[j, 0] = w
        rec[j, 1] = ((t - POP[oc]) << 8) | oc
    return rec


@njit(cache=True)
def _encode_octree(occ, start, size, depth, npoints, out):  # type: ignore[no-untyped-def]
    probs = np.full(_GROUPS * _C_GROUP, PROB_INIT, np.uint16)
    low, rng, cache, csize, pos = enc_init()
    buf = np.empty(_BUF, np.int64)
    nbuf = 0
    # per node of the level above: [children's occupancy bytes, first child index << 8 | occupancy];
    # row 0 is "no node". Above the root: one virtual parent (row 1) whose only child is the root.
    rec_prev = np.zeros((2, 2), np.int64)
    rec_prev[1, 0] = np.int64(occ[start[0]])
    rec_prev[1, 1] = (1 << 8) | 1
    nbr_prev = np.zeros((2, 6), np.int32)
    for level in range(depth):
        group = min(depth - 1 - level, _GROUPS - 1)
        cb = group * _C_GROUP
        count_mode = level >= depth - _COUNT_LEVELS
        count_on = 0 if (level == depth - 1 and size[level] == npoints) else 1
        n_l = size[level]
        occ_cur = occ[start[level] - 1 : start[level] + n_l]
        keep = level <= depth - 2
        nbr_cur = np.empty((n_l + 1 if keep else 1, 6), np.int32)
        nbr_cur[0, :] = 0
        i = 0
        for p in range(1, rec_prev.shape[0]):
            q0 = nbr_prev[p, 0]
            q1 = nbr_prev[p, 1]
            q2 = nbr_prev[p, 2]
            q3 = nbr_prev[p, 3]
            q4 = nbr_prev[p, 4]
            q5 = nbr_prev[p, 5]
            w_p = rec_prev[p, 0]
            w0 = rec_prev[q0, 0]
            w2 = rec_prev[q2, 0]
            w4 = rec_prev[q4, 0]
            r_p = rec_prev[p, 1]
            r0 = rec_prev[q0, 1]
            r1 = rec_prev[q1, 1]
            r2 = rec_prev[q2, 1]
            r3 = rec_prev[q3, 1]
            r4 = rec_prev[q4, 1]
            r5 = rec_prev[q5, 1]
            o_p = r_p & 255
            o1 = r1 & 255
            o3 = r3 & 255
            o5 = r5 & 255
            # the eight children's neighbour occupancy bytes and existence bits, all at once
            onx_w = ((w0 >> 32) & _M32) | (w_p << 32)
            ony_w = ((w2 >> 16) & _M16) | ((w_p << 16) & _M16H)
            onz_w = ((w4 >> 8) & _M8) | ((w_p << 8) & _M8H)
            exx_w = ((o_p >> 4) & 0x0F) | ((o1 & 0x0F) << 4)
            exy_w = ((o_p >> 2) & 0x33) | ((o3 & 0x33) << 2)
            exz_w = ((o_p >> 1) & 0x55) | ((o5 & 0x55) << 1)
            rem = o_p
            while rem:
                c = CTZ[rem]
                rem &= rem - 1
                i += 1
                if nbuf > _BUF - 32:
                    low, rng, cache, csize, pos = _flush(buf, nbuf, probs, out, low, rng, cache, csize, pos)
                    nbuf = 0
                sh = 8 * c
                onx = (onx_w >> sh) & 255
                ony = (ony_w >> sh) & 255
                onz = (onz_w >> sh) & 255
                ex_x = (exx_w >> c) & 1
                ex_y = (exy_w >> c) & 1
                ex_z = (exz_w >> c) & 1
                if keep:
                    hx = (c >> 2) & 1
                    hy = (c >> 1) & 1
                    hz = c & 1
                    f_p = r_p >> 8
                    nbr_cur[i, 0] = _face(r0 & 255, r0 >> 8, o_p, f_p, hx, c ^ 4)
                    nbr_cur[i, 1] = _face(o_p, f_p, o1, r1 >> 8, hx, c ^ 4)
                    nbr_cur[i, 2] = _face(r2 & 255, r2 >> 8, o_p, f_p, hy, c ^ 2)
                    nbr_cur[i, 3] = _face(o_p, f_p, o3, r3 >> 8, hy, c ^ 2)
                    nbr_cur[i, 4] = _face(r4 & 255, r4 >> 8, o_p, f_p, hz, c ^ 1)
                    nbr_cur[i, 5] = _face(o_p, f_p, o5, r5 >> 8, hz, c ^ 1)
                o = np.int64(occ_cur[i])
                n = POP[o]
                if count_mode:
                    c0 = min(POP[onx] + POP[ony] + POP[onz], 7)
                    fx = ex_x + 2 * ((o1 >> c) & 1)
                    fy = ex_y + 2 * ((o3 >> c) & 1)
                    cx, cy, cz = _single_ctx(onx, ony, onz, (w0 >> sh) & 255, (w2 >> sh) & 255, fx, fy, ex_z)
                    ex = np.int64(onx != 0) + np.int64(ony != 0) + np.int64(onz != 0) + ex_x + ex_y + ex_z
                    base = (cb + _C_CNT + (c0 * 7 + ex) * 8) * 2
                    for k in range(7):
                        buf[nbuf + k] = base + 2 * k + np.int64(n > k + 1)
                    nbuf += min(n, 7) * count_on
                    if n == 1:
                        k = CTZ[o]
                        bx = k >> 2
                        by = (k >> 1) & 1
                        buf[nbuf] = (cb + _C_SX + cx) * 2 + bx
                        buf[nbuf + 1] = (cb + _C_SY + cy * 2 + bx) * 2 + by
                        buf[nbuf + 2] = (cb + _C_SZ + (cz * 2 + bx) * 2 + by) * 2 + (k & 1)
                        nbuf += 3
                    else:
                        b1, b2, adj = _bit_words(onx, ony, onz, o, ex_x, ex_y, ex_z)
                        for k in range(8):
                            ctx = _bit_ctx(k, NS_COUNT[o, k], b1, b2, adj)
                            buf[nbuf + k] = (cb + _C_BIT + ctx) * 2 + ((o >> k) & 1)
                        nbuf += STOP_COUNT[o]
                else:
                    b1, b2, adj = _bit_words(onx, ony, onz, o, ex_x, ex_y, ex_z)
                    for k in range(8):
                        ctx = _bit_ctx(k, NS_PLAIN[o, k], b1, b2, adj)
                        buf[nbuf + k] = (cb + _C_BIT + ctx) * 2 + ((o >> k) & 1)
                    nbuf += STOP_PLAIN[o]
        if keep:
            s1 = start[level + 1]
            rec_prev = _level_records(occ_cur, occ[s1 - 1 : s1 + size[level + 1]])
            nbr_prev = nbr_cur
    low, rng, cache, csize, pos = _flush(buf, nbuf, probs, out, low, rng, cache, csize, pos)
    return enc_finish((low, rng, cache, csize, pos), out)


@njit(cache=True)
def _decode_octree(data, depth, npoints):  # type: ignore[no-untyped-def]
    """Leaf Morton codes of the octree in ``data``; status 0 ok, 1 a level outgrew ``npoints``,
    2 the leaf count differs from ``npoints``, 3 the stream ended early."""
    probs = np.full(_GROUPS * _C_GROUP, PROB_INIT, np.uint16)
    d = dec_init(data, 0)
    occ_prev = np.zeros(2, np.int64)
    occ_prev[1] = 1
    first_prev = np.zeros(2, np.int64)
    first_prev[1] = 1
    nbr_prev = np.zeros((2, 6), np.int32)
    word_prev = np.zeros(2, np.int64)
    code_prev = np.zeros(2, np.int64)
    n_l = 1
    for level in range(depth):
        group = min(depth - 1 - level, _GROUPS - 1)
        cb = group * _C_GROUP
        count_mode = level >= depth - _COUNT_LEVELS
        count_on = 0 if (level == depth - 1 and n_l == npoints) else 1
        keep = level <= depth - 2
        nbr_cur = np.empty((n_l + 1 if keep else 1, 6), np.int32)
        nbr_cur[0, :] = 0
        occ_cur = np.zeros(n_l + 1, np.int64)
        code_cur = np.empty(n_l + 1, np.int64)
        code_cur[0] = 0
        i = 0
        for p in range(1, occ_prev.shape[0]):
            rem = occ_prev[p]
            q0 = nbr_prev[p, 0]
            q1 = nbr_prev[p, 1]
            q2 = nbr_prev[p, 2]
            q3 = nbr_prev[p, 3]
            q4 = nbr_prev[p, 4]
            q5 = nbr_prev[p, 5]
            w0 = word_prev[q0]
            w2 = word_prev[q2]
            w4 = word_prev[q4]
            o_p = occ_prev[p]
            o1 = occ_prev[q1]
            o3 = occ_prev[q3]
            o5 = occ_prev[q5]
            cp = code_prev[p] << 3
            while rem:
                c = CTZ[rem]
                rem &= rem - 1
                i += 1
                code_cur[i] = cp | c
                w_p = word_prev[p]
                hx = (c >> 2) & 1
                hy = (c >> 1) & 1
                hz = c & 1
                onx = _byte(w0 + (w_p - w0) * hx, c ^ 4)
                ony = _byte(w2 + (w_p - w2) * hy, c ^ 2)
                onz = _byte(w4 + (w_p - w4) * hz, c ^ 1)
                ex_x = ((o_p + (o1 - o_p) * hx) >> (c ^ 4)) & 1
                ex_y = ((o_p + (o3 - o_p) * hy) >> (c ^ 2)) & 1
                ex_z = ((o_p + (o5 - o_p) * hz) >> (c ^ 1)) & 1
                if keep:
                    f_p = first_prev[p]
                    nbr_cur[i, 0] = _face(occ_prev[q0], first_prev[q0], o_p, f_p, hx, c ^ 4)
                    nbr_cur[i, 1] = _face(o_p, f_p, o1, first_prev[q1], hx, c ^ 4)
                    nbr_cur[i, 2] = _face(occ_prev[q2], first_prev[q2], o_p, f_p, hy, c ^ 2)
                    nbr_cur[i, 3] = _face(o_p, f_p, o3, first_prev[q3], hy, c ^ 2)
                    nbr_cur[i, 4] = _face(occ_prev[q4], first_prev[q4], o_p, f_p, hz, c ^ 1)
                    nbr_cur[i, 5] = _face(o_p, f_p, o5, first_prev[q5], hz, c ^ 1)
                o = 0
                if count_mode:
                    c0 = min(POP[onx] + POP[ony] + POP[onz], 7)
                    on2x = _byte(w0, c)
                    on2y = _byte(w2, c)
                    fx = ex_x + 2 * ((o1 >> c) & 1)
                    fy = ex_y + 2 * ((o3 >> c) & 1)
                    cx, cy, cz = _single_ctx(onx, ony, onz, on2x, on2y, fx, fy, ex_z)
                    n = 1
                    if count_on:
                        ex = np.int64(onx != 0) + np.int64(ony != 0) + np.int64(onz != 0) + ex_x + ex_y + ex_z
                        base = cb + _C_CNT + (c0 * 7 + ex) * 8
                        for k in range(7):
                            d, more = dec_bit(d, data, probs, base + k)
                            if more == 0:
                                break
                            n += 1
                    if n == 1:
                        d, bx = dec_bit(d, data, probs, cb + _C_SX + cx)
                        d, by = dec_bit(d, data, probs, cb + _C_SY + cy * 2 + bx)
                        d, bz = dec_bit(d, data, probs, cb + _C_SZ + (cz * 2 + bx) * 2 + by)
                        o = 1 << ((bx << 2) | (by << 1) | bz)
                    else:
                        nset = 0
                        b1, b2, adj = _bit_words(onx, ony, onz, 0, ex_x, ex_y, ex_z)
                        for k in range(8):
                            if nset == n:
                                break
                            if n - nset == 8 - k:
                                o |= (0xFF << k) & 0xFF
                                break
                            ns = min(n - nset, 3) * 4 + min(nset, 3)
                            ctx = _bit_ctx(k, ns, b1 | _siblings(o, k), b2, adj)
                            d, bit = dec_bit(d, data, probs, cb + _C_BIT + ctx)
                            o |= bit << k
                            nset += bit
                else:
                    nset = 0
                    b1, b2, adj = _bit_words(onx, ony, onz, 0, ex_x, ex_y, ex_z)
                    for k in range(8):
                        if k == 7 and nset == 0:
                            o = 0x80
                            break
                        ctx = _bit_ctx(k, min(nset, 3), b1 | _siblings(o, k), b2, adj)
                        d, bit = dec_bit(d, data, probs, cb + _C_BIT + ctx)
                        o |= bit << k
                        nset += bit
                occ_cur[i] = o
                word_prev[p] |= o << (8 * c)
        # the next level
        first_cur = np.empty(n_l + 1, np.int64)
        first_cur[0] = 0
        t = 1
        for j in range(1, n_l + 1):
            first_cur[j] = t
            t += POP[occ_cur[j]]
        n_next = t - 1
        if n_next > npoints:
            return 1, np.zeros(0, np.int64)
        if d[2] > data.shape[0] + 8:
            return 3, np.zeros(0, np.int64)
        if not keep:
            leaves = np.empty(n_next, np.int64)
            j = 0
            for q in range(1, n_l + 1):
                rem = occ_cur[q]
                cq = code_cur[q] << 3
                while rem:
                    c = CTZ[rem]
                    rem &= rem - 1
                    leaves[j] = cq | c
                    j += 1
            if n_next != npoints:
                return 2, leaves
            return 0, leaves
        occ_prev = occ_cur
        first_prev = first_cur
        nbr_prev = nbr_cur
        word_prev = np.zeros(n_l + 1, np.int64)
        code_prev = code_cur
        n_l = n_next
    return 2, np.zeros(0, np.int64)


# -- colour: project the voxels to image layers, code them with JPEG -------------------------------

_MODE_EMPTY = 0
_MODE_PERSPECTIVE = 1
_MODE_ORTHOGRAPHIC = 2
_MODE_RAW = 3  # a few points: their colours verbatim (in Morton order) beat a JPEG's own headers
_MAX_LAYERS = 16
_MCU = 16  # JPEG 4:2:0 macroblock: image layers start on a block row so they never share a block
_MAX_SIDE = 16384  # JPEG allows 65535; a canvas this large would already be a mistake
#: Image pixels per point-sampling step when the points sit on no pixel lattice: a little finer
#: than the sampling, so few voxels collide.
_OVERSAMPLE = 1.25
#: Voxels this many point spacings behind the nearest surface around their pixel are on a far side.
_SPLIT = 3.0
#: How strongly the points must sit on a lattice (0 none .. 1 exactly) to use it as the pixel grid.
_LATTICE_STRENGTH = 0.3


@njit(cache=True)
def _centres(codes, origin, step):  # type: ignore[no-untyped-def]
    n = codes.shape[0]
    out = np.empty((n, 3), np.float64)
    for i in range(n):
        c = codes[i]
        out[i, 0] = origin[0] + (np.float64(_compact(c >> 2)) + 0.5) * step
        out[i, 1] = origin[1] + (np.float64(_compact(c >> 1)) + 0.5) * step
        out[i, 2] = origin[2] + (np.float64(_compact(c)) + 0.5) * step
    return out


@njit(cache=True)
def _plane_codes(codes, origin, step, mode, rot, centre):  # type: ignore[no-untyped-def]
    """_plane of the voxel centres, straight from their Morton codes."""
    n = codes.shape[0]
    s = np.empty(n, np.float64)
    t = np.empty(n, np.float64)
    depth = np.empty(n, np.float64)
    for i in range(n):
        c = codes[i]
        x = origin[0] + (np.float64(_compact(c >> 2)) + 0.5) * step
        y = origin[1] + (np.float64(_compact(c >> 1)) + 0.5) * step
        z = origin[2] + (np.float64(_compact(c)) + 0.5) * step
        if mode == _MODE_PERSPECTIVE:
            r = 1.0 / z
            s[i] = x * r
            t[i] = y * r
            depth[i] = z
        else:
            x -= centre[0]
            y -= centre[1]
            z -= centre[2]
            s[i] = rot[0, 0] * x + rot[0, 1] * y + rot[0, 2] * z
            t[i] = rot[1, 0] * x + rot[1, 1] * y + rot[1, 2] * z
            depth[i] = rot[2, 0] * x + rot[2, 1] * y + rot[2, 2] * z
    return s, t, depth


@njit(cache=True)
def _sampling_step(a, b, c):  # type: ignore[no-untyped-def]
    """The points' sampling step: a low quantile of the distance between voxels that follow each
    other in Morton order (mostly neighbours on a surface), in the coordinates given (2 or 3 of them;
    pass ``c`` all zeros for a plane)."""
    n = a.shape[0]
    stride = max(1, n // 4096)
    m = (n - 1) // stride
    d = np.empty(max(m, 1), np.float64)
    k = 0
    for j in range(m):
        i = j * stride
        v = math.sqrt((a[i + 1] - a[i]) ** 2 + (b[i + 1] - b[i]) ** 2 + (c[i + 1] - c[i]) ** 2)
        if v > 0:
            d[k] = v
            k += 1
    if k == 0:
        return 0.0
    d = np.sort(d[:k])
    return d[k // 4]


@njit(cache=True)
def _distinct_pixels(a, b, cell):  # type: ignore[no-untyped-def]
    """How many distinct cells of size ``cell`` the points (a, b) fall in."""
    n = a.shape[0]
    size = 1
    while size < 2 * n:
        size *= 2
    table = np.full(size, -1, np.int64)
    distinct = 0
    for i in range(n):
        key = (
            (np.int64(math.floor(a[i] / cell)) + (1 << 30)) * (1 << 31)
            + np.int64(math.floor(b[i] / cell))
            + (1 << 30)
        )
        h = (key * 0x9E3779B97F4A7C15) & (size - 1)
        while table[h] != -1 and table[h] != key:
            h = (h + 1) & (size - 1)
        if table[h] == -1:
            table[h] = key
            distinct += 1
    return distinct


@njit(cache=True)
def _histogram(s, lo, delta, nbins, stride):  # type: ignore[no-untyped-def]
    h = np.zeros(nbins, np.float64)
    for i in range(0, s.shape[0], stride):
        h[min(np.int64((s[i] - lo) / delta), nbins - 1)] += 1.0
    return h


@njit(cache=True)
def _phase(s, f, stride):  # type: ignore[no-untyped-def]
    """|mean(exp(-2 pi i f s))| and its angle, over every ``stride``-th value."""
    re = 0.0
    im = 0.0
    m = 0
    for i in range(0, s.shape[0], stride):
        a = 2.0 * math.pi * ((f * s[i]) % 1.0)
        re += math.cos(a)
        im -= math.sin(a)
        m += 1
    return math.hypot(re, im) / max(m, 1), math.atan2(im, re)


def _lattice(s: np.ndarray, sampling: float) -> tuple[float, float] | None:
    """When the points sit on a regular lattice along this plane axis (a depth camera's pixel
    columns or rows): its frequency and an offset that puts lattice points at pixel centres."""
    stride = max(1, len(s) // 8192)
    lo = float(s.min())
    delta = sampling / 4  # four histogram bins per sampling step
    nbins = int((float(s.max()) - lo) / delta) + 1
    if nbins < 16 or nbins > (1 << 20):
        return None
    size = 1 << max(12, math.ceil(math.log2(4 * nbins)))
    spectrum = np.abs(np.fft.rfft(_histogram(s, lo, delta, nbins, stride), size))
    k0 = max(1, int(0.75 / sampling * size * delta))
    k1 = min(len(spectrum) - 2, int(1.35 / sampling * size * delta) + 1)
    if k1 <= k0:
        return None
    k = k0 + int(np.argmax(spectrum[k0:k1]))
    a, b, c = spectrum[k - 1], spectrum[k], spectrum[k + 1]
    bend = a - 2 * b + c
    f = (k + (0.5 * (a - c) / bend if bend < 0 else 0.0)) / (size * delta)
    strength, angle = _phase(s, f, max(1, len(s) // 2048))
    if strength < _LATTICE_STRENGTH:
        return None
    return f, angle / (2 * math.pi) + 0.5


@njit(cache=True)
def _pixels(s, t, fx, fy, cx, cy, width, height):  # type: ignore[no-untyped-def]
    n = s.shape[0]
    u = np.empty(n, np.int64)
    v = np.empty(n, np.int64)
    for i in range(n):
        u[i] = min(max(np.int64(math.floor(s[i] * fx + cx)), 0), width - 1)
        v[i] = min(max(np.int64(math.floor(t[i] * fy + cy)), 0), height - 1)
    return u, v


@njit(cache=True)
def _nearest_depth(u, v, depth, width, height):  # type: ignore[no-untyped-def]
    img = np.full((height, width), np.inf, np.float32)
    for i in range(u.shape[0]):
        d = np.float32(depth[i])
        if d < img[v[i], u[i]]:
            img[v[i], u[i]] = d
    return img


@njit(cache=True)
def _far_side(u, v, depth, front, tau):  # type: ignore[no-untyped-def]
    side = np.zeros(u.shape[0], np.int64)
    for i in range(u.shape[0]):
        if np.float32(depth[i]) > front[v[i], u[i]] + tau:
            side[i] = 1
    return side


def _sides(
    u: np.ndarray, v: np.ndarray, depth: np.ndarray, width: int, height: int, tau: float
) -> np.ndarray:
    """1 for voxels well behind the nearest surface around their pixel (the far side of a closed
    surface seen through a gap in the near side), else 0: they go to separate layers, so the first
    layer shows one surface, not a speckle of both."""
    import cv2

    front = cv2.erode(_nearest_depth(u, v, depth, width, height), np.ones((5, 5), np.uint8))
    return _far_side(u, v, depth, front, np.float32(tau))


@njit(cache=True)
def _layer_ranks(u, v, width, height, depth, side, split, max_layers):  # type: ignore[no-untyped-def]
    """Each voxel's layer and the number of layers. Without ``split``: its rank by depth among the
    voxels in its pixel (nearest first, ties by order). With it: near-side voxels (``side`` 0) take
    the even layers and far-side ones the odd, each ranked among its own side in the pixel. Layers
    past ``max_layers - 1`` share the last."""
    n = u.shape[0]
    rank = np.zeros(n, np.int64)
    if not split:  # the usual case, one voxel per pixel: a bitmap says so cheaply
        seen = np.zeros(width * height, np.uint8)
        clash = False
        for i in range(n):
            k = v[i] * width + u[i]
            if seen[k]:
                clash = True
                break
            seen[k] = 1
        if not clash:
            return rank, 1
    per = 2 if split else 1
    nb = width * height * per
    key = np.empty(n, np.int64)
    for i in range(n):
        key[i] = (v[i] * width + u[i]) * per + (side[i] if split else 0)
    count = np.zeros(nb + 1, np.int32)
    for i in range(n):
        count[key[i] + 1] += 1
    most = 0
    for j in range(1, nb + 1):
        if count[j] > most:
            most = count[j]
    if most <= 1:
        if split:
            for i in range(n):
                rank[i] = side[i]
        return _compact_ranks(rank)
    for j in range(nb):
        count[j + 1] += count[j]
    order = np.empty(n, np.int64)
    fill = count[:nb].astype(np.int64)
    for i in range(n):
        k = key[i]
        order[fill[k]] = i
        fill[k] += 1
    for k in range(nb):
        a = count[k]
        b = count[k + 1]
        if b == a:
            continue
        if b - a > 32:  # a crowded pixel: a stable O(k log k) sort (the bucket is in voxel order)
            sub = order[a:b].copy()
            by_depth = np.argsort(depth[sub], kind="mergesort")
            for j in range(b - a):
                order[a + j] = sub[by_depth[j]]
        else:
            for j in range(a + 1, b):  # insertion sort by depth, stable
                x = order[j]
                m = j - 1
                while m >= a and depth[order[m]] > depth[x]:
                    order[m + 1] = order[m]
                    m -= 1
                order[m + 1] = x
        for j in range(a, b):
            r = j - a
            if split:
                r = 2 * r + (k & 1)
            rank[order[j]] = min(r, max_layers - 1)
    return _compact_ranks(rank)


@njit(cache=True)
def _compact_ranks(rank):  # type: ignore[no-untyped-def]
    """Renumber the layers in use 0, 1, 2, ... (a side may skip ranks the other uses)."""
    used = np.zeros(2 * _MAX_LAYERS + 1, np.int64)
    for i in range(rank.shape[0]):
        used[rank[i]] = 1
    new = np.zeros(2 * _MAX_LAYERS + 1, np.int64)
    k = 0
    for r in range(used.shape[0]):
        new[r] = k
        k += used[r]
    for i in range(rank.shape[0]):
        rank[i] = new[rank[i]]
    return rank, max(k, 1)


@njit(cache=True)
def _layout(u, v, rank, nranks, width, height):  # type: ignore[no-untyped-def]
    """Where every voxel goes in the canvas. The first layer is the whole grid; the next ones, while
    each is dense in its bounding box, are images stacked below it (each cropped, each starting on
    a JPEG block row); the remaining voxels — a few at occlusion edges — are packed in Morton order
    into 8x8 blocks at the bottom. Returns (canvas row and column per voxel, canvas width and
    height, number of image layers)."""
    n = u.shape[0]
    box = np.empty((nranks, 4), np.int64)  # u0, v0, u1, v1 (inclusive)
    box[:, 0] = 1 << 40
    box[:, 1] = 1 << 40
    box[:, 2] = -1
    box[:, 3] = -1
    box[0, 0] = 0
    box[0, 1] = 0
    box[0, 2] = width - 1
    box[0, 3] = height - 1
    count = np.zeros(nranks, np.int64)
    count[0] = n
    if nranks > 1:
        for i in range(n):
            r = rank[i]
            if r:
                box[r, 0] = min(box[r, 0], u[i])
                box[r, 1] = min(box[r, 1], v[i])
                box[r, 2] = max(box[r, 2], u[i])
                box[r, 3] = max(box[r, 3], v[i])
                count[r] += 1
                count[0] -= 1
    layers = 1
    while layers < nranks and 4 * count[layers] >= (box[layers, 2] - box[layers, 0] + 1) * (
        box[layers, 3] - box[layers, 1] + 1
    ):
        layers += 1
    extra = 0
    for r in range(layers, nranks):
        extra += count[r]
    canvas_w = 8
    for r in range(layers):
        canvas_w = max(canvas_w, box[r, 2] - box[r, 0] + 1)
    canvas_w = (canvas_w + 7) // 8 * 8
    row = np.zeros(layers + 1, np.int64)
    for r in range(layers):
        h = box[r, 3] - box[r, 1] + 1
        row[r + 1] = row[r] + ((h + _MCU - 1) // _MCU * _MCU if (r < layers - 1 or extra) else h)
    per_row = canvas_w // 8
    nblocks = (extra + 63) // 64
    canvas_h = row[layers] + 8 * ((nblocks + per_row - 1) // per_row)
    ys = np.empty(n, np.int32)
    xs = np.empty(n, np.int32)
    e = 0
    for i in range(n):
        r = rank[i]
        if r < layers:
            ys[i] = row[r] + v[i] - box[r, 1]
            xs[i] = u[i] - box[r, 0]
        else:
            b = e >> 6
            j = e & 63
            ys[i] = row[layers] + (b // per_row) * 8 + (j >> 3)
            xs[i] = (b % per_row) * 8 + (j & 7)
            e += 1
    return ys, xs, canvas_w, canvas_h, layers


@njit(cache=True)
def _paint(ys, xs, colors, canvas_h, canvas_w):  # type: ignore[no-untyped-def]
    """The canvas (BGR) with every voxel's colour at its position and the gaps filled. Only the last
    layer (when a pixel holds more voxels than there are layers) can put two voxels in one pixel:
    the later one wins."""
    img = np.empty((canvas_h, canvas_w, 3), np.uint8)
    mask = np.zeros((canvas_h, canvas_w), np.uint8)
    bw = (canvas_w + 7) // 8
    blocks = np.zeros(((canvas_h + 7) // 8) * bw, np.int32)
    for i in range(ys.shape[0]):
        y = ys[i]
        x = xs[i]
        img[y, x, 0] = colors[i, 2]
        img[y, x, 1] = colors[i, 1]
        img[y, x, 2] = colors[i, 0]
        if mask[y, x] == 0:
            mask[y, x] = 1
            blocks[(y >> 3) * bw + (x >> 3)] += 1
    _fill(img, mask, blocks)
    return img


@njit(cache=True)
def _fill(img, mask, blocks):  # type: ignore[no-untyped-def]
    """Give unpainted pixels values JPEG codes cheaply, block by block (8x8): holes inside a surface
    take the mean of their painted 4-neighbours, what is left the block's mean; empty blocks repeat
    the block to their left (or above, or mid-grey)."""
    h, w = mask.shape
    bw = (w + 7) // 8
    bh = (h + 7) // 8
    prev = np.full(3, 128, np.int64)
    mean = np.zeros(3, np.int64)
    above = np.full((bw, 3), -1, np.int64)
    for by in range(bh):
        y0 = by * 8
        y1 = min(y0 + 8, h)
        for bx in range(bw):
            x0 = bx * 8
            x1 = min(x0 + 8, w)
            full = (y1 - y0) * (x1 - x0)
            painted = blocks[by * bw + bx]
            if painted == 0:
                if bx == 0 and above[0, 0] >= 0:
                    prev[:] = above[0, :]
                for y in range(y0, y1):
                    for x in range(x0, x1):
                        img[y, x, 0] = prev[0]
                        img[y, x, 1] = prev[1]
                        img[y, x, 2] = prev[2]
                above[bx, :] = prev
                continue
            if painted == full:
                prev[0] = img[y1 - 1, x1 - 1, 0]
                prev[1] = img[y1 - 1, x1 - 1, 1]
                prev[2] = img[y1 - 1, x1 - 1, 2]
                above[bx, :] = prev
                continue
            s0 = 0
            s1 = 0
            s2 = 0
            for y in range(y0, y1):
                for x in range(x0, x1):
                    if mask[y, x]:
                        s0 += img[y, x, 0]
                        s1 += img[y, x, 1]
                        s2 += img[y, x, 2]
            mean[0] = (s0 + painted // 2) // painted
            mean[1] = (s1 + painted // 2) // painted
            mean[2] = (s2 + painted // 2) // painted
            for y in range(y0, y1):
                for x in range(x0, x1):
                    if mask[y, x]:
                        continue
                    c = 0
                    t0 = 0
                    t1 = 0
                    t2 = 0
                    if x > 0 and mask[y, x - 1]:
                        t0 += img[y, x - 1, 0]
                        t1 += img[y, x - 1, 1]
                        t2 += img[y, x - 1, 2]
                        c += 1
                    if x + 1 < w and mask[y, x + 1]:
                        t0 += img[y, x + 1, 0]
                        t1 += img[y, x + 1, 1]
                        t2 += img[y, x + 1, 2]
                        c += 1
                    if y > 0 and mask[y - 1, x]:
                        t0 += img[y - 1, x, 0]
                        t1 += img[y - 1, x, 1]
                        t2 += img[y - 1, x, 2]
                        c += 1
                    if y + 1 < h and mask[y + 1, x]:
                        t0 += img[y + 1, x, 0]
                        t1 += img[y + 1, x, 1]
                        t2 += img[y + 1, x, 2]
                        c += 1
                    if c:
                        img[y, x, 0] = (t0 + c // 2) // c
                        img[y, x, 1] = (t1 + c // 2) // c
                        img[y, x, 2] = (t2 + c // 2) // c
                    else:
                        img[y, x, 0] = mean[0]
                        img[y, x, 1] = mean[1]
                        img[y, x, 2] = mean[2]
            prev[:] = mean
            above[bx, :] = mean


@njit(cache=True)
def _gather(ys, xs, img):  # type: ignore[no-untyped-def]
    n = ys.shape[0]
    out = np.empty((n, 3), np.uint8)
    for i in range(n):
        y = ys[i]
        x = xs[i]
        out[i, 0] = img[y, x, 2]
        out[i, 1] = img[y, x, 1]
        out[i, 2] = img[y, x, 0]
    return out


# -- payloads --------------------------------------------------------------------------------------

_GEOMETRY_MAGIC = b"HOCT"
_COLOR_MAGIC = b"HOCC"
_VERSION = 1
# magic, version, depth, voxel count, origin (x, y, z), step, CRC-32 of the octree stream
_GEOMETRY_HEADER = struct.Struct("<4sBBI4dI")
# magic, version, projection mode, image layers, JPEG quality, voxel count, scale (x, y), offset
# (x, y), near/far split depth (0: none), rotation (3x3), centre (3), grid width, grid height,
# canvas width, canvas height, CRC-32 of the JPEG
_COLOR_HEADER = struct.Struct("<4sBBBBI5d9d3dIIIII")


def _sealed(header: struct.Struct, *fields: object, body: bytes = b"") -> bytes:
    """Header (whose last field is the CRC-32 of everything else: header and body) and body."""
    head = header.pack(*fields, 0)[:-4]
    return head + struct.pack("<I", zlib.crc32(body, zlib.crc32(head))) + body


def _seal_ok(data: bytes, header: struct.Struct) -> bool:
    (crc,) = struct.unpack_from("<I", data, header.size - 4)
    return zlib.crc32(data[header.size :], zlib.crc32(data[: header.size - 4])) == crc


def encode_unorganized(
    points_m: np.ndarray, colors: np.ndarray, *, step_m: float, color_quality: int = 75
) -> tuple[bytes, bytes]:
    """(geometry payload, colour payload). points_m (N,3) float32 any order, colors (N,3) uint8 RGB.
    Positions are quantised to a grid of step_m (max error step_m/2 per axis, like Draco's quantisation);
    points falling in the same voxel are merged (colours averaged)."""
    points = np.asarray(points_m)
    cols = np.asarray(colors)
    if points.ndim != 2 or points.shape[1] != 3 or points.dtype.kind != "f":
        raise CodecError(f"points must be an N x 3 float array, got shape {points.shape} of {points.dtype}")
    if cols.shape != points.shape or cols.dtype != np.uint8:
        raise CodecError(
            f"colours must be an N x 3 uint8 array matching the {len(points)} points, "
            f"got shape {cols.shape} of {cols.dtype}"
        )
    if not (
        isinstance(step_m, (int, float, np.integer, np.floating))
        and not isinstance(step_m, bool)
        and math.isfinite(step_m)
        and step_m > 0
    ):
        raise CodecError(f"the quantisation step must be a positive number of metres, got {step_m!r}")
    if not (
        isinstance(color_quality, (int, np.integer))
        and not isinstance(color_quality, bool)
        and 1 <= color_quality <= 100
    ):
        raise CodecError(f"colour quality must be an integer from 1 to 100, got {color_quality!r}")
    if points.dtype not in (np.float32, np.float64):
        points = points.astype(np.float64)
    points = np.ascontiguousarray(points)
    cols = np.ascontiguousarray(cols)
    step = float(step_m)
    n = len(points)
    if n == 0:
        empty = _sealed(_GEOMETRY_HEADER, _GEOMETRY_MAGIC, _VERSION, 0, 0, 0.0, 0.0, 0.0, step)
        return empty, _color_payload_empty()
    lo, hi, finite = _bounds(points)
    if not finite:
        raise CodecError("points hold non-finite coordinates (NaN or infinity)")
    inv_step = 1.0 / step
    span = max((float(hi[a]) - float(lo[a])) * inv_step for a in range(3))
    if not span < float(1 << MAX_DEPTH):  # also NaN, from a step too small for float64
        raise CodecError(
            f"the cloud spans {span:.0f} steps of {step} m; this codec supports at most "
            f"{1 << MAX_DEPTH} steps per axis ({MAX_DEPTH}-bit grid): use a coarser step"
        )
    depth = int(span).bit_length()
    voxels, voxel_colors = _voxelize(points, cols, lo, inv_step, depth)
    body = _encode_geometry_body(voxels, depth)
    geometry = _sealed(_GEOMETRY_HEADER, _GEOMETRY_MAGIC, _VERSION, depth, len(voxels), *lo, step, body=body)
    color = _encode_color(voxels, voxel_colors, lo, step, hi, int(color_quality))
    return geometry, color


def _voxelize(
    points: np.ndarray, colors: np.ndarray, origin: np.ndarray, inv_step: float, depth: int
) -> tuple[np.ndarray, np.ndarray]:
    """Distinct voxels (Morton codes, ascending) and their mean colours."""
    maxq = (1 << depth) - 1
    nbits = max(3 * depth, 1)
    npass = max(1, (nbits + 10) // 11)
    width = (nbits + npass - 1) // npass
    idxbits = max(1, (len(points) - 1).bit_length())
    if nbits + idxbits <= 63:
        keys, hist = _morton_keys(points, origin, inv_step, maxq, idxbits, width, npass)
        return _merge_keys(_sort_keys(keys, hist, idxbits, width, npass), colors, idxbits)
    codes = _morton(points, origin, inv_step, maxq)
    order = np.argsort(codes, kind="stable")
    return _merge_voxels(codes[order], order, colors)


def _encode_geometry_body(voxels: np.ndarray, depth: int) -> bytes:
    if depth == 0:
        return b""
    occ, start, size = _build_levels(voxels, depth)
    out = np.empty(2 * len(voxels) + 4096, np.uint8)
    nbytes = int(_encode_octree(occ, start, size, depth, len(voxels), out))
    if nbytes > len(out):
        out = np.empty(nbytes, np.uint8)
        nbytes = int(_encode_octree(occ, start, size, depth, len(voxels), out))
    return out[:nbytes].tobytes()


def _color_payload_empty() -> bytes:
    return _sealed(_COLOR_HEADER, _COLOR_MAGIC, _VERSION, _MODE_EMPTY, 0, 0, 0, *([0.0] * 17), 0, 0, 0, 0)


def _color_payload_raw(voxel_colors: np.ndarray) -> bytes:
    body = np.ascontiguousarray(voxel_colors, np.uint8).tobytes()
    n = len(voxel_colors)
    return _sealed(
        _COLOR_HEADER, _COLOR_MAGIC, _VERSION, _MODE_RAW, 0, 0, n, *([0.0] * 17), 0, 0, 0, 0, body=body
    )


def _projection(
    voxels: np.ndarray, origin: np.ndarray, step: float, top: np.ndarray
) -> tuple[int, np.ndarray, np.ndarray, float]:
    """Perspective from the origin when every voxel is in front of it (a camera-frame cloud), else
    orthographic along whichever principal axis of the cloud leaves the fewest points hidden behind
    others. Also the points' spacing (in the image plane's units, 0 when unknown). ``top`` is the
    largest point coordinate on each axis."""
    zmin = float(origin[2])
    if zmin > 0 and float(top[2]) <= 100 * zmin:
        return _MODE_PERSPECTIVE, np.eye(3), np.zeros(3), 0.0
    centres = _centres(voxels, origin, step)
    sample = np.ascontiguousarray(centres[:: max(1, len(centres) // 8192)])
    centre = sample.mean(axis=0)
    spacing = float(_sampling_step(centres[:, 0].copy(), centres[:, 1].copy(), centres[:, 2].copy()))
    if len(sample) < 3 or spacing <= 0:
        return _MODE_ORTHOGRAPHIC, np.eye(3), centre, spacing
    _, vectors = np.linalg.eigh(np.cov((sample - centre).T))
    axes = vectors[:, ::-1].T.copy()  # widest, middle, thinnest
    for r in range(3):  # a deterministic sign: each axis's largest component positive
        if axes[r, np.argmax(np.abs(axes[r]))] < 0:
            axes[r] = -axes[r]
    coords = (sample - centre) @ axes.T
    best, best_count = 2, -1
    for k in (2, 1, 0):  # view along axis k; ties go to the thinnest
        i, j = (a for a in range(3) if a != k)
        count = int(_distinct_pixels(coords[:, i].copy(), coords[:, j].copy(), spacing))
        if count > best_count:
            best, best_count = k, count
    i, j = (a for a in range(3) if a != best)
    rot = np.ascontiguousarray(axes[[i, j, best]])
    if np.linalg.det(rot) < 0:
        rot[2] = -rot[2]
    return _MODE_ORTHOGRAPHIC, rot, centre, spacing


def _grid_budget(n: int) -> int:
    """Most projection-grid pixels for ``n`` voxels (what the decoder will allocate per pixel)."""
    return 8 * n + (1 << 18)


def _grid(
    mode: int, s: np.ndarray, t: np.ndarray, n: int, spacing: float
) -> tuple[float, float, float, float, int, int, float]:
    """Scales (pixels per plane unit), offsets and size of the projection grid, and the points'
    spacing in the plane (0 when they sit on a lattice). A camera-frame cloud
    from one depth camera sits on that camera's pixel lattice: found, it becomes the grid (one voxel
    per pixel, no holes). Otherwise the grid is a little finer than the points' spacing."""
    s_min, s_max = float(s.min()), float(s.max())
    t_min, t_max = float(t.min()), float(t.max())
    extent = max(s_max - s_min, t_max - t_min)
    sampling = spacing if spacing > 0 else float(_sampling_step(s, t, np.zeros_like(s)))
    if sampling <= 0:
        sampling = extent / 64 if extent > 0 else 1.0
    fx = fy = _OVERSAMPLE / sampling
    phase_x = phase_y = 0.0
    if mode == _MODE_PERSPECTIVE and n >= 64:
        lattice_x = _lattice(s, sampling)
        lattice_y = _lattice(t, sampling) if lattice_x else None
        if lattice_x and lattice_y:
            (fx, phase_x), (fy, phase_y) = lattice_x, lattice_y
    budget = _grid_budget(n)
    while True:
        cx = phase_x - math.floor(s_min * fx + phase_x)
        cy = phase_y - math.floor(t_min * fy + phase_y)
        width = math.floor(s_max * fx + cx) + 1
        height = math.floor(t_max * fy + cy) + 1
        if width <= _MAX_SIDE and height <= _MAX_SIDE and width * height <= budget:
            return fx, fy, cx, cy, width, height, (0.0 if phase_x or phase_y else sampling)
        fx *= 0.7
        fy *= 0.7
        phase_x = phase_y = 0.0


def _encode_color(
    voxels: np.ndarray,
    voxel_colors: np.ndarray,
    origin: np.ndarray,
    step: float,
    top: np.ndarray,
    quality: int,
) -> bytes:
    import cv2

    mode, rot, centre, spacing = _projection(voxels, origin, step, top)
    s, t, depth = _plane_codes(voxels, origin, step, mode, rot, centre)
    fx, fy, cx, cy, width, height, sampling = _grid(mode, s, t, len(voxels), spacing)
    u, v = _pixels(s, t, fx, fy, cx, cy, width, height)
    split = 0.0
    if sampling > 0:  # no lattice: the near side may have gaps the far side shows through
        split = (
            _SPLIT
            * sampling
            * (float(np.median(depth[:: max(1, len(depth) // 1024)])) if mode == _MODE_PERSPECTIVE else 1.0)
        )
    side = _sides(u, v, depth, width, height, split) if split > 0 else np.zeros(len(u), np.int64)
    rank, nranks = _layer_ranks(u, v, width, height, depth, side, split > 0, _MAX_LAYERS)
    ys, xs, canvas_w, canvas_h, layers = _layout(u, v, rank, nranks, width, height)
    img = _paint(ys, xs, voxel_colors, canvas_h, canvas_w)
    ok, jpeg = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise CodecError(f"JPEG could not code the {canvas_w} x {canvas_h} colour image")
    body = jpeg.tobytes()
    if 3 * len(voxels) <= len(body):
        return _color_payload_raw(voxel_colors)
    logger.debug(
        "octree colour: %s projection, %s, %d x %d grid, %d image layers in a %d x %d canvas, %d bytes",
        "perspective" if mode == _MODE_PERSPECTIVE else "orthographic",
        "camera pixel lattice"
        if split == 0 and mode == _MODE_PERSPECTIVE and sampling == 0
        else "no lattice",
        width,
        height,
        int(layers),
        int(canvas_w),
        int(canvas_h),
        len(body),
    )
    return _sealed(
        _COLOR_HEADER,
        _COLOR_MAGIC,
        _VERSION,
        mode,
        int(layers),
        quality,
        len(voxels),
        fx,
        fy,
        cx,
        cy,
        split,
        *rot.ravel(),
        *centre,
        width,
        height,
        int(canvas_w),
        int(canvas_h),
        body=body,
    )


def _jpeg_size(data: bytes) -> tuple[int, int] | None:
    """(width, height) from a JPEG's frame header, or None when there is none before the data."""
    if data[:2] != b"\xff\xd8":
        return None
    pos = 2
    while pos + 4 <= len(data):
        if data[pos] != 0xFF:
            return None
        marker = data[pos + 1]
        if marker == 0xFF:
            pos += 1
            continue
        length = int.from_bytes(data[pos + 2 : pos + 4], "big")
        if length < 2:
            return None
        if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):
            if pos + 9 > len(data):
                return None
            height = int.from_bytes(data[pos + 5 : pos + 7], "big")
            width = int.from_bytes(data[pos + 7 : pos + 9], "big")
            return width, height
        if marker == 0xDA:  # start of scan before any frame header
            return None
        pos += 2 + length
    return None


def decode_unorganized(geometry: bytes, color: bytes, *, max_points: int) -> tuple[np.ndarray, np.ndarray]:
    """(points (M,3) float32 voxel centres, colors (M,3) uint8). Refuse (raise holo.errors.CodecError with a
    sentence) anything malformed: wrong header, point count over max_points (check BEFORE allocating),
    payload inconsistent. Never crash, hang or allocate without bound on hostile bytes."""
    geometry = bytes(geometry)
    color = bytes(color)
    voxels, origin, step = _decode_geometry(geometry, max_points)
    colors = _decode_color(color, voxels, origin, step)
    points = _centres(voxels, origin, step).astype(np.float32)
    return points, colors


def _decode_geometry(data: bytes, max_points: int) -> tuple[np.ndarray, np.ndarray, float]:
    if len(data) < _GEOMETRY_HEADER.size:
        raise CodecError(
            f"octree geometry payload is {len(data)} bytes, shorter than its {_GEOMETRY_HEADER.size}-byte header"
        )
    magic, version, depth, count, ox, oy, oz, step, _ = _GEOMETRY_HEADER.unpack_from(data, 0)
    if magic != _GEOMETRY_MAGIC:
        raise CodecError(
            f"not an octree geometry payload: bad magic {magic!r} (expected {_GEOMETRY_MAGIC!r})"
        )
    if version != _VERSION:
        raise CodecError(f"octree geometry payload version {version} is not the supported version {_VERSION}")
    if count > max_points:
        raise CodecError(f"octree geometry claims {count} points, over the {max_points}-point limit")
    if depth > MAX_DEPTH:
        raise CodecError(f"octree geometry claims a {depth}-bit grid; at most {MAX_DEPTH} bits are supported")
    origin = np.array([ox, oy, oz], np.float64)
    if not (np.isfinite(origin).all() and math.isfinite(step) and step > 0):
        raise CodecError("octree geometry header holds a non-finite origin or a non-positive step")
    body = data[_GEOMETRY_HEADER.size :]
    if not _seal_ok(data, _GEOMETRY_HEADER):
        raise CodecError("octree geometry payload is corrupt or truncated (CRC mismatch)")
    if count == 0:
        if depth != 0 or body:
            raise CodecError("octree geometry claims no points but carries a tree")
        return np.zeros(0, np.int64), origin, step
    if depth == 0:
        if count != 1 or body:
            raise CodecError(f"octree geometry with a 0-bit grid must hold 1 point, not {count}")
        return np.zeros(1, np.int64), origin, step
    if count > 8**depth:
        raise CodecError(f"octree geometry claims {count} points, more than a {depth}-bit grid holds")
    status, voxels = _decode_octree(np.frombuffer(body, np.uint8), depth, count)
    if status == 1:
        raise CodecError(f"octree geometry grows past its declared {count} points")
    if status == 2:
        raise CodecError(f"octree geometry decodes to a different number of points than its declared {count}")
    if status == 3:
        raise CodecError("octree geometry stream ends before its tree does")
    return voxels, origin, step


def _decode_color(data: bytes, voxels: np.ndarray, origin: np.ndarray, step: float) -> np.ndarray:
    import cv2

    if len(data) < _COLOR_HEADER.size:
        raise CodecError(
            f"octree colour payload is {len(data)} bytes, shorter than its {_COLOR_HEADER.size}-byte header"
        )
    fields = _COLOR_HEADER.unpack_from(data, 0)
    magic, version, mode, layers, _quality, count = fields[:6]
    fx, fy, cx, cy, split = fields[6:11]
    rot = np.array(fields[11:20], np.float64).reshape(3, 3)
    centre = np.array(fields[20:23], np.float64)
    width, height, canvas_w, canvas_h = fields[23:27]
    if magic != _COLOR_MAGIC:
        raise CodecError(f"not an octree colour payload: bad magic {magic!r} (expected {_COLOR_MAGIC!r})")
    if version != _VERSION:
        raise CodecError(f"octree colour payload version {version} is not the supported version {_VERSION}")
    n = len(voxels)
    if count != n:
        raise CodecError(f"colour payload is for {count} points but the geometry holds {n}")
    body = data[_COLOR_HEADER.size :]
    if not _seal_ok(data, _COLOR_HEADER):
        raise CodecError("octree colour payload is corrupt or truncated (CRC mismatch)")
    if n == 0:
        if mode != _MODE_EMPTY or body:
            raise CodecError("colour payload for no points carries an image")
        return np.zeros((0, 3), np.uint8)
    if mode == _MODE_RAW:
        if len(body) != 3 * n:
            raise CodecError(f"raw colour payload holds {len(body)} bytes, {n} points need {3 * n}")
        return np.frombuffer(body, np.uint8).reshape(n, 3).copy()
    if mode not in (_MODE_PERSPECTIVE, _MODE_ORTHOGRAPHIC):
        raise CodecError(f"colour payload names unknown projection {mode}")
    values = np.array([fx, fy, cx, cy, split, *rot.ravel(), *centre])
    if not (np.isfinite(values).all() and fx > 0 and fy > 0 and split >= 0):
        raise CodecError("colour payload's projection holds non-finite numbers or a non-positive scale")
    if not (1 <= width <= _MAX_SIDE and 1 <= height <= _MAX_SIDE and width * height <= _grid_budget(n)):
        raise CodecError(
            f"colour payload's {width} x {height} projection grid is out of bounds for {n} points"
        )
    s, t, depth = _plane_codes(voxels, origin, step, mode, rot, centre)
    if mode == _MODE_PERSPECTIVE and not (depth > 0).all():
        raise CodecError("colour payload projects from a viewpoint some points are not in front of")
    u, v = _pixels(s, t, fx, fy, cx, cy, width, height)
    side = _sides(u, v, depth, width, height, split) if split > 0 else np.zeros(len(u), np.int64)
    rank, nranks = _layer_ranks(u, v, width, height, depth, side, split > 0, _MAX_LAYERS)
    ys, xs, want_w, want_h, want_layers = _layout(u, v, rank, nranks, width, height)
    if (int(want_w), int(want_h), int(want_layers)) != (canvas_w, canvas_h, layers):
        raise CodecError(
            f"colour image is {canvas_w} x {canvas_h} in {layers} layers where the geometry needs "
            f"{int(want_w)} x {int(want_h)} in {int(want_layers)}"
        )
    if _jpeg_size(body) != (canvas_w, canvas_h):
        raise CodecError(f"colour payload does not hold a {canvas_w} x {canvas_h} JPEG image")
    img = cv2.imdecode(np.frombuffer(body, np.uint8), cv2.IMREAD_COLOR)
    if img is None or img.shape != (canvas_h, canvas_w, 3):
        raise CodecError("colour payload's JPEG image could not be decoded")
    return _gather(ys, xs, img)
