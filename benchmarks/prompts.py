"""Prompt mixes for the load generator, deterministic given a seed.

A router's cost depends on what it is sent: rules short-circuit greetings, long
prompts cost more encoder time, repeats can hit a cache. So the load generator
replays realistic text rather than one fixed prompt:

- ``unique``: every request is a prompt not sent before (MMLU questions,
  MT-Bench turns, single- and multi-turn, and short chat/FAQ prompts).
- ``mix``: production-like; about 35% of requests repeat (exactly, or with a
  light paraphrase) a prompt sent earlier, popular prompts more often.
- ``hit``: a small fixed set of prompts repeated, i.e. cache-hit traffic.

Each prompt carries its caller's knobs (tenant, preset or quality preference,
output-length estimate, cost cap, tags), drawn once when the prompt is first
sent: a repeat comes from the same caller with the same request shape, so an
exact decision cache can hit it, as it would in production.

Each client process draws its own shard of the shuffled pools, so prompts stay
unique across processes too. When a pool runs out it is reused with a variant
marker appended (counted as ``wraps``), which an exact-match cache misses but a
semantic cache may not: keep runs of ``unique`` short enough (see ``pool_sizes``)
when that matters.
"""

from __future__ import annotations

import csv
import itertools
import json
import os
import random
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from semroute.v1 import router_pb2

MIXES = ("unique", "mix", "hit")
KNOBS = ("none", "vary")

# Share of each source in unique traffic: topical exam questions, open-ended
# MT-Bench tasks and the short chat/FAQ traffic that dominates real gateways.
SOURCE_WEIGHTS = {"mmlu": 0.45, "mt_bench": 0.15, "chat": 0.40}
# Of the repeats in the `mix` mix, this fraction is verbatim, the rest paraphrased.
EXACT_REPEAT_FRACTION = 0.55
# Repeats are drawn from at most this many earlier prompts (the oldest are the most popular).
HISTORY_CAP = 20_000
MT_BENCH_ANSWER_CHARS = 800

Messages = tuple[tuple[str, str], ...]


@dataclass(frozen=True, slots=True)
class Knobs:
    """The per-request options a gateway sets besides the text."""

    tenant: str = ""
    preset: int = 0
    quality_preference: float | None = None
    expected_output_tokens: int | None = None
    max_cost_usd: float | None = None
    required_tags: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class PromptItem:
    """One request body: a bare prompt or an OpenAI-style message list, and its knobs."""

    prompt: str = ""
    messages: Messages = ()
    source: str = "chat"
    knobs: Knobs | None = None

    def text(self) -> str:
        """The text the mix compares for repeats: the prompt or all message contents."""
        return self.prompt or "\n".join(c for _, c in self.messages)


def default_data_dir() -> Path:
    """The RouteLLM data: ``$SEMROUTE_SHARED_DATA`` or ``../shared/data`` next to the repo root.

    The variable may name the shared data dir (as the test suite's conftest does)
    or the ``routellm`` dir itself; both work.
    """
    env = os.environ.get("SEMROUTE_SHARED_DATA")
    base = Path(env) if env else Path(__file__).resolve().parents[1].parent / "shared" / "data"
    return base / "routellm" if (base / "routellm").is_dir() else base


# --- short chat / FAQ prompts -------------------------------------------------------------

_STANDALONE = [
    "hi",
    "hello there!",
    "thanks, that helped a lot",
    "good morning",
    "ok thanks, bye",
    "What's the weather usually like in Lisbon in October?",
    "Tell me a joke about programmers.",
    "What is the capital of Australia?",
    "How many ounces are in a cup?",
    "Give me three ideas for a 10-year-old's birthday party.",
    "What's a good name for a golden retriever puppy?",
    "Summarize the plot of Hamlet in two sentences.",
    "Is it safe to eat raw cookie dough?",
    "What's the difference between a virus and a bacterium?",
    "Write a haiku about autumn rain.",
    "Recommend a sci-fi book for someone who loved The Martian.",
    "How long should I boil an egg for a runny yolk?",
    "What does 'idempotent' mean in REST APIs?",
    "Explain the difference between TCP and UDP.",
    "Prove that the square root of 2 is irrational.",
    "Formalize in Lean 4: the sum of two even numbers is even.",
    "What is 17% of 2,340?",
    "Solve for x: 3x + 7 = 25.",
    "Write a SQL query that returns the top 5 customers by total order value.",
    "Why does my Python script say 'ModuleNotFoundError: No module named requests'?",
    "Translate 'Where is the train station?' into German.",
    "Draft a polite reply declining a meeting invitation.",
    "What are the side effects of ibuprofen?",
    "Can you explain what a Roth IRA is?",
    "Write a regex that matches a US ZIP code.",
]

