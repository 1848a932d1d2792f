"""The blocking client."""

from __future__ import annotations

import random
import time
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import grpc

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


class SemrouteClient:
    """Asks a semroute server which model should answer a request.

    Every call has a deadline (`timeout`, 50 ms by default) that covers all its attempts: a
    router in front of each LLM call must never add more latency than the caller budgeted.
    UNAVAILABLE and RESOURCE_EXHAUSTED are retried with jittered exponential backoff
    (`retry`) while the deadline allows; other errors are raised at once. In a gateway, use
    `route_or_default`, which never raises: routing is an optimisation, and an outage of the
    router must not become an outage of the LLM traffic.

    The channel is opened on construction and reused; `close()` (or `with`) releases it.
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
        creds = credentials(tls, root_certificates, private_key, certificate_chain)
        if creds is None:
            self._channel = grpc.insecure_channel(target, options=list(options))
        else:
            self._channel = grpc.secure_channel(target, creds, options=list(options))
        self._stub = router_pb2_grpc.RouterServiceStub(self._channel)
        self._rng = random.Random()
        self._fail_open_log = FailOpenLog()

    def route(
        self,
        prompt: str | None = None,
        *,
        messages: Sequence[Mapping[str, Any]] | None = None,
        timeout: float | None = None,
        **constraints: Any,
    ) -> Decision:
        """Decide for a prompt or OpenAI-style messages; raises grpc.RpcError on failure.

        `constraints` are the RouteRequest fields: request_id, tenant, allowed_models,
        excluded_models, required_tags, quality_preference, preset ("cost", "balanced",
        "quality"), max_cost_usd, expected_output_tokens.
        """
        request = build_request(prompt, messages, **constraints)
        return Decision.from_proto(self._call(request, timeout))

    def route_or_default(
        self,
        prompt: str | None = None,
        *,
        default_model: str,
        default_fallbacks: Iterable[str] = (),
        messages: Sequence[Mapping[str, Any]] | None = None,
        timeout: float | None = None,
        **constraints: Any,
    ) -> Decision:
        """Like `route`, but fails open: never raises, whatever goes wrong.

        When semroute is down, slow (past the deadline), overloaded or refuses the request,
        the result names `default_model` with `default_fallbacks`, `from_fallback=True` and
        the reason in `error`, so the caller carries on with its usual model.
        """
        try:
            return self.route(prompt, messages=messages, timeout=timeout, **constraints)
        except Exception as exc:
            error = error_name(exc)
            self._fail_open_log.note(error, default_model)
            request_id = str(constraints.get("request_id") or "")
            return Decision.default(default_model, default_fallbacks, error, request_id)

    def _call(
        self, request: router_pb2.RouteRequest, timeout: float | None
    ) -> router_pb2.RouteDecision:
        budget = self.timeout if timeout is None else check_timeout(timeout)
        deadline = time.monotonic() + budget
        attempts = 0
        while True:  # bounded: next_pause gives up after retry.max_attempts
            attempts += 1
            try:
                return self._stub.Route(
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
                time.sleep(pause)

    def close(self) -> None:
        self._channel.close()

    def __enter__(self) -> SemrouteClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
