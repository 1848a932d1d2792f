"""Kernel variants of one encoder model, and the per-CPU choice among them.

Why: the fastest build of the same weights depends on the CPU. On AVX-512 VNNI the blockwise
int8 graph (MatMulNBits) was fastest; on an AVX2-only Zen 3 it was the slowest (35 ms per
prompt against 21 ms for fp32 and 15.7 ms for dynamic per-channel int8), and 2 intra-op
threads were slower than 1 there. So a model directory may ship several graphs of the same
weights, every one checked against the fp32 model at build time (models/build_variants.py), and
the server picks the fastest that meets the accuracy bar with a short microbenchmark at start.

The choice is cached in a small JSON file keyed by the CPU (model name and the SIMD flags that
decide which kernels onnxruntime runs), the onnxruntime version, the thread candidates and the
model files' hashes: a restart on the same host reuses it, a different CPU or model measures
again. A forced ``variant``/``threads`` is used as is, without measuring.

Layout: ``model.onnx`` is the default variant (named by encoder.json's ``variant``, else
``default``); encoder.json's ``variants`` maps other names to files (``variants/*.onnx``), their
sha256 and their measured quality against fp32.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import platform
import statistics
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import onnxruntime as ort

from semroute import atomic
from semroute.bundle import sha256_file
from semroute.encoder.errors import EncoderError

log = logging.getLogger("semroute.encoder")

AUTO = "auto"
DEFAULT_NAME = "default"
CACHE_FORMAT = 1

# The accuracy bar a variant must meet against the fp32 graph of the same weights, on real
# corpus prompts, one per call and in padded batches of 16 (as the micro-batcher runs them
# when batching.max_batch > 1; models/build_variants.py measures it on 1,000; tests/
# test_kernel_variants.py re-checks 100).
# Route argmax decides the route, so it carries the bar; the cosine bounds keep embeddings
# usable by a route index built with another variant (route thresholds and margins are
# 0.03-0.10 apart; a mean drift of 0.005 stays well inside them).
BAR_ARGMAX_AGREEMENT = 0.99
BAR_COSINE_MEAN = 0.995
BAR_COSINE_P01 = 0.98

# /proc/cpuinfo flags that change which onnxruntime (MLAS) kernels run.
KERNEL_FLAGS = (
    "avx",
    "avx2",
    "fma",
    "f16c",
    "avx512f",
    "avx512bw",
    "avx512vl",
    "avx512_vnni",
    "avx_vnni",
    "avx512_bf16",
    "avx512_fp16",
    "amx_tile",
    "amx_int8",
    "amx_bf16",
    "asimd",
    "asimddp",
    "sve",
    "i8mm",
)

# Fixed, realistic prompts for the start-up microbenchmark: chat asks, a coding ask with a
# pasted error, a maths word problem, an MMLU-style question, a long instruction. ~60 tokens on
# average, like the traffic the encoder sees (short ones are cheap; long ones dominate cost).
BENCH_PROMPTS = (
    "what are your opening hours on public holidays?",
    "Translate into German: the meeting moved to Thursday afternoon, please bring the slides.",
    "My Flask app fails with `TypeError: 'NoneType' object is not subscriptable` when I call "
    "request.json['user'] on a GET request. Here is the handler: def user(): "
    "return db.find(request.json['user']). How do I fix it?",
    "A train leaves at 9:40 and travels 210 km at 84 km/h, then stops for 12 minutes and "
    "covers the remaining 95 km at 76 km/h. At what time does it arrive? Show your steps.",
    "Which of the following best explains why the marginal cost curve intersects the average "
    "total cost curve at its minimum? A) fixed costs fall B) when marginal cost is below "
    "average cost it pulls the average down, and above it pulls it up C) economies of scope "
    "D) diminishing returns to fixed inputs",
    "Write a SQL query that returns, for each customer, their three most recent orders with "
    "the order total, using the tables customers(id, name), orders(id, customer_id, created_at)"
    " and order_items(order_id, price, quantity); ties on created_at should be broken by id, "
    "and customers without orders must still appear once with nulls.",
)


@dataclass(frozen=True)
class Variant:
    """One graph of the model's weights: its file and what the build measured about it."""

    name: str
    path: Path
    sha256: str | None = None
    quality: dict[str, Any] = field(default_factory=dict)

    @property
    def meets_bar(self) -> bool:
        """True for the reference graph and for variants whose build measured the bar met.

        A variant without recorded quality is only used when forced: nothing says it is safe.
        """
        if self.quality.get("reference"):
            return True
        try:
            batched = self.quality.get("batched16", self.quality)
            return (
                float(self.quality["argmax_agreement"]) >= BAR_ARGMAX_AGREEMENT
                and float(batched["argmax_agreement"]) >= BAR_ARGMAX_AGREEMENT
                and float(self.quality["cosine_mean"]) >= BAR_COSINE_MEAN
                and float(self.quality["cosine_p01"]) >= BAR_COSINE_P01
            )
        except (KeyError, TypeError, ValueError):
            return False


