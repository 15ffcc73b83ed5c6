"""A compiled CPU Gaussian rasteriser (forward and backward) for splat fitting, with numba.

The decomposition is gsplat's: a per-Gaussian projection (means, quats, scales -> 2D means, conics, depths), SH
colours in torch (:func:`renderers.gaussians.gaussian_colors`), and the 2D stage -- per-Gaussian 2D mean, conic,
opacity, RGB and depth -> image RGB, alpha and alpha-weighted depth -- as one :class:`torch.autograd.Function`
whose forward and backward are numba kernels. The image model is the one of :mod:`renderers.gaussians` (gsplat
"classic"), so this backend equals the dense reference up to float32 rounding.

The projection is a second autograd Function with float64 numba kernels that compute exactly what
:func:`renderers.gaussians.project_gaussians` does (tests compare values and gradients to 1e-9): through torch's
batched 3×3 matmuls it cost ~90 ms forward + backward at 100k Gaussians on the (shared) 2-core machine, more
than the whole budget of a fit step (issue 10: 40 ms). When the camera itself needs gradients (pose refinement),
``project_gaussians`` is used instead. No frustum cull is needed: the projection is cheap for every Gaussian and
the binning drops those whose footprint misses the image.

How the 2D stage works:

1. Binning (no gradients): each drawn Gaussian's footprint is its alpha >= ALPHA_MIN ellipse,
   ``dᵀ Q d <= 2 ln(255 · opacity)`` with Q the conic, whose bounding box gives the 16×16 tiles it touches. The
   drawn Gaussians are ranked front to back, and tiles are filled by a counting sort (count, prefix sum, fill;
   serial) over that order, so each tile's list is already depth-sorted: a stable sort by (tile, depth) in
   O(pairs). Each (tile, Gaussian) entry then gets its own 64-byte copy of the Gaussian's values (parallel), so
   that the kernels read memory in order instead of one scattered row per entry.
2. Forward (``prange`` over tiles, biggest tiles first): each tile walks its list front to back and, for each
   Gaussian, visits the rows of its footprint's bounding box, 8 pixels of a row at a time as vector lanes (16 when
   the footprint is wider than 8 columns in this tile): alpha = min(ALPHA_MAX, opacity · exp(-power)) with a
   polynomial exp (:func:`_exp_neg`), masked where power > ln(255 · opacity) (alpha < ALPHA_MIN) or where the
   pixel has terminated. Per pixel it keeps the transmittance, stops before the Gaussian that would take it to
   TRANSMITTANCE_MIN or below, and stores the final transmittance and the last contributor for the backward pass.
3. Backward (``prange`` over tiles): each tile walks its list back to front over the same lanes and masks (plus
   "composited in forward"), recovering the transmittance before each contributor by division
   (T_before = T_after / (1 - alpha)) and the colour behind it as a running sum; the gradient of one Gaussian
   within one tile is summed in vector registers (a fixed order) and written to that (tile, Gaussian) entry.
   Entries belong to exactly one tile, so there are no races; a parallel pass over Gaussians then sums each
   one's entries (the binning recorded where they went).
   The result is deterministic whatever the thread count.

Threading: numba's ``workqueue`` layer (no spin-waiting pool, no extra dependency; see THREADING_LAYER), the thread
count from the CPUs this process may use (affinity and cgroup quota), tiles handed out dynamically so that a
thread slowed by a competing process does not hold up the others. Kernel launches are serialised by a lock because
the workqueue layer must not be entered from two Python threads at once (the app renders from worker threads).

The 2D stage is float32, the projection float64 (per Gaussian, cheap). Inputs may be float32 or float64; the
projection kernels read and write either directly (one compiled variant per dtype, no conversion copies) and
compute in float64; outputs and gradients come back in the inputs' dtype. Kernels compile on first use with
``cache=True``: once per machine (tens of seconds on 2 busy cores; the cache is written next to this file, or under
NUMBA_CACHE_DIR when that is set, e.g. on a read-only install), then about a second to load.
"""

from __future__ import annotations

import functools
import math
import os
import threading

import numba
import numpy as np
import torch
from llvmlite import ir as llvm_ir
from numba import njit, prange, types
from numba.extending import intrinsic
from torch import Tensor

from core.cameras import Camera
from renderers.gaussians import (
    ALPHA_MAX,
    ALPHA_MIN,
    FOV_CLAMP_MARGIN,
    TRANSMITTANCE_MIN,
    GaussianRender,
    RasterCache,
    RasterSettings,
    _check_inputs,
    gaussian_colors,
    project_gaussians,
)

TILE_SIZE = 16
"""Tile edge in pixels (gsplat's): one tile's per-pixel state (256 pixels × 7 floats) stays in L1 cache, and an
image of 256×192 gives 192 tiles, enough to balance two to a few dozen threads."""
THREADING_LAYER = "workqueue"
"""numba's own thread pool: its workers sleep on a condition variable instead of spin-waiting (OpenMP's default
under torch's libgomp), needs no extra package (TBB would), and measured on a loaded 2-core machine it degrades
no worse than "omp" with OMP_WAIT_POLICY=PASSIVE (scripts/bench_raster.py). Used unless NUMBA_THREADING_LAYER
is set in the environment."""
PARALLEL_CHUNK_TILES = 1
"""Tiles are handed to threads one at a time (dynamic scheduling) instead of numba's default static split:
a thread that loses its core to another process then delays the frame by one tile, not by half the image."""
BOX_SLACK_PX = 1e-3
"""A footprint's bounding box (solved in float64) is widened by this much on each side before rounding to pixels:
far more than the float32 rounding of the kernels' alpha test (~1e-5 px at 256 px), so a pixel centred on the
alpha = ALPHA_MIN boundary is still tested; a whole pixel of margin would add ~2 rows of work to a small splat's
~4."""
LANE_BLOCK = 8
"""Pixels of a tile row the kernels process together: one AVX2 vector of float32 (AVX-512 machines also run 256-bit
vectors, LLVM's default there). A footprint whose columns within the tile fit in 8 is done in one block, others in
two (the whole tile row)."""
PARALLEL_CHUNK_GAUSSIANS = 4096
"""Gaussians per work item in the projection kernels: uniform, cheap work, so large items (little scheduling) that
still leave a few dozen items at 100k Gaussians for dynamic balancing."""
PACKED_COLUMNS = 10
RGB_COLUMNS = slice(6, 9)  # where r, g, b sit in a packed row (u, v, conic a b c, opacity, r g b, z)
"""Per-Gaussian values of the 2D stage, one float32 row each: u, v, conic a, b, c, opacity, r, g, b, z."""
POWER_CLAMP = 80.0
"""The exponent handed to _exp_neg is clamped to this (exp(-80) ~ 2e-35, still a normal float32): a lane far
outside a footprint then cannot overflow the exponent bits. Such lanes are masked anyway (power > ln(255 o))."""
KERNEL_FASTMATH = {"nsz", "arcp", "contract", "afn", "reassoc"}  # a set: numba rejects frozenset
"""LLVM fast-math flags of the forward and backward kernels: "reassoc" lets the per-Gaussian gradient sums and the
count of finished pixels be vectorised across a tile row's lanes (a fixed summation order, so results do not
depend on the thread count); "contract" gives fused multiply-adds. Not "nnan"/"ninf": the kernels must not assume
away non-finite inputs."""
PROJECTION_FASTMATH = {"contract", "arcp", "nsz"}
"""LLVM fast-math flags of the (float64) projection kernels: fused multiply-adds and multiplications by a
reciprocal; no reassociation, so values stay within ~1e-15 relative of project_gaussians (measured 10-20% less
CPU, forward and backward, at 100k Gaussians)."""

