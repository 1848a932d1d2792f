#!/usr/bin/env python3
"""Leave-sources-out route accuracy of the classifier recipe, beside the utterance matcher.

Why: accuracy on prompts from the sources a model trained on flatters it (templates, phrasing,
topics leak). Here each fold trains models/build_classifier.py's recipe *without* a group of
sources and scores it on exactly those sources, so every external source is scored by a model
that never saw it. Folds leave out 3-4 sources at once (7 folds instead of 22, each still
keeping other sources of every route): a stricter test than one source at a time, reported as
"leave-sources-out". MT-Bench is never trained on and is scored by every fold.

The baseline is today's utterance matcher (``--baseline-config``: the route index over the
config's utterances, bundled encoder) on the same prompts.

    python models/eval_loso.py --out benchmarks/results/route-loso-$(date -u +%Y%m%dT%H%M%S).json
"""

from __future__ import annotations

import argparse
import json
import platform
import random
import sys
import time
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "models"))

import build_classifier as bc  # noqa: E402
from route_corpus import EVAL_ONLY_SOURCES, ROUTES, Example  # noqa: E402

from semroute.encoder.variants import cpu_signature  # noqa: E402
from semroute.route_eval import LabelledPrompt, route_metrics  # noqa: E402

FOLDS: tuple[tuple[str, ...], ...] = (
    ("clinc150", "humanevalfix", "squality"),
    ("banking77", "mbpp", "theoremqa"),
    ("hwu64", "legalbench", "strategyqa"),
    ("xsid", "math_competition", "natural_instructions"),
    ("xquad", "humaneval", "bbh", "hh_rlhf"),
    ("medquad", "humanevalpack", "qmsum"),
    ("mmlu", "svamp", "aqua_rat"),
)
EVAL_PER_KEY = 250  # scored prompts per (source, route), sampled by group


def eval_items(examples: Sequence[Example], sources: set[str], seed: int) -> list[Example]:
    """Up to EVAL_PER_KEY prompts per (source, route) of ``sources``, one per group first."""
    by_key: dict[tuple[str, str], dict[str, list[Example]]] = defaultdict(lambda: defaultdict(list))
    for e in examples:
        if e.source in sources:
            by_key[(e.source, e.route)][e.group].append(e)
    out: list[Example] = []
    for key in sorted(by_key):
        groups = sorted(by_key[key].values(), key=lambda g: g[0].group)
        rng = random.Random(f"{seed}:{key}")
        rng.shuffle(groups)
        out += [rng.choice(g) for g in groups[:EVAL_PER_KEY]]
    return out


def summarise(items: Sequence[Example], predicted: Sequence[str], price=None) -> dict:
    """Per source (accepting alternatives and strict), macro over sources, overall metrics."""
    per_source = {}
    for source in sorted({e.source for e in items}):
        idx = [i for i, e in enumerate(items) if e.source == source]
        ok = [items[i].accepts(predicted[i]) for i in idx]
        strict = [items[i].route == predicted[i] for i in idx]
        per_source[source] = {
            "n": len(idx),
            "accuracy": round(float(np.mean(ok)), 4),
            "strict": round(float(np.mean(strict)), 4),
        }
    external = [s for s in per_source if s not in EVAL_ONLY_SOURCES]
    labelled = [LabelledPrompt(e.text, e.route, e.also) for e in items]
    return {
        "macro_accuracy": round(float(np.mean([per_source[s]["accuracy"] for s in external])), 4),
        "macro_strict": round(float(np.mean([per_source[s]["strict"] for s in external])), 4),
        "per_source": per_source,
        "overall": route_metrics(labelled, predicted, price),
    }


def by_lang(items: Sequence[Example], predicted: Sequence[str]) -> dict:
    out = {}
    for lang in sorted({e.lang for e in items}):
        ok = [e.accepts(p) for e, p in zip(items, predicted, strict=True) if e.lang == lang]
        out[lang] = {"n": len(ok), "accuracy": round(float(np.mean(ok)), 4)}
    return out