def model_variants(model_dir: Path, meta: dict[str, Any]) -> dict[str, Variant]:
    """The variants a model directory ships, default (model.onnx) first."""
    default_name = str(meta.get("variant") or DEFAULT_NAME)
    out = {
        default_name: Variant(
            default_name,
            model_dir / "model.onnx",
            meta.get("sha256", {}).get("model.onnx"),
            dict(meta.get("quality_vs_fp32_corpus") or {}),
        )
    }
    declared = meta.get("variants") or {}
    if not isinstance(declared, dict):
        raise EncoderError(f"{model_dir}/encoder.json: 'variants' must be an object")
    for name, spec in declared.items():
        if name in out or not isinstance(spec, dict) or "file" not in spec:
            raise EncoderError(f"{model_dir}/encoder.json: bad variant entry {name!r}")
        out[name] = Variant(
            name, model_dir / str(spec["file"]), spec.get("sha256"), dict(spec.get("quality", {}))
        )
    return out


def resolve_variant(model_dir: Path, meta: dict[str, Any], name: str | None) -> Variant:
    """The named variant (None: the default one); an unknown name lists the known ones."""
    variants = model_variants(model_dir, meta)
    if name is None or name == DEFAULT_NAME:
        return next(iter(variants.values()))
    if name not in variants:
        raise EncoderError(
            f"{model_dir} has no variant {name!r}; it ships {', '.join(variants)} "
            "(encoder.variant: auto picks the fastest on this CPU)"
        )
    return variants[name]


# ----------------------------------------------------------------------------- the CPU


def cpu_signature() -> dict[str, Any]:
    """What decides the kernels: CPU model, kernel-relevant flags, usable cores, onnxruntime."""
    model, flags = platform.processor() or platform.machine(), set[str]()
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            for line in f:
                key, _, value = line.partition(":")
                key = key.strip()
                if key == "model name" and model in ("", platform.machine()):
                    model = value.strip()
                elif key in ("flags", "Features") and not flags:
                    flags = set(value.split())
                elif not line.strip() and flags:
                    break  # the first processor says it all
    except OSError:
        pass
    return {
        "model": model,
        "flags": [f for f in KERNEL_FLAGS if f in flags],
        "cores": available_cores(),
        "onnxruntime": ort.__version__,
    }


def cpu_key(sig: dict[str, Any]) -> str:
    return f"{sig['model']}|{','.join(sig['flags'])}|cores={sig['cores']}|ort={sig['onnxruntime']}"


