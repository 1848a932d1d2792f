"""Shadow evaluation: a candidate index decides a sample of live requests beside the active one.

The serving path only calls `observe` after its decision is made: a random
draw, and for a sampled request one hand-off to a dedicated thread. The
candidate's decision is never returned to anyone; it is compared with the
active state's decision on the same request (same embedding) and summed into
the figures an operator reads before promoting: how often the chosen model or
route changes, the predicted cost and quality deltas, and the candidate's
extra decision time.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections import Counter, OrderedDict, deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

import faiss
import numpy as np

from semroute.admin.probes import chosen
from semroute.router import Embedding, Router, RoutingState
from semroute.types import RouteQuery, RoutingError

log = logging.getLogger("semroute.admin.shadow")

# Latency samples kept per figure (the most recent ones).
MAX_SAMPLES = 20_000
# Embeddings remembered for sampled requests the decision cache answered (no
# embedding at hand): repeated prompts are embedded once.
EMBED_MEMO = 2048
TOP_CHANGES = 10


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


@dataclass
class ShadowRun:
    """One candidate's evaluation; counters are guarded by `lock` (loop + shadow thread)."""

    version: str
    state: RoutingState
    rate: float
    started_at: str = field(default_factory=_now)
    lock: threading.Lock = field(default_factory=threading.Lock)
    sampled: int = 0
    dropped: int = 0
    compared: int = 0
    priced: int = 0
    model_diffs: int = 0
    route_diffs: int = 0
    candidate_errors: int = 0
    internal_errors: int = 0
    active_cost: float = 0.0
    candidate_cost: float = 0.0
    quality_delta: float = 0.0
    active_us: deque[float] = field(default_factory=lambda: deque(maxlen=MAX_SAMPLES))
    candidate_us: deque[float] = field(default_factory=lambda: deque(maxlen=MAX_SAMPLES))
    extra_us: deque[float] = field(default_factory=lambda: deque(maxlen=MAX_SAMPLES))
    changes: Counter[tuple[str, str]] = field(default_factory=Counter)
    active_versions: Counter[str] = field(default_factory=Counter)

    def report(self) -> dict[str, Any]:
        """The figures so far, as plain data (field names of the ShadowReport message)."""
        with self.lock:
            compared, priced = self.compared, self.priced
            out: dict[str, Any] = {
                "candidate_version": self.version,
                "active_version": (
                    self.active_versions.most_common(1)[0][0] if self.active_versions else ""
                ),
                "sample_rate": self.rate,
                "sampled": self.sampled,
                "compared": compared,
                "dropped": self.dropped,
                "model_diffs": self.model_diffs,
                "route_diffs": self.route_diffs,
                "candidate_errors": self.candidate_errors,
                "internal_errors": self.internal_errors,
                "decision_diff_rate": (
                    (self.model_diffs + self.candidate_errors) / compared if compared else 0.0
                ),
                "route_diff_rate": self.route_diffs / compared if compared else 0.0,
                "active_cost_usd": self.active_cost,
                "candidate_cost_usd": self.candidate_cost,
                "cost_delta_usd_per_request": (
                    (self.candidate_cost - self.active_cost) / priced if priced else 0.0
                ),
                "cost_delta_ratio": (
                    self.candidate_cost / self.active_cost - 1.0 if self.active_cost > 0 else 0.0
                ),
                "quality_delta": self.quality_delta / priced if priced else 0.0,
                "active_decide": _summary(self.active_us),
                "candidate_decide": _summary(self.candidate_us),
                "extra_latency_p50_us": _pct(self.extra_us, 50),
                "extra_latency_p99_us": _pct(self.extra_us, 99),
                "top_model_changes": [
                    {"from_model": a, "to_model": b, "count": n}
                    for (a, b), n in self.changes.most_common(TOP_CHANGES)
                ],
                "started_at": self.started_at,
            }
        return out


def _pct(values: deque[float], q: float) -> float:
    return float(np.percentile(np.fromiter(values, float), q)) if values else 0.0


def _summary(values: deque[float]) -> dict[str, float | int]:
    if not values:
        return {"count": 0, "mean_us": 0.0, "p50_us": 0.0, "p99_us": 0.0}
    a = np.fromiter(values, float)
    return {
        "count": len(a),
        "mean_us": float(a.mean()),
        "p50_us": float(np.percentile(a, 50)),
        "p99_us": float(np.percentile(a, 99)),
    }


