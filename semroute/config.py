"""The typed configuration: one YAML file, validated once, then read-only.

Everything the router needs to decide (the model pool, semantic routes, rules,
policy defaults, server limits) lives in one `Config`. It is loaded and
validated as a whole; a bad file raises `ConfigError` naming the field, and a
running server keeps its current config. Swapping means replacing the whole
object, never editing it in place (the models are frozen).
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path
from typing import Annotated, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator


class ConfigError(ValueError):
    """The configuration file is missing, unparsable or invalid."""


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class ModelSpec(_Frozen):
    """One model of the pool with its list price and what it can do."""

    name: str = Field(min_length=1)
    provider: str = Field(min_length=1)
    input_price_per_mtok: float = Field(ge=0, description="USD per million input tokens")
    output_price_per_mtok: float = Field(ge=0, description="USD per million output tokens")
    # General quality on a 0-1 scale, used for any route without an override.
    quality: float = Field(ge=0, le=1)
    # Per-route quality where it differs from the general one (e.g. a code model).
    route_quality: dict[str, float] = Field(default_factory=dict)
    # Capabilities and compliance, e.g. "tools", "vision", "region:eu", "hipaa".
    tags: frozenset[str] = frozenset()

    @field_validator("route_quality")
    @classmethod
    def _quality_in_range(cls, v: dict[str, float]) -> dict[str, float]:
        for route, q in v.items():
            if not 0 <= q <= 1:
                raise ValueError(f"quality for route {route!r} must be within 0-1, got {q}")
        return v

    def cost_usd(self, input_tokens: int, output_tokens: int) -> float:
        return (
            input_tokens * self.input_price_per_mtok + output_tokens * self.output_price_per_mtok
        ) / 1e6


class RouteSpec(_Frozen):
    """A semantic route: what prompts look like, and how good an answer must be."""

    name: str = Field(min_length=1, pattern=r"^[a-z0-9_\-]+$")
    description: str = ""
    # Example prompts; a route without any is reached only by rules or as the default.
    utterances: tuple[str, ...] = ()
    # The quality bar at the balanced knob, and the floor no knob goes below.
    target_quality: float = Field(ge=0, le=1)
    min_quality: float = Field(ge=0, le=1)
    # When set, only these models serve the route.
    models: tuple[str, ...] = ()
    # Similarity below which a match does not count (policy default when unset).
    threshold: float | None = Field(default=None, ge=-1, le=1)
    # Typical completion length, for cost estimates.
    expected_output_tokens: int | None = Field(default=None, ge=1)

    @model_validator(mode="after")
    def _floor_below_target(self) -> RouteSpec:
        if self.min_quality > self.target_quality:
            raise ValueError(
                f"min_quality ({self.min_quality}) must not exceed "
                f"target_quality ({self.target_quality})"
            )
        if any(not u.strip() for u in self.utterances):
            raise ValueError("utterances must not be blank")
        return self


class RuleSpec(_Frozen):
    """A cheap check evaluated before the encoder; the first match decides the route.

    Conditions in one rule are ANDed; at least one must be given.
    """

    name: str = Field(min_length=1)
    route: str | None = None
    # Pin a model directly instead of a route (the policy still checks constraints).
    model: str | None = None
    keywords: tuple[str, ...] = ()  # any of these words, case-insensitive
    regex: str | None = None
    min_chars: int | None = Field(default=None, ge=0)
    max_chars: int | None = Field(default=None, ge=0)

    @field_validator("regex")
    @classmethod
    def _regex_compiles(cls, v: str | None) -> str | None:
        if v is not None:
            try:
                re.compile(v)
            except re.error as e:
                raise ValueError(f"invalid regular expression: {e}") from e
        return v

    @model_validator(mode="after")
    def _has_target_and_condition(self) -> RuleSpec:
        if (self.route is None) == (self.model is None):
            raise ValueError("a rule needs exactly one of 'route' or 'model'")
        if not (
            self.keywords or self.regex or self.min_chars is not None or self.max_chars is not None
        ):
            raise ValueError("a rule needs at least one of keywords, regex, min_chars, max_chars")
        return self


class Presets(_Frozen):
    """Knob values behind the named presets of RouteRequest.preset."""

    cost: float = Field(default=0.2, ge=0, le=1)
    balanced: float = Field(default=0.5, ge=0, le=1)
    quality: float = Field(default=0.9, ge=0, le=1)


class PolicySpec(_Frozen):
    """Defaults for requests that do not say otherwise."""

    default_route: str
    # Similarity a semantic match must reach when its route sets no threshold.
    match_threshold: float = Field(default=0.30, ge=-1, le=1)
    # Routes whose score is within this margin of the best one count as
    # ambiguous matches: the highest of their quality bars applies.
    ambiguity_margin: float = Field(default=0.03, ge=0, le=1)
    # Nearest utterances fetched from the index per request.
    top_k: int = Field(default=16, ge=1, le=1024)
    # A route's score is the mean of its best `route_votes` neighbour similarities.
    route_votes: int = Field(default=2, ge=1, le=64)
    presets: Presets = Presets()
    default_output_tokens: int = Field(default=256, ge=1)


class EncoderSpec(_Frozen):
    # None = the bundled model (models/minilm-l6-routes-int8); a relative path is
    # relative to the config file, like every path in it.
    model_dir: Path | None = None
    device: Literal["cpu", "cuda"] = "cpu"
    # Which of the model directory's graphs (kernel variants) to run: "auto" picks the fastest
    # that meets the accuracy bar on this CPU with a short benchmark at start, cached per CPU
    # and model in kernel_cache_dir (semroute/encoder/variants.py); a name forces one.
    variant: str = "auto"
    # Intra-op threads per inference thread: "auto" measures 1, 2 and all cores (capped so
    # that inference_threads x threads <= cores); null = intra_op_threads below.
    threads: Literal["auto"] | Annotated[int, Field(ge=1, le=256)] | None = None
    intra_op_threads: int = Field(default=0, ge=0)
    # Where the kernel choice is cached; null = <repo>/var/kernels, beside the bundled models
    # (one measurement per host and model, whichever config file starts the server).
    kernel_cache_dir: Path | None = None
    max_tokens: int = Field(default=128, ge=8, le=8192)
    # Test-only: milliseconds added to every encoder pass (a slow CPU on a fast
    # one; see semroute/encoder/delay.py). 0 in production.
    test_delay_ms: float = Field(default=0.0, ge=0, le=10_000)


class ServerTlsSpec(_Frozen):
    """TLS on the serving port; relative paths are relative to the config file.

    The files are re-read when they change (checked at each new connection),
    so a renewed certificate is served without a restart.
    """

    cert_file: Path
    key_file: Path
    # Set: mutual TLS, every client must present a certificate from this CA.
    client_ca_file: Path | None = None


class ClassifierSpec(_Frozen):
    """The encoder's trained route classifier (models/minilm-l6-routes-int8 by default).

    When the encoder model has a route head, its calibrated probabilities decide among the
    routes it was trained on; config routes it does not know are matched by their utterances
    and win when they clear their threshold. Below `min_confidence` the default route applies;
    routes within `tie_margin` of the best one are near-ties, and the one with the highest
    quality bar wins (a hard prompt sent to a cheap model costs more than the reverse).
    Calibrated in models/README.md ("Route classifier").
    """

    enabled: bool = True
    min_confidence: float = Field(default=0.30, ge=0, le=1)
    tie_margin: float = Field(default=0.10, ge=0, le=1)


class ServerSpec(_Frozen):
    max_prompt_bytes: int = Field(default=64 * 1024, ge=1)
    max_messages: int = Field(default=256, ge=1)
    # Concurrent Route calls per process before RESOURCE_EXHAUSTED.
    max_concurrent_requests: int = Field(default=256, ge=1)
    # Requests one RouteBatch call may carry (more: INVALID_ARGUMENT).
    max_batch_items: int = Field(default=256, ge=1)
    # Requests of one RouteStream being decided at once; past it the stream stops
    # reading (gRPC flow control then holds the sender back): memory stays bounded.
    stream_window: int = Field(default=64, ge=1)
    # Threads running the encoder off the event loop.
    inference_threads: int = Field(default=2, ge=1, le=64)
    # Their nice value (Linux, per thread): above 0, the event loop (cache hits,
    # rules, validation, shedding) gets the CPU first when the encoder saturates
    # the cores, so overload cannot starve the cheap requests. 0 = same priority.
    inference_nice: int = Field(default=10, ge=0, le=19)
    grace_period_s: float = Field(default=5.0, ge=0)
    # Prompt text in logs. True (default): never logged; a decision log line
    # (DEBUG level) carries a digest of it instead, and an error's message has it
    # replaced. False: decision log lines carry the prompt (debugging only).
    redact_prompts: bool = True
    # None = plaintext (loopback and trusted networks only).
    tls: ServerTlsSpec | None = None
    # gRPC server reflection (`grpcurl list`); turn off in production.
    reflection: bool = True


class FastTierSpec(_Frozen):
    """The static-embedding fast tier: answers confident requests without the encoder.

    Beside the route classifier it is the cascade's first stage: the static route head
    (semroute/encoder/static_head.py) answers when confident (thresholds calibrated out of
    source: half of unique prompts, macro accuracy 1.7 points under the classifier's;
    models/build_static_head.py). Without the classifier (or without a head),
    a request is answered by the fast tier when its best route scores at least
    `min_score` and leads the runner-up by at least `min_margin`, or scores
    below `max_general_score` (calibrated against the encoder's decisions on
    held-out prompts: ~22% answered at ~98% agreement for the bundled model
    and default routes; benchmarks/static_tier.py); otherwise it goes on to
    the encoder.
    """

    enabled: bool = False
    # None = the bundled static model (models/minilm-l6-v2-static).
    model_dir: Path | None = None
    min_score: float = Field(default=0.46, ge=-1, le=1)
    min_margin: float = Field(default=0.03, ge=0, le=2)
    # Also answer when the best route scores below this (clearly the default
    # route); None = never.
    max_general_score: float | None = Field(default=0.23, ge=-1, le=1)
    # With the route classifier on, a static route head decides instead (the cascade): it
    # answers when its top route probability is >= min_probability and leads the runner-up
    # by >= min_probability_margin. The head: this file (route_head.json), read at start;
    # None = the one beside the static table, if any. Thresholds None = the head's own,
    # calibrated out of source (models/build_static_head.py).
    route_head: Path | None = None
    min_probability: float | None = Field(default=None, ge=0, le=1)
    min_probability_margin: float | None = Field(default=None, ge=0, le=1)


class LearnedSpec(_Frozen):
    """Learned quality routing: a `semroute train` bundle predicts each model's quality.

    When set, requests that reach the encoder are decided by the predicted
    quality (reason LEARNED_SCORE) instead of the routes' configured quality;
    the bundle's model names must be models of the pool.
    """

    # A `learned` bundle directory; relative to the config file's directory.
    bundle: Path | None = None


class SimilarCacheSpec(_Frozen):
    """Reuse the decision of a recent near-identical prompt (a retyped or lightly
    edited repeat) found by the static embedding, instead of running the encoder.

    Only prompts with the same constraints and knob, under the same config and
    index, and that no rule decides, are compared. Measured on 1,656 held-out
    prompts, each with one light edit (benchmarks/similar_cache.py): at cosine
    0.99 it catches 68% of the edits, and the reused decision equals the
    encoder's own decision for the edited prompt 97.7% of the time (the encoder
    agrees with itself across such edits 96.7% of the time); 4 pairs of
    distinct prompts reached 0.99, all with the same decision.
    """

    enabled: bool = True
    # Static-embedding cosine a prompt needs to reuse a recent prompt's decision.
    threshold: float = Field(default=0.99, ge=0.5, le=1)
    # Recent prompts kept (a flat FAISS search over them per exact-cache miss).
    max_entries: int = Field(default=4096, ge=1)
    ttl_s: float = Field(default=600.0, gt=0)


class CacheSpec(_Frozen):
    """The exact decision cache in front of the encoder, and the similar-prompt cache."""

    enabled: bool = True
    max_entries: int = Field(default=100_000, ge=1)
    max_bytes: int = Field(default=256 * 1024 * 1024, ge=1024)
    ttl_s: float = Field(default=600.0, gt=0)
    similar: SimilarCacheSpec = SimilarCacheSpec()

    @property
    def similar_active(self) -> bool:
        """`enabled: false` turns both decision caches off."""
        return self.enabled and self.similar.enabled


class ResponseCacheSpec(_Frozen):
    """The semantic cache of LLM responses behind LookupResponse / StoreResponse."""

    enabled: bool = True
    # Cosine similarity a prompt needs to reuse a cached response.
    threshold: float = Field(default=0.92, ge=0, le=1)
    ttl_s: float = Field(default=3600.0, gt=0)
    max_entries: int = Field(default=50_000, ge=1)
    max_bytes: int = Field(default=256 * 1024 * 1024, ge=1024)
    max_response_bytes: int = Field(default=256 * 1024, ge=1)


class BatchingSpec(_Frozen):
    """Dynamic micro-batching of encoder calls."""

    # Texts per encoder run. 1 on CPU, where padding costs more than batching saves
    # (benchmarks/encoder_batching.py); larger runs pay on a GPU.
    max_batch: int = Field(default=1, ge=1, le=1024)
    max_wait_us: int = Field(default=1000, ge=0, le=1_000_000)
    # Longest/shortest text length allowed within one length bucket.
    bucket_ratio: float = Field(default=2.0, ge=1.0)
    # Texts waiting for the encoder before new ones get RESOURCE_EXHAUSTED.
    max_queue: int = Field(default=4096, ge=1)
    # A request that would wait longer than this for the encoder (texts ahead of
    # it times the measured encoder time per text, over the inference threads)
    # gets RESOURCE_EXHAUSTED at once: under overload the server sheds early,
    # and what it accepts is answered in bounded time, instead of everything
    # queueing for seconds. 0 = no bound but max_queue.
    max_queue_wait_ms: float = Field(default=250.0, ge=0)


class AdminTlsSpec(_Frozen):
    """mTLS for the admin port: only clients with a certificate signed by `client_ca_file`."""

    cert_file: Path
    key_file: Path
    client_ca_file: Path
    # When non-empty, only client certificates with one of these common names.
    allowed_common_names: tuple[str, ...] = ()


class AdminSpec(_Frozen):
    """The AdminService (hot-swapping index bundles); off unless a token or mTLS is set.

    Relative paths are resolved against the config file's directory.
    """

    # False: no AdminService at all, whatever the environment holds (production).
    enabled: bool = True
    # Environment variable holding the admin token; unset or empty = no token.
    token_env: str = "SEMROUTE_ADMIN_TOKEN"
    # Environment variable holding a read-only token (GetStatus, ListIndexes).
    read_token_env: str = "SEMROUTE_ADMIN_READ_TOKEN"
    # A separate "127.0.0.1:PORT" for the admin service (needed for mTLS);
    # None = the serving port.
    listen: str | None = None
    tls: AdminTlsSpec | None = None
    # A directory watched for new bundles (directories or .tar.gz archives).
    watch_dir: Path | None = None
    watch_interval_s: float = Field(default=2.0, gt=0, le=3600)
    # What a new bundle in watch_dir does: become active, or be shadowed.
    watch_action: Literal["activate", "shadow"] = "activate"
    # Share of live requests a shadowed candidate is evaluated on.
    shadow_sample_rate: float = Field(default=0.05, ge=0, le=1)
    # Shadow evaluations queued before further samples are dropped.
    shadow_max_pending: int = Field(default=256, ge=1)
    # Hot requests (those behind the most recently used decision-cache entries)
    # an index decides before it is activated, at load and again at every
    # activation or rollback, so the swap does not send them to the encoder;
    # 0 = off.
    prime_cache: int = Field(default=1024, ge=0, le=4096)
    # Keep the previously active bundle loaded for an instant rollback.
    keep_previous: bool = True
    # Bundles held in memory at once (active, previous and shadow included).
    max_loaded: int = Field(default=4, ge=2, le=64)
    # Where archives are unpacked (None = the system temp dir).
    staging_dir: Path | None = None
    # Where the active bundle (version and path) is recorded, atomically, after
    # each activation or rollback; at start the server activates it again, so a
    # restart (after kill -9 too) serves the last bundle activated. None: an
    # activation lasts until the process ends.
    state_file: Path | None = None
    max_archive_bytes: int = Field(default=2 * 1024**3, ge=1024)

    @model_validator(mode="after")
    def _tls_needs_own_port(self) -> AdminSpec:
        if self.tls is not None and self.listen is None:
            raise ValueError("admin.tls needs admin.listen (a separate admin port)")
        return self


class ExtProcSpec(_Frozen):
    """Envoy ext_proc (`envoy.service.ext_proc.v3.ExternalProcessor` on the serving port).

    Requests whose OpenAI-style body names one of `models` are routed: the body's `model`
    is rewritten to the decision's and `x-selected-model` is set for Envoy's route table.
    Anything else passes through unchanged (examples/envoy/README.md).
    """

    enabled: bool = True
    # The `model` values that ask semroute to choose; any other model passes through.
    models: frozenset[str] = frozenset({"auto"})
    # Larger bodies pass through unparsed. The gRPC message limit grows with it, so
    # Envoy's buffered body (up to its buffer limit) reaches the adapter whole.
    max_body_bytes: int = Field(default=1024 * 1024, ge=1024, le=64 * 1024 * 1024)
    # Keep equal to the filter's `message_timeout` in Envoy: a decision that cannot be
    # made before Envoy gives up is refused at once instead of queueing for the encoder.
    message_timeout_ms: float = Field(default=200.0, gt=0)
    # Tells Envoy to pick the route again after the header is set. False only to show
    # (tests/test_envoy.py) that Envoy then keeps the route it chose before the body.
    clear_route_cache: bool = True


class DecisionLogSpec(_Frozen):
    """A sampled record of decisions as JSON lines, size-rotated, written off the event
    loop; `semroute replay` re-decides it against a candidate bundle (offline shadow)."""

    # The log file (relative: to the config file's directory); None turns the log off.
    # `{pid}` in it is replaced by the process id: one file per `--workers` process.
    path: Path | None = None
    # Share of decisions written (cache hits included).
    sample_rate: float = Field(default=0.01, ge=0, le=1)
    # The file is rotated before it would pass this size; `backups` older files are kept.
    max_bytes: int = Field(default=64 * 1024 * 1024, ge=1024)
    backups: int = Field(default=5, ge=0, le=1000)
    # The prompt text in each line (replay needs it). Off: a keyed digest and the length only.
    include_prompt: bool = False
    # Decisions waiting for the writer thread; past it they are dropped and counted.
    max_queue: int = Field(default=10_000, ge=1)


class MetricsSpec(_Frozen):
    """Prometheus `/metrics` (`semroute serve --metrics-port` overrides `port`); off
    unless a port is set. Loopback by default: the figures describe your traffic."""

    port: int | None = Field(default=None, ge=1, le=65535)
    host: str = "127.0.0.1"
    # How often each `--workers` process writes the counts its parent sums (and how often
    # one process folds cache hits into its decision counts).
    snapshot_interval_s: float = Field(default=1.0, gt=0, le=60)


class Config(_Frozen):
    models: tuple[ModelSpec, ...] = Field(min_length=1)
    routes: tuple[RouteSpec, ...] = Field(min_length=1)
    rules: tuple[RuleSpec, ...] = ()
    policy: PolicySpec
    encoder: EncoderSpec = EncoderSpec()
    classifier: ClassifierSpec = ClassifierSpec()
    fast_tier: FastTierSpec = FastTierSpec()
    learned: LearnedSpec = LearnedSpec()
    server: ServerSpec = ServerSpec()
    cache: CacheSpec = CacheSpec()
    response_cache: ResponseCacheSpec = ResponseCacheSpec()
    batching: BatchingSpec = BatchingSpec()
    admin: AdminSpec = AdminSpec()
    ext_proc: ExtProcSpec = ExtProcSpec()
    decision_log: DecisionLogSpec = DecisionLogSpec()
    metrics: MetricsSpec = MetricsSpec()
    # Where `semroute index build` writes and `serve` reads the index bundle;
    # relative paths are resolved against the config file's directory.
    index_path: Path = Path("../var/index/default")
    # sha256 of the source file, filled by load_config.
    version: str = ""
    source: Path | None = None

    @model_validator(mode="after")
    def _cross_references(self) -> Config:
        model_names = [m.name for m in self.models]
        route_names = [r.name for r in self.routes]
        for kind, names in (("model", model_names), ("route", route_names)):
            dupes = sorted({n for n in names if names.count(n) > 1})
            if dupes:
                raise ValueError(f"duplicate {kind} names: {', '.join(dupes)}")
        models, routes = set(model_names), set(route_names)
        if self.policy.default_route not in routes:
            raise ValueError(f"policy.default_route {self.policy.default_route!r} is not a route")
        for r in self.routes:
            unknown = sorted(set(r.models) - models)
            if unknown:
                raise ValueError(f"route {r.name!r} names unknown models: {', '.join(unknown)}")
        for m in self.models:
            unknown = sorted(set(m.route_quality) - routes)
            if unknown:
                raise ValueError(
                    f"model {m.name!r} route_quality names unknown routes: {', '.join(unknown)}"
                )
        for rule in self.rules:
            if rule.route is not None and rule.route not in routes:
                raise ValueError(f"rule {rule.name!r} targets unknown route {rule.route!r}")
            if rule.model is not None and rule.model not in models:
                raise ValueError(f"rule {rule.name!r} pins unknown model {rule.model!r}")
        return self

    def model(self, name: str) -> ModelSpec:
        for m in self.models:
            if m.name == name:
                return m
        raise KeyError(name)

    def route(self, name: str) -> RouteSpec:
        for r in self.routes:
            if r.name == name:
                return r
        raise KeyError(name)

    def resolved_index_path(self) -> Path:
        return self.resolve(self.index_path)

    def resolve(self, path: Path) -> Path:
        """A path from the config, relative to the config file's directory."""
        if path.is_absolute() or self.source is None:
            return path
        return (self.source.parent / path).resolve()