# float32 constants, so that numba keeps the kernels' arithmetic in float32 (Python floats would promote to float64)
_F_HALF = np.float32(0.5)
_F_ONE = np.float32(1.0)
_F_ZERO = np.float32(0.0)
_F_ALPHA_MAX = np.float32(ALPHA_MAX)
_F_ALPHA_MIN = np.float32(ALPHA_MIN)
_F_T_MIN = np.float32(TRANSMITTANCE_MIN)
_F_POWER_CLAMP = np.float32(POWER_CLAMP)
# exp(-p) = 2^-n · exp(-r), n = round(p / ln 2), r = p - n ln 2 in [-ln2/2, ln2/2] (Cody-Waite: ln 2 split in a
# part with few mantissa bits, so n · _F_LN2_HI is exact, plus the rest); exp(-r) by its Taylor polynomial of
# degree 6 (truncation |r|^7/7! <= 1.3e-7 relative), 2^-n built from its exponent bits.
_F_LOG2E = np.float32(1.0 / math.log(2.0))
_F_LN2_HI = np.float32(0.693145751953125)  # ln 2 to 16 bits: n · _F_LN2_HI is exact for |n| < 256
_F_LN2_LO = np.float32(math.log(2.0) - 0.693145751953125)
_F_EXP_C3, _F_EXP_C4, _F_EXP_C5, _F_EXP_C6 = (np.float32(1.0 / math.factorial(i)) for i in (3, 4, 5, 6))
_FLOAT32_EXPONENT_BIAS = 127
_FLOAT32_MANTISSA_BITS = 23

if "NUMBA_THREADING_LAYER" not in os.environ:
    numba.config.THREADING_LAYER = THREADING_LAYER
_KERNEL_LOCK = threading.Lock()


@functools.lru_cache(maxsize=1)
def available_cpus() -> int:
    """CPUs this process may actually use: its affinity mask, lowered by a cgroup v2 CPU quota when one is set."""
    count = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    try:
        with open("/sys/fs/cgroup/cpu.max") as f:
            quota, period = f.read().split()[:2]
        if quota != "max":
            count = min(count, max(1, math.ceil(int(quota) / int(period))))
    except (OSError, ValueError):
        pass  # no cgroup v2 quota visible: the affinity mask is the limit
    return max(1, count)


def _set_threads(chunk: int) -> None:
    """numba's thread count and chunk size are per calling thread; set them before each launch (cheap)."""
    numba.set_num_threads(min(available_cpus(), numba.config.NUMBA_NUM_THREADS))
    numba.set_parallel_chunksize(chunk)


# --- binning (no gradients) ---------------------------------------------------------------------------------------
# Drawn Gaussians are renumbered front to back ("ranks"); each tile's list holds them in increasing rank, and each
# (tile, Gaussian) entry gets its own copy of the Gaussian's row of the footprint table (see _entry_table).
ENTRY_COLUMNS = 16
"""Columns of the per-Gaussian footprint table and of the per-entry table: the 10 packed values, the footprint's
power limit ln(255 · opacity) (alpha >= ALPHA_MIN  <=>  power <= that limit, so the kernels reject a pixel without
an exp), its box x0, x1, y0, y1 (int32 bits), one unused: 64 bytes, one cache line per entry."""
POWER_LIMIT_COLUMN, BOX_COLUMN = PACKED_COLUMNS, PACKED_COLUMNS + 1  # BOX_COLUMN: x0, then x1, y0, y1