_TEMPLATES = [
    "How do I reset my password on {product}?",
    "How can I cancel my {product} subscription?",
    "Why was I charged twice on my {product} invoice?",
    "Does {product} support single sign-on with {idp}?",
    "How do I export my data from {product} to CSV?",
    "Is there a {product} plan for teams of {n} people?",
    "My {product} app crashes on startup on {os}. What should I try?",
    "How do I change the language of {product} to {language}?",
    "Translate this into {language}: '{phrase}'",
    "How do you say '{phrase}' in {language}?",
    "Write a {lang} function that {task}.",
    "Fix this {lang} error: {error}",
    "What's the idiomatic way in {lang} to {task2}?",
    "Explain {concept} like I'm five.",
    "Explain {concept} to a new software engineer in one paragraph.",
    "What are the pros and cons of {concept}?",
    "Summarize this for me: {snippet}",
    "Give me a TL;DR of this paragraph: {snippet}",
    "Plan a {days}-day trip to {city} on a budget.",
    "What are the best things to do in {city} with kids?",
    "What's {a} times {b}?",
    "Is {a} a prime number? Show your reasoning.",
    "Write a short {tone} email to my landlord about {issue}.",
    "Write a {tone} tweet announcing {announcement}.",
    "Write a SQL query that {sql_task}.",
]

_SLOTS: dict[str, Sequence[str]] = {
    "product": [
        "Acme Cloud",
        "Notely",
        "PayFlow",
        "the mobile app",
        "our CRM",
        "Streamly",
        "ShopDash",
        "the web portal",
        "TaskHive",
        "MediBook",
    ],
    "idp": ["Okta", "Azure AD", "Google Workspace"],
    "n": ["5", "25", "200"],
    "os": ["Windows 11", "macOS", "Android 14", "iOS 18"],
    "language": ["French", "Spanish", "German", "Japanese", "Portuguese", "Italian", "Korean"],
    "phrase": [
        "the meeting is moved to Thursday",
        "please keep your receipt",
        "where is the nearest pharmacy",
        "thank you for your patience",
    ],
    "lang": ["Python", "TypeScript", "Go", "Rust", "Java", "C#", "Kotlin", "Bash"],
    "task": [
        "deduplicates a list while keeping order",
        "parses an ISO-8601 date",
        "retries an HTTP request with exponential backoff",
        "computes a moving average over a stream",
        "validates an email address",
        "merges two sorted arrays",
        "counts word frequencies in a text file",
        "converts a CSV file to JSON",
    ],
    "task2": ["read a file line by line", "handle errors", "run tasks concurrently"],
    "error": [
        "TypeError: 'NoneType' object is not subscriptable",
        "cannot borrow `x` as mutable more than once at a time",
        "NullPointerException at line 42",
        "undefined is not a function",
    ],
    "concept": [
        "a hash map",
        "gradient descent",
        "compound interest",
        "vector databases",
        "Kubernetes",
        "inflation",
        "the CAP theorem",
        "photosynthesis",
        "index funds",
        "public-key cryptography",
        "the Monty Hall problem",
        "transformer language models",
        "supply and demand",
        "eventual consistency",
    ],
    "snippet": [
        "Quarterly revenue rose 12% on strong subscription growth, while churn fell to 2.1%.",
        "The committee postponed the vote after members raised concerns about the budget.",
        "Researchers found that short daily walks improved sleep quality in older adults.",
    ],
    "days": ["2", "3", "5", "7"],
    "city": [
        "Kyoto",
        "Lisbon",
        "Mexico City",
        "Toronto",
        "Prague",
        "Cape Town",
        "Seoul",
        "Edinburgh",
        "Buenos Aires",
    ],
    "a": ["37", "91", "1,024", "7,919"],
    "b": ["12", "48", "365"],
    "tone": ["friendly", "formal", "firm but polite"],
    "issue": ["a leaking faucet", "a late deposit refund", "noise from the upstairs unit"],
    "announcement": ["our new pricing", "a product launch next week", "a hiring drive"],
    "sql_task": [
        "finds duplicate emails in a users table",
        "counts orders per month for 2025",
        "lists employees who earn more than their manager",
    ],
}