class ShadowEvaluator:
    """Runs at most one candidate; `observe` is the serving path's only entry point."""

    def __init__(self, router: Router, *, max_pending: int = 256) -> None:
        self._router = router
        self._max_pending = max_pending
        self._pending = 0
        self._lock = threading.Lock()
        # One OpenMP thread for its FAISS searches, as on the loop (see server/app.py).
        self._executor = ThreadPoolExecutor(
            max_workers=1,
            thread_name_prefix="semroute-shadow",
            initializer=faiss.omp_set_num_threads,
            initargs=(1,),
        )
        self._memo: OrderedDict[str, Embedding] = OrderedDict()
        self._run: ShadowRun | None = None
        self._random = random.random

    @property
    def run(self) -> ShadowRun | None:
        return self._run

    @property
    def pending(self) -> int:
        return self._pending

    def start(self, version: str, state: RoutingState, rate: float) -> None:
        """Evaluate `state` from now on (replaces any earlier candidate and its figures)."""
        if not 0.0 <= rate <= 1.0:
            raise ValueError("shadow sample rate must be within 0-1")
        self._run = ShadowRun(version, state, rate)

    def stop(self) -> dict[str, Any] | None:
        """Stop evaluating; returns the final figures (None when nothing ran)."""
        run, self._run = self._run, None
        return run.report() if run is not None else None

    def close(self) -> None:
        self._run = None
        self._executor.shutdown(wait=False, cancel_futures=True)

    def observe(
        self,
        query: RouteQuery | Callable[[], RouteQuery],
        state: RoutingState,
        embedding: Embedding | None = None,
    ) -> None:
        """Called by the service after a decision made with `state` (its full-encoder
        embedding when it had one, else None); cheap, never raises, never blocks.

        `query` may be a function that decodes it: the exact-bytes cache path has
        only the request's bytes, and most requests are not sampled, so only those
        that are pay for decoding.
        """
        run = self._run
        if run is None or state is run.state:
            return
        if run.rate < 1.0 and self._random() >= run.rate:
            return
        if callable(query):
            query = query()
        assert run is not None
        with self._lock:
            run.sampled += 1
            if self._pending >= self._max_pending:
                run.dropped += 1
                return
            self._pending += 1
        try:
            self._executor.submit(self._evaluate, run, query, state, embedding)
        except RuntimeError:  # executor shut down (server stopping)
            with self._lock:
                self._pending -= 1

    def _embed(self, text: str) -> Embedding:
        hit = self._memo.get(text)
        if hit is not None:
            self._memo.move_to_end(text)
            return hit
        emb = self._router.encode(text)
        self._memo[text] = emb
        if len(self._memo) > EMBED_MEMO:
            self._memo.popitem(last=False)
        return emb

    def _evaluate(
        self,
        run: ShadowRun,
        query: RouteQuery,
        active: RoutingState,
        embedding: Embedding | None,
    ) -> None:
        try:
            self._compare(run, query, active, embedding)
        except Exception:
            log.exception("shadow evaluation failed", extra={"fields": {"version": run.version}})
            with run.lock:
                run.internal_errors += 1
        finally:
            with self._lock:
                self._pending -= 1

    def _compare(
        self,
        run: ShadowRun,
        query: RouteQuery,
        active: RoutingState,
        embedding: Embedding | None,
    ) -> None:
        router = self._router
        shared: list[Embedding] = [embedding] if embedding is not None else []

        def embed() -> Embedding:
            if not shared:
                shared.append(self._embed(query.text))
            return shared[0]

        # Embed first (untimed) so both decisions are timed on the same footing.
        t = time.perf_counter_ns()
        plan_a = router.plan(query, active)
        a_ns = time.perf_counter_ns() - t
        try:
            t = time.perf_counter_ns()
            plan_c = router.plan(query, run.state)
            c_ns = time.perf_counter_ns() - t
        except RoutingError:
            return self._refused(run, active)
        if plan_a.needs_encoder or plan_c.needs_encoder:
            embed()
        # Alternate the order so neither state always runs on warmer caches.
        first_active = run.compared % 2 == 0
        da = dc = None
        for which in ("a", "c") if first_active else ("c", "a"):
            t = time.perf_counter_ns()
            if which == "a":
                da = router.finish(plan_a, embed)
                a_ns += time.perf_counter_ns() - t
            else:
                try:
                    dc = router.finish(plan_c, embed)
                except RoutingError:
                    dc = None
                c_ns += time.perf_counter_ns() - t
        assert da is not None
        if dc is None:
            return self._refused(run, active)
        cost_a, q_a = chosen(da)
        cost_c, q_c = chosen(dc)
        with run.lock:
            run.active_versions[active.index.version] += 1
            run.compared += 1
            run.priced += 1
            if da.model != dc.model:
                run.model_diffs += 1
                run.changes[(da.model, dc.model)] += 1
            if da.route != dc.route:
                run.route_diffs += 1
            run.active_cost += cost_a
            run.candidate_cost += cost_c
            run.quality_delta += q_c - q_a
            run.active_us.append(a_ns / 1000)
            run.candidate_us.append(c_ns / 1000)
            run.extra_us.append((c_ns - a_ns) / 1000)

    @staticmethod
    def _refused(run: ShadowRun, active: RoutingState) -> None:
        with run.lock:
            run.active_versions[active.index.version] += 1
            run.compared += 1
            run.candidate_errors += 1
