"""What the sync and asyncio clients share: requests, results, the retry schedule, credentials."""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import grpc

from semroute_client.v1 import router_pb2

logger = logging.getLogger("semroute_client")

#: A routing decision sits in front of every LLM call, so by default it gets 50 ms in all
#: (retries included); past that the caller is better served by its default model.
DEFAULT_TIMEOUT_S = 0.05

#: Only these mean "try again": the server was not reachable or not ready (UNAVAILABLE), or
#: shed the request under load (RESOURCE_EXHAUSTED). Everything else (a bad request, no
#: eligible model, a passed deadline) would fail the same way again.
RETRYABLE = frozenset({grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.RESOURCE_EXHAUSTED})

_PRESETS = {
    "balanced": router_pb2.PRESET_BALANCED,
    "cost": router_pb2.PRESET_COST,
    "quality": router_pb2.PRESET_QUALITY,
}
# OpenAI roles the server does not know, mapped onto the ones it does.
_ROLE_ALIASES = {"developer": "system", "function": "tool"}


@dataclass(frozen=True)
class RetryPolicy:
    """Bounded retries with exponential backoff and full jitter.

    Jitter spreads the retries of many gateway workers that saw the same failure, so they do
    not all come back at once. Attempts are bounded by `max_attempts` and, together with the
    pauses, by the call's deadline: no retry starts with less than `min_attempt_s` left.
    """

    max_attempts: int = 3
    initial_backoff_s: float = 0.002
    max_backoff_s: float = 0.02
    multiplier: float = 2.0
    min_attempt_s: float = 0.002

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")
        if self.initial_backoff_s < 0 or self.max_backoff_s < self.initial_backoff_s:
            raise ValueError("need 0 <= initial_backoff_s <= max_backoff_s")
        if self.multiplier < 1:
            raise ValueError("multiplier must be at least 1")
        if self.min_attempt_s < 0:
            raise ValueError("min_attempt_s must be >= 0")

    def pause(self, failed_attempts: int, rng: random.Random) -> float:
        """Seconds to wait after the `failed_attempts`-th failure (1-based): full jitter."""
        growth = self.multiplier ** (failed_attempts - 1)
        cap = min(self.max_backoff_s, self.initial_backoff_s * growth)
        return rng.uniform(0.0, cap)

    def next_pause(
        self,
        code: grpc.StatusCode | None,
        attempts: int,
        deadline: float,
        rng: random.Random,
        pushback_s: float | None = None,
    ) -> float | None:
        """The pause before another attempt, or None when the call should give up now.

        A server that refuses under load says when a retry can succeed (gRPC server
        pushback): the pause is at least that, and when the deadline cannot wait that
        long the call gives up at once (then the caller fails open) instead of
        retrying into the same refusal."""
        if code not in RETRYABLE or attempts >= self.max_attempts:
            return None
        pause = self.pause(attempts, rng)
        if pushback_s is not None:
            pause = max(pause, pushback_s)
        if deadline - time.monotonic() - pause < self.min_attempt_s:
            return None
        return pause


NO_RETRY = RetryPolicy(max_attempts=1)

#: The trailer in which semroute (like any gRPC server using server pushback) says how
#: many milliseconds to wait before retrying a refused call.
PUSHBACK = "grpc-retry-pushback-ms"


def pushback_s(err: grpc.RpcError) -> float | None:
    """The server pushback of a failed call, in seconds (None when it sent none)."""
    trailers = getattr(err, "trailing_metadata", None)
    for key, value in (trailers() if callable(trailers) else None) or ():
        if key == PUSHBACK:
            try:
                return max(0.0, int(value) / 1000)
            except (TypeError, ValueError):
                return None
    return None


@dataclass(frozen=True, slots=True)
class Decision:
    """Which model to call, and what to try when it fails.

    `from_fallback` is True when semroute did not decide: `route_or_default` returned the
    caller's default model because the service was down, slow or refused the request; `error`
    then says why (a gRPC status name, or the exception's type). `raw` is the full
    `RouteDecision` (candidates, matches, versions, timing) when semroute answered.
    """

    model: str
    fallbacks: tuple[str, ...] = ()
    route: str = ""
    request_id: str = ""
    reason: str = ""
    provider: str = ""
    from_fallback: bool = False
    error: str = ""
    raw: Any = field(default=None, repr=False, compare=False)

    @classmethod
    def from_proto(cls, msg: router_pb2.RouteDecision) -> Decision:
        return cls(
            model=msg.model,
            fallbacks=tuple(msg.fallbacks),
            route=msg.route,
            request_id=msg.request_id,
            reason=router_pb2.DecisionReason.Name(msg.reason).removeprefix("DECISION_REASON_"),
            provider=msg.provider,
            raw=msg,
        )

    @classmethod
    def default(cls, model: str, fallbacks: Iterable[str], error: str, request_id: str) -> Decision:
        return cls(
            model=model,
            fallbacks=tuple(fallbacks),
            request_id=request_id,
            reason="FAIL_OPEN",
            from_fallback=True,
            error=error,
        )


