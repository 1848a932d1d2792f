"""Distilled student encoder vs the bundled teacher: speed, cosine and routing agreement.

Measures, in one run and one process (both encoders with the config's ``max_tokens`` and
``intra_op_threads``, default 128 and 1):

* encode cost per query of student and teacher, interleaved rounds: one short chat prompt, one
  MMLU question, one long MT-Bench chat (truncated to max_tokens), a batch of 32 mixed prompts,
  and all evaluation prompts in one ``encode`` call (throughput);
* cosine of the student's embedding to the teacher's, per source;
* routing agreement: a route index is built from the config's utterances with *each* encoder
  (``build_route_index``), and every prompt is routed by the router itself
  (``Router.route(RouteQuery(text))``: rules, index search, ``route_votes``, thresholds,
  ambiguity margin, default route); the decisions' routes are compared. Prompts a rule decides
  never reach an encoder and are counted but left out of the agreement.

Prompts: the texts models/build_student.py holds out (``collect_texts``: ~10 % of MMLU and the
chat/FAQ prompts, 25 % of the MT-Bench questions with their two-turn chats) and all of
tests/data/route_probes.yaml (never trained on).

Usage::

    python -m benchmarks.student                                   # models/minilm-l3-student-int8
    python -m benchmarks.student --student models/X --quick        # fewer timing rounds
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import statistics
import sys
import tempfile
from collections.abc import Sequence
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from benchmarks.prompts import default_data_dir
from benchmarks.static_tier import round_times
from semroute.config import Config, load_config
from semroute.encoder import Encoder, plain_model_dir
from semroute.policy import Policy
from semroute.route_index import build_route_index, load_route_index
from semroute.router import Router, RoutingState
from semroute.rules import RuleSet
from semroute.types import Decision, RouteQuery

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "models"))

from build_student import collect_texts, load_probes  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results"
DEFAULT_STUDENT = ROOT / "models" / "minilm-l3-student-int8"
SOURCES = ("chat", "mt_bench", "mmlu", "probes")
WILSON_Z = 1.645  # one-sided 95 %
TARGET_AGREEMENT = 0.97


def eval_prompts(data_dir: Path) -> list[tuple[str, str]]:
    """(source, text): the held-out texts of models/build_student.py plus every route probe."""
    _, held = collect_texts(data_dir)
    out = [(s, t) for s in ("chat", "mt_bench", "mmlu") for t in held[s]]
    seen = {t for _, t in out}
    out += [("probes", p) for p in load_probes() if p not in seen]
    return out


def wilson_lower(successes: int, n: int, z: float = WILSON_Z) -> float:
    if n == 0:
        return float("nan")
    p = successes / n
    centre = p + z * z / (2 * n)
    spread = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return (centre - spread) / (1 + z * z / n)


def router_for(config: Config, encoder: Encoder, workdir: Path) -> Router:
    """A Router over a route index built from the config's utterances with ``encoder``."""
    build_route_index(config, encoder, workdir)
    index = load_route_index(workdir, config, encoder)
    return Router(encoder, RoutingState(config, RuleSet(config.rules), index, Policy(config)))


def decisions(router: Router, texts: Sequence[str]) -> list[Decision]:
    return [router.route(RouteQuery(text=t)) for t in texts]


def speed(
    encoders: dict[str, Encoder], cases: dict[str, list[str]], rounds: int, min_s: float
) -> list[dict]:
    """Rounds interleaved (teacher, student, teacher, ...) so background load hits both alike."""
    rows = []
    for case, batch in cases.items():
        per: dict[str, list[float]] = {name: [] for name in encoders}
        for enc in encoders.values():
            enc.encode(batch)  # warm-up
        for _ in range(rounds):
            for name, enc in encoders.items():
                per[name] += round_times(lambda e=enc, b=batch: e.encode(b), len(batch), 1, min_s)
        teacher, student = (statistics.median(per[n]) for n in ("teacher", "student"))
        rows.append(
            {
                "case": case,
                "texts": len(batch),
                "teacher_us_per_query": round(teacher, 1),
                "student_us_per_query": round(student, 1),
                "teacher_queries_per_s": round(1e6 / teacher, 1),
                "student_queries_per_s": round(1e6 / student, 1),
                "speedup": round(teacher / student, 2),
                "speedup_per_round": [
                    round(t / s, 2) for t, s in zip(per["teacher"], per["student"], strict=True)
                ],
            }
        )
    return rows


