#!/usr/bin/env python3
"""Fine-tune all-MiniLM-L6-v2 into semroute's route classifier and ship it as one int8 ONNX graph.

Why: matching prompts against a few hand-written utterances sent only 27% of real outside
prompts to an acceptable route. A classifier trained on thousands of labelled public prompts
(models/route_corpus.py), plus team-written templates for the routes the corpus lacks
(models/route_synthetic.py) and the default config's utterances, recognises the task instead.

One backbone, two outputs: the graph returns ``sentence_embedding`` (mean-pooled, L2-normalised,
as before, so FAISS, the similar-prompt cache and the response cache keep working) and
``route_logits`` (a linear head on that embedding). Fine-tuning for classification alone would
collapse the embedding space (every coding prompt on one point, which the response cache would
then treat as the same prompt), so the loss keeps each embedding close to the original model's:
``CE(route) + emb_weight * (1 - cos(embedding, original embedding))``.

Steps: collect and split data (by group, so near-duplicates never straddle a split) → original
embeddings of the training texts (the bundled int8 encoder, cached) → AdamW fine-tune (torch, CPU,
deterministic) → temperature fitted on the in-source validation split → export through
build_encoder.py's graph writer plus a ``Gemm`` head → parity check against torch → int8
(MatMulNBits, the bundled encoder's scheme: same backbone, same cost) → encoder.json with the
route list, temperature, data hashes, seed and wall time.

Usage (torch is build-time only: ``pip install -e '.[train]'`` takes the CPU wheel)::

    python models/build_classifier.py --out models/minilm-l6-routes-int8

Leave-sources-out evaluation of the same recipe: models/eval_loso.py.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import sys
import tempfile
import time
from collections import Counter, defaultdict
from collections.abc import Sequence
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "models"))

from build_encoder import (  # noqa: E402
    MAX_TOKENS,
    MODEL_LICENSE,
    ORIGINAL_MODEL,
    REFERENCE_SENTENCES,
    SOURCE_DIST,
    BertConfig,
    build_fp32_model,
    load_weights,
    locate_source,
    make_session,
    quantize_blockwise_int8,
    source_version,
)
from build_student import batches, make_torch_student  # noqa: E402
from route_corpus import EVAL_ONLY_SOURCES, ROUTES, Example, load_all  # noqa: E402

from semroute.bundle import sha256_file  # noqa: E402
from semroute.encoder import plain_model_dir  # noqa: E402
from semroute.encoder.route_head import HEAD_FILE  # noqa: E402
from semroute.encoder.tokenize import TextTokenizer  # noqa: E402

CONFIG = ROOT / "configs" / "default.yaml"
# The default config's encoder.max_tokens: train on exactly what serving will see.
TRAIN_MAX_TOKENS = 128
SEED = 20261201
BLOCK_SIZE = 64
LOGITS = "route_logits"
EMBEDDING = "sentence_embedding"
# Per (source, route) and per route caps on training examples: the intent sets have tens of
# thousands of short utterances and would otherwise drown the rest.
CAP_SOURCE_ROUTE = 600
CAP_ROUTE = 2000
VAL_SHARE = 0.08  # of groups per source, held out in source for calibration and early checks


def _hash01(key: str) -> float:
    return int(hashlib.blake2b(key.encode(), digest_size=8).hexdigest(), 16) / 2**64


def load_utterances(config: Path = CONFIG) -> list[Example]:
    import yaml

    routes = yaml.safe_load(config.read_text())["routes"]
    return [
        Example(u, r["name"], "semroute_utterances", f"utt:{r['name']}:{i}")
        for r in routes
        for i, u in enumerate(r.get("utterances") or [])
        if r["name"] in ROUTES
    ]


def load_synthetic(seed: int, russian_supplement: bool = False) -> list[Example]:
    from route_synthetic import synthetic_prompts

    return [
        Example(p["prompt"], p["route"], "semroute_synthetic", f"syn:{p['template']}", p["lang"])
        for p in synthetic_prompts(seed, russian_supplement=russian_supplement)
    ]


def noise_examples(seed: int, n: int = 400) -> list[Example]:
    """Keyboard mash, random tokens and encoded blobs, labelled with the default route.

    Without them the classifier, which has only ever seen real requests, is confidently
    wrong on noise ("zxq vlorp 8812 qqq" went to faq_lookup at 0.93); noise should take the
    default route like any prompt nothing recognises.
    """
    rng = random.Random(f"{seed}:noise")
    letters, digits = "abcdefghijklmnopqrstuvwxyz", "0123456789"
    punct = "!?.,;:-_/#@*&%$"
    b64 = letters + letters.upper() + digits + "+/"
    out = []
    for i in range(n):
        kind = i % 4
        if kind == 0:  # pseudo-words
            words = [
                "".join(rng.choice(letters) for _ in range(rng.randint(2, 8)))
                for _ in range(rng.randint(1, 8))
            ]
            text = " ".join(words)
        elif kind == 1:  # mash with digits and punctuation
            pool = letters + digits + punct + "   "
            text = "".join(rng.choice(pool) for _ in range(rng.randint(3, 40)))
        elif kind == 2:  # an encoded blob
            text = "".join(rng.choice(b64) for _ in range(rng.randint(16, 120)))
        else:  # numbers and symbols only
            pool = digits + punct + " "
            text = "".join(rng.choice(pool) for _ in range(rng.randint(2, 30)))
        text = text.strip() or "?"
        out.append(Example(text, "general", "semroute_noise", f"noise:{i}"))
    return out


def collect(shared: Path, seed: int, russian_supplement: bool = False) -> list[Example]:
    """All examples: external sources, our templates and noise, the config's utterances."""
    synthetic = load_synthetic(seed, russian_supplement)
    return load_all(shared) + synthetic + noise_examples(seed) + load_utterances()