def _text(content: Any) -> str:
    """OpenAI message content as text: a string, or the text parts of a list of parts."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, Sequence):
        parts = [
            str(p.get("text", ""))
            for p in content
            if isinstance(p, Mapping) and p.get("type", "text") == "text"
        ]
        return "\n".join(p for p in parts if p)
    return str(content)


def build_request(
    prompt: str | None = None,
    messages: Sequence[Mapping[str, Any]] | None = None,
    *,
    request_id: str = "",
    tenant: str = "",
    allowed_models: Iterable[str] = (),
    excluded_models: Iterable[str] = (),
    required_tags: Iterable[str] = (),
    quality_preference: float | None = None,
    preset: str | int | None = None,
    max_cost_usd: float | None = None,
    expected_output_tokens: int | None = None,
) -> router_pb2.RouteRequest:
    """A RouteRequest from a prompt or OpenAI-style messages (text parts only; the server
    validates the rest and answers INVALID_ARGUMENT with what to fix)."""
    req = router_pb2.RouteRequest(
        request_id=request_id,
        tenant=tenant,
        allowed_models=list(allowed_models),
        excluded_models=list(excluded_models),
        required_tags=list(required_tags),
    )
    if prompt is not None:
        req.prompt = prompt
    for m in messages or ():
        role = str(m.get("role", ""))
        req.messages.add(role=_ROLE_ALIASES.get(role, role), content=_text(m.get("content")))
    if quality_preference is not None:
        req.quality_preference = quality_preference
    if isinstance(preset, str):
        if preset not in _PRESETS:
            raise ValueError(f"preset {preset!r} is not one of {', '.join(sorted(_PRESETS))}")
        req.preset = _PRESETS[preset]
    elif preset is not None:
        req.preset = preset
    if max_cost_usd is not None:
        req.max_cost_usd = max_cost_usd
    if expected_output_tokens is not None:
        req.expected_output_tokens = expected_output_tokens
    return req


def credentials(
    tls: bool,
    root_certificates: bytes | None,
    private_key: bytes | None,
    certificate_chain: bytes | None,
) -> grpc.ChannelCredentials | None:
    """TLS channel credentials (None: plaintext). A key and chain make it mutual TLS."""
    if not tls:
        if root_certificates or private_key or certificate_chain:
            raise ValueError("certificates given but tls=False")
        return None
    if (private_key is None) != (certificate_chain is None):
        raise ValueError("mutual TLS needs both private_key and certificate_chain")
    return grpc.ssl_channel_credentials(root_certificates, private_key, certificate_chain)


def check_timeout(timeout: float) -> float:
    if not timeout > 0:
        raise ValueError(f"timeout must be > 0 seconds, got {timeout!r}")
    return float(timeout)


def error_name(exc: BaseException) -> str:
    """A gRPC status name for RPC errors, the exception's type for anything else."""
    if isinstance(exc, grpc.RpcError):
        code = exc.code() if callable(getattr(exc, "code", None)) else None
        if isinstance(code, grpc.StatusCode):
            return code.name
    return type(exc).__name__


class FailOpenLog:
    """Logs fail-open calls at most once per `interval_s`, with a count.

    When semroute is down every request fails open; one line per request would flood the
    gateway's logs exactly when they are needed.
    """

    def __init__(self, interval_s: float = 10.0) -> None:
        self._interval = interval_s
        self._lock = threading.Lock()
        self._count = 0
        self._last = float("-inf")

    def note(self, error: str, model: str) -> None:
        with self._lock:
            self._count += 1
            now = time.monotonic()
            if now - self._last < self._interval:
                return
            count, self._count, self._last = self._count, 0, now
        logger.warning(
            "semroute failed open %d time(s) (last: %s); answered with default model %s",
            count,
            error,
            model,
        )