_SUPPORT_SYSTEM = "You are a concise, friendly assistant for {product} customers."


def chat_prompts() -> list[str]:
    """Every expansion of the templates plus the standalone prompts, in a fixed order."""
    out = list(_STANDALONE)
    for tpl in _TEMPLATES:
        names = [n for n in _SLOTS if "{" + n + "}" in tpl]
        for values in itertools.product(*(_SLOTS[n] for n in names)):
            out.append(tpl.format(**dict(zip(names, values, strict=True))))
    return out


# --- the shared RouteLLM data -------------------------------------------------------------


def load_mmlu(data_dir: Path) -> list[str]:
    """MMLU questions (the ``prompt`` column of mmlu/responses/*.csv), deduplicated."""
    seen: dict[str, None] = {}
    for path in sorted((data_dir / "mmlu" / "responses").glob("*.csv")):
        with path.open(newline="", encoding="utf-8") as f:
            for row in csv.DictReader(f):
                p = (row.get("prompt") or "").strip()
                if p:
                    seen.setdefault(p, None)
    return list(seen)


def load_mt_bench(data_dir: Path) -> tuple[list[str], list[Messages]]:
    """MT-Bench first turns as prompts, and the two-turn chats as message lists.

    The assistant turn between the two user turns is a real answer from
    peers/martian.jsonl (truncated), so the second request looks like a chat in progress.
    """
    qpath = data_dir / "mt_bench" / "question.jsonl"
    if not qpath.is_file():
        return [], []
    answers: dict[int, str] = {}
    apath = data_dir / "mt_bench" / "peers" / "martian.jsonl"
    if apath.is_file():
        for line in apath.read_text(encoding="utf-8").splitlines():
            if line.strip():
                rec = json.loads(line)
                turns = rec.get("choices", [{}])[0].get("turns", [])
                if turns:
                    answers[int(rec["question_id"])] = turns[0][:MT_BENCH_ANSWER_CHARS]
    singles: list[str] = []
    chats: list[Messages] = []
    for line in qpath.read_text(encoding="utf-8").splitlines():
        if not line.strip():
            continue
        rec = json.loads(line)
        turns = [t for t in rec.get("turns", []) if t.strip()]
        if not turns:
            continue
        singles.append(turns[0])
        if len(turns) > 1:
            answer = answers.get(int(rec["question_id"]), "Sure, here is a first draft.")
            chats.append((("user", turns[0]), ("assistant", answer), ("user", turns[1])))
    return singles, chats


@dataclass(slots=True)
class PromptPool:
    """All prompt sources, in a fixed order (shuffling happens per mix)."""

    mmlu: list[str]
    mt_single: list[str]
    mt_chats: list[Messages]
    chat: list[str]
    data_dir: str
    data_found: bool

    def sizes(self) -> dict[str, int]:
        return {
            "mmlu": len(self.mmlu),
            "mt_bench": len(self.mt_single) + len(self.mt_chats),
            "chat": len(self.chat),
        }


def load_pool(data_dir: str | Path | None = None) -> PromptPool:
    """Load the shared data; without it, fall back to the built-in chat prompts (with a warning)."""
    root = Path(data_dir) if data_dir else default_data_dir()
    if (root / "routellm").is_dir():
        root = root / "routellm"
    mmlu = load_mmlu(root) if root.is_dir() else []
    singles, chats = load_mt_bench(root) if root.is_dir() else ([], [])
    found = bool(mmlu or singles)
    if not found:
        print(
            f"warning: no RouteLLM data under {root} (set --data-dir or SEMROUTE_SHARED_DATA); "
            "using the built-in chat prompts only",
            file=sys.stderr,
        )
    return PromptPool(mmlu, singles, chats, chat_prompts(), str(root), found)


# --- paraphrases --------------------------------------------------------------------------

_PREFIXES = ["Quick question: ", "Hi! ", "Can you help? ", "Please answer: ", "Hey, ", "So, "]
_SUFFIXES = [" Thanks!", " Please keep it short.", " Thank you.", " Explain briefly.", " :)"]
_SWAPS = [
    ("How do I", "How can I"),
    ("What is", "What's"),
    ("What's", "What is"),
    ("Explain", "Describe"),
    ("Write", "Compose"),
    ("Which of the following", "Which one of the following"),
    ("best", "ideal"),
    ("Give me", "Can you give me"),
]