def read_examples(path: Path) -> list[Example]:
    """Examples from JSONL lines ``{"prompt", "route"[, "source"]}`` (tests, custom data)."""
    out = []
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if line.strip():
            row = json.loads(line)
            if row["route"] not in ROUTES:
                raise SystemExit(f"{path}:{n}: unknown route {row['route']!r}")
            source = row.get("source", path.stem)
            out.append(Example(row["prompt"], row["route"], source, f"{source}:{n}"))
    return out


def split(
    examples: Sequence[Example], holdout: set[str], seed: int
) -> tuple[list[Example], list[Example]]:
    """(train, in-source validation), capped; ``holdout`` sources and eval-only ones excluded."""
    by_key: dict[tuple[str, str], list[Example]] = defaultdict(list)
    val: list[Example] = []
    for e in examples:
        if e.source in holdout or e.source in EVAL_ONLY_SOURCES:
            continue
        if _hash01(f"{seed}:{e.group}") < VAL_SHARE:
            val.append(e)
        else:
            by_key[(e.source, e.route)].append(e)
    # One generator per key: a (source, route)'s sample does not depend on which other sources
    # a leave-one-source-out fold dropped, so folds share cached work.
    per_route: dict[str, list[Example]] = defaultdict(list)
    for (source, route), items in sorted(by_key.items()):
        random.Random(f"{seed}:{source}:{route}").shuffle(items)
        per_route[route] += items[:CAP_SOURCE_ROUTE]
    train: list[Example] = []
    for route in sorted(per_route):
        items = per_route[route]
        random.Random(f"{seed}:{route}").shuffle(items)
        train += items[:CAP_ROUTE]
    random.Random(seed).shuffle(train)
    return train, _cap_val(val, random.Random(seed))


def _cap_val(val: list[Example], rng: random.Random, per_key: int = 60) -> list[Example]:
    groups: dict[tuple[str, str], list[Example]] = defaultdict(list)
    for e in val:
        groups[(e.source, e.route)].append(e)
    out: list[Example] = []
    for key in sorted(groups):
        items = groups[key]
        rng.shuffle(items)
        out += items[:per_key]
    return out


def data_digest(examples: Sequence[Example]) -> str:
    h = hashlib.sha256()
    for e in examples:
        h.update(f"{e.source}\x1f{e.route}\x1f{e.text}\x1e".encode())
    return h.hexdigest()