def baseline(items: Sequence[Example], config_path: Path) -> tuple[list[str], object]:
    """The utterance matcher's routes for ``items`` (in-process, the serving Router)."""
    from semroute.cli import _ensure_default_index
    from semroute.config import load_config
    from semroute.route_eval import route_prices
    from semroute.server.app import load_router
    from semroute.types import RouteQuery

    config = load_config(str(config_path))
    _ensure_default_index(config)
    router = load_router(config)
    t0 = time.perf_counter()
    routes = [router.route(RouteQuery(text=e.text)).route for e in items]
    print(f"baseline: {len(items)} prompts in {time.perf_counter() - t0:.0f} s", flush=True)
    return routes, route_prices(router.state.policy, config)


def save_teacher(
    path: Path,
    model: object,
    cache: bc.LowerCache,
    examples: Sequence[Example],
    temperature: float,
    held: Sequence[str],
) -> None:
    """A fold model's calibrated route probabilities on the texts it trained on."""
    texts = sorted({e.text for e in examples})
    _, logits = bc.predict(model, cache, texts)
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(
        path,
        texts=np.array(texts, dtype=object),
        probs=bc.softmax(logits / temperature).astype(np.float32),
        routes=np.array(ROUTES),
        held_out=np.array(list(held)),
    )


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--out", type=Path, required=True, help="result JSON")
    ap.add_argument("--baseline-config", type=Path, default=ROOT / "configs" / "utterances.yaml")
    ap.add_argument("--folds", default="", help="comma-separated fold numbers (default: all)")
    ap.add_argument("--skip-baseline", action="store_true")
    ap.add_argument(
        "--export-out",
        type=Path,
        help="first train on every source and export the model here (build_classifier.py's "
        "output, sharing this run's cached lower layers)",
    )
    ap.add_argument("--version", default=time.strftime("%Y%m%d"), help="with --export-out")
    ap.add_argument(
        "--fp32-out",
        type=Path,
        help="with --export-out: also keep the fp32 graph here (for models/build_variants.py)",
    )
    ap.add_argument("--fold-steps", type=int, default=300, help="training steps per fold")
    ap.add_argument(
        "--lower-cache", type=Path, help="keep the frozen lower layers' output here between runs"
    )
    ap.add_argument(
        "--teacher-out",
        type=Path,
        help="write each fold model's calibrated probabilities on its own training and "
        "validation texts here (fold-K.npz): distillation targets that never saw the fold's "
        "held-out sources (models/build_static_head.py --teachers)",
    )
    bc.add_training_args(ap)
    args = ap.parse_args(argv)
    started = time.perf_counter()

    examples = bc.collect(args.shared, args.seed, args.russian_supplement)
    folds = [FOLDS[int(i)] for i in args.folds.split(",")] if args.folds else list(FOLDS)
    src, cfg, weights, tok, cache = bc.setup(args)
    # Every text any fold trains on or scores, in one pass of the frozen lower layers.
    all_train, all_val = bc.split(examples, set(), args.seed)
    texts = {e.text for e in all_train} | {e.text for e in all_val}
    for held in folds:
        texts |= {
            e.text for e in eval_items(examples, set(held) | set(EVAL_ONLY_SOURCES), args.seed)
        }
    if args.lower_cache:
        cache.load(args.lower_cache)
    cache.fill(sorted(texts))
    if args.lower_cache:
        cache.save(args.lower_cache)
    if args.export_out:
        model, temperature, val_acc, report = bc.fit(all_train, all_val, cache, args, weights, cfg)
        meta = bc.export_meta(args, src, all_train, all_val, temperature, val_acc, report, started)
        tokenizer_json = bc.plain_model_dir() / "tokenizer.json"
        bc.export(model, cfg, tok, args.export_out, tokenizer_json, meta, args.fp32_out)
    args.steps = args.fold_steps
    predicted: dict[int, str] = {}
    probs_all: list[np.ndarray] = []
    items_all: list[Example] = []
    fold_reports = []
    for k, held in enumerate(folds):
        t0 = time.perf_counter()
        train_set, val_set = bc.split(examples, set(held), args.seed)
        if args.limit:
            train_set, val_set = train_set[: args.limit], val_set[: max(16, args.limit // 4)]
        items = eval_items(examples, set(held) | set(EVAL_ONLY_SOURCES), args.seed)
        print(f"fold {k}: held out {held}; train {len(train_set)}; scored {len(items)}", flush=True)
        model, temperature, val_acc, _ = bc.fit(train_set, val_set, cache, args, weights, cfg)
        if args.teacher_out:
            save_teacher(args.teacher_out / f"fold-{FOLDS.index(held)}.npz", model, cache,
                         [*train_set, *val_set], temperature, held)  # fmt: skip
        _, logits = bc.predict(model, cache, [e.text for e in items])
        routes = [ROUTES[i] for i in logits.argmax(1)]
        probs = bc.softmax(logits / temperature)
        for e, r, p in zip(items, routes, probs, strict=True):
            if e.source not in EVAL_ONLY_SOURCES:
                probs_all.append(p)
                items_all.append(e)
                predicted[len(items_all) - 1] = r
        mt_items = [e for e in items if e.source in EVAL_ONLY_SOURCES]
        fold_reports.append(
            {
                "held_out": list(held),
                "train_examples": len(train_set),
                "val_accuracy_in_source": round(val_acc, 4),
                "temperature": round(temperature, 3),
                "scores": summarise(
                    [e for e in items if e.source not in EVAL_ONLY_SOURCES],
                    [
                        r
                        for e, r in zip(items, routes, strict=True)
                        if e.source not in EVAL_ONLY_SOURCES
                    ],
                )["per_source"],
                "mt_bench": summarise(
                    mt_items,
                    [
                        r
                        for e, r in zip(items, routes, strict=True)
                        if e.source in EVAL_ONLY_SOURCES
                    ],
                )["per_source"],
                "seconds": round(time.perf_counter() - t0, 1),
            }
        )
        print(json.dumps(fold_reports[-1]), flush=True)
    preds = [predicted[i] for i in range(len(items_all))]
    result = {
        "what": "leave-sources-out accuracy: each source scored by a model never trained on it",
        "cpu": cpu_signature(),
        "python": platform.python_version(),
        "args": {k: str(v) for k, v in vars(args).items()},
        "folds": fold_reports,
        "classifier": summarise(items_all, preds) | {"by_lang": by_lang(items_all, preds)},
        "wall_seconds": None,
    }
    if not args.skip_baseline:
        base_routes, price = baseline(items_all, args.baseline_config)
        result["utterance_matcher"] = summarise(items_all, base_routes, price) | {
            "by_lang": by_lang(items_all, base_routes)
        }
        result["classifier"] = summarise(items_all, preds, price) | {
            "by_lang": by_lang(items_all, preds)
        }
    result["wall_seconds"] = round(time.perf_counter() - started, 1)
    # Calibrated probabilities per scored prompt, for choosing classifier.min_confidence and
    # tie_margin out of source (models/calibrate_classifier.py).
    np.savez_compressed(
        args.out.with_suffix(".probs.npz"),
        probs=np.stack(probs_all).astype(np.float32),
        routes=np.array(ROUTES),
        label=np.array([e.route for e in items_all]),
        also=np.array(["|".join(e.also) for e in items_all]),
        source=np.array([e.source for e in items_all]),
        lang=np.array([e.lang for e in items_all]),
    )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1) + "\n")
    c = result["classifier"]
    print(f"classifier macro accuracy {c['macro_accuracy']} (strict {c['macro_strict']})")
    if "utterance_matcher" in result:
        u = result["utterance_matcher"]
        print(
            f"utterance matcher macro accuracy {u['macro_accuracy']} (strict {u['macro_strict']})"
        )
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