def paraphrase(text: str, rng: random.Random) -> str:
    """A light, meaning-preserving edit: what a user retyping the same question produces."""
    out = text
    for _ in range(rng.randint(1, 2)):
        op = rng.randrange(5)
        if op == 0:
            out = rng.choice(_PREFIXES) + out
        elif op == 1:
            out = out.rstrip() + rng.choice(_SUFFIXES)
        elif op == 2:
            hits = [(a, b) for a, b in _SWAPS if a in out]
            if hits:
                a, b = rng.choice(hits)
                out = out.replace(a, b, 1)
        elif op == 3:
            out = out[:1].lower() + out[1:] if out[:1].isupper() else out[:1].upper() + out[1:]
        else:
            out = out.rstrip("?.! ") if out.rstrip().endswith(("?", ".", "!")) else out + "?"
    return out if out != text else rng.choice(_PREFIXES) + text


def paraphrase_item(item: PromptItem, rng: random.Random) -> PromptItem:
    """Paraphrase the prompt, or the last user turn of a chat."""
    if item.prompt:
        return replace(item, prompt=paraphrase(item.prompt, rng))
    msgs = list(item.messages)
    for i in range(len(msgs) - 1, -1, -1):
        if msgs[i][0] == "user":
            msgs[i] = ("user", paraphrase(msgs[i][1], rng))
            break
    return replace(item, messages=tuple(msgs))


# --- the mixes ----------------------------------------------------------------------------


class _Shard:
    """One worker's slice of a shuffled source, reused with a variant marker once exhausted."""

    def __init__(self, items: Sequence[object], seed: int, name: str, worker: int, n: int):
        order = list(items)
        random.Random(f"{seed}:pool:{name}").shuffle(order)
        self.items = order[worker::n] if n > 1 else order
        self.pos = 0
        self.wraps = 0

    def __bool__(self) -> bool:
        return bool(self.items)

    def next(self) -> tuple[object, int]:
        if self.pos >= len(self.items):
            self.pos = 0
            self.wraps += 1
        item = self.items[self.pos]
        self.pos += 1
        return item, self.wraps


def _variant(text: str, wrap: int) -> str:
    return text if wrap == 0 else f"{text}\n(variant {wrap + 1})"


class PromptMix:
    """An endless, deterministic stream of (PromptItem, kind) for one client process.

    ``kind`` is ``unique``, ``repeat`` (verbatim earlier prompt), ``paraphrase``
    (lightly edited earlier prompt) or ``hit`` (from the small hit set).
    """

    def __init__(
        self,
        pool: PromptPool,
        mix: str = "unique",
        seed: int = 0,
        worker: int = 0,
        n_workers: int = 1,
        hit_set: int = 16,
        repeat_share: float = 0.35,
        knobs: str = "vary",
        tags: Sequence[str] = (),
    ):
        if mix not in MIXES:
            raise ValueError(f"unknown mix {mix!r}; choose one of {', '.join(MIXES)}")
        if knobs not in KNOBS:
            raise ValueError(f"unknown knobs {knobs!r}; choose one of {', '.join(KNOBS)}")
        self.knobs = knobs
        self.tags = tuple(t for t in tags if t)
        self.knob_rng = random.Random(f"{seed}:knobs:{worker}:{n_workers}")
        if not 0.0 <= repeat_share < 1.0:
            raise ValueError("repeat_share must be within [0, 1)")
        self.mix = mix
        self.repeat_share = repeat_share
        self.rng = random.Random(f"{seed}:mix:{mix}:{worker}:{n_workers}")
        mt_items: list[object] = [*pool.mt_single, *pool.mt_chats]
        self.shards = {
            "mmlu": _Shard(pool.mmlu, seed, "mmlu", worker, n_workers),
            "mt_bench": _Shard(mt_items, seed, "mt_bench", worker, n_workers),
            "chat": _Shard(pool.chat, seed, "chat", worker, n_workers),
        }
        live = [s for s in SOURCE_WEIGHTS if self.shards[s]]
        self.sources = live
        self.weights = [SOURCE_WEIGHTS[s] for s in live]
        self.history: list[PromptItem] = []
        self.hits: list[PromptItem] = []
        if mix == "hit":
            # The same hit set in every process: drawn from an unsharded stream.
            base = PromptMix(pool, "unique", seed, 0, 1, knobs=knobs, tags=self.tags)
            self.hits = [base.next_unique() for _ in range(max(1, hit_set))]

    def wraps(self) -> int:
        """How many times a source pool was exhausted and reused with a variant marker."""
        return sum(s.wraps for s in self.shards.values())

    def next_unique(self) -> PromptItem:
        source = self.rng.choices(self.sources, self.weights)[0]
        raw, wrap = self.shards[source].next()
        knobs = draw_knobs(self.knob_rng, self.tags) if self.knobs == "vary" else None
        if isinstance(raw, tuple):  # an MT-Bench chat
            msgs = list(raw)
            msgs[-1] = (msgs[-1][0], _variant(msgs[-1][1], wrap))
            return PromptItem(messages=tuple(msgs), source=source, knobs=knobs)
        text = _variant(str(raw), wrap)
        if source == "chat" and self.rng.random() < 0.3:
            # Gateways often forward the chat-completions shape with a system prompt.
            system = _SUPPORT_SYSTEM.format(product=self.rng.choice(_SLOTS["product"]))
            msgs = (("system", system), ("user", text))
            return PromptItem(messages=msgs, source=source, knobs=knobs)
        return PromptItem(prompt=text, source=source, knobs=knobs)

    def _pick_earlier(self) -> PromptItem:
        """Half popularity-skewed (a Zipf-like head of early prompts), half uniform."""
        n = len(self.history)
        if self.rng.random() < 0.5:
            return self.history[min(int(self.rng.paretovariate(1.2)) - 1, n - 1)]
        return self.history[self.rng.randrange(n)]

    def next_item(self) -> tuple[PromptItem, str]:
        if self.mix == "hit":
            return self.rng.choice(self.hits), "hit"
        if self.mix == "mix" and self.history:
            r = self.rng.random()
            if r < self.repeat_share * EXACT_REPEAT_FRACTION:
                return self._pick_earlier(), "repeat"
            if r < self.repeat_share:
                return paraphrase_item(self._pick_earlier(), self.rng), "paraphrase"
        item = self.next_unique()
        if self.mix == "mix" and len(self.history) < HISTORY_CAP:
            self.history.append(item)
        return item, "unique"

    def __iter__(self) -> Iterator[tuple[PromptItem, str]]:
        while True:
            yield self.next_item()


