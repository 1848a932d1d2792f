"""semroute-client: a thin client for the semroute routing service.

Depends on grpcio and protobuf only, so a gateway can ask semroute for a model without
installing the server (onnxruntime, FAISS, numpy). See README.md.
"""

from semroute_client._core import (
    DEFAULT_TIMEOUT_S,
    NO_RETRY,
    RETRYABLE,
    Decision,
    RetryPolicy,
    build_request,
)
from semroute_client.aio import AsyncSemrouteClient
from semroute_client.client import SemrouteClient

__version__ = "0.1.0"

__all__ = [
    "DEFAULT_TIMEOUT_S",
    "NO_RETRY",
    "RETRYABLE",
    "AsyncSemrouteClient",
    "Decision",
    "RetryPolicy",
    "SemrouteClient",
    "build_request",
]
