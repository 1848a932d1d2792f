"""How a client process sends each request: one unary `Route` call, a client-side batch
(`RouteBatch`), or a held bidirectional stream (`RouteStream`).

Each sender turns one request into one decision (or an error naming its status), so the
open and closed loops measure every RPC the same way: latency per request, from when
the loop handed it over.
"""

from __future__ import annotations

import asyncio
from typing import Any

import grpc

from semroute.v1 import router_pb2, router_pb2_grpc

RPCS = ("route", "batch", "stream")
# How long a partial client-side batch waits for more requests before it is sent.
BATCH_LINGER_S = 0.0005


PUSHBACK = "grpc-retry-pushback-ms"


class ItemFailed(Exception):
    """One batch or stream item came back with an error (its status code name, and the
    seconds the server asked to wait before a retry, 0 when it did not say)."""

    def __init__(self, code: str, retry_after_s: float = 0.0) -> None:
        super().__init__(code)
        self.code = code
        self.retry_after_s = retry_after_s


def pushback_s(trailers: Any) -> float:
    """The server pushback of a failed call in seconds (0 when absent or unreadable)."""
    for key, value in trailers or ():
        if key == PUSHBACK:
            try:
                return max(0.0, int(value) / 1000)
            except ValueError:
                return 0.0
    return 0.0


def _decision(item: router_pb2.RouteItem) -> router_pb2.RouteDecision:
    if item.HasField("error"):
        code = grpc.StatusCode(_STATUS[item.error.code]).name
        raise ItemFailed(code, item.error.retry_after_ms / 1000)
    return item.decision


_STATUS = {c.value[0]: c.value for c in grpc.StatusCode}


class UnarySender:
    def __init__(self, stub: router_pb2_grpc.RouterServiceStub, timeout: float) -> None:
        self._stub = stub
        self._timeout = timeout

    async def send(self, req: router_pb2.RouteRequest) -> router_pb2.RouteDecision:
        return await self._stub.Route(req, timeout=self._timeout)

    async def close(self) -> None:
        return None


class BatchSender:
    """Collects requests into batches of `size` (or what arrived within the linger)."""

    def __init__(self, stub: router_pb2_grpc.RouterServiceStub, timeout: float, size: int) -> None:
        self._stub = stub
        self._timeout = timeout
        self._size = size
        self._buf: list[tuple[router_pb2.RouteRequest, asyncio.Future[Any]]] = []
        self._timer: asyncio.TimerHandle | None = None
        self._calls: set[asyncio.Task[None]] = set()

    async def send(self, req: router_pb2.RouteRequest) -> router_pb2.RouteDecision:
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[Any] = loop.create_future()
        self._buf.append((req, fut))
        if len(self._buf) >= self._size:
            self._flush()
        elif self._timer is None:
            self._timer = loop.call_later(BATCH_LINGER_S, self._flush)
        return _decision(await fut)

    def _flush(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if not self._buf:
            return
        batch, self._buf = self._buf, []
        task = asyncio.ensure_future(self._call(batch))
        self._calls.add(task)
        task.add_done_callback(self._calls.discard)

    async def _call(self, batch: list[tuple[router_pb2.RouteRequest, asyncio.Future[Any]]]) -> None:
        request = router_pb2.RouteBatchRequest(requests=[r for r, _ in batch])
        try:
            out = await self._stub.RouteBatch(request, timeout=self._timeout)
        except Exception as e:
            for _, fut in batch:
                if not fut.done():
                    fut.set_exception(e)
            return
        for (_, fut), item in zip(batch, out.items, strict=True):
            if not fut.done():
                fut.set_result(item)

    async def close(self) -> None:
        self._flush()
        if self._calls:
            await asyncio.wait(self._calls, timeout=self._timeout + 1)


class StreamSender:
    """One long-lived RouteStream; results are matched to requests by `sequence`."""

    def __init__(self, stub: router_pb2_grpc.RouterServiceStub, timeout: float) -> None:
        self._call = stub.RouteStream()
        self._timeout = timeout
        self._next = 0
        self._waiting: dict[int, asyncio.Future[Any]] = {}
        self._write_lock = asyncio.Lock()  # one write at a time on a stream
        self._reader = asyncio.ensure_future(self._read())

    async def send(self, req: router_pb2.RouteRequest) -> router_pb2.RouteDecision:
        fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        async with self._write_lock:
            seq, self._next = self._next, self._next + 1
            self._waiting[seq] = fut
            await self._call.write(req)
        try:
            item = await asyncio.wait_for(fut, self._timeout)
        except asyncio.TimeoutError:
            self._waiting.pop(seq, None)
            raise ItemFailed("DEADLINE_EXCEEDED") from None
        return _decision(item)

    async def _read(self) -> None:
        try:
            while (item := await self._call.read()) is not grpc.aio.EOF:
                fut = self._waiting.pop(item.sequence, None)
                if fut is not None and not fut.done():
                    fut.set_result(item)
        except Exception as e:  # the stream broke: everyone waiting fails with it
            for fut in self._waiting.values():
                if not fut.done():
                    fut.set_exception(e)
            self._waiting.clear()

    async def close(self) -> None:
        try:
            await self._call.done_writing()
        except Exception:
            self._call.cancel()
        try:
            await asyncio.wait_for(self._reader, self._timeout + 1)
        except (asyncio.TimeoutError, Exception):
            self._call.cancel()


def make_sender(
    rpc: str, stub: router_pb2_grpc.RouterServiceStub, timeout: float, batch_size: int
) -> UnarySender | BatchSender | StreamSender:
    if rpc == "batch":
        return BatchSender(stub, timeout, batch_size)
    if rpc == "stream":
        return StreamSender(stub, timeout)
    return UnarySender(stub, timeout)