def main(argv: Sequence[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--config", default=None, help="config file (default: configs/default.yaml)")
    ap.add_argument("--data-dir", type=Path, default=None, help="RouteLLM data (mmlu/, mt_bench/)")
    ap.add_argument("--student", type=Path, default=DEFAULT_STUDENT)
    ap.add_argument("--teacher", type=Path, default=None, help="default: the bundled encoder")
    ap.add_argument("--quick", action="store_true", help="fewer, shorter timing rounds")
    ap.add_argument("--out", type=Path, default=None, help="JSON path (default: results/)")
    ap.add_argument("--max-prompts", type=int, default=0, help="every n-th prompt (smoke test)")
    args = ap.parse_args(argv)

    config = load_config(args.config)
    enc = config.encoder
    kw = {"max_tokens": enc.max_tokens, "intra_op_threads": enc.intra_op_threads}
    teacher = Encoder(args.teacher or plain_model_dir(), **kw)
    student = Encoder(args.student, **kw)
    encoders = {"teacher": teacher, "student": student}
    prompts = eval_prompts(args.data_dir or default_data_dir())
    if args.max_prompts:
        prompts = prompts[:: max(1, len(prompts) // args.max_prompts)]
    sources = np.array([s for s, _ in prompts])
    texts = [t for _, t in prompts]
    print(f"teacher {teacher.id}, student {student.id}; {len(texts)} held-out prompts")

    # --- speed
    rng = np.random.default_rng(0)
    short = next(t for s, t in prompts if s == "chat" and 30 <= len(t) <= 60)
    mmlu_q = next(t for s, t in prompts if s == "mmlu" and 300 <= len(t) <= 600)
    long_t = max((t for s, t in prompts if s == "mt_bench"), key=teacher.count_tokens)
    batch = [texts[i] for i in rng.choice(len(texts), 32, replace=False)]
    ntok = lambda t: min(teacher.count_tokens(t), teacher.max_tokens)  # noqa: E731
    cases = {
        f"single short chat ({ntok(short)} tokens)": [short],
        f"single MMLU ({ntok(mmlu_q)} tokens)": [mmlu_q],
        f"single long MT-Bench chat ({ntok(long_t)} tokens, truncated)": [long_t],
        "batch of 32 mixed prompts": batch,
        f"all {len(texts)} prompts in one call": texts,
    }
    rounds, min_s = (3, 0.3) if args.quick else (5, 0.6)
    timing = speed(encoders, cases, rounds, min_s)

    # --- cosine
    t_emb, s_emb = teacher.encode(texts), student.encode(texts)
    cos = (t_emb * s_emb).sum(1)

    def cos_stats(mask: np.ndarray) -> dict:
        c = cos[mask]
        return {
            "n": int(mask.sum()),
            "mean": round(float(c.mean()), 4),
            "p05": round(float(np.quantile(c, 0.05)), 4),
            "min": round(float(c.min()), 4),
        }

    cosine = {"all": cos_stats(np.ones(len(cos), bool))}
    cosine.update({s: cos_stats(sources == s) for s in SOURCES})

    # --- routing agreement through the router itself
    with tempfile.TemporaryDirectory() as tmp:
        t_router = router_for(config, teacher, Path(tmp) / "teacher")
        s_router = router_for(config, student, Path(tmp) / "student")
        t_dec, s_dec = decisions(t_router, texts), decisions(s_router, texts)
    ruled = np.array([d.rule != "" for d in t_dec])
    assert all((a.rule != "") == r for a, r in zip(s_dec, ruled, strict=True))
    same_route = np.array([a.route == b.route for a, b in zip(t_dec, s_dec, strict=True)])
    same_model = np.array([a.model == b.model for a, b in zip(t_dec, s_dec, strict=True)])
    enc_mask = ~ruled

    def agreement(mask: np.ndarray) -> dict:
        n, k = int(mask.sum()), int(same_route[mask].sum())
        return {
            "n": n,
            "route_agreement": round(k / n, 4) if n else None,
            "wilson_lower_95": round(wilson_lower(k, n), 4) if n else None,
            "model_agreement": round(float(same_model[mask].mean()), 4) if n else None,
            "teacher_default_route_share": round(
                float(
                    np.mean(
                        [
                            t_dec[i].route == config.policy.default_route
                            for i in np.flatnonzero(mask)
                        ]
                    )
                ),
                4,
            )
            if n
            else None,
        }

    routing = {"all": agreement(enc_mask)}
    routing.update({s: agreement(enc_mask & (sources == s)) for s in SOURCES})
    flips: dict[str, int] = {}
    for i in np.flatnonzero(enc_mask & ~same_route):
        key = f"{t_dec[i].route} -> {s_dec[i].route}"
        flips[key] = flips.get(key, 0) + 1
    disagreements = [
        {
            "source": str(sources[i]),
            "teacher": t_dec[i].route,
            "student": s_dec[i].route,
            "text": texts[i][:120],
        }
        for i in np.flatnonzero(enc_mask & ~same_route)
        if sources[i] in ("probes", "chat", "mt_bench")
    ]

    result = {
        "benchmark": "student",
        "when": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "host": {
            "platform": platform.platform(),
            "cpus": os.cpu_count(),
            "loadavg_1m_start_end": None,
        },
        "teacher": {"id": teacher.id, "dir": _rel(teacher.model_dir)},
        "student": {
            "id": student.id,
            "dir": _rel(student.model_dir),
        },
        "settings": {**kw, "rounds": rounds, "min_s": min_s},
        "prompts": {s: int((sources == s).sum()) for s in SOURCES},
        "rule_decided_prompts": int(ruled.sum()),
        "speed": timing,
        "cosine_to_teacher": cosine,
        "routing_agreement": routing,
        "route_flips": dict(sorted(flips.items(), key=lambda kv: -kv[1])),
        "disagreements_non_mmlu": disagreements,
        "meets_target": bool(routing["all"]["route_agreement"] >= TARGET_AGREEMENT),
        "target_agreement": TARGET_AGREEMENT,
    }
    _print(result)
    out = args.out or RESULTS / f"student-{datetime.now(timezone.utc):%Y%m%dT%H%M%S}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2, ensure_ascii=False) + "\n")
    print(f"wrote {out}")
    return result


def _rel(path: str | Path) -> str:
    p = Path(path).resolve()
    return str(p.relative_to(ROOT)) if p.is_relative_to(ROOT) else str(p)


def _print(r: dict) -> None:
    print(f"\n{r['teacher']['id']} (teacher) vs {r['student']['id']} (student)")
    print("\n| case | teacher µs/query | student µs/query | teacher q/s | student q/s | speed-up |")
    print("|---|---|---|---|---|---|")
    for row in r["speed"]:
        print(
            f"| {row['case']} | {row['teacher_us_per_query']:,.0f} | "
            f"{row['student_us_per_query']:,.0f} | {row['teacher_queries_per_s']:,.0f} | "
            f"{row['student_queries_per_s']:,.0f} | {row['speedup']:.2f}× |"
        )
    print(
        "\n| source | prompts (to encoder) | cosine mean | cosine p05 | route agreement | "
        "Wilson 95 % lower | model agreement | teacher → default |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for s in ("all", *SOURCES):
        c, a = r["cosine_to_teacher"][s], r["routing_agreement"][s]
        print(
            f"| {s} | {a['n']} | {c['mean']:.4f} | {c['p05']:.4f} | {a['route_agreement']:.4f} | "
            f"{a['wilson_lower_95']:.4f} | {a['model_agreement']:.4f} | "
            f"{a['teacher_default_route_share']:.3f} |"
        )
    print(f"\nrule-decided (left out): {r['rule_decided_prompts']}; flips: {r['route_flips']}")


if __name__ == "__main__":
    main()
