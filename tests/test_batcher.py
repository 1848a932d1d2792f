"""Micro-batching: batched results equal single ones, batches form by size and by time."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from semroute.batcher import EncodeFn, MicroBatcher, _next_run


def fake_encode(calls: list[list[str]]):  # type: ignore[no-untyped-def]
    lock = threading.Lock()

    def encode(texts: Sequence[str]) -> np.ndarray:
        with lock:
            calls.append(list(texts))
        return np.array([[len(t), hash(t) % 1000] for t in texts], dtype=np.float32)

    return encode


async def test_full_batch_flushes_without_waiting() -> None:
    calls: list[list[str]] = []
    with ThreadPoolExecutor(2) as pool:
        b = MicroBatcher(fake_encode(calls), pool, max_batch=4, max_wait_us=10_000_000)
        texts = [f"prompt number {i}" for i in range(4)]
        out = await asyncio.wait_for(asyncio.gather(*(b.embed(t) for t in texts)), 5)
    assert [len(c) for c in calls] == [4]
    for t, (emb, ns) in zip(texts, out, strict=True):
        assert emb.shape == (1, 2) and emb[0, 0] == len(t) and ns > 0
    assert b.stats.batches == 1 and b.stats.sizes == {4: 1} and b.queued == 0


async def test_partial_batch_flushes_after_max_wait() -> None:
    calls: list[list[str]] = []
    with ThreadPoolExecutor(2) as pool:
        b = MicroBatcher(fake_encode(calls), pool, max_batch=64, max_wait_us=20_000)
        out = await asyncio.wait_for(asyncio.gather(b.embed("a b c"), b.embed("d e f")), 5)
    assert calls == [["a b c", "d e f"]] and len(out) == 2


async def test_encoder_error_reaches_every_waiter() -> None:
    def broken(texts: Sequence[str]) -> np.ndarray:
        raise RuntimeError("encoder exploded")

    with ThreadPoolExecutor(1) as pool:
        b = MicroBatcher(broken, pool, max_batch=2, max_wait_us=1000)
        results = await asyncio.gather(b.embed("x"), b.embed("y"), return_exceptions=True)
    assert all(isinstance(r, RuntimeError) for r in results) and b.queued == 0


async def test_a_run_takes_the_oldest_text_and_others_of_similar_length() -> None:
    loop = asyncio.get_running_loop()
    pending = [("x" * n, loop.create_future()) for n in (10, 300, 40, 2000, 320, 35, 12)]
    gone = loop.create_future()
    gone.cancel()
    pending.insert(0, ("y" * 10, gone))  # its caller left: dropped, never encoded
    runs = []
    while pending:
        run, pending = _next_run(pending, 3, 2.0)  # type: ignore[arg-type]
        runs.append([len(t) for t, _ in run])
    # oldest first; a run never spans more than 2x (or 48 characters) of length
    assert runs == [[10, 40, 35], [300, 320], [2000], [12]]
    one, rest = _next_run([("a", loop.create_future()), ("b", loop.create_future())], 1, 2.0)
    assert [t for t, _ in one] == ["a"] and [t for t, _ in rest] == ["b"]


async def test_batched_equals_single_with_the_real_encoder(encoder) -> None:  # type: ignore[no-untyped-def]
    texts = [
        "hi",
        "what are your opening hours?",
        "design a sharded, replicated key-value store with exactly-once semantics",
        "translate this paragraph into French, keeping the formal register of the original",
        "a much longer prompt " * 30,
    ]
    single = np.vstack([encoder.encode([t]) for t in texts])
    with ThreadPoolExecutor(2) as pool:
        b = MicroBatcher(encoder.encode, pool, max_batch=8, max_wait_us=50_000)
        out = await asyncio.gather(*(b.embed(t) for t in texts))
    batched = np.vstack([emb for emb, _ in out])
    assert b.stats.texts == len(texts) and b.stats.batches < len(texts)
    np.testing.assert_allclose(batched, single, atol=1e-5)
    assert np.abs(batched - single).max() == pytest.approx(0, abs=1e-5)


class FakeClock:
    """Nanoseconds that advance only when the fake encoder says it worked."""

    def __init__(self) -> None:
        self.now = 0

    def __call__(self) -> int:
        return self.now


def gated_encode(clock: FakeClock, gate: threading.Event, ns_per_text: int) -> EncodeFn:
    """An encoder that costs `ns_per_text` on the fake clock and holds every run but the
    one for "first" (which measures the speed) until `gate` is set."""

    def encode(texts: Sequence[str]) -> np.ndarray:
        clock.now += ns_per_text * len(texts)
        if texts[0] != "first":
            assert gate.wait(20)
        return np.zeros((len(texts), 2), dtype=np.float32)

    return encode


async def test_expected_wait_follows_measured_encoder_speed() -> None:
    """The wait estimate is texts queued × measured seconds per text / parallelism."""
    clock = FakeClock()
    gate = threading.Event()
    encode = gated_encode(clock, gate, 20_000_000)  # 20 ms per text, on the injected clock

    with ThreadPoolExecutor(2) as pool:
        b = MicroBatcher(encode, pool, max_batch=1, max_wait_us=0, parallelism=2, clock=clock)
        assert b.expected_wait_s() == 0.0  # nothing measured yet: admit
        await b.embed("first")
        queued = [asyncio.ensure_future(b.embed(f"t{i}")) for i in range(10)]
        await asyncio.sleep(0)  # all ten are queued now (the encoder is held at the gate)
        assert b.queued == 10
        assert b.expected_wait_s() == pytest.approx(10 * 0.02 / 2)
        gate.set()
        await asyncio.gather(*queued)
    assert b.expected_wait_s() == 0.0


async def test_refusal_names_the_full_queue_then_the_expected_wait() -> None:
    clock = FakeClock()
    gate = threading.Event()
    encode = gated_encode(clock, gate, 50_000_000)  # 50 ms per text

    with ThreadPoolExecutor(2) as pool:
        b = MicroBatcher(
            encode,
            pool,
            max_batch=1,
            max_wait_us=0,
            parallelism=2,
            max_queue=6,
            max_queue_wait_ms=100,
            clock=clock,
        )
        assert b.refusal() is None
        await b.embed("first")
        held = []
        for i in range(6):
            held.append(asyncio.ensure_future(b.embed(f"t{i}")))
            await asyncio.sleep(0)
            # 25 ms of expected wait per queued text: over 100 ms from the 5th on
            refusal = b.refusal()
            if b.queued < 5:
                assert refusal is None, b.queued
            elif b.queued < 6:
                assert refusal is not None and "max_queue_wait_ms" in refusal
            else:
                assert refusal is not None and "6 requests are waiting" in refusal
        gate.set()
        await asyncio.gather(*held)


async def test_a_text_whose_caller_left_while_queued_is_never_encoded() -> None:
    """A run is handed to the executor only when a thread is free, so a caller that gives up
    (deadline, cancellation) while the encoder is busy costs no encoder pass."""
    calls: list[list[str]] = []
    permits = threading.Semaphore(0)
    started = threading.Semaphore(0)
    record = fake_encode(calls)

    def one_at_a_time(texts: Sequence[str]) -> np.ndarray:
        out = record(texts)  # counted as encoded once started
        started.release()
        assert permits.acquire(timeout=10)
        return out

    with ThreadPoolExecutor(1) as pool:
        b = MicroBatcher(one_at_a_time, pool, max_batch=1, max_wait_us=0, parallelism=1)
        loop = asyncio.get_running_loop()
        busy = asyncio.ensure_future(b.embed("busy"))
        assert await loop.run_in_executor(None, started.acquire, True, 10)
        first, leaves = asyncio.ensure_future(b.embed("first")), asyncio.ensure_future(b.embed("x"))
        await asyncio.sleep(0)
        permits.release()  # "busy" ends; only "first" may start: one run per free thread
        assert await loop.run_in_executor(None, started.acquire, True, 10)
        leaves.cancel()  # its caller leaves while "first" is being encoded
        permits.release()
        await asyncio.wait_for(asyncio.gather(busy, first), 10)
        for _ in range(3):  # had it been handed over, it would run now
            permits.release()
        await asyncio.sleep(0.05)
    assert [t for c in calls for t in c] == ["busy", "first"]
    assert b.queued == 0


async def test_refused_callers_get_successive_retry_slots() -> None:
    """Pushback spreads refused callers out: each refusal's retry comes one encoder text
    (per thread) after the previous one's, behind the queue ahead; never past the cap."""
    from semroute.batcher import MAX_RETRY_AFTER_S

    clock = FakeClock()
    gate = threading.Event()
    encode = gated_encode(clock, gate, 40_000_000)  # 40 ms per text: 20 ms per slot on 2 threads

    with ThreadPoolExecutor(2) as pool:
        b = MicroBatcher(encode, pool, max_batch=1, max_wait_us=0, parallelism=2, clock=clock)
        await b.embed("first")
        held = [asyncio.ensure_future(b.embed(f"t{i}")) for i in range(10)]
        await asyncio.sleep(0)
        drained = b.expected_wait_s()  # 10 texts x 40 ms / 2 threads
        assert drained == pytest.approx(0.2)
        waits = [b.retry_after_s() for _ in range(5)]
        assert waits == pytest.approx([0.2, 0.22, 0.24, 0.26, 0.28])
        clock.now += 100_000_000  # 100 ms later: the next slot (300 ms) is 200 ms away
        assert b.retry_after_s() == pytest.approx(0.2)
        waits = [b.retry_after_s() for _ in range(200)]
        assert max(waits) == pytest.approx(MAX_RETRY_AFTER_S)
        gate.set()
        await asyncio.gather(*held)


