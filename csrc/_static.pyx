# cython: language_level=3
"""Static-embedding pooling: the compiled core of semroute.encoder.static.

One job: turn token ids (a flat array plus per-text offsets, as the tokenizer gives them,
no padding) into L2-normalised weighted means of table rows, written into a caller-owned
float32 array. The loop runs without the GIL so encoder threads can pool in parallel.
"""

cimport cython
from libc.math cimport sqrt
from libc.stdint cimport int32_t, int64_t

import numpy as np

ctypedef fused table_t:
    float
    signed char


@cython.boundscheck(False)
@cython.wraparound(False)
cdef void _pool_segments(
    const table_t[:, ::1] table,
    const float[::1] weights,
    const int32_t[::1] ids,
    int64_t a0,
    int64_t a1,
    int64_t b0,
    int64_t b1,
    float[::1] acc,
    float[:, ::1] out,
    Py_ssize_t row,
    const float[::1] empty,
) noexcept nogil:
    """out[row] = normalise(weighted mean of table rows) over ids[a0:a1] and ids[b0:b1]."""
    cdef Py_ssize_t d = table.shape[1]
    cdef Py_ssize_t vocab = table.shape[0]
    cdef Py_ssize_t j
    cdef int64_t p, lo, hi
    cdef int seg
    cdef int32_t tid
    cdef float w
    cdef float wsum = 0.0
    cdef double norm = 0.0
    cdef float inv
    for j in range(d):
        acc[j] = 0.0
    for seg in range(2):
        lo = a0 if seg == 0 else b0
        hi = a1 if seg == 0 else b1
        for p in range(lo, hi):
            tid = ids[p]
            if tid < 0 or tid >= vocab:
                continue
            w = weights[tid]
            if w == 0.0:
                continue
            wsum += w
            for j in range(d):
                acc[j] += w * <float>table[tid, j]
    if wsum != 0.0:
        inv = 1.0 / wsum
        for j in range(d):
            acc[j] *= inv
            norm += <double>acc[j] * acc[j]
    if norm > 1e-30:
        inv = <float>(1.0 / sqrt(norm))
        for j in range(d):
            out[row, j] = acc[j] * inv
    else:
        for j in range(d):
            out[row, j] = empty[j]


@cython.boundscheck(False)
@cython.wraparound(False)
def pool(
    const table_t[:, ::1] table,
    const float[::1] weights,
    const int32_t[::1] ids,
    const int64_t[::1] offsets,
    float[:, ::1] out,
    const float[::1] empty,
    Py_ssize_t max_ids=-1,
):
    """Fill ``out[i]`` with the L2-normalised weighted mean of ``table`` rows for text i.

    Text i owns ``ids[offsets[i]:offsets[i+1]]``; a row's weight is ``weights[id]`` (0 skips
    the token: specials, unknowns; ids outside the table are skipped too). ``table`` is
    float32, or int8 with each row's dequantisation scale folded into ``weights``. A text
    longer than ``max_ids`` (when >= 0) keeps its first ceil(max_ids/2) and last
    floor(max_ids/2) ids, as the ONNX encoder truncates, so both tiers see the same tokens.
    A text with no weighted token (empty, unknown characters only) gets ``empty``, so every
    row stays unit length.
    """
    cdef Py_ssize_t n = offsets.shape[0] - 1
    cdef Py_ssize_t d = table.shape[1]
    cdef Py_ssize_t i
    if n < 0:
        raise ValueError("offsets must hold at least one element")
    if out.shape[0] != n or out.shape[1] != d:
        raise ValueError(f"out has shape ({out.shape[0]}, {out.shape[1]}), expected ({n}, {d})")
    if empty.shape[0] != d:
        raise ValueError(f"empty has {empty.shape[0]} values, expected {d}")
    if weights.shape[0] != table.shape[0]:
        raise ValueError(f"{weights.shape[0]} weights for {table.shape[0]} table rows")
    if n and (offsets[0] < 0 or offsets[n] > ids.shape[0]):
        raise ValueError("offsets point outside ids")
    for i in range(n):
        if offsets[i + 1] < offsets[i]:
            raise ValueError("offsets must be non-decreasing")
    cdef float[::1] acc = np.empty(max(d, 1), dtype=np.float32)
    cdef int64_t start, stop, head, tail
    with nogil:
        for i in range(n):
            start = offsets[i]
            stop = offsets[i + 1]
            if 0 <= max_ids < stop - start:
                head = max_ids - max_ids // 2
                tail = max_ids // 2
                _pool_segments(table, weights, ids, start, start + head, stop - tail, stop,
                               acc, out, i, empty)
            else:
                _pool_segments(table, weights, ids, start, stop, stop, stop, acc, out, i, empty)