def available_cores() -> int:
    """Cores this process may run on (its affinity mask, not the host's count)."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def thread_candidates(max_threads: int | None = None) -> list[int]:
    """1, 2 and every available core, capped at ``max_threads``."""
    cores = available_cores()
    cap = max(1, min(cores, max_threads or cores))
    return sorted({t for t in (1, 2, cores) if t <= cap} or {1})


# ----------------------------------------------------------------------------- the choice


@dataclass(frozen=True)
class KernelChoice:
    """The variant and intra-op threads the encoder runs with, and why."""

    variant: str
    threads: int
    source: str  # "forced", "cached" or "measured"
    cpu_key: str
    model_hash: str
    # Measured ms per prompt, "variant@threads" → median over rounds (empty when forced).
    ms_per_prompt: dict[str, float] = field(default_factory=dict)
    # Wall time the microbenchmark took at this start (0 unless measured).
    measure_s: float = 0.0

    def log_fields(self) -> dict[str, Any]:
        return {"kernels": asdict(self)}


def choose_kernels(
    model_dir: Path,
    meta: dict[str, Any],
    *,
    variant: str = AUTO,
    threads: int | str = AUTO,
    max_tokens: int,
    cache_dir: Path | None,
    max_threads: int | None = None,
    budget_s: float = 2.5,
) -> KernelChoice:
    """Pick the variant and thread count (see the module docstring); never raises for the cache.

    Measuring runs only for what is ``auto``; a forced variant is used as is, even one that does
    not meet the bar (an operator's explicit choice), and a forced thread count likewise.
    """
    variants = model_variants(model_dir, meta)
    sig = cpu_signature()
    key = cpu_key(sig)
    mhash = model_hash(variants)
    if variant != AUTO:
        forced = resolve_variant(model_dir, meta, variant)
        variants = {forced.name: forced}
    else:
        eligible = {n: v for n, v in variants.items() if v.meets_bar}
        variants = eligible or dict([next(iter(variants.items()))])
    if threads != AUTO:
        n = int(threads)  # 0: onnxruntime's default (the legacy intra_op_threads: 0)
        if n < 0:
            raise EncoderError(f"encoder threads must be auto or >= 0, got {threads}")
        cands = [n]
    else:
        cands = thread_candidates(max_threads)
    if len(variants) == 1 and len(cands) == 1:
        return KernelChoice(next(iter(variants)), cands[0], "forced", key, mhash)

    wanted = {
        "format": CACHE_FORMAT,
        "cpu_key": key,
        "model_hash": mhash,
        "variants": sorted(variants),
        "threads": cands,
        "max_tokens": max_tokens,
    }
    path = cache_path(cache_dir, model_dir) if cache_dir is not None else None
    cached = _read_cache(path, wanted) if path is not None else None
    if cached is not None:
        return KernelChoice(
            cached["variant"], int(cached["threads"]), "cached", key, mhash, cached["ms"]
        )

    t0 = time.perf_counter()
    ms = benchmark(model_dir, variants, cands, max_tokens, budget_s)
    took = round(time.perf_counter() - t0, 2)
    best_variant = min(variants, key=lambda n: ms[f"{n}@{cands[0]}"])
    best_threads = min(cands, key=lambda t: ms.get(f"{best_variant}@{t}", float("inf")))
    choice = KernelChoice(best_variant, best_threads, "measured", key, mhash, ms, took)
    if path is not None:
        record = {**wanted, "cpu": sig, "variant": best_variant, "chosen_threads": best_threads}
        _write_cache(path, {**record, "ms": ms})
    return choice


def model_hash(variants: dict[str, Variant]) -> str:
    """One hash over every variant's file hash (recorded in encoder.json, else computed)."""
    parts = [f"{n}:{v.sha256 or sha256_file(v.path)}" for n, v in sorted(variants.items())]
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()


def default_cache_dir() -> Path:
    """<repo>/var/kernels: beside the bundled models, shared by every config of a checkout."""
    return Path(__file__).resolve().parents[2] / "var" / "kernels"


def cache_path(cache_dir: Path, model_dir: Path) -> Path:
    """One file per model directory name: a new key for the same model replaces the old one."""
    return Path(cache_dir) / f"kernels-{model_dir.resolve().name}.json"


def _read_cache(path: Path, wanted: dict[str, Any]) -> dict[str, Any] | None:
    """The cached choice when it was made for exactly ``wanted``; None (logged) otherwise."""
    if not path.exists():
        return None
    try:
        data = json.loads(path.read_text())
        if not isinstance(data, dict):
            raise ValueError("not a JSON object")
        stale = [k for k, v in wanted.items() if data.get(k) != v]
        if stale:
            log.info(
                "kernel choice cache made for another %s; measuring again",
                "/".join(stale),
                extra={"fields": {"path": str(path)}},
            )
            return None
        variant, threads = str(data["variant"]), int(data["chosen_threads"])
        if variant not in wanted["variants"] or threads not in wanted["threads"]:
            raise ValueError("cached choice is not among the candidates")
        ms = {str(k): float(v) for k, v in dict(data.get("ms", {})).items()}
        return {"variant": variant, "threads": threads, "ms": ms}
    except (OSError, ValueError, KeyError, TypeError) as e:
        log.warning(
            "kernel choice cache unreadable (%s); ignoring it and measuring again",
            e,
            extra={"fields": {"path": str(path)}},
        )
        return None


def _write_cache(path: Path, data: dict[str, Any]) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic.write_bytes(path, (json.dumps(data, indent=1) + "\n").encode())
    except OSError as e:  # a read-only disk costs a re-measure next start, nothing else
        log.warning("cannot write kernel choice cache %s: %s", path, e)


# ----------------------------------------------------------------------------- measuring


def benchmark(
    model_dir: Path,
    variants: dict[str, Variant],
    threads: Sequence[int],
    max_tokens: int,
    budget_s: float,
    prompts: Sequence[str] = BENCH_PROMPTS,
) -> dict[str, float]:
    """ms per prompt for each variant at threads[0], then the fastest variant at every thread count.

    Rounds are interleaved (every candidate once per round, one prompt at a time: the serving
    shape) and the median is kept, so a burst of load from a neighbour hits every candidate
    alike. Two stages rather than variants × threads keeps session creation, which costs as much
    as a few rounds, to len(variants) + len(threads) - 1 sessions.
    """
    from semroute.encoder.onnx_backend import OnnxBackend
    from semroute.encoder.tokenize import TextTokenizer

    t0 = time.perf_counter()
    tok = TextTokenizer(model_dir / "tokenizer.json", max_tokens)
    batches = [tok.encode_batch([p]) for p in prompts]
    stage_budget = budget_s / (2 if len(threads) > 1 else 1)

    def run_stage(backends: dict[str, OnnxBackend], deadline: float) -> dict[str, float]:
        for b in backends.values():  # warm-up: first runs allocate and pick kernels
            for batch in batches[:2]:
                b.run(batch)
        times: dict[str, list[float]] = {k: [] for k in backends}
        rounds = 0
        while rounds < 3 or (rounds < 15 and time.perf_counter() < deadline):
            order = list(backends.items())
            if rounds % 2:
                order.reverse()
            for k, b in order:
                start = time.perf_counter()
                for batch in batches:
                    b.run(batch)
                times[k].append((time.perf_counter() - start) * 1000 / len(batches))
            rounds += 1
        return {k: round(statistics.median(v), 3) for k, v in times.items()}

    first = threads[0]
    backends = {
        f"{n}@{first}": OnnxBackend(v.path, intra_op_threads=first, output_normalized=True)
        for n, v in variants.items()
    }
    ms = run_stage(backends, t0 + stage_budget) if len(backends) > 1 else {}
    if len(threads) > 1:
        best = min(variants, key=lambda n: ms.get(f"{n}@{first}", 0.0))
        stage2 = {f"{best}@{first}": backends[f"{best}@{first}"]}
        for t in threads[1:]:
            stage2[f"{best}@{t}"] = OnnxBackend(
                variants[best].path, intra_op_threads=t, output_normalized=True
            )
        ms.update(run_stage(stage2, time.perf_counter() + stage_budget))
    elif not ms:
        ms = {k: 0.0 for k in backends}
    return ms
