"""``semroute train``, ``semroute calibrate`` and ``semroute eval``.

The integrator's ``semroute/cli.py`` calls :func:`register`; ``python -m semroute.quality.cli``
runs the same subcommands standalone.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

DEFAULT_BUNDLE = Path("var/bundles/learned")


def _common_data(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--data", required=True, help="labelled CSV / JSONL / directory of CSVs / MT-Bench dir"
    )
    p.add_argument("--models", help="comma-separated score columns (exact or unique substring)")
    p.add_argument(
        "--price",
        action="append",
        default=[],
        metavar="MODEL=USD_PER_MTOK",
        help="model price per million tokens (repeatable)",
    )
    p.add_argument("--config", help="take prices from this YAML config's model pool")
    p.add_argument(
        "--exclude",
        action="append",
        default=[],
        metavar="FILE",
        help="drop the prompts listed in FILE (repeatable; JSONL eval_prompt/prompt or lines)",
    )
    p.add_argument(
        "--prompt-column", default="prompt", help="prompt column / key (default: prompt)"
    )
    p.add_argument(
        "--score-scale",
        choices=["auto", "unit", "judge10"],
        default="auto",
        help="unit: 0/1 or [0,1]; judge10: 1-10 judge scores (default: auto)",
    )
    p.add_argument(
        "--mt-bench-turns",
        choices=["all", "1"],
        default="all",
        help="MT-Bench label: mean judge score over all turns or turn 1 only",
    )


def _common_model(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model-dir", help="encoder model dir (default: the bundled encoder)")
    p.add_argument(
        "--max-tokens",
        type=int,
        help="encoder truncation; default: the serving config's encoder.max_tokens "
        "(--config or the default config), so training embeds prompts as the server will",
    )
    p.add_argument("--cache-dir", default="var/cache", help="embedding cache (default: var/cache)")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--no-progress", action="store_true", help="no progress bars")


def _common_fit(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--inner-folds", type=int, help="inner CV folds (default: 5 below 2000 prompts, else 3)"
    )
    p.add_argument("--no-text", action="store_true", help="do not consider the word n-gram head")
    p.add_argument("--seed", type=int, default=0)


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "train", help="train a learned quality-routing bundle from labelled prompts"
    )
    _common_data(p)
    _common_model(p)
    _common_fit(p)
    p.add_argument(
        "--out", default=str(DEFAULT_BUNDLE), help=f"bundle dir (default: {DEFAULT_BUNDLE})"
    )
    p.add_argument(
        "--eval-json", help="a `semroute eval --out-json` summary to record in the manifest"
    )
    p.set_defaults(func=cmd_train)

    p = subparsers.add_parser(
        "calibrate", help="set the routing threshold for a share of strong-model traffic"
    )
    p.add_argument("--bundle", default=str(DEFAULT_BUNDLE), help="learned bundle to calibrate")
    p.add_argument(
        "--prompts",
        required=True,
        help="sample of real prompts: CSV/JSONL with a prompt column, or text lines",
    )
    p.add_argument(
        "--strong-share",
        type=float,
        required=True,
        help="share of requests to send to a model other than the cheapest (0-1)",
    )
    p.add_argument("--prompt-column", default="prompt")
    _common_model(p)
    p.set_defaults(func=cmd_calibrate)

    p = subparsers.add_parser(
        "eval", help="cross-validated routing quality beside kNN, random and oracle"
    )
    _common_data(p)
    _common_model(p)
    _common_fit(p)
    p.add_argument("--folds", default="5", help="k for k-fold CV, or 'loo' (default: 5)")
    p.add_argument("--test", help="held-out labelled file instead of k-fold (same models)")
    p.add_argument(
        "--router",
        choices=["learned", "knn", "random"],
        default="learned",
        help="router to evaluate (default: learned)",
    )
    p.add_argument(
        "--random-seeds", type=int, default=100, help="seeds for the random router (>= 10)"
    )
    p.add_argument("--out-json", help="write the summary JSON here")
    p.add_argument("--out-png", help="write the curves plot here")
    p.add_argument("--name", default="", help="title for the plot")
    p.add_argument("--gate", help="gate YAML: exit 1 when the evaluation fails it")
    p.set_defaults(func=cmd_eval)


# ---------------------------------------------------------------------------------------------


def _served_max_tokens(args: argparse.Namespace) -> int | None:
    if args.max_tokens:
        return int(args.max_tokens)
    try:
        from semroute.config import load_config

        return int(load_config(getattr(args, "config", None)).encoder.max_tokens)
    except Exception:  # no usable serving config: the encoder's own default
        return None


def _encoder(args: argparse.Namespace) -> Any:
    from semroute.encoder import Encoder, default_model_dir

    model_dir = Path(args.model_dir) if args.model_dir else default_model_dir()
    return Encoder(model_dir, device="cpu", max_tokens=_served_max_tokens(args))


def _load(args: argparse.Namespace, path: str) -> Any:
    from semroute.quality.datasets import load_dataset

    models = [m for m in args.models.split(",") if m.strip()] if args.models else None
    return load_dataset(
        path,
        models,
        prompt_column=args.prompt_column,
        scale=args.score_scale,
        exclude=args.exclude,
        mt_bench_turns=args.mt_bench_turns,
    )


def _prices(args: argparse.Namespace, models: list[str]) -> dict[str, float]:
    from semroute.quality.datasets import parse_prices, prices_from_config, resolve_prices

    raw: dict[str, float] = {}
    if args.config:
        raw |= prices_from_config(args.config)
    raw |= parse_prices(args.price)
    prices = resolve_prices(raw, models)
    missing = [m for m in models if m not in prices]
    if missing:
        raise SystemExit(
            f"semroute: no price for {', '.join(missing)}: pass --price MODEL=USD_PER_MTOK "
            "or --config with the model pool"
        )
    return prices


def _embed(
    args: argparse.Namespace, encoder: Any, prompts: list[str], desc: str
) -> tuple[np.ndarray, np.ndarray]:
    from semroute.quality.embed import embed_prompts

    return embed_prompts(
        encoder,
        prompts,
        cache_dir=Path(args.cache_dir) if args.cache_dir else None,
        batch_size=args.batch_size,
        progress=not args.no_progress,
        desc=desc,
    )


def cmd_train(args: argparse.Namespace) -> int:
    from semroute.quality import train

    ds = _load(args, args.data)
    prices = _prices(args, ds.models)
    enc = _encoder(args)
    emb, tokens = _embed(args, enc, ds.prompts, "embedding")
    price_vec = train.model_prices(ds.models, prices)
    t0 = time.perf_counter()
    fitted = train.fit(
        ds,
        emb,
        tokens,
        price_vec,
        inner_folds=args.inner_folds,
        seed=args.seed,
        use_text=not args.no_text,
        progress=not args.no_progress,
    )
    manifest = train.write_learned_bundle(
        Path(args.out),
        fitted,
        ds,
        tokens,
        prices,
        encoder_id=enc.id,
        dim=enc.dim,
        data_source=str(args.data),
        encoder_max_tokens=int(enc.max_tokens),
        eval_summary=_eval_figures(args.eval_json) if args.eval_json else None,
    )
    h = fitted.hyper
    print(
        f"trained {manifest['version']} on {len(ds)} prompts x {len(ds.models)} models in "
        f"{time.perf_counter() - t0:.1f}s -> {args.out}\n"
        f"  kNN k={h.k} power={h.power:g}; blend knn={h.w_knn:.2f} emb_head={h.w_emb:.2f} "
        f"text_head={h.w_text:.2f}; inner-CV objective {fitted.search['best_objective']:.4f}"
    )
    return 0


def _eval_figures(path: str) -> dict[str, Any]:
    """Headline figures of an evaluation summary, for the bundle manifest."""
    from semroute.quality.gate import flatten

    summary = json.loads(Path(path).read_text())
    figures = flatten(summary)
    keep = ("apgr", "cpt50", "cpt80", "pgr80.cost_saved", "area")
    return {
        "source": path,
        "protocol": summary.get("protocol", {}),
        "n": summary.get("n"),
        "figures": {k: v for k, v in figures.items() if k.endswith(keep)},
    }


def _read_prompts(path: str, column: str) -> list[str]:
    p = Path(path)
    if p.is_dir() or p.suffix.lower() == ".csv":
        files = sorted(p.glob("*.csv")) if p.is_dir() else [p]
        out: list[str] = []
        csv.field_size_limit(2**31 - 1)
        for f in files:
            with f.open(newline="", encoding="utf-8") as fh:
                out += [r[column] for r in csv.DictReader(fh)]
        return out
    lines = [x for x in p.read_text(encoding="utf-8").splitlines() if x.strip()]
    if p.suffix.lower() in {".jsonl", ".ndjson"}:
        out = []
        for x in lines:
            o = json.loads(x)
            if isinstance(o, str):
                out.append(o)
            elif column in o:
                out.append(str(o[column]))
            elif "turns" in o:  # MT-Bench / FastChat question files
                out.append(str(o["turns"][0]))
            else:
                out.append(str(o.get("text", o.get("eval_prompt", ""))))
        return out
    return lines


def cmd_calibrate(args: argparse.Namespace) -> int:
    from semroute.predictor import QualityPredictor
    from semroute.quality.calibrate import traffic_calibration, update_manifest_calibration

    if not 0.0 <= args.strong_share <= 1.0:
        raise SystemExit("semroute: --strong-share must be within 0-1")
    enc = _encoder(args)
    pred = QualityPredictor.for_encoder(args.bundle, enc)
    prompts = _read_prompts(args.prompts, args.prompt_column)
    if not prompts:
        raise SystemExit(f"semroute: no prompts in {args.prompts}")
    emb, _ = _embed(args, enc, prompts, "embedding sample")
    q = pred.predict(emb, prompts if pred.uses_text else None)
    prices = np.array([pred.prices[m] for m in pred.models])
    cal = dict(pred.manifest.get("calibration", {}))
    knob_rows = [dict(r) for r in cal.get("knob_table", [])]
    cal["traffic"] = traffic_calibration(q, prices, args.strong_share, knob_rows, str(args.prompts))
    cal["knob_table"] = knob_rows
    update_manifest_calibration(Path(args.bundle), cal)
    t = cal["traffic"]
    share, target = 100 * t["achieved_share"], 100 * args.strong_share
    print(
        f"calibrated {pred.version} on {len(prompts)} prompts: tolerance {t['tolerance']:.4f}"
        f" sends {share:.1f}% to the pricier model(s) (target {target:.1f}%);"
        f" equivalent knob {t['equivalent_knob']}"
    )
    return 0


def cmd_eval(args: argparse.Namespace) -> int:
    from semroute.quality import evaluate
    from semroute.quality.datasets import grouped_folds

    if args.random_seeds < 10:
        raise SystemExit("semroute: --random-seeds must be at least 10")
    ds = _load(args, args.data)
    prices = _prices(args, ds.models)
    price_vec = np.array([prices[m] for m in ds.models])
    enc = _encoder(args)
    emb, tokens = _embed(args, enc, ds.prompts, "embedding")
    progress = not args.no_progress
    common = dict(
        router=args.router,
        seed=args.seed,
        inner_folds=args.inner_folds,
        use_text=not args.no_text,
        progress=progress,
    )
    t0 = time.perf_counter()
    if args.test:
        test = _load(args, args.test).select_models(ds.models)
        test_emb, test_tokens = _embed(args, enc, test.prompts, "embedding test")
        preds = evaluate.holdout(ds, emb, tokens, test, test_emb, price_vec, **common)
        protocol = {"description": f"train on {args.data}, test on {args.test}", "test": args.test}
        eval_ds, eval_tokens = test, test_tokens
    else:
        k = len(set(p.strip() for p in ds.prompts)) if args.folds == "loo" else int(args.folds)
        folds = grouped_folds(ds.prompts, k, seed=args.seed)
        preds = evaluate.cross_validate(ds, emb, tokens, price_vec, folds, **common)
        desc = "leave-one-out" if args.folds == "loo" else f"{k}-fold CV"
        protocol = {"description": f"{desc} (inner CV for hyper-parameters)", "folds": k}
        eval_ds, eval_tokens = ds, tokens
    protocol |= {
        "seed": args.seed,
        "data": args.data,
        "exclude": args.exclude,
        "encoder_id": enc.id,
        "encoder_max_tokens": int(enc.max_tokens),
        "seconds": round(time.perf_counter() - t0, 1),
    }
    summary = evaluate.summarize(
        eval_ds,
        eval_tokens,
        prices,
        preds,
        protocol=protocol,
        router_name=args.router,
        random_seeds=args.random_seeds,
        seed=args.seed,
    )
    summary["table"] = evaluate.text_table(summary)
    print(summary["table"])
    if args.out_json:
        Path(args.out_json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out_json).write_text(json.dumps(summary, indent=1) + "\n")
    if args.out_png:
        from semroute.quality.plot import plot_summary

        plot_summary(summary, args.out_png, title=args.name)
    if args.gate:
        from semroute.quality.gate import run_gate

        ok, report = run_gate(summary, args.gate)
        print(report)
        return 0 if ok else 1
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="semroute-quality", description=__doc__)
    register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    return int(args.func(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