@njit(parallel=True, cache=True)
def _footprints(
    packed,  # [M, 10] float32
    valid,  # [M] bool
    height,
    width,
):
    """Per Gaussian: its footprint table row (packed values, power limit, pixel box), its box in tiles (int16, 8
    bytes a Gaussian: _tile_lists gathers these in depth order mostly from cache, where 64-byte table rows missed)
    and radius.

    With Q = [[a, b], [b, c]] the conic and t = ln(255 · opacity), the footprint is 0.5 dᵀ Q d <= t, and its
    extents are sqrt(2t Σxx), sqrt(2t Σyy) with Σ = Q⁻¹. Radius 0 = not drawn (invalid, too faint or off-screen);
    the table rows of those are left unwritten.
    """
    m = packed.shape[0]
    # Allocated outside any parallel loop on purpose: numba turns np.zeros into a parfor of its own, which with
    # a chunk size of 1 is scheduled element by element (measured 50× slower than the whole function).
    table, tile_box, radii = _alloc_footprints(m)  # [M, 16]; [M, 4]; [M]
    for chunk in prange((m + PARALLEL_CHUNK_GAUSSIANS - 1) // PARALLEL_CHUNK_GAUSSIANS):
        start = chunk * PARALLEL_CHUNK_GAUSSIANS
        stop = min(m, start + PARALLEL_CHUNK_GAUSSIANS)
        _footprints_range(start, stop, packed, valid, height, width, table, tile_box, radii)
    return table, tile_box, radii


@njit(cache=True)
def _alloc_footprints(m):
    return np.empty((m, ENTRY_COLUMNS), np.float32), np.empty((m, 4), np.int16), np.zeros(m, np.int32)


@njit(cache=True)
def _footprints_range(start, stop, packed, valid, height, width, table, tile_box, radii):
    """Gaussians start..stop-1 of _footprints."""
    for g in range(start, stop):
        u, v = np.float64(packed[g, 0]), np.float64(packed[g, 1])
        a, b, c, opacity = np.float64(packed[g, 2]), np.float64(packed[g, 3]), np.float64(packed[g, 4]), packed[g, 5]
        det = a * c - b * b
        if not valid[g] or not (opacity >= _F_ALPHA_MIN) or not (det > 0.0) or not (a > 0.0):
            continue
        if not (np.isfinite(u) and np.isfinite(v) and np.isfinite(det)):
            continue
        t = np.float64(math.log(opacity / _F_ALPHA_MIN))
        ex = min(math.sqrt(2.0 * t * c / det), 1e7)  # clipped: beyond any image, and safe to convert to int
        ey = min(math.sqrt(2.0 * t * a / det), 1e7)
        x0 = max(0, math.ceil(u - ex - 0.5 - BOX_SLACK_PX))
        x1 = min(width - 1, math.floor(u + ex - 0.5 + BOX_SLACK_PX))
        y0 = max(0, math.ceil(v - ey - 0.5 - BOX_SLACK_PX))
        y1 = min(height - 1, math.floor(v + ey - 0.5 + BOX_SLACK_PX))
        radius = math.ceil(max(ex, ey))
        if x0 > x1 or y0 > y1 or radius <= 0:
            continue
        for col in range(PACKED_COLUMNS):
            table[g, col] = packed[g, col]
        table[g, POWER_LIMIT_COLUMN] = t
        table[g, BOX_COLUMN] = _float32_from_bits(np.int32(x0))
        table[g, BOX_COLUMN + 1] = _float32_from_bits(np.int32(x1))
        table[g, BOX_COLUMN + 2] = _float32_from_bits(np.int32(y0))
        table[g, BOX_COLUMN + 3] = _float32_from_bits(np.int32(y1))
        table[g, ENTRY_COLUMNS - 1] = _F_ZERO
        tile_box[g, 0], tile_box[g, 1] = x0 // TILE_SIZE, x1 // TILE_SIZE
        tile_box[g, 2], tile_box[g, 3] = y0 // TILE_SIZE, y1 // TILE_SIZE
        radii[g] = radius


@njit(cache=True, inline="always")
def _tile_range(tile_box, k):
    """First and last tile column and row (inclusive) of tile_box row k, as int64."""
    return np.int64(tile_box[k, 0]), np.int64(tile_box[k, 1]), np.int64(tile_box[k, 2]), np.int64(tile_box[k, 3])


@njit(cache=True)
def _tile_lists(
    tile_box,  # [M, 4] int16: first and last tile column and row of each Gaussian's box
    order,  # [D] int64, drawn Gaussians front to back
    tiles_x,
    tiles_y,
):
    """Counting sort of (tile, rank) pairs by tile; within a tile, ranks increase (front to back).

    Returns the tiles' entry ranges, each entry's Gaussian and, per rank, where its entries went
    (``by_rank[rank_offsets[k]:rank_offsets[k + 1]]``), so that the backward pass can sum a Gaussian's entries
    without a scatter (in parallel, race-free)."""
    box = np.empty((order.shape[0], 4), np.int16)  # [D, 4]: one gather (of 8 bytes a Gaussian, mostly cache hits)
    for k in range(order.shape[0]):
        for col in range(4):
            box[k, col] = tile_box[order[k], col]
    n_tiles = tiles_x * tiles_y
    offsets = np.zeros(n_tiles + 1, np.int64)  # [T + 1]
    rank_offsets = np.zeros(order.shape[0] + 1, np.int64)  # [D + 1]
    for k in range(order.shape[0]):
        tx0, tx1, ty0, ty1 = _tile_range(box, k)
        for ty in range(ty0, ty1 + 1):
            for tx in range(tx0, tx1 + 1):
                offsets[ty * tiles_x + tx + 1] += 1
        rank_offsets[k + 1] = rank_offsets[k] + (tx1 - tx0 + 1) * (ty1 - ty0 + 1)
    for t in range(n_tiles):
        offsets[t + 1] += offsets[t]
    fill = offsets[:-1].copy()
    entry_gaussian = np.empty(offsets[n_tiles], np.int32)  # [E] Gaussian of each entry, entries grouped by tile
    by_rank = np.empty(offsets[n_tiles], np.int64)  # [E] entry indices grouped by rank
    written = 0
    for k in range(order.shape[0]):
        tx0, tx1, ty0, ty1 = _tile_range(box, k)
        for ty in range(ty0, ty1 + 1):
            for tx in range(tx0, tx1 + 1):
                t = ty * tiles_x + tx
                entry_gaussian[fill[t]] = order[k]
                by_rank[written] = fill[t]
                written += 1
                fill[t] += 1
    return offsets, entry_gaussian, rank_offsets, by_rank


# --- forward and backward kernels ---------------------------------------------------------------------------------
# Both kernels keep a tile's per-pixel state in one [channels, 256] float32 array (pixel index row · TILE_SIZE +
# column) and process a Gaussian one tile row at a time, in blocks of LANE_BLOCK pixels that are independent lanes
# with no branch (masks become selects or multiplications by zero), so LLVM vectorises them. Keeping every channel
# in one array lets LLVM prove that the channels do not overlap (constant distance), so it needs no run-time alias
# checks per row. A lane outside the footprint is masked by its power, which also decides whether _exp_neg's value
# is used, so forward and backward see identical alphas.
# Everything the lanes read or write is a channel of that array at the pixel's own index (even the pixel-centre x,
# and the last contributor's entry index, kept as the bits of an int32): LLVM vectorises a loop of only 8
# iterations only when it needs no run-time alias check, i.e. when every access is provably disjoint.
# Indices are made unsigned (np.uint64): numba then skips its negative-index wraparound, which otherwise turns each
# load into a select that blocks vectorisation. Integers in the lanes are avoided for the same reason (numba widens
# int32 arithmetic to int64, halving the vector width): the finished-pixel count is a float32 sum.
# Channels of the forward kernel's state: transmittance, terminated (1.0; also pixels outside the image), r, g, b, z
# accumulators, pixel-centre x, entry index of the last contributor (int32 bits; -1 if none).
_FWD_TRANS, _FWD_DONE, _FWD_R, _FWD_G, _FWD_B, _FWD_Z, _FWD_X, _FWD_LAST = range(8)
# Channels of the backward kernel's state: transmittance after the current Gaussian, Σ_{j behind} s_j α_j T_j,
# d loss / d (r, g, b, z, alpha) of the pixel, pixel-centre x, last contributor (int32 bits; -1 outside the image).
_BWD_TRANS, _BWD_BEHIND, _BWD_GR, _BWD_GG, _BWD_GB, _BWD_GZ, _BWD_GA, _BWD_X, _BWD_LAST = range(9)


@intrinsic
def _float32_from_bits(typingctx, bits):
    """Reinterpret an int32's bits as a float32 (no conversion): builds 2^n from its exponent field."""
    sig = types.float32(types.int32)

    def codegen(context, builder, signature, args):
        return builder.bitcast(args[0], llvm_ir.FloatType())

    return sig, codegen


@intrinsic
def _int32_from_bits(typingctx, bits):
    """Reinterpret a float32's bits as an int32 (the inverse of _float32_from_bits)."""
    sig = types.int32(types.float32)

    def codegen(context, builder, signature, args):
        return builder.bitcast(args[0], llvm_ir.IntType(32))

    return sig, codegen


@njit(cache=True, inline="always", fastmath=KERNEL_FASTMATH)
def _exp_neg(power):
    """exp(-power) in float32 for -0.34 <= power <= POWER_CLAMP, relative error below 3e-7 (libm's expf would be
    a call per lane, which stops vectorisation). Branch-free; see the constants' comment for the method."""
    n = np.floor(power * _F_LOG2E + _F_HALF)  # float32
    r = n * _F_LN2_HI - power
    r = r + n * _F_LN2_LO  # -(power - n ln 2)
    poly = _F_ONE + r * (_F_ONE + r * (_F_HALF + r * (_F_EXP_C3 + r * (_F_EXP_C4 + r * (_F_EXP_C5 + r * _F_EXP_C6)))))
    scale = _float32_from_bits((np.int32(_FLOAT32_EXPONENT_BIAS) - np.int32(n)) << np.int32(_FLOAT32_MANTISSA_BITS))
    return poly * scale


@njit(cache=True, inline="always")
def _lane_blocks(x0, x1, box_x0, box_x1):
    """The first tile column and the number of LANE_BLOCK blocks that cover a footprint's columns in a tile."""
    first = min(max(box_x0, x0) - x0, TILE_SIZE - LANE_BLOCK)
    if min(box_x1, x1) - x0 < first + LANE_BLOCK:
        return first, 1
    return 0, TILE_SIZE // LANE_BLOCK


@njit(cache=True, inline="always")
def _tile_bounds(tile, tiles_x, height, width):
    """Pixel bounds (inclusive) of a tile."""
    x0, y0 = (tile % tiles_x) * TILE_SIZE, (tile // tiles_x) * TILE_SIZE
    return x0, min(x0 + TILE_SIZE, width) - 1, y0, min(y0 + TILE_SIZE, height) - 1


@njit(parallel=True, cache=True)
def _entry_table(
    table,  # [M, 16] float32, see _footprints
    entry_gaussian,  # [E] int32
):  # -> [E, 16] float32
    """Each (tile, Gaussian) entry's copy of its Gaussian's table row, in entry order: the kernels then read memory
    sequentially instead of one table row per entry scattered over all Gaussians (a cache miss each, forward and
    backward). One 64-byte row per entry: a single cache miss where the packed values, power limit and box as
    separate arrays were three."""
    count = entry_gaussian.shape[0]
    entries = np.empty((count, ENTRY_COLUMNS), np.float32)
    for chunk in prange((count + PARALLEL_CHUNK_GAUSSIANS - 1) // PARALLEL_CHUNK_GAUSSIANS):
        _copy_rows(chunk * PARALLEL_CHUNK_GAUSSIANS, min(count, (chunk + 1) * PARALLEL_CHUNK_GAUSSIANS), table,
                   entry_gaussian, entries)  # fmt: skip
    return entries


@njit(cache=True)
def _copy_rows(start, stop, table, entry_gaussian, entries):
    """Entries start..stop-1 of _entry_table (unsigned indices: no negative-index wraparound, a plain copy)."""
    for e in range(start, stop):
        g = np.uint64(entry_gaussian[e])
        for col in range(ENTRY_COLUMNS):
            entries[np.uint64(e), col] = table[g, col]


@njit(parallel=True, cache=True, fastmath=KERNEL_FASTMATH, error_model="numpy")
def _forward_kernel(
    entries,  # [E, 16] float32: per (tile, Gaussian) entry its table row and box, see _entry_table
    offsets,  # [T + 1] int64
    tile_order,  # [T] int64, biggest tiles first
    tiles_x,
    height,
    width,
    out,  # [H, W, 5] float32: r, g, b, z, alpha (written)
    final_t,  # [H, W] float32 (written)
    last,  # [H, W] int32 entry index of the last contributor, -1 if none (written)
):
    for n in prange(tile_order.shape[0]):
        tile = tile_order[n]
        x0, x1, y0, y1 = _tile_bounds(tile, tiles_x, height, width)
        state = np.zeros((_FWD_LAST + 1, TILE_SIZE * TILE_SIZE), np.float32)  # [8, 256]
        for i in range(TILE_SIZE * TILE_SIZE):
            state[_FWD_TRANS, i] = _F_ONE
            state[_FWD_X, i] = np.float32(x0 + i % TILE_SIZE) + _F_HALF
            state[_FWD_LAST, i] = _float32_from_bits(np.int32(-1))
            if i % TILE_SIZE > x1 - x0 or i // TILE_SIZE > y1 - y0:
                state[_FWD_DONE, i] = _F_ONE
        active = np.float32((x1 - x0 + 1) * (y1 - y0 + 1))  # pixels still compositing
        for e in range(offsets[tile], offsets[tile + 1]):
            u, v, a, b, c = entries[e, 0], entries[e, 1], entries[e, 2], entries[e, 3], entries[e, 4]
            opacity, red, green, blue, z = entries[e, 5], entries[e, 6], entries[e, 7], entries[e, 8], entries[e, 9]
            power_max = entries[e, POWER_LIMIT_COLUMN]
            box_x0, box_x1 = _int32_from_bits(entries[e, BOX_COLUMN]), _int32_from_bits(entries[e, BOX_COLUMN + 1])
            box_y0, box_y1 = _int32_from_bits(entries[e, BOX_COLUMN + 2]), _int32_from_bits(entries[e, BOX_COLUMN + 3])
            half_a, half_c, entry = _F_HALF * a, _F_HALF * c, _float32_from_bits(np.int32(e))
            first, blocks = _lane_blocks(x0, x1, box_x0, box_x1)
            for py in range(max(y0, box_y0), min(y1, box_y1) + 1):
                dy = np.float32(py) + _F_HALF - v
                b_dy, c_dy2 = b * dy, half_c * dy * dy
                row = (py - y0) * TILE_SIZE + first
                finished = _F_ZERO
                for block in range(blocks):
                    for lane in range(LANE_BLOCK):
                        i = np.uint64(row + block * LANE_BLOCK + lane)
                        dx = state[_FWD_X, i] - u
                        power = dx * (half_a * dx + b_dy) + c_dy2  # ½ dᵀ Q d
                        alpha = min(_F_ALPHA_MAX, opacity * _exp_neg(min(power, _F_POWER_CLAMP)))
                        alpha = alpha if (power <= power_max) & (state[_FWD_DONE, i] == _F_ZERO) else _F_ZERO
                        t = state[_FWD_TRANS, i]
                        after = t * (_F_ONE - alpha)
                        stop = after <= _F_T_MIN  # early termination: this and everything behind are skipped
                        weight = _F_ZERO if stop else alpha * t
                        state[_FWD_R, i] += weight * red
                        state[_FWD_G, i] += weight * green
                        state[_FWD_B, i] += weight * blue
                        state[_FWD_Z, i] += weight * z
                        state[_FWD_TRANS, i] = t if stop else after
                        state[_FWD_DONE, i] = _F_ONE if stop else state[_FWD_DONE, i]
                        state[_FWD_LAST, i] = entry if weight > _F_ZERO else state[_FWD_LAST, i]
                        finished += _F_ONE if stop else _F_ZERO
                active -= finished
            if active < _F_HALF:
                break
        for py in range(y0, y1 + 1):
            for px in range(x0, x1 + 1):
                i = (py - y0) * TILE_SIZE + px - x0
                out[py, px, 0], out[py, px, 1] = state[_FWD_R, i], state[_FWD_G, i]
                out[py, px, 2], out[py, px, 3] = state[_FWD_B, i], state[_FWD_Z, i]
                out[py, px, 4] = _F_ONE - state[_FWD_TRANS, i]
                final_t[py, px] = state[_FWD_TRANS, i]
                last[py, px] = _int32_from_bits(state[_FWD_LAST, i])


@njit(parallel=True, cache=True, fastmath=KERNEL_FASTMATH, error_model="numpy")
def _backward_kernel(
    entries,  # [E, 16] float32
    offsets,  # [T + 1] int64
    tile_order,  # [T] int64
    tiles_x,
    height,
    width,
    grad_out,  # [H, W, 5] float32: d loss / d (r, g, b, z, alpha)
    final_t,  # [H, W] float32
    last,  # [H, W] int32
    grad_entries,  # [E, 10] float32 (written): gradient of each (tile, Gaussian) entry w.r.t. its packed row
):
    for n in prange(tile_order.shape[0]):
        tile = tile_order[n]
        x0, x1, y0, y1 = _tile_bounds(tile, tiles_x, height, width)
        state = np.zeros((_BWD_LAST + 1, TILE_SIZE * TILE_SIZE), np.float32)  # [9, 256]
        for i in range(TILE_SIZE * TILE_SIZE):
            state[_BWD_X, i] = np.float32(x0 + i % TILE_SIZE) + _F_HALF
            state[_BWD_LAST, i] = _float32_from_bits(np.int32(-1))
        newest = offsets[tile] - 1
        for py in range(y0, y1 + 1):
            for px in range(x0, x1 + 1):
                i = (py - y0) * TILE_SIZE + px - x0
                state[_BWD_TRANS, i] = final_t[py, px]
                state[_BWD_LAST, i] = _float32_from_bits(last[py, px])
                newest = max(newest, last[py, px])
                for ch in range(5):
                    state[_BWD_GR + ch, i] = grad_out[py, px, ch]
        for e in range(newest + 1, offsets[tile + 1]):  # never reached in forward
            for col in range(PACKED_COLUMNS):
                grad_entries[e, col] = _F_ZERO
        for e in range(newest, offsets[tile] - 1, -1):
            u, v, a, b, c = entries[e, 0], entries[e, 1], entries[e, 2], entries[e, 3], entries[e, 4]
            opacity, red, green, blue, z = entries[e, 5], entries[e, 6], entries[e, 7], entries[e, 8], entries[e, 9]
            power_max = entries[e, POWER_LIMIT_COLUMN]
            box_x0, box_x1 = _int32_from_bits(entries[e, BOX_COLUMN]), _int32_from_bits(entries[e, BOX_COLUMN + 1])
            box_y0, box_y1 = _int32_from_bits(entries[e, BOX_COLUMN + 2]), _int32_from_bits(entries[e, BOX_COLUMN + 3])
            half_a, half_c, entry = _F_HALF * a, _F_HALF * c, np.int32(e)
            first, blocks = _lane_blocks(x0, x1, box_x0, box_x1)
            g_u = g_v = g_a = g_b = g_c = g_dp = g_r = g_g = g_bl = g_z = _F_ZERO
            for py in range(max(y0, box_y0), min(y1, box_y1) + 1):
                dy = np.float32(py) + _F_HALF - v
                b_dy, c_dy2 = b * dy, half_c * dy * dy
                row = (py - y0) * TILE_SIZE + first
                # the row's moments of d loss / d power: Σ dp, Σ dx dp, Σ dx² dp (dy is the row's)
                row_dp = row_dx_dp = row_dx2_dp = _F_ZERO
                for block in range(blocks):
                    for lane in range(LANE_BLOCK):
                        i = np.uint64(row + block * LANE_BLOCK + lane)
                        dx = state[_BWD_X, i] - u
                        power = dx * (half_a * dx + b_dy) + c_dy2
                        gauss_val = _exp_neg(min(power, _F_POWER_CLAMP))
                        raw = opacity * gauss_val
                        composited = entry <= _int32_from_bits(state[_BWD_LAST, i])  # in forward
                        hit = (power <= power_max) & composited
                        alpha = min(_F_ALPHA_MAX, raw) if hit else _F_ZERO  # 0: every update below is a no-op
                        inv_keep = _F_ONE / (_F_ONE - alpha)
                        before = state[_BWD_TRANS, i] * inv_keep
                        weight = alpha * before
                        gr, gg, gb, gz = state[_BWD_GR, i], state[_BWD_GG, i], state[_BWD_GB, i], state[_BWD_GZ, i]
                        g_r += gr * weight
                        g_g += gg * weight
                        g_bl += gb * weight
                        g_z += gz * weight
                        value = gr * red + gg * green + gb * blue + gz * z + state[_BWD_GA, i]  # d loss / d weight
                        d_alpha = before * value - state[_BWD_BEHIND, i] * inv_keep
                        # only where alpha is not clamped does it depend on opacity and the power
                        d_power = -alpha * d_alpha if hit & (raw <= _F_ALPHA_MAX) else _F_ZERO
                        row_dp += d_power
                        row_dx_dp += dx * d_power
                        row_dx2_dp += dx * dx * d_power
                        state[_BWD_BEHIND, i] += value * weight
                        state[_BWD_TRANS, i] = before
                # power = ½ a dx² + b dx dy + ½ c dy² with dx = x - u, dy = y - v
                g_a += _F_HALF * row_dx2_dp
                g_b += dy * row_dx_dp
                g_c += _F_HALF * dy * dy * row_dp
                g_u -= a * row_dx_dp + b_dy * row_dp
                g_v -= b * row_dx_dp + c * dy * row_dp
                g_dp += row_dp
            # unclamped alpha = opacity · gauss: d alpha / d opacity = gauss = -(d alpha / d power) / opacity
            g_o = -g_dp / opacity
            grad_entries[e, 0], grad_entries[e, 1] = g_u, g_v
            grad_entries[e, 2], grad_entries[e, 3], grad_entries[e, 4] = g_a, g_b, g_c
            grad_entries[e, 5] = g_o
            grad_entries[e, 6], grad_entries[e, 7], grad_entries[e, 8] = g_r, g_g, g_bl
            grad_entries[e, 9] = g_z


@njit(parallel=True, cache=True)
def _gather_gradients(
    grad_entries,  # [E, 10] float32
    rank_offsets,  # [D + 1] int64
    by_rank,  # [E] int64
    order,  # [D] int64 rank -> Gaussian
    count,
):  # -> [M, 10] float32
    """Sum each Gaussian's (tile, Gaussian) entries: parallel over Gaussians, each summing its own (no races)."""
    out = np.zeros((count, PACKED_COLUMNS), np.float32)
    for k in prange(order.shape[0]):
        g = order[k]
        for j in range(rank_offsets[k], rank_offsets[k + 1]):
            e = by_rank[j]
            for col in range(PACKED_COLUMNS):
                out[g, col] += grad_entries[e, col]
    return out


# --- projection (forward and backward, per Gaussian; used when the camera is not being optimised) -----------------
# 3×3 matrices are row-major 9-tuples so that they live in registers (numba arrays would be heap allocations).
# The helpers are inlined into the kernels' loops at numba IR level (inline="always"): as separate functions
# their tuple results went through memory (measured at 100k Gaussians: forward 11.6 -> 7.8 ms, backward 23 -> 17.5).


@njit(cache=True, fastmath=PROJECTION_FASTMATH, inline="always")
def _mm(p, q):  # 3×3 @ 3×3
    return (
        p[0] * q[0] + p[1] * q[3] + p[2] * q[6],
        p[0] * q[1] + p[1] * q[4] + p[2] * q[7],
        p[0] * q[2] + p[1] * q[5] + p[2] * q[8],
        p[3] * q[0] + p[4] * q[3] + p[5] * q[6],
        p[3] * q[1] + p[4] * q[4] + p[5] * q[7],
        p[3] * q[2] + p[4] * q[5] + p[5] * q[8],
        p[6] * q[0] + p[7] * q[3] + p[8] * q[6],
        p[6] * q[1] + p[7] * q[4] + p[8] * q[7],
        p[6] * q[2] + p[7] * q[5] + p[8] * q[8],
    )


@njit(cache=True, fastmath=PROJECTION_FASTMATH, inline="always")
def _tr(p):  # 3×3 transpose
    return (p[0], p[3], p[6], p[1], p[4], p[7], p[2], p[5], p[8])


@njit(cache=True, fastmath=PROJECTION_FASTMATH, inline="always")
def _rotation(w, x, y, z):
    """Rotation matrix of a unit quaternion (w, x, y, z), as quat_to_rotmat."""
    return (
        1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y),
        2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x),
        2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y),
    )  # fmt: skip


