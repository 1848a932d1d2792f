"""Dynamic micro-batching for the encoder.

Requests that need an embedding queue here. A run starts when an inference
thread is free and `max_batch` texts are waiting or the oldest has waited
`max_wait_us`; it takes the oldest waiting text and up to `max_batch - 1`
others of similar length (so short prompts do not pay for a long one's
padding). At most `parallelism` runs are in flight: when every thread is busy
(overload), texts keep waiting here, and a text whose caller has gone (deadline,
cancellation) is dropped before it costs an encoder pass.

An inference thread that finishes a run takes the next one itself, without a round
trip through the event loop: under load that hop left each thread idle ~1.5 ms per
~13 ms run (12-14% of the encoder, measured in encoder-bound closed loops). So the
waiting texts are shared with the threads under a lock, and results go back to the
loop with `call_soon_threadsafe`.

On CPU one text per run is fastest (`benchmarks/encoder_batching.py`: padding
costs more than a run's overhead saves), so the bundled config sets
`max_batch: 1`; a GPU execution provider is where larger runs pay.
Inference runs in a thread pool (onnxruntime releases the GIL), so the event
loop keeps accepting and answering cheap requests meanwhile.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Executor
from dataclasses import dataclass, field

import numpy as np

from semroute import metrics as m

EncodeFn = Callable[[Sequence[str]], np.ndarray]
# A text waiting for the encoder and the future its caller awaits (embedding, run ns).
Waiting = tuple[str, asyncio.Future[tuple[np.ndarray, int]]]

# Characters (~12 tokens) of length difference always tolerated within a run.
MIN_BUCKET_SPREAD = 48
# Weight of the newest batch in the moving average of encoder seconds per text.
SPEED_EWMA = 0.1
# Shortest retry-after a refusal suggests.
MIN_RETRY_AFTER_S = 0.005
# Furthest ahead a refusal's retry slot is set: past it, refused callers share the last slot
# (at 10x overload the slots would otherwise run minutes ahead of a load that may pass).
MAX_RETRY_AFTER_S = 2.0


@dataclass(slots=True)
class BatchStats:
    batches: int = 0
    texts: int = 0
    # Histogram of batch sizes: size -> count.
    sizes: dict[int, int] = field(default_factory=dict)


class MicroBatcher:
    def __init__(
        self,
        encode: EncodeFn,
        executor: Executor,
        *,
        max_batch: int = 32,
        max_wait_us: int = 2000,
        bucket_ratio: float = 2.0,
        max_queue: int = 4096,
        max_queue_wait_ms: float = 0.0,
        parallelism: int = 1,
        clock: Callable[[], int] = time.perf_counter_ns,
        metrics: m.Recorder | None = None,
    ) -> None:
        positive = min(max_batch, max_queue, parallelism) >= 1 and bucket_ratio >= 1
        if not positive or min(max_wait_us, max_queue_wait_ms) < 0:
            raise ValueError("invalid batching parameters")
        self._encode = encode
        self._executor = executor
        self.max_batch = max_batch
        self.max_wait_s = max_wait_us / 1e6
        self.bucket_ratio = bucket_ratio
        self.max_queue = max_queue
        self.max_queue_wait_ms = max_queue_wait_ms  # 0: no bound but max_queue
        # Texts waiting for a run; shared with the inference threads, which take their next
        # run from it, so every access holds the lock.
        self._pending: list[Waiting] = []
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._queued = 0
        self.stats = BatchStats()
        # Batches the executor runs at once, and the measured encoder seconds per
        # text (moving average; 0 until the first batch): together they say how
        # long a new text would wait.
        self.parallelism = parallelism
        self._seconds_per_text = 0.0
        # Nanoseconds, for timing encoder runs; injectable so tests need no real delays.
        self.clock = clock
        self._running = 0  # inference threads taking runs (under the lock)
        # Monotonic seconds of the latest retry slot handed to a refused caller.
        self._last_slot = 0.0
        self.metrics = metrics or m.NULL_RECORDER

    @property
    def queued(self) -> int:
        """Texts waiting or being encoded; the server sheds load above max_queue."""
        return self._queued

    def expected_wait_s(self) -> float:
        """Seconds a text queued now would wait for the encoder, from measured speed."""
        return self._queued * self._seconds_per_text / self.parallelism

    def retry_after_s(self) -> float:
        """When a refused caller should retry: once the queue ahead of it has drained
        (never sooner than one encoder run), and after every caller refused before it.

        Each refusal takes the next slot, one encoder text apart (the rate the encoder
        frees room), so refused callers come back spread out instead of all at once into
        a queue that refuses most of them again. Each such repeat costs a gRPC call on
        both ends, which is CPU the encoder no longer gets."""
        now = self.clock() / 1e9
        drained = now + max(self.expected_wait_s(), self._seconds_per_text, MIN_RETRY_AFTER_S)
        slot = min(max(drained, self._last_slot), now + MAX_RETRY_AFTER_S)
        self._last_slot = slot + self._seconds_per_text / self.parallelism
        return slot - now

    def refusal(self, time_left_s: float | None = None) -> str | None:
        """Why a new text should be refused now, for the caller's RESOURCE_EXHAUSTED; else
        None: the queue is full, its expected wait is over max_queue_wait_ms, or the
        caller's deadline (`time_left_s`, None without one) ends before the text would
        be encoded, so the work would be wasted. Each refusal is counted by its cause."""
        if self._queued >= self.max_queue:
            self.metrics.refused(m.QUEUE_FULL)
            return f"{self._queued} requests are waiting for the encoder; retry with backoff"
        wait_ms = self.expected_wait_s() * 1000
        if time_left_s is not None:
            done_ms = wait_ms + self._seconds_per_text * 1000
            if time_left_s * 1000 < done_ms:
                self.metrics.refused(m.DEADLINE)
                return (
                    f"the deadline ({time_left_s * 1000:.0f} ms left) ends before the "
                    f"encoder's expected wait and run ({done_ms:.0f} ms); retry with a longer "
                    "deadline or route this request to your default model"
                )
        if self.max_queue_wait_ms and wait_ms > self.max_queue_wait_ms:
            self.metrics.refused(m.SATURATED)
            return (
                f"the encoder is saturated (expected wait {wait_ms:.0f} ms, over "
                f"batching.max_queue_wait_ms {self.max_queue_wait_ms:g}); retry with "
                "backoff or route this request to your default model"
            )
        return None

    async def embed(self, text: str) -> tuple[np.ndarray, int]:
        """Embedding of `text` (1, dim) and the nanoseconds its batch took to encode
        (the encoder's run, without the wait for it)."""
        loop = self._loop = asyncio.get_running_loop()
        fut: asyncio.Future[tuple[np.ndarray, int]] = loop.create_future()
        with self._lock:
            self._pending.append((text, fut))
            full = len(self._pending) >= self.max_batch
        self._queued += 1
        try:
            if full:
                self._flush()
            elif self._timer is None:
                self._timer = loop.call_later(self.max_wait_s, self._flush)
            return await fut
        finally:
            self._queued -= 1

    def _timed_encode(self, texts: list[str]) -> tuple[np.ndarray, int]:
        """Encode (in an inference thread); the time excludes the wait for a free thread,
        so the speed estimate does not grow with the queue it is used to bound."""
        t0 = self.clock()
        emb = self._encode(texts)
        return emb, self.clock() - t0

    def _flush(self) -> None:
        """Start runs on idle inference threads (event loop)."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        with self._lock:
            while self._running < self.parallelism:
                run = self._take_run()
                if not run:
                    return
                self._running += 1
                try:
                    self._executor.submit(self._work, run)
                except RuntimeError as e:  # the executor has shut down
                    self._running -= 1
                    for _, fut in run:
                        if not fut.done():
                            fut.set_exception(e)
                    return

    def _take_run(self) -> list[Waiting]:
        """The next run from the waiting texts, counted as started (holding the lock)."""
        run, self._pending = _next_run(self._pending, self.max_batch, self.bucket_ratio)
        if run:
            self.stats.batches += 1
            self.stats.texts += len(run)
            self.stats.sizes[len(run)] = self.stats.sizes.get(len(run), 0) + 1
            self.metrics.batch(len(run))
        return run

    def _work(self, run: list[Waiting]) -> None:
        """An inference thread: encode `run`, hand its result to the loop, and go on with
        the next run while texts wait."""
        loop = self._loop
        assert loop is not None
        while run:
            try:
                emb, elapsed = self._timed_encode([t for t, _ in run])
                done = (run, emb, elapsed, None)
            except Exception as e:
                done = (run, None, 0, e)
            try:
                loop.call_soon_threadsafe(self._deliver, *done)
            except RuntimeError:  # the loop has closed: nobody is waiting any more
                with self._lock:
                    self._running -= 1
                return
            with self._lock:
                run = self._take_run()
                if not run:
                    self._running -= 1

    def _deliver(
        self, run: list[Waiting], emb: np.ndarray | None, elapsed: int, error: Exception | None
    ) -> None:
        """A run's embeddings (or its error) to its callers still waiting (event loop)."""
        if error is not None or emb is None:
            for _, fut in run:
                if not fut.done():
                    fut.set_exception(error or RuntimeError("encoder returned nothing"))
            return
        per_text = elapsed / 1e9 / len(run)
        prev = self._seconds_per_text
        self._seconds_per_text = per_text if prev == 0 else prev + SPEED_EWMA * (per_text - prev)
        for i, (_, fut) in enumerate(run):
            if not fut.done():
                fut.set_result((emb[i : i + 1], elapsed))


def _next_run(
    pending: list[Waiting], max_batch: int, ratio: float
) -> tuple[list[Waiting], list[Waiting]]:
    """(the next run, what stays pending): the oldest text whose caller still waits, and up
    to `max_batch - 1` later ones that keep the run's longest text within `ratio` x its
    shortest (or MIN_BUCKET_SPREAD characters of it), in arrival order.

    Length in characters stands in for tokens: the tokenizer runs later, in the encoder,
    and characters track tokens closely enough to limit padding.
    """
    run: list[Waiting] = []
    rest: list[Waiting] = []
    lo = hi = 0
    for i, item in enumerate(pending):
        if len(run) == max_batch:  # full: the rest waits as it is (gone callers dropped later)
            rest += pending[i:]
            break
        if item[1].cancelled():
            continue  # its caller has gone: never encoded
        n = len(item[0])
        if not run:
            run.append(item)
            lo = hi = n
            continue
        a, b = min(lo, n), max(hi, n)
        if b <= a * ratio or b - a <= MIN_BUCKET_SPREAD:
            run.append(item)
            lo, hi = a, b
        else:
            rest.append(item)
    return run, rest
