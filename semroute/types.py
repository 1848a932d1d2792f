"""Plain data passed along the routing pipeline: a query in, a decision out.

The gRPC front converts protobuf messages to and from these, so the core
never imports generated code and can be used in-process (CLI, eval harness).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field


class Reason(enum.IntEnum):
    """Why a model was chosen; values match semroute.v1.DecisionReason."""

    RULE = 1
    SEMANTIC_ROUTE = 2
    LEARNED_SCORE = 3
    DEFAULT = 4
    FALLBACK = 5
    CLASSIFIER = 6


class Tier(enum.IntEnum):
    """Which part of the pipeline decided; values match semroute.v1.Tier."""

    RULE = 1
    CACHE = 2
    STATIC = 3
    ENCODER = 4
    SIMILAR = 5


class Preset(enum.IntEnum):
    """Named knob settings; values match semroute.v1.Preset."""

    UNSPECIFIED = 0
    BALANCED = 1
    COST = 2
    QUALITY = 3


@dataclass(frozen=True, slots=True)
class RouteQuery:
    """A validated routing request."""

    # The text routed on: the prompt, or the user turns of a conversation.
    text: str
    request_id: str = ""
    tenant: str = ""
    allowed_models: frozenset[str] = frozenset()
    excluded_models: frozenset[str] = frozenset()
    required_tags: frozenset[str] = frozenset()
    quality_preference: float | None = None
    preset: Preset = Preset.UNSPECIFIED
    max_cost_usd: float | None = None
    expected_output_tokens: int | None = None


@dataclass(frozen=True, slots=True)
class CandidateScore:
    model: str
    provider: str
    predicted_quality: float
    estimated_cost_usd: float
    eligible: bool
    ineligible_reason: str
    meets_bar: bool


@dataclass(frozen=True, slots=True)
class Timing:
    total_us: int = 0
    rules_us: int = 0
    encode_us: int = 0
    search_us: int = 0
    policy_us: int = 0


@dataclass(frozen=True, slots=True)
class Decision:
    request_id: str
    model: str
    provider: str
    fallbacks: tuple[str, ...]
    route: str
    confidence: float
    reason: Reason
    quality_bar: float
    candidates: tuple[CandidateScore, ...]
    matches: tuple[tuple[str, float], ...]
    index_version: str
    encoder_id: str
    config_version: str
    rule: str = ""
    tier: Tier = Tier.ENCODER
    timing: Timing = field(default_factory=Timing)
    # Version of the route classifier that decided the route ("" when it did not).
    classifier_version: str = ""


class RoutingError(Exception):
    """A request that cannot be routed as asked; `code` names the gRPC status."""

    def __init__(self, code: str, message: str, retry_after_s: float | None = None) -> None:
        super().__init__(message)
        self.code = code  # "INVALID_ARGUMENT" | "FAILED_PRECONDITION" | ...
        self.message = message
        # For a refusal under load: when a retry could succeed (sent to clients as
        # gRPC server pushback, `grpc-retry-pushback-ms`).
        self.retry_after_s = retry_after_s