@njit(cache=True, fastmath=PROJECTION_FASTMATH, inline="always")
def _geometry(means, quats, scales, g, rot, trans, intr, near):
    """Camera-space centre, clamped Jacobian terms, Σ_cam and its pieces for Gaussian ``g`` (in float64 whatever the
    inputs' dtype). Divisions are by reciprocals computed once (the projection kernels' CPU fell by a third; ~1 ulp
    from dividing each time)."""
    mx, my, mz = np.float64(means[g, 0]), np.float64(means[g, 1]), np.float64(means[g, 2])
    x = rot[0] * mx + rot[1] * my + rot[2] * mz + trans[0]
    y = rot[3] * mx + rot[4] * my + rot[5] * mz + trans[1]
    z = rot[6] * mx + rot[7] * my + rot[8] * mz + trans[2]
    zs = z if z > near else 1.0  # keeps culled Gaussians finite, as project_gaussians
    q0, q1, q2, q3 = np.float64(quats[g, 0]), np.float64(quats[g, 1]), np.float64(quats[g, 2]), np.float64(quats[g, 3])
    inv_norm = 1.0 / max(math.sqrt(q0 * q0 + q1 * q1 + q2 * q2 + q3 * q3), 1e-12)
    qn = (q0 * inv_norm, q1 * inv_norm, q2 * inv_norm, q3 * inv_norm)
    r = _rotation(qn[0], qn[1], qn[2], qn[3])
    s0, s1, s2 = np.float64(scales[g, 0]), np.float64(scales[g, 1]), np.float64(scales[g, 2])
    m = (r[0] * s0, r[1] * s1, r[2] * s2, r[3] * s0, r[4] * s1, r[5] * s2, r[6] * s0, r[7] * s1, r[8] * s2)  # R S
    cov_c = _mm(_mm(rot, _mm(m, _tr(m))), _tr(rot))
    inv_zs = 1.0 / zs
    tx = zs * min(max(x * inv_zs, -intr[4]), intr[5])
    ty = zs * min(max(y * inv_zs, -intr[6]), intr[7])
    return x, y, z, inv_zs, tx, ty, inv_norm, qn, r, m, cov_c


