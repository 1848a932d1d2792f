# cython: language_level=3
"""Route scoring and model choice: the compiled core of semroute.policy.

One job: given neighbour hits and per-model arrays, compute route scores, the
quality bar and the chosen model with its fallback order. No Python objects
beyond numpy arrays cross this boundary; semroute/policy.py owns the meaning.
"""

import numpy as np

cimport numpy as cnp
from libc.math cimport INFINITY

cnp.import_array()


def route_scores(const int[::1] route_ids, const float[::1] scores, int n_routes, int m=2):
    """Per-route score: the mean of the route's best `m` similarities among the neighbours.

    Averaging the best few instead of taking the single best keeps one stray
    example from winning against a route with several close ones. Scores must
    be sorted best first (FAISS order). A route with fewer than `m` neighbours
    is filled with the weakest retrieved similarity; a route without any gets
    -inf. route_ids[i] < 0 marks an empty FAISS slot and is skipped.
    """
    cdef cnp.ndarray[cnp.float32_t, ndim=1] out = np.full(n_routes, -INFINITY, dtype=np.float32)
    cdef cnp.ndarray[cnp.float32_t, ndim=1] total_arr = np.zeros(n_routes, dtype=np.float32)
    cdef cnp.ndarray[cnp.int32_t, ndim=1] count_arr = np.zeros(n_routes, dtype=np.int32)
    cdef float[::1] o = out
    cdef float[::1] total = total_arr
    cdef int[::1] count = count_arr
    cdef Py_ssize_t i
    cdef int r
    cdef float weakest = INFINITY
    if m < 1:
        m = 1
    for i in range(route_ids.shape[0]):
        r = route_ids[i]
        if r < 0 or r >= n_routes:
            continue
        if scores[i] < weakest:
            weakest = scores[i]
        if count[r] < m:
            total[r] += scores[i]
            count[r] += 1
    for r in range(n_routes):
        if count[r] > 0:
            o[r] = (total[r] + (m - count[r]) * weakest) / m
    return out


cpdef float quality_bar(float knob, float floor, float target, float best):
    """Quality a model must reach for this request.

    The knob (0-1) moves the bar piecewise-linearly: 0 -> the route's floor,
    0.5 -> the route's target, 1 -> the best quality among eligible models
    (or the target, when no eligible model reaches it: the request then
    falls back to the best eligible model and says so).
    """
    if knob < 0.0:
        knob = 0.0
    elif knob > 1.0:
        knob = 1.0
    if knob <= 0.5:
        return floor + (target - floor) * (knob / 0.5)
    if best < target:
        return target
    return target + (best - target) * ((knob - 0.5) / 0.5)


def choose(
    const float[::1] quality,
    const double[::1] cost,
    const unsigned char[::1] eligible,
    const int[::1] provider,
    float bar,
    Py_ssize_t force=-1,
):
    """Pick the cheapest eligible model whose quality clears `bar`.

    `force` (a rule's pinned model) is chosen instead when it is eligible;
    the fallback order is computed around it the same way.

    Returns (chosen, fallbacks, meets_bar, cleared):
    - chosen: index of the model, or -1 when no model is eligible;
    - fallbacks: int32 indices of the other eligible models, in the order a
      gateway should try them: first those clearing the bar, other providers
      before the chosen one's (an outage takes a whole provider down), then
      cheapest first; then those below the bar, best first;
    - meets_bar: uint8 per model;
    - cleared: False when no eligible model clears the bar, in which case the
      best eligible model (cheapest among equals) was chosen.
    """
    cdef Py_ssize_t n = quality.shape[0]
    cdef Py_ssize_t i, j
    cdef cnp.ndarray[cnp.uint8_t, ndim=1] meets_arr = np.zeros(n, dtype=np.uint8)
    cdef unsigned char[::1] meets = meets_arr
    cdef Py_ssize_t chosen = -1
    cdef bint cleared = True
    cdef float eps = 1e-6

    for i in range(n):
        meets[i] = 1 if quality[i] + eps >= bar else 0

    cdef bint forced = 0 <= force < n and eligible[force]
    if forced:
        chosen = force

    for i in range(n):
        if forced or not eligible[i] or not meets[i]:
            continue
        if chosen < 0 or cost[i] < cost[chosen] or (
            cost[i] == cost[chosen] and quality[i] > quality[chosen]
        ):
            chosen = i

    if chosen < 0:
        cleared = False
        for i in range(n):
            if not eligible[i]:
                continue
            if chosen < 0 or quality[i] > quality[chosen] or (
                quality[i] == quality[chosen] and cost[i] < cost[chosen]
            ):
                chosen = i

    if chosen < 0:
        return -1, np.empty(0, dtype=np.int32), meets_arr, False

    # Fallback order by insertion sort on a small array (pools are tens of models).
    cdef cnp.ndarray[cnp.int32_t, ndim=1] order_arr = np.empty(n, dtype=np.int32)
    cdef int[::1] order = order_arr
    cdef Py_ssize_t m = 0
    for i in range(n):
        if i == chosen or not eligible[i]:
            continue
        j = m
        while j > 0 and _before(i, order[j - 1], quality, cost, meets, provider, provider[chosen]):
            order[j] = order[j - 1]
            j -= 1
        order[j] = <int>i
        m += 1
    return int(chosen), order_arr[:m].copy(), meets_arr, cleared


cdef inline bint _before(
    Py_ssize_t a,
    Py_ssize_t b,
    const float[::1] quality,
    const double[::1] cost,
    const unsigned char[::1] meets,
    const int[::1] provider,
    int chosen_provider,
):
    """Whether model a comes before model b in the fallback order."""
    if meets[a] != meets[b]:
        return meets[a] > meets[b]
    cdef bint a_other = provider[a] != chosen_provider
    cdef bint b_other = provider[b] != chosen_provider
    if meets[a]:
        if a_other != b_other:
            return a_other
        if cost[a] != cost[b]:
            return cost[a] < cost[b]
        return quality[a] > quality[b]
    if quality[a] != quality[b]:
        return quality[a] > quality[b]
    return cost[a] < cost[b]