def default_config_path() -> Path:
    """The bundled default config (configs/default.yaml in the repo)."""
    return Path(__file__).resolve().parent.parent / "configs" / "default.yaml"


def load_config(path: str | Path | None = None) -> Config:
    """Read, parse and validate a YAML config; raise ConfigError naming what is wrong.

    A config may start with `extends: OTHER.yaml` (relative to itself): it is
    then OTHER with these sections merged over it (mappings merge key by key,
    anything else replaces).
    """
    p = Path(path) if path is not None else default_config_path()
    data, digest = _read_yaml(p, seen=())
    data["version"] = digest.hexdigest()[:16]
    data["source"] = p.resolve()
    try:
        return Config.model_validate(data)
    except ValidationError as e:
        raise ConfigError(f"{p}: invalid config:\n{_describe(e)}") from None


def _read_yaml(p: Path, seen: tuple[Path, ...]) -> tuple[dict, hashlib._Hash]:
    """A config file's mapping with its `extends` chain merged in, and a digest of all of it."""
    if p.resolve() in seen:
        raise ConfigError(f"{p}: `extends` loops back to itself")
    try:
        raw = p.read_bytes()
    except OSError as e:
        raise ConfigError(f"cannot read config {p}: {e.strerror or e}") from e
    try:
        data = yaml.safe_load(raw)
    except yaml.YAMLError as e:
        raise ConfigError(f"{p}: not valid YAML: {e}") from e
    if not isinstance(data, dict):
        raise ConfigError(f"{p}: the top level must be a mapping of sections")
    base = data.pop("extends", None)
    if base is None:
        return data, hashlib.sha256(raw)
    if not isinstance(base, str):
        raise ConfigError(f"{p}: extends must be a file name")
    merged, digest = _read_yaml(p.parent / base, (*seen, p.resolve()))
    digest.update(raw)
    return _merge(merged, data), digest


def _merge(base: dict, over: dict) -> dict:
    out = dict(base)
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = value
    return out


def _describe(e: ValidationError) -> str:
    """One line per error, with the dotted path of the bad field."""
    lines = []
    for err in e.errors():
        loc = ".".join(str(x) for x in err["loc"]) or "(top level)"
        lines.append(f"  {loc}: {err['msg']}")
    return "\n".join(lines)