@njit(cache=True, fastmath=PROJECTION_FASTMATH, inline="always")
def _cov2d(j00, j02, j11, j12, cv, eps2d):
    """J Σ Jᵀ + eps I for J = [[j00, 0, j02], [0, j11, j12]]: (a, b = mean off-diagonal, c)."""
    a = j00 * (j00 * cv[0] + j02 * cv[6]) + j02 * (j00 * cv[2] + j02 * cv[8]) + eps2d
    b01 = j00 * (j11 * cv[1] + j12 * cv[2]) + j02 * (j11 * cv[7] + j12 * cv[8])
    b10 = j11 * (j00 * cv[3] + j02 * cv[5]) + j12 * (j00 * cv[6] + j02 * cv[8])
    c = j11 * (j11 * cv[4] + j12 * cv[5]) + j12 * (j11 * cv[7] + j12 * cv[8]) + eps2d
    return a, 0.5 * (b01 + b10), c


@njit(cache=True, fastmath=PROJECTION_FASTMATH)
def _project_forward_range(
    start,
    stop,
    means,  # [N, 3] float64
    quats,  # [N, 4] float64
    scales,  # [N, 3] float64
    view,  # [4, 4] float64 world_to_cam
    intr,  # [8] float64: fx, fy, cx, cy, lim_x_neg, lim_x_pos, lim_y_neg, lim_y_pos
    eps2d,
    near,
    out,  # [N, 6] float64 (written): u, v, conic a, b, c, z
    valid,  # [N] bool (written)
):
    fx, fy, cx, cy = intr[0], intr[1], intr[2], intr[3]
    rot = (view[0, 0], view[0, 1], view[0, 2], view[1, 0], view[1, 1], view[1, 2], view[2, 0], view[2, 1], view[2, 2])
    trans = (view[0, 3], view[1, 3], view[2, 3])
    for gi in range(start, stop):
        g = np.uint64(gi)  # unsigned: no negative-index wraparound on every load and store
        x, y, z, inv_zs, tx, ty, _, _, _, _, cov_c = _geometry(means, quats, scales, g, rot, trans, intr, near)
        inv_z2 = inv_zs * inv_zs
        a, b, c = _cov2d(fx * inv_zs, -fx * tx * inv_z2, fy * inv_zs, -fy * ty * inv_z2, cov_c, eps2d)
        det = a * c - b * b
        ok = (z > near) & (det > 0)  # not `and`: no branch
        inv_det = 1.0 / (det if ok else 1.0)
        out[g, 0] = fx * x * inv_zs + cx
        out[g, 1] = fy * y * inv_zs + cy
        out[g, 2], out[g, 3], out[g, 4] = c * inv_det, -b * inv_det, a * inv_det
        out[g, 5] = z
        valid[g] = ok


