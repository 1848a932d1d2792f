"""LiteLLM integration: let semroute pick the model behind a virtual model name such as "auto".

Two entry points, both asking semroute through the thin client (`pip install ./clients/python`)
and both failing open to a configured default model, because a routing outage must never
become an LLM outage:

- `SemrouteProxyHook`: a LiteLLM **proxy** pre-call hook. For a request whose model is routed
  it sets `data["model"]` to semroute's choice and `data["fallbacks"]` to semroute's fallback
  list; the proxy's router then calls the model and walks the fallbacks on errors.
- `SemrouteRoutingStrategy`: a custom routing strategy for the **SDK** `litellm.Router`. It
  picks the deployment of semroute's model (or of the first model in semroute's fallback list
  that has a deployment) and, on a fallback hop of the same request, the next one in
  semroute's order.

This module imports litellm; nothing else in semroute does.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Collection, Iterable, Mapping, Sequence
from typing import Any

from litellm.integrations.custom_logger import CustomLogger
from litellm.types.router import CustomRoutingStrategyBase
from semroute_client import AsyncSemrouteClient, Decision, SemrouteClient

DEFAULT_ROUTED_MODELS = frozenset({"auto"})


def _route_input(data: Mapping[str, Any]) -> tuple[str | None, list[dict[str, Any]] | None]:
    """The prompt or chat messages of a LiteLLM request body (chat, text completion, or
    another call's text `input`)."""
    messages = data.get("messages")
    if messages:
        return None, list(messages)
    prompt = data.get("prompt") or data.get("input")
    if isinstance(prompt, list):
        prompt = "\n".join(str(p) for p in prompt)
    return (str(prompt) if prompt else None), None


def _clients(
    target: str, client_options: Mapping[str, Any]
) -> tuple[SemrouteClient, AsyncSemrouteClient]:
    return SemrouteClient(target, **client_options), AsyncSemrouteClient(target, **client_options)


class SemrouteProxyHook(CustomLogger):
    """LiteLLM proxy pre-call hook: semroute decides the model of requests for routed names.

    Register an instance in the proxy config (`litellm_settings: callbacks: module.instance`).
    Requests for any other model pass through untouched. When semroute is down, slow or
    refuses, the request goes to `default_model` with `default_fallbacks` (fail-open).
    `known_models`, when given, drops fallbacks the proxy does not serve. The decision's
    route, reason, request id and fail-open flag go into `data["metadata"]["semroute"]` for
    logging.
    """

    def __init__(
        self,
        target: str,
        *,
        default_model: str,
        default_fallbacks: Sequence[str] = (),
        routed_models: Collection[str] = DEFAULT_ROUTED_MODELS,
        known_models: Collection[str] | None = None,
        client: AsyncSemrouteClient | None = None,
        **client_options: Any,
    ) -> None:
        super().__init__()
        self.default_model = default_model
        self.default_fallbacks = tuple(default_fallbacks)
        self.routed_models = frozenset(routed_models)
        self.known_models = None if known_models is None else frozenset(known_models)
        self.client = client or AsyncSemrouteClient(target, **client_options)

    async def async_pre_call_hook(
        self,
        user_api_key_dict: Any,
        cache: Any,
        data: dict,
        call_type: Any,
    ) -> dict:
        if data.get("model") not in self.routed_models:
            return data
        prompt, messages = _route_input(data)
        tenant = getattr(user_api_key_dict, "team_id", None) or ""
        decision = await self.client.route_or_default(
            prompt,
            messages=messages,
            default_model=self.default_model,
            default_fallbacks=self.default_fallbacks,
            tenant=str(tenant),
        )
        fallbacks = [f for f in decision.fallbacks if self._serves(f) and f != decision.model]
        data["model"] = decision.model
        data["fallbacks"] = fallbacks
        metadata = data.get("metadata")
        if not isinstance(metadata, dict):
            metadata = data["metadata"] = {}
        metadata["semroute"] = {
            "route": decision.route,
            "reason": decision.reason,
            "request_id": decision.request_id,
            "from_fallback": decision.from_fallback,
            "error": decision.error,
        }
        return data

    def _serves(self, model: str) -> bool:
        return self.known_models is None or model in self.known_models


def router_fallbacks(
    model_names: Iterable[str], routed_models: Collection[str] = DEFAULT_ROUTED_MODELS
) -> list[dict[str, list[str]]]:
    """A Router `fallbacks` setting giving each routed name one hop per model in the pool.

    LiteLLM's Router only picks a deployment again on a fallback hop, and only hops along a
    configured list; the names here just make it hop. `SemrouteRoutingStrategy` decides which
    model serves each hop: the next in semroute's fallback list.
    """
    names = sorted(set(model_names) - set(routed_models))
    return [{routed: names} for routed in sorted(routed_models)]


class _Picks:
    """Per-request memory of semroute's candidates, so fallback hops follow semroute's order.

    Keyed by LiteLLM's `litellm_trace_id`, which every hop of one request carries. Bounded
    (oldest dropped first) and expiring, since a request that succeeds never says so.
    """

    def __init__(self, max_entries: int = 10_000, ttl_s: float = 300.0) -> None:
        self._max = max_entries
        self._ttl = ttl_s
        self._lock = threading.Lock()
        self._entries: OrderedDict[str, tuple[float, list[str]]] = OrderedDict()

    def put(self, key: str, remaining: list[str]) -> None:
        with self._lock:
            self._entries[key] = (time.monotonic(), remaining)
            self._entries.move_to_end(key)
            while len(self._entries) > self._max:
                self._entries.popitem(last=False)

    def __contains__(self, key: str) -> bool:
        with self._lock:
            return key in self._entries

    def next(self, key: str) -> str | None:
        """The next candidate for this request, or None when there is none (or it expired)."""
        with self._lock:
            entry = self._entries.get(key)
            if entry is None:
                return None
            born, remaining = entry
            if time.monotonic() - born > self._ttl or not remaining:
                del self._entries[key]
                return None
            return remaining.pop(0)


class SemrouteRoutingStrategy(CustomRoutingStrategyBase):
    """Deployment picking for the SDK `litellm.Router`, decided by semroute.

    For a routed model name (default "auto") semroute decides on the request's messages; the
    pick is the deployment of semroute's model or, when the router has none for it, of the
    first model in semroute's fallback list that it has. LiteLLM's Router only picks again on
    a fallback hop, so give each routed name a fallback list (`router_fallbacks(...)`); on each hop
    of the same request this strategy serves the next of semroute's candidates, in semroute's
    order, whatever name the hop asks for, and once they are spent, the name asked for.
    Requests for other names get a deployment of that name (round robin). When semroute fails,
    `default_model` is used (fail-open).

    Install with `router.register_plugin(strategy)` (`set_custom_routing_strategy` on older
    LiteLLM releases).
    """

    def __init__(
        self,
        router: Any,
        target: str,
        *,
        default_model: str,
        default_fallbacks: Sequence[str] = (),
        routed_models: Collection[str] = DEFAULT_ROUTED_MODELS,
        clients: tuple[SemrouteClient, AsyncSemrouteClient] | None = None,
        **client_options: Any,
    ) -> None:
        self.router = router
        self.default_model = default_model
        self.default_fallbacks = tuple(default_fallbacks)
        self.routed_models = frozenset(routed_models)
        self.client, self.aclient = clients or _clients(target, client_options)
        self._picks = _Picks()
        self._turn = 0
        self._turn_lock = threading.Lock()

    def _deployments(self) -> list[dict[str, Any]]:
        registry = getattr(self.router, "registry", None)
        if callable(registry):
            return list(registry().all())
        return list(self.router.model_list)

    def _deployment_of(self, model: str) -> dict[str, Any] | None:
        matching = [d for d in self._deployments() if d.get("model_name") == model]
        if not matching:
            return None
        with self._turn_lock:
            self._turn += 1
            return matching[self._turn % len(matching)]

    def _pick(
        self, model: str, decision: Decision | None, request_kwargs: Mapping[str, Any] | None
    ) -> dict[str, Any] | None:
        trace = str((request_kwargs or {}).get("litellm_trace_id") or "")
        if decision is not None:
            served = {d.get("model_name") for d in self._deployments()}
            ordered = dict.fromkeys((decision.model, *decision.fallbacks, self.default_model))
            candidates = [m for m in ordered if m in served]
            if not candidates:
                return None
            if trace:
                self._picks.put(trace, candidates[1:])
            return self._deployment_of(candidates[0])
        if trace:
            following = self._picks.next(trace)
            if following is not None:
                return self._deployment_of(following)
        return self._deployment_of(model)

    def _needs_decision(self, model: str, request_kwargs: Mapping[str, Any] | None) -> bool:
        """A routed name on the first pick of its request; later picks (fallback hops,
        retries) follow the first decision."""
        trace = str((request_kwargs or {}).get("litellm_trace_id") or "")
        return model in self.routed_models and not (trace and trace in self._picks)

    def _route_args(
        self, messages: Iterable[Mapping[str, Any]] | None, input: Any
    ) -> tuple[str | None, list[dict[str, Any]] | None]:
        if messages:
            return None, [dict(m) for m in messages]
        return _route_input({"prompt": input})

    async def async_get_available_deployment(
        self,
        model: str,
        messages: list[dict[str, str]] | None = None,
        input: str | list[object] | None = None,
        specific_deployment: bool | None = False,
        request_kwargs: dict[str, object] | None = None,
    ) -> dict[str, Any] | None:
        decision = None
        if self._needs_decision(model, request_kwargs):
            prompt, msgs = self._route_args(messages, input)
            decision = await self.aclient.route_or_default(
                prompt,
                messages=msgs,
                default_model=self.default_model,
                default_fallbacks=self.default_fallbacks,
            )
        return self._pick(model, decision, request_kwargs)

    def get_available_deployment(
        self,
        model: str,
        messages: list[dict[str, str]] | None = None,
        input: str | list[object] | None = None,
        specific_deployment: bool | None = False,
        request_kwargs: dict[str, object] | None = None,
    ) -> dict[str, Any] | None:
        decision = None
        if self._needs_decision(model, request_kwargs):
            prompt, msgs = self._route_args(messages, input)
            decision = self.client.route_or_default(
                prompt,
                messages=msgs,
                default_model=self.default_model,
                default_fallbacks=self.default_fallbacks,
            )
        return self._pick(model, decision, request_kwargs)