# --- knobs and the request message --------------------------------------------------------

_TENANTS = [f"tenant-{i}" for i in range(8)]
_PRESETS = [
    router_pb2.PRESET_UNSPECIFIED,
    router_pb2.PRESET_UNSPECIFIED,
    router_pb2.PRESET_BALANCED,
    router_pb2.PRESET_COST,
    router_pb2.PRESET_QUALITY,
]


def draw_knobs(rng: random.Random, tags: Sequence[str] = ()) -> Knobs:
    """What gateways set: a tenant, a preset or an explicit quality preference, sometimes an
    output-length estimate or a cost cap, and (only when ``tags`` is given) a required tag."""
    quality = round(rng.random(), 3) if rng.random() < 0.3 else None
    return Knobs(
        tenant=rng.choice(_TENANTS),
        preset=rng.choice(_PRESETS) if quality is None else 0,
        quality_preference=quality,
        expected_output_tokens=rng.choice((64, 256, 512, 1024)) if rng.random() < 0.3 else None,
        max_cost_usd=0.5 if rng.random() < 0.1 else None,
        required_tags=(rng.choice(tags),) if tags and rng.random() < 0.2 else (),
    )


class RequestFactory:
    """Turns PromptItems into RouteRequests; with an ``id_prefix``, numbers them as request_id."""

    def __init__(self, id_prefix: str = ""):
        self.id_prefix = id_prefix
        self.count = 0

    def build(self, item: PromptItem) -> router_pb2.RouteRequest:
        req = router_pb2.RouteRequest()
        if item.prompt:
            req.prompt = item.prompt
        else:
            for role, content in item.messages:
                req.messages.add(role=role, content=content)
        if self.id_prefix:
            self.count += 1
            req.request_id = f"{self.id_prefix}{self.count}"
        k = item.knobs
        if k is None:
            return req
        req.tenant = k.tenant
        if k.quality_preference is not None:
            req.quality_preference = k.quality_preference
        elif k.preset:
            req.preset = k.preset  # type: ignore[assignment]
        if k.expected_output_tokens is not None:
            req.expected_output_tokens = k.expected_output_tokens
        if k.max_cost_usd is not None:
            req.max_cost_usd = k.max_cost_usd
        if k.required_tags:
            req.required_tags.extend(k.required_tags)
        return req