async def test_texts_arriving_while_every_thread_is_busy_go_in_one_batch() -> None:
    """Under overload the encoder runs full batches, not a queue of one-text runs: texts
    that arrive while every inference thread is busy wait for the first to finish, then go
    together (up to max_batch)."""
    calls: list[list[str]] = []
    gate = threading.Event()
    started = threading.Semaphore(0)
    record = fake_encode(calls)

    def blocking(texts: Sequence[str]) -> np.ndarray:
        started.release()
        assert gate.wait(10)
        return record(texts)

    with ThreadPoolExecutor(2) as pool:
        b = MicroBatcher(blocking, pool, max_batch=8, max_wait_us=0, parallelism=2)
        loop = asyncio.get_running_loop()
        first = []
        for i in range(2):  # one run each: both threads busy
            first.append(asyncio.ensure_future(b.embed(f"busy {i}")))
            assert await loop.run_in_executor(None, started.acquire, True, 10)
        later = [asyncio.ensure_future(b.embed(f"later text {i}")) for i in range(11)]
        for _ in range(5):  # their flush timers fire: nothing may start while busy
            await asyncio.sleep(0)
        assert b.stats.batches == 2
        gate.set()
        await asyncio.wait_for(asyncio.gather(*first, *later), 10)
    sizes = sorted(len(c) for c in calls)
    assert sizes[-1] == 8 and sum(sizes) == 13  # the 11 later texts: runs of 8 and 3
    assert b.stats.batches == 4


