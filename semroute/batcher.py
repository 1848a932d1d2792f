"""Dynamic micro-batching for the encoder.

Requests that need an embedding queue here. A run starts when an inference
thread is free and `max_batch` texts are waiting or the oldest has waited
`max_wait_us`; it takes the oldest waiting text and up to `max_batch - 1`
others of similar length (so short prompts do not pay for a long one's
padding). At most `parallelism` runs are in flight: when every thread is busy
(overload), texts keep waiting here, and a text whose caller has gone (deadline,
cancellation) is dropped before it costs an encoder pass.

On CPU one text per run is fastest (`benchmarks/encoder_batching.py`: padding
costs more than a run's overhead saves), so the bundled config sets
`max_batch: 1`; a GPU execution provider is where larger runs pay.
Inference runs in a thread pool (onnxruntime releases the GIL), so the event
loop keeps accepting and answering cheap requests meanwhile.
"""

from __future__ import annotations

import asyncio
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
        self._pending: list[Waiting] = []
        self._timer: asyncio.TimerHandle | None = None
        self._queued = 0
        self._tasks: set[asyncio.Future[None]] = set()
        self.stats = BatchStats()
        # Batches the executor runs at once, and the measured encoder seconds per
        # text (moving average; 0 until the first batch): together they say how
        # long a new text would wait.
        self.parallelism = parallelism
        self._seconds_per_text = 0.0
        # Nanoseconds, for timing encoder runs; injectable so tests need no real delays.
        self.clock = clock
        self._running = 0  # encoder runs started and not yet finished
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
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[tuple[np.ndarray, int]] = loop.create_future()
        self._pending.append((text, fut))
        self._queued += 1
        try:
            if len(self._pending) >= self.max_batch:
                self._flush()
            elif self._timer is None:
                self._timer = loop.call_later(self.max_wait_s, self._flush)
            return await fut
        finally:
            self._queued -= 1

    def _timed_encode(self, texts: list[str]) -> tuple[np.ndarray, int]:
        """Encode in the executor; the time excludes the wait for a free thread, so
        the speed estimate does not grow with the queue it is used to bound."""
        t0 = self.clock()
        emb = self._encode(texts)
        return emb, self.clock() - t0

    def _flush(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        while self._running < self.parallelism:
            run, self._pending = _next_run(self._pending, self.max_batch, self.bucket_ratio)
            if not run:
                return
            self._running += 1
            task = asyncio.ensure_future(self._run(run))
            self._tasks.add(task)  # keep a reference until done, or it may be collected
            task.add_done_callback(self._tasks.discard)

    async def _run(self, run: list[Waiting]) -> None:
        try:
            await self._encode_run(run)
        finally:
            self._running -= 1
            if self._pending:
                self._flush()  # texts gathered while every thread was busy

    async def _encode_run(self, run: list[Waiting]) -> None:
        texts = [t for t, _ in run]
        loop = asyncio.get_running_loop()
        self.stats.batches += 1
        self.stats.texts += len(texts)
        self.stats.sizes[len(texts)] = self.stats.sizes.get(len(texts), 0) + 1
        self.metrics.batch(len(texts))
        try:
            emb, elapsed = await loop.run_in_executor(self._executor, self._timed_encode, texts)
        except Exception as e:
            for _, fut in run:
                if not fut.done():
                    fut.set_exception(e)
            return
        per_text = elapsed / 1e9 / len(texts)
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
