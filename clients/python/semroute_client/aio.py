"""The asyncio client (grpc.aio)."""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import grpc
import grpc.aio

from semroute_client._core import (
    DEFAULT_TIMEOUT_S,
    Decision,
    FailOpenLog,
    RetryPolicy,
    build_request,
    check_timeout,
    credentials,
    error_name,
    pushback_s,
)
from semroute_client.v1 import router_pb2, router_pb2_grpc


class AsyncSemrouteClient:
    """The asyncio twin of `SemrouteClient`: same deadline, retries and fail-open rules.

    A grpc.aio channel belongs to the event loop it was first used on, and gateways often
    build their hooks before any loop runs, so the channel is opened on the first call, and
    opened again if a call comes from another loop.
    """

    def __init__(
        self,
        target: str,
        *,
        timeout: float = DEFAULT_TIMEOUT_S,
        retry: RetryPolicy | None = None,
        tls: bool = False,
        root_certificates: bytes | None = None,
        private_key: bytes | None = None,
        certificate_chain: bytes | None = None,
        options: Sequence[tuple[str, Any]] = (),
        metadata: Sequence[tuple[str, str]] = (),
    ) -> None:
        self.target = target
        self.timeout = check_timeout(timeout)
        self.retry = retry or RetryPolicy()
        self._metadata = tuple(metadata)
        self._options = list(options)
        self._creds = credentials(tls, root_certificates, private_key, certificate_chain)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._channel: grpc.aio.Channel | None = None
        self._stub: router_pb2_grpc.RouterServiceStub | None = None
        self._rng = random.Random()
        self._fail_open_log = FailOpenLog()

    def _stub_for_loop(self) -> router_pb2_grpc.RouterServiceStub:
        loop = asyncio.get_running_loop()
        if self._stub is None or self._loop is not loop:
            if self._creds is None:
                channel = grpc.aio.insecure_channel(self.target, options=self._options)
            else:
                channel = grpc.aio.secure_channel(self.target, self._creds, options=self._options)
            self._channel = channel
            self._stub = router_pb2_grpc.RouterServiceStub(self._channel)
            self._loop = loop
        return self._stub

    async def route(
        self,
        prompt: str | None = None,
        *,
        messages: Sequence[Mapping[str, Any]] | None = None,
        timeout: float | None = None,
        **constraints: Any,
    ) -> Decision:
        """Decide for a prompt or OpenAI-style messages; raises grpc.RpcError on failure.

        `constraints` are the RouteRequest fields (see `SemrouteClient.route`).
        """
        request = build_request(prompt, messages, **constraints)
        return Decision.from_proto(await self._call(request, timeout))

    async def route_or_default(
        self,
        prompt: str | None = None,
        *,
        default_model: str,
        default_fallbacks: Iterable[str] = (),
        messages: Sequence[Mapping[str, Any]] | None = None,
        timeout: float | None = None,
        **constraints: Any,
    ) -> Decision:
        """Like `route`, but fails open to `default_model`: never raises (cancellation aside,
        which belongs to the caller)."""
        try:
            return await self.route(prompt, messages=messages, timeout=timeout, **constraints)
        except Exception as exc:
            error = error_name(exc)
            self._fail_open_log.note(error, default_model)
            request_id = str(constraints.get("request_id") or "")
            return Decision.default(default_model, default_fallbacks, error, request_id)

    async def _call(
        self, request: router_pb2.RouteRequest, timeout: float | None
    ) -> router_pb2.RouteDecision:
        budget = self.timeout if timeout is None else check_timeout(timeout)
        deadline = time.monotonic() + budget
        stub = self._stub_for_loop()
        attempts = 0
        while True:  # bounded: next_pause gives up after retry.max_attempts
            attempts += 1
            try:
                return await stub.Route(
                    request,
                    timeout=max(deadline - time.monotonic(), 0.0),
                    metadata=self._metadata,
                )
            except grpc.RpcError as err:
                pause = self.retry.next_pause(
                    err.code(), attempts, deadline, self._rng, pushback_s(err)
                )
                if pause is None:
                    raise
                await asyncio.sleep(pause)

    async def close(self) -> None:
        if self._channel is not None:
            await self._channel.close()
            self._channel = self._stub = self._loop = None

    async def __aenter__(self) -> AsyncSemrouteClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()