# ----------------------------------------------------------------------------- model


def make_classifier(cfg: BertConfig, weights: dict[str, np.ndarray], n_routes: int, seed: int):
    """The bundled encoder's torch twin plus a linear route head on its normalised embedding.

    ``forward`` runs the whole model; ``lower``/``upper`` split it after a layer so training can
    cache the frozen lower layers' output once and run only the trained top layers per step.
    """
    import torch
    from torch import nn
    from torch.nn import functional as F

    torch.manual_seed(seed)
    backbone = make_torch_student(
        {
            k: v.astype(np.float32)
            for k, v in weights.items()
            if v.dtype != np.int64 and not k.startswith("pooler.")
        },
        cfg,
    )

    class Classifier(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.backbone = backbone
            self.head = nn.Linear(cfg.hidden, n_routes)
            nn.init.normal_(self.head.weight, std=0.02)
            nn.init.zeros_(self.head.bias)

        def lower(self, ids, mask, types, n_lower: int):
            e = self.backbone.embeddings
            pos = torch.arange(ids.shape[1])
            x = e.word_embeddings(ids) + e.position_embeddings(pos)[None]
            x = e.LayerNorm(x + e.token_type_embeddings(types))
            add_mask = _additive_mask(mask, x.dtype)
            for layer in self.backbone.encoder.layer[:n_lower]:
                x = layer(x, add_mask)
            return x

        def upper(self, x, mask, n_lower: int):
            add_mask = _additive_mask(mask, x.dtype)
            for layer in self.backbone.encoder.layer[n_lower:]:
                x = layer(x, add_mask)
            maskf = mask.to(x.dtype)[:, :, None]
            pooled = (x * maskf).sum(1) / maskf.sum(1).clamp_min(1e-9)
            emb = F.normalize(pooled, dim=-1, eps=1e-12)
            return emb, self.head(emb)

        def forward(self, ids, mask, types):
            return self.upper(self.lower(ids, mask, types, 0), mask, 0)

    def _additive_mask(mask, dtype):
        return ((1.0 - mask.to(dtype)) * -10000.0)[:, None, None, :]

    return Classifier()


class LowerCache:
    """Frozen lower layers' output per text (fp16, unpadded), computed once per text.

    Leave-one-source-out trains many models on overlapping data; the lower layers never change,
    so their output is shared by every fold and only the top layers run per training step.
    """

    def __init__(self, model, tok: TextTokenizer, n_lower: int, weights_id: str = "") -> None:
        self.model, self.tok, self.n_lower = model, tok, n_lower
        self.weights_id = weights_id
        self.states: dict[str, np.ndarray] = {}
        # The untrained model's embedding of each text: what fine-tuning must stay near.
        self.original: dict[str, np.ndarray] = {}

    def fill(self, texts: Sequence[str], bs: int = 64) -> None:
        import torch

        todo = sorted({t for t in texts if t not in self.states}, key=len)
        if not todo:
            return
        t0 = time.perf_counter()
        self.model.eval()
        with torch.no_grad():
            for i in range(0, len(todo), bs):
                chunk = todo[i : i + bs]
                b = self.tok.encode_batch(chunk)
                width = int(b.lengths.max())
                mask = torch.from_numpy(b.attention_mask[:, :width])
                x = self.model.lower(
                    torch.from_numpy(b.input_ids[:, :width]),
                    mask,
                    torch.from_numpy(b.token_type_ids[:, :width]),
                    self.n_lower,
                )
                emb = self.model.upper(x, mask, self.n_lower)[0].numpy()
                x = x.numpy()
                for row, text in enumerate(chunk):
                    self.states[text] = x[row, : b.lengths[row]].astype(np.float16)
                    self.original[text] = emb[row]
        print(f"lower layers: {len(todo)} texts in {time.perf_counter() - t0:.0f} s", flush=True)

    def save(self, path: Path) -> None:
        """Keep the states for a later run (same weights, tokenizer and n_lower)."""
        texts = sorted(self.states)
        lengths = np.array([len(self.states[t]) for t in texts], dtype=np.int64)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp.npz")
        np.savez(
            tmp,
            key=np.array(self.key),
            texts=np.array(texts, dtype=object),
            lengths=lengths,
            states=np.concatenate([self.states[t] for t in texts]),
            original=np.stack([self.original[t] for t in texts]),
        )
        os.replace(tmp, path)

    def load(self, path: Path) -> None:
        """States a run with the same key saved; anything else is ignored."""
        if not path.exists():
            return
        with np.load(path, allow_pickle=True) as z:
            if str(z["key"]) != self.key:
                print(f"{path}: made for other settings; ignored", flush=True)
                return
            offsets = np.concatenate([[0], np.cumsum(z["lengths"])])
            states, original = z["states"], z["original"]
            for i, text in enumerate(z["texts"]):
                self.states[str(text)] = states[offsets[i] : offsets[i + 1]]
                self.original[str(text)] = original[i]
        print(f"lower layers: {len(self.states)} texts loaded from {path}", flush=True)

    @property
    def key(self) -> str:
        return f"n_lower={self.n_lower};max_tokens={self.tok.max_tokens};{self.weights_id}"

    def batch(self, texts: Sequence[str]):
        """(hidden (n, width, dim) float32, mask (n, width)) for texts already filled."""
        import torch

        states = [self.states[t] for t in texts]
        width = max(len(s) for s in states)
        x = np.zeros((len(states), width, states[0].shape[1]), np.float32)
        mask = np.zeros((len(states), width), np.int64)
        for i, s in enumerate(states):
            x[i, : len(s)] = s
            mask[i, : len(s)] = 1
        return torch.from_numpy(x), torch.from_numpy(mask)


def predict(model, cache: LowerCache, texts: Sequence[str], bs: int = 64):
    """(embeddings, logits) of the torch model, in input order."""
    import torch

    model.eval()
    cache.fill(texts)
    embs, logits = [], []
    with torch.no_grad():
        for i in range(0, len(texts), bs):
            x, mask = cache.batch(texts[i : i + bs])
            e, lg = model.upper(x, mask, cache.n_lower)
            embs.append(e.numpy())
            logits.append(lg.numpy())
    if not embs:
        return np.zeros((0, 384), np.float32), np.zeros((0, len(ROUTES)), np.float32)
    return np.concatenate(embs), np.concatenate(logits)


def predict_full(model, tok: TextTokenizer, texts: Sequence[str]):
    """(embeddings, logits) through the whole torch model, one text at a time (export parity)."""
    import torch

    model.eval()
    embs, logits = [], []
    with torch.no_grad():
        for t in texts:
            b = tok.encode_batch([t])
            e, lg = model(
                torch.from_numpy(b.input_ids),
                torch.from_numpy(b.attention_mask),
                torch.from_numpy(b.token_type_ids),
            )
            embs.append(e.numpy())
            logits.append(lg.numpy())
    return np.concatenate(embs), np.concatenate(logits)


def train(
    model,
    cache: LowerCache,
    examples: Sequence[Example],
    teacher: np.ndarray,
    *,
    steps: int,
    batch_size: int,
    lr: float,
    head_lr: float,
    emb_weight: float,
    seed: int,
    also_weight: float = 0.0,
    log_every: int = 100,
) -> dict[str, object]:
    """AdamW on the top layers and the head, linear warm-up and decay.

    The route loss is cross-entropy on each example's route, mixed (`also_weight`) with the
    negative log of the probability of any route a person would accept for it (its route or
    one of its `also` routes): a prediction of an acceptable route is then not pushed away,
    which is what the leave-sources-out accuracy counts.

    The lower layers and embeddings stay frozen: they carry the multilingual and rare-token
    knowledge a few thousand prompts would only erode, and freezing them makes a step ~3x
    cheaper (their output is cached).
    """
    import torch
    from torch.nn import functional as F

    texts = [e.text for e in examples]
    cache.fill(texts)
    lengths = np.array([len(cache.states[t]) for t in texts])
    y = torch.tensor([ROUTES.index(e.route) for e in examples])
    acceptable = torch.zeros(len(examples), len(ROUTES), dtype=torch.bool)
    for i, e in enumerate(examples):
        for route in (e.route, *e.also):
            acceptable[i, ROUTES.index(route)] = True
    tgt = torch.from_numpy(np.ascontiguousarray(teacher, dtype=np.float32))
    rng = np.random.default_rng(seed)
    n_lower = cache.n_lower
    trained = {
        f"backbone.encoder.layer.{i}." for i in range(n_lower, len(model.backbone.encoder.layer))
    }
    for name, p in model.named_parameters():
        p.requires_grad = name.startswith("head.") or any(name.startswith(t) for t in trained)
    head = [p for n, p in model.named_parameters() if n.startswith("head.")]
    body = [p for n, p in model.named_parameters() if p.requires_grad and not n.startswith("head.")]
    opt = torch.optim.AdamW(
        [{"params": body, "lr": lr}, {"params": head, "lr": head_lr}], weight_decay=0.01
    )
    warm = max(1, steps // 15)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: min((s + 1) / warm, max(0.0, (steps - s) / max(1, steps - warm)))
    )
    t0 = time.perf_counter()
    step, log, running = 0, [], []
    model.train()
    while step < steps:
        for rows in batches(lengths, batch_size, rng):
            if step >= steps:
                break
            x, mask = cache.batch([texts[i] for i in rows])
            emb, logits = model.upper(x, mask, n_lower)
            idx = torch.from_numpy(rows)
            ce = F.cross_entropy(logits, y[idx], label_smoothing=0.05)
            keep = (1.0 - (emb * tgt[idx]).sum(-1)).mean()
            loss = ce + emb_weight * keep
            if also_weight:
                loss = loss + also_weight * (acceptable_nll(logits, acceptable[idx]) - ce)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(body + head, 1.0)
            opt.step()
            sched.step()
            step += 1
            running.append((ce.item(), keep.item()))
            if step % log_every == 0 or step == steps:
                c, k = np.mean(running, axis=0)
                running = []
                entry = {
                    "step": step,
                    "s": round(time.perf_counter() - t0, 1),
                    "ce": round(float(c), 4),
                    "1-cos": round(float(k), 4),
                }
                log.append(entry)
                print(json.dumps(entry), flush=True)
    model.eval()
    return {
        "steps": steps,
        "batch_size": batch_size,
        "seconds": time.perf_counter() - t0,
        "log": log,
    }


def acceptable_nll(logits, acceptable):
    """Mean of -log P(any acceptable route): `acceptable` (n, routes) marks each example's
    route and its `also` routes."""
    import torch
    from torch.nn import functional as F

    logp = F.log_softmax(logits, -1).masked_fill(~acceptable, float("-inf"))
    return -torch.logsumexp(logp, -1).mean()


def fit_temperature(logits: np.ndarray, labels: np.ndarray) -> float:
    """The softmax temperature minimising validation NLL (grid search: robust, no torch)."""
    best_t, best_nll = 1.0, np.inf
    for t in np.exp(np.linspace(np.log(0.3), np.log(5.0), 80)):
        z = logits / t
        z = z - z.max(1, keepdims=True)
        nll = float(-(z[np.arange(len(z)), labels] - np.log(np.exp(z).sum(1))).mean())
        if nll < best_nll:
            best_t, best_nll = float(t), nll
    return best_t


def softmax(z: np.ndarray) -> np.ndarray:
    z = z - z.max(1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(1, keepdims=True)


# ----------------------------------------------------------------------------- export


def export_onnx(model, cfg: BertConfig, fp32_path: Path) -> None:
    """build_encoder.py's BERT graph plus ``route_logits = Gemm(sentence_embedding, W, b)``.

    A Gemm (not MatMul) so the int8 pass leaves the 16-row head in fp32: logits stay exact.
    """
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    state = {k: v.detach().numpy().astype(np.float32) for k, v in model.state_dict().items()}
    weights = {
        k.removeprefix("backbone."): v for k, v in state.items() if k.startswith("backbone.")
    }
    graph_model = build_fp32_model(weights, cfg)
    g = graph_model.graph
    g.initializer.extend(
        [
            numpy_helper.from_array(state["head.weight"], "route_head_weight"),
            numpy_helper.from_array(state["head.bias"], "route_head_bias"),
        ]
    )
    g.node.append(
        helper.make_node(
            "Gemm",
            [EMBEDDING, "route_head_weight", "route_head_bias"],
            [LOGITS],
            name="route_head",
            transB=1,
        )
    )
    g.output.append(
        helper.make_tensor_value_info(LOGITS, TensorProto.FLOAT, ["batch", len(ROUTES)])
    )
    g.name = "minilm_l6_route_classifier"
    graph_model.producer_name = "semroute/models/build_classifier.py"
    graph_model.doc_string = (
        f"{ORIGINAL_MODEL} fine-tuned as semroute's route classifier: outputs the mean-pooled "
        "L2-normalised sentence embedding and route logits."
    )
    onnx.checker.check_model(graph_model, full_check=True)
    onnx.save(graph_model, fp32_path)


def run_graph(
    path: Path, tok: TextTokenizer, texts: Sequence[str]
) -> tuple[np.ndarray, np.ndarray]:
    sess = make_session(path, 1)
    embs, logits = [], []
    for t in texts:  # one at a time: the serving shape, and no padding effects
        b = tok.encode_batch([t])
        e, lg = sess.run(
            [EMBEDDING, LOGITS],
            {
                "input_ids": b.input_ids.astype(np.int64),
                "attention_mask": b.attention_mask.astype(np.int64),
                "token_type_ids": b.token_type_ids.astype(np.int64),
            },
        )
        embs.append(e)
        logits.append(lg)
    return np.concatenate(embs), np.concatenate(logits)


def export(
    model,
    cfg: BertConfig,
    tok: TextTokenizer,
    out_dir: Path,
    tokenizer_json: Path,
    meta: dict[str, object],
    fp32_out: Path | None = None,
) -> dict[str, object]:
    """model.onnx (int8), tokenizer.json, reference.npz (torch fp32 outputs), encoder.json.

    ``fp32_out``: also keep the fp32 graph there, the input of models/build_variants.py.
    """
    import onnx
    import onnxruntime as ort

    sentences = list(REFERENCE_SENTENCES)
    ref_emb, ref_logits = predict_full(model, tok, sentences)
    out_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        fp32_path = Path(tmp) / "fp32.onnx"
        export_onnx(model, cfg, fp32_path)
        emb32, log32 = run_graph(fp32_path, tok, sentences)
        parity = {
            "embedding_max_abs_diff": float(np.abs(emb32 - ref_emb).max()),
            "logits_max_abs_diff": float(np.abs(log32 - ref_logits).max()),
        }
        print(f"fp32 ONNX vs torch: {parity}", flush=True)
        if parity["embedding_max_abs_diff"] > 1e-4 or parity["logits_max_abs_diff"] > 1e-3:
            raise AssertionError(f"fp32 graph disagrees with torch: {parity}")
        if fp32_out is not None:
            fp32_out.parent.mkdir(parents=True, exist_ok=True)
            fp32_out.write_bytes(fp32_path.read_bytes())
        int8 = quantize_blockwise_int8(onnx.load(fp32_path), block_size=BLOCK_SIZE)
        tmp_model = out_dir / "model.onnx.tmp"
        onnx.save(int8, tmp_model)
        os.replace(tmp_model, out_dir / "model.onnx")
    emb8, log8 = run_graph(out_dir / "model.onnx", tok, sentences)
    quality = {
        "cosine_min": round(float((emb8 * emb32).sum(1).min()), 6),
        "logits_max_abs_diff": round(float(np.abs(log8 - log32).max()), 5),
        "argmax_agreement": float((log8.argmax(1) == log32.argmax(1)).mean()),
    }
    print(f"int8 vs fp32: {quality}", flush=True)
    (out_dir / "tokenizer.json").write_bytes(tokenizer_json.read_bytes())
    state = model.state_dict()
    np.savez(
        out_dir / HEAD_FILE,
        weight=state["head.weight"].numpy().astype(np.float32),
        bias=state["head.bias"].numpy().astype(np.float32),
    )
    np.savez(
        out_dir / "reference.npz",
        sentences=np.array(sentences),
        embeddings=ref_emb.astype(np.float32),
        logits=ref_logits.astype(np.float32),
    )
    full = {
        "id": f"minilm-l6-routes/{meta['version']}/int8-block{BLOCK_SIZE}",
        "dim": cfg.hidden,
        "max_tokens": MAX_TOKENS,
        "max_positions": cfg.max_positions,
        "pooling": "in_graph",
        "normalized": True,
        "inputs": ["input_ids", "attention_mask", "token_type_ids"],
        "output": EMBEDDING,
        "opset": 17,
        "classifier": {
            "output": LOGITS,
            "routes": list(ROUTES),
            "version": meta["version"],
            "temperature": meta["temperature"],
            "sha256": sha256_file(out_dir / HEAD_FILE),
        },
        "quantization": {
            "method": "int8 blockwise weights (com.microsoft MatMulNBits) + int8 word embeddings;"
            " route head fp32 (Gemm)",
            "bits": 8,
            "block_size": BLOCK_SIZE,
            "symmetric": True,
            "accuracy_level": 4,
            "onnxruntime": ort.__version__,
        },
        "quality_vs_fp32": quality,
        "parity_fp32_vs_torch": parity,
        **{k: v for k, v in meta.items() if k not in ("version", "temperature")},
        "sha256": {
            "model.onnx": sha256_file(out_dir / "model.onnx"),
            "tokenizer.json": sha256_file(out_dir / "tokenizer.json"),
        },
    }
    (out_dir / "encoder.json").write_text(json.dumps(full, indent=2, ensure_ascii=False) + "\n")
    print(f"wrote {out_dir}: id={full['id']}", flush=True)
    return full


# ----------------------------------------------------------------------------- main


def fit(
    examples: Sequence[Example],
    val_set: Sequence[Example],
    cache: LowerCache,
    args: argparse.Namespace,
    weights: dict[str, np.ndarray],
    cfg: BertConfig,
):
    """Train one classifier; returns (model, temperature, validation accuracy, train report)."""
    model = make_classifier(cfg, weights, len(ROUTES), args.seed)
    # Same frozen lower layers as the cache's model (both start from the same weights).
    cache.fill([e.text for e in examples])
    teacher = np.stack([cache.original[e.text] for e in examples])
    report = train(
        model,
        cache,
        examples,
        teacher,
        steps=args.steps,
        batch_size=args.batch_size,
        lr=args.lr,
        head_lr=args.head_lr,
        emb_weight=args.emb_weight,
        seed=args.seed,
        also_weight=args.also_weight,
    )
    _, val_logits = predict(model, cache, [e.text for e in val_set])
    val_y = np.array([ROUTES.index(e.route) for e in val_set])
    temperature = fit_temperature(val_logits, val_y)
    val_acc = float((val_logits.argmax(1) == val_y).mean())
    print(f"in-source validation accuracy {val_acc:.4f}; temperature {temperature:.3f}", flush=True)
    return model, temperature, val_acc, report


def add_training_args(ap: argparse.ArgumentParser) -> None:
    ap.add_argument("--shared", type=Path, default=ROOT.parent / "shared" / "data")
    ap.add_argument("--steps", type=int, default=1500)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--train-layers", type=int, default=1, help="top layers fine-tuned")
    ap.add_argument(
        "--russian-supplement",
        action="store_true",
        help="add route_synthetic.RUSSIAN_SUPPLEMENT (the shipped model, 20261201f, has it)",
    )
    ap.add_argument("--lr", type=float, default=1e-4)
    ap.add_argument("--head-lr", type=float, default=3e-3)
    ap.add_argument("--emb-weight", type=float, default=2.0)
    ap.add_argument(
        "--also-weight",
        type=float,
        default=0.0,
        help="share of the route loss on 'any acceptable route' (its also routes)",
    )
    ap.add_argument("--seed", type=int, default=SEED)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--limit", type=int, default=0, help="train on at most N examples (tests)")


def setup(args: argparse.Namespace):
    """Torch settings, source weights, tokenizer and the shared lower-layer cache."""
    import torch

    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    src = locate_source()
    cfg = BertConfig.from_json(src / "config.json")
    if not 1 <= args.train_layers <= cfg.layers:
        raise SystemExit(f"--train-layers must be 1..{cfg.layers}")
    weights = load_weights(src)
    tok = TextTokenizer(plain_model_dir() / "tokenizer.json", TRAIN_MAX_TOKENS)
    base = make_classifier(cfg, weights, len(ROUTES), args.seed)
    weights_id = sha256_file(src / "model.safetensors")[:16]
    cache = LowerCache(base, tok, cfg.layers - args.train_layers, weights_id)
    return src, cfg, weights, tok, cache


def export_meta(
    args: argparse.Namespace,
    src: Path,
    train_set: Sequence[Example],
    val_set: Sequence[Example],
    temperature: float,
    val_acc: float,
    report: dict[str, object],
    started: float,
) -> dict[str, object]:
    """Provenance for encoder.json: source weights, data hashes, seed, settings, wall time."""
    import torch

    return {
        "version": args.version,
        "temperature": round(temperature, 4),
        "source": {
            "package": SOURCE_DIST,
            "version": source_version(),
            "original_model": ORIGINAL_MODEL,
            "license": MODEL_LICENSE,
            "model.safetensors_sha256": sha256_file(src / "model.safetensors"),
        },
        "training": {
            "script": "models/build_classifier.py",
            "seed": args.seed,
            "steps": args.steps,
            "batch_size": args.batch_size,
            "train_layers": args.train_layers,
            "lr": args.lr,
            "head_lr": args.head_lr,
            "emb_weight": args.emb_weight,
            "also_weight": args.also_weight,
            "russian_supplement": args.russian_supplement,
            "max_tokens": TRAIN_MAX_TOKENS,
            "torch": torch.__version__,
            "threads": args.threads,
            "train_examples": len(train_set),
            "train_by_source": dict(sorted(Counter(e.source for e in train_set).items())),
            "train_by_route": dict(sorted(Counter(e.route for e in train_set).items())),
            "train_data_sha256": data_digest(train_set),
            "val_examples": len(val_set),
            "val_accuracy_in_source": round(val_acc, 4),
            "never_trained_on": sorted(EVAL_ONLY_SOURCES),
            "wall_seconds": round(time.perf_counter() - started, 1),
            "train_seconds": round(float(report["seconds"]), 1),
        },
    }


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--out", type=Path, required=True, help="model directory to write")
    ap.add_argument("--version", default=time.strftime("%Y%m%d"))
    ap.add_argument("--examples", type=Path, help="train on this JSONL instead of the corpus")
    ap.add_argument(
        "--lower-cache",
        type=Path,
        help="frozen lower layers' output from an earlier run (eval_loso.py's); saved back "
        "only when this run added texts",
    )
    ap.add_argument(
        "--fp32-out", type=Path, help="also keep the fp32 graph here (for build_variants.py)"
    )
    add_training_args(ap)
    args = ap.parse_args(argv)

    started = time.perf_counter()
    src, cfg, weights, tok, cache = setup(args)
    examples = (
        read_examples(args.examples)
        if args.examples
        else collect(args.shared, args.seed, args.russian_supplement)
    )
    train_set, val_set = split(examples, set(), args.seed)
    if args.limit:
        train_set, val_set = train_set[: args.limit], val_set[: max(16, args.limit // 4)]
    print(
        f"train {len(train_set)} {dict(sorted(Counter(e.route for e in train_set).items()))}; "
        f"val {len(val_set)}",
        flush=True,
    )
    if args.lower_cache:
        cache.load(args.lower_cache)
        known = len(cache.states)
        cache.fill([e.text for e in train_set] + [e.text for e in val_set])
        if len(cache.states) > known:
            cache.save(args.lower_cache)
    model, temperature, val_acc, report = fit(train_set, val_set, cache, args, weights, cfg)
    meta = export_meta(args, src, train_set, val_set, temperature, val_acc, report, started)
    export(model, cfg, tok, args.out, plain_model_dir() / "tokenizer.json", meta, args.fp32_out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