@njit(parallel=True, cache=True, fastmath=PROJECTION_FASTMATH)
def _project_forward(
    means,  # [N, 3] float64
    quats,  # [N, 4] float64
    scales,  # [N, 3] float64
    view,  # [4, 4] float64 world_to_cam
    intr,  # [8] float64: fx, fy, cx, cy, lim_x_neg, lim_x_pos, lim_y_neg, lim_y_pos
    eps2d,
    near,
    out,  # [N, 6] float64 (written): u, v, conic a, b, c, z
    valid,  # [N] bool (written)
):
    """Chunks of PARALLEL_CHUNK_GAUSSIANS Gaussians in parallel, each by a plain serial loop (numba's parfor
    lowering of the per-Gaussian loop itself measured 2× slower than the serial loop)."""
    count = means.shape[0]
    for chunk in prange((count + PARALLEL_CHUNK_GAUSSIANS - 1) // PARALLEL_CHUNK_GAUSSIANS):
        start = chunk * PARALLEL_CHUNK_GAUSSIANS
        _project_forward_range(
            start,
            min(count, start + PARALLEL_CHUNK_GAUSSIANS),
            means,
            quats,
            scales,
            view,
            intr,
            eps2d,
            near,
            out,
            valid,
        )


@njit(cache=True, fastmath=PROJECTION_FASTMATH)
def _project_backward_range(
    start,
    stop,
    means,  # [N, 3] float64
    quats,  # [N, 4] float64
    scales,  # [N, 3] float64
    view,  # [4, 4] float64
    intr,  # [8] float64
    eps2d,
    near,
    grad_out,  # [N, 6] float64: d loss / d (u, v, conic a, b, c, z)
    grad_means,  # [N, 3] float64 (written)
    grad_quats,  # [N, 4] float64 (written)
    grad_scales,  # [N, 3] float64 (written)
):
    """Gradients of valid Gaussians (in front of the near plane, positive-definite 2D covariance); the others are
    not drawn, so the image does not depend on them and they get zero."""
    fx, fy = intr[0], intr[1]
    rot = (view[0, 0], view[0, 1], view[0, 2], view[1, 0], view[1, 1], view[1, 2], view[2, 0], view[2, 1], view[2, 2])
    trans = (view[0, 3], view[1, 3], view[2, 3])
    for gi in range(start, stop):
        g = np.uint64(gi)  # unsigned: no negative-index wraparound on every load and store
        x, y, z, inv_zs, tx, ty, inv_norm, qn, r, m, cv = _geometry(means, quats, scales, g, rot, trans, intr, near)
        inv_z2 = inv_zs * inv_zs
        j00, j02, j11, j12 = fx * inv_zs, -fx * tx * inv_z2, fy * inv_zs, -fy * ty * inv_z2
        a, b, c = _cov2d(j00, j02, j11, j12, cv, eps2d)
        det = a * c - b * b
        for k in range(3):
            grad_means[g, k] = 0.0
            grad_scales[g, k] = 0.0
        for k in range(4):
            grad_quats[g, k] = 0.0
        if not ((z > near) & (det > 0)):
            continue
        # 1. conic (c, -b, a) / det -> 2D covariance (a, b, c)
        gA, gB, gC = np.float64(grad_out[g, 2]), np.float64(grad_out[g, 3]), np.float64(grad_out[g, 4])
        inv_det = 1.0 / det
        inv_d2 = inv_det * inv_det
        g_a = (-gA * c * c + gB * b * c - gC * b * b) * inv_d2
        g_b = (2 * gA * b * c + 2 * gC * a * b) * inv_d2 - gB * (inv_det + 2 * b * b * inv_d2)
        g_c = (-gA * b * b + gB * a * b - gC * a * a) * inv_d2
        h00, h01, h11 = g_a, 0.5 * g_b, g_c  # d loss / d (J Σ Jᵀ), symmetric (b is the off-diagonal mean)
        # 2. J Σ Jᵀ -> Σ_cam = Jᵀ H J and J: d loss / d J = 2 H J Σ (H, Σ symmetric)
        jr0 = (j00, 0.0, j02)
        jr1 = (0.0, j11, j12)
        g_cv = (
            h00 * jr0[0] * jr0[0] + 2 * h01 * jr0[0] * jr1[0] + h11 * jr1[0] * jr1[0],
            h00 * jr0[0] * jr0[1] + h01 * (jr0[0] * jr1[1] + jr1[0] * jr0[1]) + h11 * jr1[0] * jr1[1],
            h00 * jr0[0] * jr0[2] + h01 * (jr0[0] * jr1[2] + jr1[0] * jr0[2]) + h11 * jr1[0] * jr1[2],
            h00 * jr0[1] * jr0[0] + h01 * (jr0[1] * jr1[0] + jr1[1] * jr0[0]) + h11 * jr1[1] * jr1[0],
            h00 * jr0[1] * jr0[1] + 2 * h01 * jr0[1] * jr1[1] + h11 * jr1[1] * jr1[1],
            h00 * jr0[1] * jr0[2] + h01 * (jr0[1] * jr1[2] + jr1[1] * jr0[2]) + h11 * jr1[1] * jr1[2],
            h00 * jr0[2] * jr0[0] + h01 * (jr0[2] * jr1[0] + jr1[2] * jr0[0]) + h11 * jr1[2] * jr1[0],
            h00 * jr0[2] * jr0[1] + h01 * (jr0[2] * jr1[1] + jr1[2] * jr0[1]) + h11 * jr1[2] * jr1[1],
            h00 * jr0[2] * jr0[2] + 2 * h01 * jr0[2] * jr1[2] + h11 * jr1[2] * jr1[2],
        )
        # rows of J Σ (only the entries d loss / d J needs: J00, J02, J11, J12)
        js0 = (j00 * cv[0] + j02 * cv[6], j00 * cv[1] + j02 * cv[7], j00 * cv[2] + j02 * cv[8])
        js1 = (j11 * cv[3] + j12 * cv[6], j11 * cv[4] + j12 * cv[7], j11 * cv[5] + j12 * cv[8])
        g_j00 = 2 * (h00 * js0[0] + h01 * js1[0])
        g_j02 = 2 * (h00 * js0[2] + h01 * js1[2])
        g_j11 = 2 * (h01 * js0[1] + h11 * js1[1])
        g_j12 = 2 * (h01 * js0[2] + h11 * js1[2])
        # 3. J, means2d, depth -> camera-space centre (through the clamped tx, ty)
        inv_z3 = inv_z2 * inv_zs
        g_x = grad_out[g, 0] * fx * inv_zs
        g_y = grad_out[g, 1] * fy * inv_zs
        g_z = -(grad_out[g, 0] * fx * x + grad_out[g, 1] * fy * y) * inv_z2 + grad_out[g, 5]
        g_z += -(g_j00 * fx + g_j11 * fy) * inv_z2 + 2 * (g_j02 * fx * tx + g_j12 * fy * ty) * inv_z3
        g_tx, g_ty = -g_j02 * fx * inv_z2, -g_j12 * fy * inv_z2
        if -intr[4] <= x * inv_zs <= intr[5]:  # tx = x
            g_x += g_tx
        else:  # tx = z · limit
            g_z += g_tx * tx * inv_zs
        if -intr[6] <= y * inv_zs <= intr[7]:
            g_y += g_ty
        else:
            g_z += g_ty * ty * inv_zs
        for k in range(3):
            grad_means[g, k] = rot[k] * g_x + rot[3 + k] * g_y + rot[6 + k] * g_z
        # 4. Σ_cam = V M Mᵀ Vᵀ with M = R S -> d loss / d M = 2 Vᵀ G V M (G symmetric)
        g_sig = _mm(_mm(_tr(rot), g_cv), rot)
        g_m = _mm(g_sig, m)
        for k in range(3):
            grad_scales[g, k] = 2 * (g_m[k] * r[k] + g_m[3 + k] * r[3 + k] + g_m[6 + k] * r[6 + k])
        s0, s1, s2 = 2 * np.float64(scales[g, 0]), 2 * np.float64(scales[g, 1]), 2 * np.float64(scales[g, 2])
        gr = (g_m[0] * s0, g_m[1] * s1, g_m[2] * s2, g_m[3] * s0, g_m[4] * s1, g_m[5] * s2, g_m[6] * s0, g_m[7] * s1,
              g_m[8] * s2)  # fmt: skip
        w, qx, qy, qz = qn
        g_w = 2 * (-qz * gr[1] + qy * gr[2] + qz * gr[3] - qx * gr[5] - qy * gr[6] + qx * gr[7])
        g_qx = 2 * (qy * gr[1] + qz * gr[2] + qy * gr[3] - 2 * qx * gr[4] - w * gr[5] + qz * gr[6] + w * gr[7]
                    - 2 * qx * gr[8])  # fmt: skip
        g_qy = 2 * (-2 * qy * gr[0] + qx * gr[1] + w * gr[2] + qx * gr[3] + qz * gr[5] - w * gr[6] + qz * gr[7]
                    - 2 * qy * gr[8])  # fmt: skip
        g_qz = 2 * (-2 * qz * gr[0] - w * gr[1] + qx * gr[2] + w * gr[3] - 2 * qz * gr[4] + qy * gr[5] + qx * gr[6]
                    + qy * gr[7])  # fmt: skip
        # 5. normalisation: d qn / d q = (I - qn qnᵀ) / |q|
        dot = w * g_w + qx * g_qx + qy * g_qy + qz * g_qz
        grad_quats[g, 0] = (g_w - w * dot) * inv_norm
        grad_quats[g, 1] = (g_qx - qx * dot) * inv_norm
        grad_quats[g, 2] = (g_qy - qy * dot) * inv_norm
        grad_quats[g, 3] = (g_qz - qz * dot) * inv_norm


@njit(parallel=True, cache=True, fastmath=PROJECTION_FASTMATH)
def _project_backward(
    means,  # [N, 3] float64
    quats,  # [N, 4] float64
    scales,  # [N, 3] float64
    view,  # [4, 4] float64
    intr,  # [8] float64
    eps2d,
    near,
    grad_out,  # [N, 6] float64: d loss / d (u, v, conic a, b, c, z)
    grad_means,  # [N, 3] float64 (written)
    grad_quats,  # [N, 4] float64 (written)
    grad_scales,  # [N, 3] float64 (written)
):
    """Chunks of PARALLEL_CHUNK_GAUSSIANS Gaussians in parallel, each by a plain serial loop (numba's parfor
    lowering of the per-Gaussian loop itself measured 2× slower than the serial loop)."""
    count = means.shape[0]
    for chunk in prange((count + PARALLEL_CHUNK_GAUSSIANS - 1) // PARALLEL_CHUNK_GAUSSIANS):
        start = chunk * PARALLEL_CHUNK_GAUSSIANS
        _project_backward_range(
            start,
            min(count, start + PARALLEL_CHUNK_GAUSSIANS),
            means,
            quats,
            scales,
            view,
            intr,
            eps2d,
            near,
            grad_out,
            grad_means,
            grad_quats,
            grad_scales,
        )


# --- the autograd function ----------------------------------------------------------------------------------------


class _TileBins:
    """One view's binning: footprints, per-tile front-to-back lists and the per-entry table (numpy)."""

    def __init__(
        self,
        packed: np.ndarray,  # [M, 10] float32
        valid: np.ndarray,  # [M] bool
        height: int,
        width: int,
    ):
        self.height, self.width, self.count = height, width, packed.shape[0]
        self.tiles_x = (width + TILE_SIZE - 1) // TILE_SIZE
        tiles_y = (height + TILE_SIZE - 1) // TILE_SIZE
        with _KERNEL_LOCK:
            _set_threads(1)  # _footprints hands out chunks of PARALLEL_CHUNK_GAUSSIANS itself
            table, tile_box, self.radii = _footprints(packed, valid, height, width)  # [M, 16], [M, 4], [M]
        drawn = np.flatnonzero(self.radii > 0)
        self.order = drawn[np.argsort(packed[drawn, 9])]  # [D] front to back (ties: any order, as the reference)
        self.offsets, self.entry_gaussian, self.rank_offsets, self.by_rank = _tile_lists(
            tile_box, self.order, self.tiles_x, tiles_y
        )  # [T + 1], [E], [D + 1], [E]
        self.tile_order = np.argsort(-np.diff(self.offsets), kind="stable")  # biggest first: shorter tail
        with _KERNEL_LOCK:
            _set_threads(1)  # _entry_table hands out chunks of PARALLEL_CHUNK_GAUSSIANS entries itself
            self.entries = _entry_table(table, self.entry_gaussian)  # [E, 16]

    def forward(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        out = np.empty((self.height, self.width, 5), np.float32)  # [H, W, 5]
        final_t = np.empty((self.height, self.width), np.float32)  # [H, W]
        last = np.empty((self.height, self.width), np.int32)  # [H, W]
        with _KERNEL_LOCK:
            _set_threads(PARALLEL_CHUNK_TILES)
            _forward_kernel(
                self.entries, self.offsets, self.tile_order, self.tiles_x, self.height, self.width, out, final_t,
                last,
            )  # fmt: skip
        return out, final_t, last

    def backward(self, grad_out: np.ndarray, final_t: np.ndarray, last: np.ndarray) -> np.ndarray:  # -> [M, 10]
        grad_entries = np.empty((self.entries.shape[0], PACKED_COLUMNS), np.float32)  # [E, 10]
        with _KERNEL_LOCK:
            _set_threads(PARALLEL_CHUNK_TILES)
            _backward_kernel(
                self.entries, self.offsets, self.tile_order, self.tiles_x, self.height, self.width, grad_out,
                final_t, last, grad_entries,
            )  # fmt: skip
        with _KERNEL_LOCK:
            _set_threads(PARALLEL_CHUNK_GAUSSIANS)
            return _gather_gradients(grad_entries, self.rank_offsets, self.by_rank, self.order, self.count)


class _Project(torch.autograd.Function):
    """means [N, 3], quats [N, 4], scales [N, 3] -> (u, v, conic a, b, c, z) [N, 6] and valid [N] for a fixed camera."""

    @staticmethod
    def forward(ctx, means, quats, scales, view, intr, eps2d, near):  # -> [N, 6], [N]
        arrays = _kernel_arrays(means, quats, scales)
        out = np.empty((means.shape[0], 6), arrays[0].dtype)  # [N, 6]
        valid = np.empty(means.shape[0], np.bool_)  # [N]
        with _KERNEL_LOCK:
            _set_threads(1)  # the kernel hands out chunks of PARALLEL_CHUNK_GAUSSIANS itself
            _project_forward(*arrays, view, intr, eps2d, near, out, valid)
        ctx.save_for_backward(means, quats, scales)  # autograd then refuses if they are changed in place before
        ctx.camera = (view, intr, eps2d, near)
        ctx.out_dtype = torch.from_numpy(out).dtype
        valid_t = torch.from_numpy(valid)
        ctx.mark_non_differentiable(valid_t)
        return torch.from_numpy(out).to(means.dtype), valid_t  # a no-op for float32 and float64

    @staticmethod
    def backward(ctx, grad_out, _grad_valid):
        arrays = _kernel_arrays(*ctx.saved_tensors)
        n, dtype = grad_out.shape[0], arrays[0].dtype
        grads = np.empty((n, 3), dtype), np.empty((n, 4), dtype), np.empty((n, 3), dtype)
        with _KERNEL_LOCK:
            _set_threads(1)
            _project_backward(*arrays, *ctx.camera, grad_out.detach().to(ctx.out_dtype).contiguous().numpy(), *grads)
        g_means, g_quats, g_scales = (torch.from_numpy(g).to(t.dtype) for g, t in zip(grads, ctx.saved_tensors))
        return g_means, g_quats, g_scales, None, None, None, None


def _kernel_arrays(means: Tensor, quats: Tensor, scales: Tensor) -> list[np.ndarray]:
    """The projection kernels' inputs as numpy, in means' dtype when that is float32 or float64 (the kernels
    compute in float64 either way; no conversion copy for the usual float32 parameters), else float64."""
    dtype = means.dtype if means.dtype in (torch.float32, torch.float64) else torch.float64
    return [t.detach().to(dtype).contiguous().numpy() for t in (means, quats, scales)]


def _camera_arrays(camera: Camera) -> tuple[np.ndarray, np.ndarray]:
    """world_to_cam [4, 4] and (fx, fy, cx, cy, Jacobian clamp limits) [8] as float64 numpy, as project_gaussians."""
    view = camera.world_to_cam.detach().to(torch.float64).cpu().numpy()
    K = camera.K.detach().to(torch.float64).cpu().numpy()
    fx, fy, cx, cy = K[0, 0], K[1, 1], K[0, 2], K[1, 2]
    margin_x = FOV_CLAMP_MARGIN * 0.5 * camera.width / fx
    margin_y = FOV_CLAMP_MARGIN * 0.5 * camera.height / fy
    limits = (cx / fx + margin_x, (camera.width - cx) / fx + margin_x, cy / fy + margin_y,
              (camera.height - cy) / fy + margin_y)  # fmt: skip
    return np.ascontiguousarray(view), np.array([fx, fy, cx, cy, *limits])


class _Rasterize2D(torch.autograd.Function):
    """packed [M, 10] float32 (u, v, conic a b c, opacity, r g b, z) -> image [H, W, 5] (r, g, b, z-accum, alpha).

    ``bins`` must have been built from ``packed``'s values (it holds their depth-sorted copy)."""

    @staticmethod
    def forward(ctx, packed: Tensor, bins: _TileBins) -> Tensor:  # [M, 10] -> [H, W, 5]
        out, final_t, last = bins.forward()
        ctx.bins, ctx.final_t, ctx.last = bins, final_t, last
        return torch.from_numpy(out)

    @staticmethod
    def backward(ctx, grad_out: Tensor) -> tuple[Tensor, None]:  # [H, W, 5] -> [M, 10]
        grad = ctx.bins.backward(grad_out.detach().float().contiguous().numpy(), ctx.final_t, ctx.last)
        return torch.from_numpy(grad), None


class ColorOperator:
    """One view's image as a linear map of the splats' RGB for fixed geometry: ``rgb = W c`` and ``Wᵀ r``.

    Projection and binning happen once (in :meth:`NumbaGaussianRasterizer.color_operator`); each :meth:`apply` only
    rewrites the colour columns of the per-entry table and composites, each :meth:`adjoint` runs the backward kernel and
    keeps the colour gradients. The compositing weights do not depend on the colours, so the per-pixel termination
    state of the first composite serves every adjoint. No background is blended in (it is not linear in c).
    """

    def __init__(self, bins: _TileBins, colors: np.ndarray):  # [N, 3] float32, the colours to start from
        self._bins = bins
        self._count = colors.shape[0]
        out, self._final_t, self._last = self._composite(colors)
        self.alpha = torch.from_numpy(out[..., 4].copy())  # [H, W] accumulated opacity

    def _composite(self, colors: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:  # [N, 3] -> [H, W, 5], ..
        self._bins.entries[:, RGB_COLUMNS] = colors[self._bins.entry_gaussian]
        return self._bins.forward()

    def apply(self, colors: Tensor) -> Tensor:  # [N, 3] -> [H, W, 3], without background
        out = self._composite(colors.detach().to(torch.float32).contiguous().numpy())[0]
        return torch.from_numpy(np.ascontiguousarray(out[..., :3]))

    def adjoint(self, residual: Tensor) -> Tensor:  # [H, W, 3] -> [N, 3]
        grad_out = np.zeros((self._bins.height, self._bins.width, 5), np.float32)  # [H, W, 5]
        grad_out[..., :3] = residual.detach().to(torch.float32).numpy()
        grad = self._bins.backward(grad_out, self._final_t, self._last)  # [N, 10]
        return torch.from_numpy(np.ascontiguousarray(grad[:, RGB_COLUMNS]))


# --- the backend --------------------------------------------------------------------------------------------------


class NumbaGaussianRasterizer:
    """Compiled CPU rasteriser (numba): same image model and interface as the torch backend, float32 2D stage.

    ``RasterSettings.eps2d`` and ``near`` apply; ``max_per_pixel`` and ``max_radius_px`` (torch-backend guards) do
    not: every Gaussian is composited up to early termination, over its whole footprint. ``reuse`` is ignored
    (binning is a small part of the cost here) and ``cache`` is always None.

    Example:
        >>> rasterizer = NumbaGaussianRasterizer()
        >>> out = rasterizer.render(means, quats, scales, opacities, rgb, camera)  # doctest: +SKIP
        >>> out.rgb.shape  # doctest: +SKIP
        torch.Size([H, W, 3])
    """

    name = "numba"

    def __init__(self, settings: RasterSettings = RasterSettings()):
        self.settings = settings

    def render(
        self,
        means: Tensor,  # [N, 3]
        quats: Tensor,  # [N, 4]
        scales: Tensor,  # [N, 3]
        opacities: Tensor,  # [N]
        colors: Tensor,  # [N, K, 3] or [N, 3]
        camera: Camera,
        sh_degree: int | None = None,
        background: Tensor | None = None,  # [3]
        reuse: RasterCache | None = None,  # unused: this backend bins every call
    ) -> GaussianRender:
        """Render one view; differentiable w.r.t. every Gaussian parameter (and the camera, through torch)."""
        # 1. Check inputs.
        _check_inputs(means, quats, scales, opacities, colors)
        if means.device.type != "cpu":
            raise ValueError(f"the numba rasterizer runs on CPU tensors, got device {means.device}; use 'gsplat'")
        s = self.settings
        H, W = camera.height, camera.width
        dtype = means.dtype
        # 2. Project (numba, or torch when the camera itself is optimised) and colour (torch), differentiably.
        if camera.world_to_cam.requires_grad or camera.K.requires_grad:
            proj = project_gaussians(means, quats, scales, camera, s)
            means2d, conics, depths, valid = proj.means2d, proj.conics, proj.depths, proj.valid
        else:
            view, intr = _camera_arrays(camera)
            geometry, valid = _Project.apply(means, quats, scales, view, intr, float(s.eps2d), float(s.near))
            means2d, conics, depths = geometry[:, :2], geometry[:, 2:5], geometry[:, 5]  # [N, 2], [N, 3], [N]
        rgb_g = gaussian_colors(means, colors, camera.cam_to_world[:3, 3], sh_degree)  # [N, 3]
        training = torch.is_grad_enabled() and any(t.requires_grad for t in (quats, scales, opacities, colors))
        if training and not means2d.requires_grad:
            # Frozen positions: still expose d(loss)/d(means2d) (densification strategies read it, as in gsplat).
            means2d = means2d.detach().requires_grad_(True)
        packed = torch.cat([means2d, conics, opacities[:, None], rgb_g, depths[:, None]], dim=-1)  # [N, 10]
        packed = packed.to(torch.float32)
        # 3. Bin (no gradients) and rasterise (numba forward; numba backward through autograd).
        bins = _TileBins(packed.detach().contiguous().numpy(), valid.numpy(), H, W)
        image = _Rasterize2D.apply(packed, bins).to(dtype)  # [H, W, 5]
        rgb, depth_accum, alpha = image[..., :3], image[..., 3], image[..., 4]
        if background is not None:
            rgb = rgb + (1 - alpha)[..., None] * background.to(rgb)
        radii = torch.from_numpy(bins.radii).long()  # [N]
        return GaussianRender(rgb, alpha, depth_accum, means2d, radii, None)

    def color_operator(
        self,
        means: Tensor,  # [N, 3]
        quats: Tensor,  # [N, 4]
        scales: Tensor,  # [N, 3]
        opacities: Tensor,  # [N]
        colors: Tensor,  # [N, 3] RGB to start from
        camera: Camera,
    ) -> ColorOperator:
        """The view's image as a linear map of RGB with this geometry (projected and binned once; no gradients)."""
        _check_inputs(means, quats, scales, opacities, colors)
        s = self.settings
        with torch.no_grad():
            view, intr = _camera_arrays(camera)
            geometry, valid = _Project.apply(means, quats, scales, view, intr, float(s.eps2d), float(s.near))
            packed = torch.cat([geometry[:, :5], opacities[:, None], colors, geometry[:, 5:6]], dim=-1)  # [N, 10]
            packed = packed.to(torch.float32).contiguous().numpy()
        bins = _TileBins(packed, valid.numpy(), camera.height, camera.width)
        return ColorOperator(bins, packed[:, RGB_COLUMNS].copy())
