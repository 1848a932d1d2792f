"""CPU per long prompt: tokenising only the windows truncation keeps, against the whole text.

    python -m benchmarks.long_prompts          # ~1 min

Prompts up to `server.max_prompt_bytes` (64 KB) are accepted. Truncation keeps their first
and last tokens, so `TextTokenizer` tokenises a window at each end instead of the whole text
(semroute/encoder/tokenize.py). This measures, by prompt size, the process CPU of the two
steps that tokenise a prompt the caches have not seen:

* the static encoder's embedding (similar-prompt cache, static tier), which runs on the
  event loop, so its cost is added to every request waiting behind it;
* the classifier's tokenisation (`encode_batch`), in the inference threads.

Each is timed windowed and whole (the same tokenizer with windows off) in interleaved rounds,
in one process; the ratio is the figure to read. Prompts are built from the corpus's own
text: MMLU questions and MT-Bench first turns joined until the size is reached.
Writes benchmarks/results/long_prompts-<ts>.json.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path
from typing import Any

from benchmarks.cascade_speed import cpu_us_per_prompt
from benchmarks.prompts import default_data_dir, load_mmlu, load_mt_bench
from semroute.encoder import default_model_dir
from semroute.encoder.static import StaticEncoder, default_static_dir
from semroute.encoder.tokenize import TextTokenizer
from semroute.encoder.variants import cpu_signature

RESULTS = Path(__file__).resolve().parent / "results"
SIZES_KB = (0.5, 2, 8, 32, 64)


def prompts_of(size_kb: float, n: int) -> list[str]:
    data = default_data_dir()
    singles, _ = load_mt_bench(data)
    pool = load_mmlu(data)[:3000] + singles
    out, i = [], 0
    for _ in range(n):
        text = ""
        while len(text) < size_kb * 1024:
            text += pool[i % len(pool)] + "\n\n"
            i += 1
        out.append(text[: int(size_kb * 1024)])
    return out


def main(argv: list[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--per-size", type=int, default=20)
    ap.add_argument("--max-tokens", type=int, default=128, help="the default config's")
    ap.add_argument("--out", type=Path)
    args = ap.parse_args(argv)

    static_windowed = StaticEncoder(default_static_dir(), max_tokens=args.max_tokens)
    static_whole = StaticEncoder(default_static_dir(), max_tokens=args.max_tokens)
    static_whole._tok._window = 0  # the baseline: every text tokenised whole
    tok_windowed = TextTokenizer(default_model_dir() / "tokenizer.json", args.max_tokens)
    tok_whole = TextTokenizer(default_model_dir() / "tokenizer.json", args.max_tokens)
    tok_whole._window = 0
    cases = {
        "static_embedding": (
            lambda t: static_windowed.encode([t]),
            lambda t: static_whole.encode([t]),
        ),
        "classifier_tokenisation": (
            lambda t: tok_windowed.encode_batch([t]),
            lambda t: tok_whole.encode_batch([t]),
        ),
    }
    rows = []
    for kb in SIZES_KB:
        texts = prompts_of(kb, args.per_size)
        for name, (windowed, whole) in cases.items():
            same = all(
                (windowed(t) == whole(t)).all()
                if name == "static_embedding"
                else (windowed(t).input_ids == whole(t).input_ids).all()
                for t in texts
            )
            w_us, h_us = [], []
            for _ in range(args.rounds):  # interleaved, so drift hits both alike
                w_us.append(cpu_us_per_prompt(windowed, texts))
                h_us.append(cpu_us_per_prompt(whole, texts))
            w, h = statistics.median(w_us), statistics.median(h_us)
            rows.append(
                {
                    "size_kb": kb,
                    "step": name,
                    "windowed_us": round(w, 1),
                    "whole_us": round(h, 1),
                    "whole_over_windowed": round(h / w, 2),
                    "identical_output": bool(same),
                }
            )
            print(f"{kb:>5} KB  {name:<24} windowed {w:>9.1f} µs  whole {h:>9.1f} µs  "
                  f"x{h / w:5.2f}  identical {same}", flush=True)  # fmt: skip
    result = {
        "benchmark": "long_prompts",
        "what": "process CPU per prompt, median of interleaved rounds; same outputs checked",
        "max_tokens": args.max_tokens,
        "per_size": args.per_size,
        "rounds": args.rounds,
        "rows": rows,
        "cpu": cpu_signature(),
    }
    out = args.out or RESULTS / f"long_prompts-{time.strftime('%Y%m%dT%H%M%S')}.json"
    out.write_text(json.dumps(result, indent=1) + "\n")
    print(f"-> {out}")
    return result


if __name__ == "__main__":
    main()