async def test_a_thread_takes_the_next_run_without_the_event_loop() -> None:
    """A thread that finishes a run starts the next waiting one itself: with the event loop
    held (as under load, by other calls), the next run still starts. The results still
    reach their callers through the loop."""
    started = [threading.Event() for _ in range(3)]
    release = threading.Event()

    def encode(texts: Sequence[str]) -> np.ndarray:
        i = int(texts[0].split()[-1])
        started[i].set()
        if i == 0:
            assert release.wait(10)
        return np.full((len(texts), 2), i, dtype=np.float32)

    with ThreadPoolExecutor(1) as pool:
        b = MicroBatcher(encode, pool, max_batch=1, max_wait_us=0, parallelism=1)
        loop = asyncio.get_running_loop()
        waiting = [asyncio.ensure_future(b.embed(f"text {i}")) for i in range(3)]
        assert await loop.run_in_executor(None, started[0].wait, 10)
        release.set()
        # Deliberately blocking the loop thread: runs 1 and 2 must start all the same.
        assert started[1].wait(10) and started[2].wait(10)
        results = await asyncio.wait_for(asyncio.gather(*waiting), 10)
    assert [float(emb[0, 0]) for emb, _ in results] == [0.0, 1.0, 2.0]
    assert b.stats.batches == 3
