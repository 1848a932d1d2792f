"""Tokenisation cost per prompt: ``tokenizers`` vs TextTokenizer with the compiled WordPiece.

Every prompt the caches miss is tokenised once for the static tier (on the event loop) and once
more if it goes on to the classifier (in an inference thread). Before csrc/_wordpiece.pyx both
went through ``tokenizers.Tokenizer.encode``, which builds a whole ``Encoding`` (offsets, token
strings) that serving never reads. Cases, one prompt per call as the static tier calls it:

* ``tokenizers``: ``Tokenizer.encode(text).ids`` (the library, as TextTokenizer used it);
* ``text_tokenizer``: ``TextTokenizer.ids`` (compiled path for ASCII text, the library else);
* ``compiled``: ``AsciiWordPiece.encode`` alone, on the ASCII prompts only.

Rounds are interleaved so background load hits all cases alike; medians of the rounds.

``--decisions CONFIG`` measures the whole decision instead: process CPU per ``Router.route``
(rules, static tier, classifier where the cascade sends it, policy), one prompt at a time, for
two routers loaded from CONFIG in this process, one with the compiled path and one without
(``SEMROUTE_COMPILED_TOKENIZER=0``), rounds interleaved.

    python -m benchmarks.tokenizer   # writes benchmarks/results/tokenizer-*.json
    python -m benchmarks.tokenizer --decisions configs/default.yaml   # tokenizer-ab-*.json
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import sys
import time
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path

from tokenizers import Tokenizer

from benchmarks.prompts import chat_prompts, default_data_dir, load_mmlu, load_mt_bench
from benchmarks.static_tier import round_times
from semroute.config import load_config
from semroute.encoder import default_model_dir
from semroute.encoder.tokenize import COMPILED_ENV, TextTokenizer, wordpiece_of
from semroute.encoder.variants import cpu_signature
from semroute.router import Router
from semroute.server.app import load_router
from semroute.types import RouteQuery

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"


def prompt_sets(n: int, seed: int) -> dict[str, list[str]]:
    data = default_data_dir()
    rng = random.Random(seed)
    sets = {"chat": chat_prompts()}
    if data.is_dir():
        mmlu = load_mmlu(data)
        sets["mmlu"] = rng.sample(mmlu, min(n, len(mmlu)))
        sets["mt_bench"] = load_mt_bench(data)[0]
    else:
        print(f"warning: no RouteLLM data under {data}: chat prompts only", file=sys.stderr)
    return {k: v[:n] for k, v in sets.items()}


def decisions(config: Path, rounds: int) -> dict[str, object]:
    """CPU per decision with and without the compiled path (see the module docstring)."""
    routers = {}
    before = os.environ.get(COMPILED_ENV)
    for name, flag in (("compiled", "1"), ("library", "0")):
        os.environ[COMPILED_ENV] = flag
        routers[name] = load_router(load_config(config))
    if before is None:
        del os.environ[COMPILED_ENV]
    else:
        os.environ[COMPILED_ENV] = before
    sets = prompt_sets(400, seed=7)
    texts = [t for v in sets.values() for t in v]
    tiers: dict[str, int] = {}

    def run(router: Router) -> float:
        t0 = time.process_time()
        for text in texts:
            tier = router.route(RouteQuery(text=text)).tier.name
            tiers[tier] = tiers.get(tier, 0) + 1
        return (time.process_time() - t0) / len(texts) * 1e6

    for router in routers.values():
        run(router)  # warm-up
    per: dict[str, list[float]] = {name: [] for name in routers}
    for r in range(rounds):
        for name in sorted(routers, reverse=bool(r % 2)):
            per[name].append(round(run(routers[name]), 1))
    med = {name: statistics.median(v) for name, v in per.items()}
    return {
        "config": str(config),
        "prompts": {k: len(v) for k, v in sets.items()},
        "tiers_per_round": {k: v // (rounds + 1) // len(routers) for k, v in tiers.items()},
        "us_per_decision_rounds": per,
        "median_us": med,
        "saved_us": round(med["library"] - med["compiled"], 1),
    }


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--prompts", type=int, default=2000, help="prompts per set (at most)")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--min-s", type=float, default=0.5, help="seconds per round and case")
    ap.add_argument("--out", type=Path)
    ap.add_argument("--decisions", type=Path, help="CPU per decision A/B with this config")
    args = ap.parse_args(argv)
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S")
    if args.decisions:
        result = {"benchmark": "tokenizer-ab", "cpu": cpu_signature(), "rounds": args.rounds}
        result |= decisions(args.decisions, args.rounds)
        out = args.out or RESULTS / f"tokenizer-ab-{args.decisions.stem}-{stamp}.json"
        out.write_text(json.dumps(result, indent=1) + "\n")
        print(json.dumps({k: result[k] for k in ("median_us", "saved_us", "tiers_per_round")}))
        print(f"-> {out}")
        return

    path = default_model_dir() / "tokenizer.json"
    tok = TextTokenizer(path, 128)
    if not tok.compiled:
        raise SystemExit("the bundled tokenizer did not take the compiled path")
    library = Tokenizer.from_file(str(path))
    library.no_padding()
    library.no_truncation()
    model = json.loads(path.read_text())["model"]
    fast = wordpiece_of(model)
    rows = []
    for name, texts in prompt_sets(args.prompts, seed=20261201).items():
        ascii_texts = [t for t in texts if t.isascii()]
        cases: dict[str, tuple[Callable[[], object], int]] = {
            "tokenizers": (lambda t=texts: [library.encode(x).ids for x in t], len(texts)),
            "text_tokenizer": (
                lambda t=texts: [tok.ids([x], add_special_tokens=True) for x in t],
                len(texts),
            ),
            "compiled": (lambda t=ascii_texts: [fast.encode(x, True) for x in t], len(ascii_texts)),
        }
        runs: dict[str, list[float]] = {c: [] for c in cases}
        for fn, _ in cases.values():
            fn()  # warm-up
        for _ in range(args.rounds):
            for case, (fn, n_texts) in cases.items():
                runs[case] += round_times(fn, n_texts, 1, args.min_s)
        us = {case: round(statistics.median(v), 2) for case, v in runs.items()}
        row = {
            "set": name,
            "prompts": len(texts),
            "ascii_share": round(len(ascii_texts) / len(texts), 4),
            "mean_chars": round(statistics.mean(len(t) for t in texts), 1),
            "us_per_prompt": us,
            "speedup_text_tokenizer": round(us["tokenizers"] / us["text_tokenizer"], 2),
        }
        rows.append(row)
        print(json.dumps(row))
    result = {
        "benchmark": "tokenizer",
        "cpu": cpu_signature(),
        "rounds": args.rounds,
        "min_s": args.min_s,
        "rows": rows,
    }
    out = args.out or RESULTS / f"tokenizer-{stamp}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1) + "\n")
    print(f"-> {out}")


if __name__ == "__main__":
    main()
