#!/usr/bin/env python3
"""Build the static-embedding fast tier (models/minilm-l6-v2-static) from the bundled encoder.

Why: a static table (one vector per WordPiece token, text = mean of its tokens' vectors) embeds
a prompt in microseconds instead of the ~1 ms a MiniLM forward pass costs, so confident prompts
can skip the transformer. The table is distilled from the ONNX encoder the router already ships
(``semroute.encoder.Encoder(plain_model_dir())``); nothing is downloaded, torch is not used.

Steps (numbers from the committed build are in static.json and models/README.md):

1. **Model2Vec distillation.** Every vocabulary token is embedded alone as ``[CLS] tok [SEP]``
   by the ONNX encoder (as ``model2vec.distill`` does, minus torch) and weighted by Model2Vec's
   Zipf/SIF rule ``1e-4 / (1e-4 + p(rank))``. Special and ``[unused]`` tokens get weight 0.
   Measured alone, this table agreed with the encoder's route on only ~20-25 % of held-out
   prompts: single-token embeddings do not add up to sentence embeddings.
2. **Fitting to sentences (Tokenlearn-style).** Starting from step 1, the table is trained with
   Adam (numpy, sparse row updates) so that the normalised mean of a text's rows has maximum
   cosine with the encoder's embedding of the same text. ``[CLS]`` and ``[SEP]`` get learnt
   rows and are averaged with every text, because the encoder mean-pools them too (for a short
   prompt they are 2 of ~6 tokens; modelling them raised validation cosine 0.76 -> 0.83).
   Training texts (none in the benchmark's held-out set, see ``is_heldout``): MMLU questions,
   the Python reference (``pydoc_data.topics``, shipped with CPython), random windows cut from
   both, random token "salads", and each vocabulary token alone. Per-token weighting is learnt
   here (a row's norm is its weight), which measured better than any fixed Zipf/SIF coefficient.
3. **Optional centering** (``--alpha``, default 0): removing the corpus mean direction helps
   when prompts are compared with utterances embedded by the static table itself, but leaves
   the encoder's space.
4. **Optional PCA** (``--dim`` < 384) on sentence vectors (numpy SVD), then int8 rows with one
   float32 scale per row. By default the table keeps the encoder's 384 dimensions and space
   (``"space": "source"``), so a static prompt embedding can be searched directly in the
   encoder's own route index; benchmarks/static_tier.py measured that to agree with the
   encoder far more often than a static-built index (only the prompt side is approximated).

Usage::

    python models/build_static.py --out models/minilm-l6-v2-static
    python models/build_static.py --out /tmp/st --cache /tmp/st-cache   # reuse encoder targets

Needs the RouteLLM data (``$SEMROUTE_SHARED_DATA`` or ../shared/data, as benchmarks/prompts.py)
for the MMLU questions. Takes ~15-20 min on 2 busy vCPUs, mostly encoder forward passes
(``--cache`` keeps them). Deterministic for a given machine and seed; BLAS may change the last
bits across machines, so the sha256s are recorded rather than promised.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import shutil
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.prompts import default_data_dir, load_mmlu  # noqa: E402
from semroute.bundle import sha256_file  # noqa: E402
from semroute.encoder import Encoder, plain_model_dir  # noqa: E402
from semroute.encoder.tokenize import TokenBatch  # noqa: E402

STATIC_ID = "minilm-l6-v2-static/pca{dim}"
STATIC_ID_SOURCE = "minilm-l6-v2-static/int8"
SIF_COEFFICIENT = 1e-4
# Tokens the runtime never averages: [PAD]=0, [unused0..98]=1..99, [UNK], [CLS], [SEP], [MASK].
N_SPECIAL = 104
CLS, SEP = 101, 102
# Content tokens per text; the encoder's default max_tokens (256) minus [CLS] and [SEP].
MAX_IDS = 254
ONNX_BATCH_TOKENS = 4096


def is_heldout(text: str) -> bool:
    """MMLU questions reserved for benchmarks/static_tier.py (1/16, by content hash).

    The build never trains on them, so the benchmark's routing agreement is on unseen text.
    """
    return hashlib.sha256(text.strip().encode()).hexdigest()[0] == "0"


def log(msg: str) -> None:
    print(f"[build_static {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def sha256(path: Path) -> str:
    """sha256 of a file (the digest StaticEncoder checks at load)."""
    return sha256_file(path)


# --- data -------------------------------------------------------------------------------


def pydoc_paragraphs() -> list[str]:
    """Paragraphs of the Python language reference that CPython ships (generic technical prose)."""
    import pydoc_data.topics

    out: list[str] = []
    for key in sorted(pydoc_data.topics.topics):
        for para in pydoc_data.topics.topics[key].split("\n\n"):
            para = " ".join(para.split())
            if len(para) >= 40:
                out.append(para)
    return out


def content_ids(tok, texts: Sequence[str]) -> list[np.ndarray]:
    """Token ids without [CLS]/[SEP], head+tail truncated as the runtime does."""
    out = []
    for enc in tok.encode_batch(list(texts), add_special_tokens=False):
        ids = enc.ids
        if len(ids) > MAX_IDS:
            ids = ids[: MAX_IDS - MAX_IDS // 2] + ids[len(ids) - MAX_IDS // 2 :]
        out.append(np.asarray(ids, dtype=np.int32))
    return out


def windows(seqs: list[np.ndarray], n: int, rng: np.random.Generator) -> list[np.ndarray]:
    """Random 3-32-token windows of real text: short, prompt-like fragments."""
    long = [s for s in seqs if len(s) >= 3]
    out = []
    for _ in range(n):
        s = long[int(rng.integers(len(long)))]
        k = int(rng.integers(3, min(32, len(s)) + 1))
        a = int(rng.integers(0, len(s) - k + 1))
        out.append(s[a : a + k])
    return out


def salads(n: int, vocab: int, freq: np.ndarray, rng: np.random.Generator) -> list[np.ndarray]:
    """Random 1-32-token bags: half by corpus frequency, half uniform, to cover the vocabulary."""
    uniform = np.ones(vocab)
    uniform[:N_SPECIAL] = 0
    by_freq = freq + 0.5 * uniform
    probs = (uniform / uniform.sum(), by_freq / by_freq.sum())
    lens = rng.integers(1, 33, n)
    return [rng.choice(vocab, int(k), p=probs[i % 2]).astype(np.int32) for i, k in enumerate(lens)]


def onnx_targets(encoder: Encoder, seqs: list[np.ndarray], cache: Path | None) -> np.ndarray:
    """The encoder's embedding of ``[CLS] ids [SEP]`` for each sequence (float32, unit rows)."""
    key = hashlib.sha256(encoder.id.encode())
    for s in seqs:
        key.update(len(s).to_bytes(4, "little"))
        key.update(s.tobytes())
    path = cache / f"targets-{key.hexdigest()[:20]}.npy" if cache else None
    if path is not None and path.exists():
        return np.load(path)
    backend = encoder._backend  # the graph itself: these inputs are ids, not texts
    cls, sep = 101, 102
    lengths = np.array([len(s) + 2 for s in seqs])
    order = np.argsort(lengths, kind="stable")
    out = np.zeros((len(seqs), encoder.dim), dtype=np.float32)
    start = 0
    t0 = time.time()
    while start < len(order):
        stop = start + 1
        while (
            stop < len(order)
            and (stop - start + 1) * lengths[order[stop]] <= ONNX_BATCH_TOKENS
            and stop - start < 256
        ):
            stop += 1
        rows = order[start:stop]
        width = int(lengths[rows].max())
        ids = np.zeros((len(rows), width), dtype=np.int64)
        mask = np.zeros_like(ids)
        for j, r in enumerate(rows):
            k = lengths[r]
            ids[j, :k] = [cls, *seqs[r].tolist(), sep]
            mask[j, :k] = 1
        batch = TokenBatch(ids, mask, np.zeros_like(ids), lengths[rows].astype(np.int64))
        out[rows] = backend.run(batch)
        start = stop
    log(f"encoded {len(seqs)} sequences in {time.time() - t0:.0f}s")
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        np.save(path, out)
    return out


# --- model ------------------------------------------------------------------------------


def flatten(seqs: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    offsets = np.zeros(len(seqs) + 1, dtype=np.int64)
    np.cumsum([len(s) for s in seqs], out=offsets[1:])
    ids = np.concatenate(seqs).astype(np.int64) if seqs else np.zeros(0, np.int64)
    return ids, offsets


def seg_mean(table: np.ndarray, ids: np.ndarray, offsets: np.ndarray) -> np.ndarray:
    """Mean of table rows per segment (float64 prefix sums; empty segments give 0)."""
    c = np.zeros((len(ids) + 1, table.shape[1]), dtype=np.float64)
    np.cumsum(table[ids], axis=0, dtype=np.float64, out=c[1:])
    sums = c[offsets[1:]] - c[offsets[:-1]]
    return (sums / np.maximum(np.diff(offsets), 1)[:, None]).astype(np.float32)


def unit(x: np.ndarray) -> np.ndarray:
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


def train(
    table: np.ndarray,
    seqs: list[np.ndarray],
    targets: np.ndarray,
    *,
    steps: int,
    lr: float,
    batch: int,
    seed: int,
    pair_weight: float = 0.0,
    frozen: np.ndarray | None = None,
) -> np.ndarray:
    """Adam on 1 - cos(normalise(mean of rows), target), only touched rows updated per step.

    With ``pair_weight`` > 0, also on the squared error of every pairwise similarity in the
    batch (static·static vs encoder·encoder): routing compares a prompt with utterances
    embedded by the same static table, so the geometry between texts is what must match.
    Half of each batch is then each anchor's nearest text (by the encoder) among 8192 random
    ones, so similar pairs, the ones near routing thresholds, are well represented.
    """
    table = table.astype(np.float32).copy()
    m = np.zeros_like(table)
    v = np.zeros_like(table)
    b1, b2, eps = 0.9, 0.999, 1e-8
    rng = np.random.default_rng(seed)
    if frozen is None:
        frozen = np.arange(len(table)) < N_SPECIAL
    lens = np.array([len(s) for s in seqs])
    t0 = time.time()
    recent: list[float] = []
    for step in range(1, steps + 1):
        if pair_weight > 0:
            anchors = rng.choice(len(seqs), batch // 2, replace=False)
            pool = rng.choice(len(seqs), min(8192, len(seqs)), replace=False)
            sims = targets[anchors] @ targets[pool].T
            sims[anchors[:, None] == pool[None, :]] = -2.0
            sel = np.unique(np.concatenate([anchors, pool[sims.argmax(axis=1)]]))
        else:
            sel = rng.choice(len(seqs), min(batch, len(seqs)), replace=False)
        ids, offsets = flatten([seqs[i] for i in sel])
        s = seg_mean(table, ids, offsets)
        norm = np.maximum(np.linalg.norm(s, axis=1, keepdims=True), 1e-8)
        u = s / norm
        y = targets[sel]
        cos = (u * y).sum(1, keepdims=True)
        grad_u = -y / len(sel)  # d(mean of 1 - u.y)/du
        if pair_weight > 0:
            diff = u @ u.T - y @ y.T
            np.fill_diagonal(diff, 0.0)
            pairs = len(sel) * (len(sel) - 1)
            grad_u = grad_u + (4.0 * pair_weight / pairs) * (diff @ u)
        # Through the normalisation to s, then d s/d row = 1/len for each of the text's tokens.
        grad_s = (grad_u - (grad_u * u).sum(1, keepdims=True) * u) / norm
        grad_s /= np.maximum(lens[sel], 1)[:, None]
        seg = np.repeat(np.arange(len(sel)), lens[sel])
        order = np.argsort(ids, kind="stable")
        sorted_ids = ids[order]
        starts = np.flatnonzero(np.r_[True, sorted_ids[1:] != sorted_ids[:-1]])
        rows = sorted_ids[starts]
        g = np.add.reduceat(grad_s[seg[order]], starts, axis=0)
        keep = ~frozen[rows]
        rows, g = rows[keep], g[keep]
        m[rows] = b1 * m[rows] + (1 - b1) * g
        v[rows] = b2 * v[rows] + (1 - b2) * g * g
        rate = lr * 0.5 * (1 + np.cos(np.pi * step / steps))  # cosine decay
        mh = m[rows] / (1 - b1**step)
        vh = v[rows] / (1 - b2**step)
        table[rows] -= rate * mh / (np.sqrt(vh) + eps)
        recent.append(float(1 - cos.mean()))
        if step % 100 == 0 or step == steps:
            log(f"step {step}/{steps} loss {np.mean(recent):.4f} ({time.time() - t0:.0f}s)")
            recent = []
    return table


def quantize_rows(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Symmetric int8 per row: x ≈ q * scale[:, None]."""
    scale = np.abs(x).max(axis=1) / 127.0
    scale = np.where(scale > 0, scale, 1.0).astype(np.float32)
    q = np.clip(np.rint(x / scale[:, None]), -127, 127).astype(np.int8)
    return q, scale


# --- main -------------------------------------------------------------------------------


def build(args: argparse.Namespace) -> None:
    t_start = time.time()
    rng = np.random.default_rng(args.seed)
    encoder = Encoder(plain_model_dir(), intra_op_threads=args.threads)
    tok = encoder._tokenizer._tok  # the runtime's tokenizer, padding and truncation off
    vocab = tok.get_vocab_size()
    log(f"source encoder {encoder.id}, vocab {vocab}")

    # 1. Model2Vec: each token alone, Zipf/SIF weighted.
    singles = [np.array([t], dtype=np.int32) for t in range(vocab)]
    single_emb = onnx_targets(encoder, singles, args.cache)
    proba = 1.0 / np.arange(2, vocab + 2)
    proba /= proba.sum()
    sif = SIF_COEFFICIENT / (SIF_COEFFICIENT + proba)
    table = (single_emb * sif[:, None]).astype(np.float32)
    table[:N_SPECIAL] = 0.0
    # Rows the runtime averages: real tokens, plus [CLS]/[SEP] when they are modelled.
    active = np.arange(vocab) >= N_SPECIAL

    # 2. Training corpus (never the benchmark's held-out prompts).
    data_dir = Path(args.data_dir) if args.data_dir else default_data_dir()
    mmlu = [t for t in load_mmlu(data_dir) if not is_heldout(t)]
    if not mmlu:
        raise SystemExit(f"no MMLU questions under {data_dir}; set --data-dir")
    prose = pydoc_paragraphs()
    real = content_ids(tok, mmlu + prose)
    freq = np.bincount(np.concatenate(real), minlength=vocab).astype(np.float64)
    freq[:N_SPECIAL] = 0
    seqs = [
        *real,
        *windows(real, args.windows, rng),
        *salads(args.salads, vocab, freq, rng),
        *(s for s in singles[N_SPECIAL:]),
    ]
    seqs = [s for s in seqs if len(s)]
    log(
        f"corpus: {len(mmlu)} MMLU, {len(prose)} pydoc paragraphs, {args.windows} windows, "
        f"{args.salads} salads, {vocab - N_SPECIAL} single tokens"
    )
    targets = onnx_targets(encoder, seqs, args.cache)
    if args.specials:
        # The encoder mean-pools [CLS] and [SEP] too, and for a short prompt they are 2 of 5
        # tokens: model them as two learnt rows around every text, as the encoder sees it.
        active[[CLS, SEP]] = True
        table[[CLS, SEP]] = targets[: len(real)].mean(axis=0)
        seqs = [np.concatenate([[CLS], s, [SEP]]).astype(np.int32) for s in seqs]
        real = seqs[: len(real)]
    val = rng.permutation(len(seqs))
    val_idx, train_idx = val[: args.val], val[args.val :]
    val_seqs = [seqs[i] for i in val_idx]
    val_targets = targets[val_idx]
    val_real = [i for i in val_idx if i < len(real)]

    def val_cos(tab: np.ndarray, idx: Sequence[int] | None = None) -> float:
        if idx is None:
            ids, offsets = flatten(val_seqs)
            return float((unit(seg_mean(tab, ids, offsets)) * val_targets).sum(1).mean())
        ids, offsets = flatten([seqs[i] for i in idx])
        return float((unit(seg_mean(tab, ids, offsets)) * targets[idx]).sum(1).mean())

    before = val_cos(table), val_cos(table, val_real)
    log(f"model2vec table: validation cosine {before[0]:.3f} (real text {before[1]:.3f})")
    trained_key = hashlib.sha256(
        f"{table.tobytes().hex()[:64]}{targets.sum():.6f}{len(seqs)}"
        f"{args.steps}{args.lr}{args.batch}{args.seed}{args.val}{args.pair_weight}"
        f"{args.specials}".encode()
    ).hexdigest()[:20]
    trained_path = args.cache / f"trained-{trained_key}.npy" if args.cache else None
    if trained_path is not None and trained_path.exists():
        table = np.load(trained_path)
    else:
        table = train(
            table,
            [seqs[i] for i in train_idx],
            targets[train_idx],
            steps=args.steps,
            lr=args.lr,
            batch=args.batch,
            seed=args.seed,
            pair_weight=args.pair_weight,
            frozen=~active,
        )
        if trained_path is not None:
            np.save(trained_path, table)
    after = val_cos(table), val_cos(table, val_real)
    log(f"trained table: validation cosine {after[0]:.3f} (real text {after[1]:.3f})")

    # 3. Centering, over real text only (salads and single tokens are not prompts).
    ids, offsets = flatten(real)
    means = seg_mean(table, ids, offsets)
    mu = means.mean(axis=0)
    table[active] -= args.alpha * mu

    # 4. PCA on centred sentence vectors (uncentred SVD: the mean was removed in step 3).
    # At the encoder's own width (the default) the table stays in the encoder's space.
    if args.dim >= encoder.dim:
        basis = np.eye(encoder.dim, dtype=np.float32)
        explained = 1.0
    else:
        pick = rng.choice(len(means), min(20000, len(means)), replace=False)
        _, sv, vt = np.linalg.svd(unit(means[pick] - args.alpha * mu), full_matrices=False)
        basis = vt[: args.dim].astype(np.float32)  # (dim, 384)
        explained = float((sv[: args.dim] ** 2).sum() / (sv**2).sum())
    dim = basis.shape[0]
    # "source": embeddings comparable with the encoder's (a prompt's static embedding may be
    # searched in the encoder's own route index); "own": only with a static-built index.
    space = "source" if dim == encoder.dim and args.alpha == 0 else "own"
    reduced = table @ basis.T
    reduced[~active] = 0.0
    q, scale = quantize_rows(reduced)
    weights = active.astype(np.float32)
    # A text without a usable token (with [CLS]/[SEP] modelled, only a text whose ids are
    # all unknown): the encoder's own "[CLS] [SEP]", projected.
    if args.specials:
        empty_src = reduced[CLS] + reduced[SEP]
    else:
        empty_src = basis @ onnx_targets(encoder, [np.zeros(0, np.int32)], args.cache)[0]
    empty = (empty_src / max(float(np.linalg.norm(empty_src)), 1e-12)).astype(np.float32)

    # Fidelity of the stored table against the float, unreduced one (same space, centred).
    def pooled(tab: np.ndarray, seq_list: list[np.ndarray]) -> np.ndarray:
        i, o = flatten(seq_list)
        return unit(seg_mean(tab, i, o))

    val_real_seqs = [seqs[i] for i in val_real]
    full = pooled(table, val_real_seqs)
    stored = pooled(q.astype(np.float32) * scale[:, None], val_real_seqs) @ basis
    pca_int8_cos = float((full * stored).sum(1).mean())
    log(f"{dim} dims keep {explained:.3f} of variance; stored vs float cosine {pca_int8_cos:.4f}")

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(out / "static.npz", table=q, scale=scale, weights=weights, empty=empty)
    src_tok = encoder.model_dir / "tokenizer.json"
    shutil.copyfile(src_tok, out / "tokenizer.json")
    meta = {
        "id": STATIC_ID.format(dim=dim) if space == "own" else STATIC_ID_SOURCE,
        "dim": dim,
        "space": space,
        "vocab": vocab,
        "source_encoder_id": encoder.id,
        "source_encoder_sha256": {"model.onnx": sha256(encoder.model_dir / "model.onnx")},
        "pooling": "weighted mean of int8 rows (scale * weight), L2-normalised",
        "add_special_tokens": bool(args.specials),
        "truncation": "head+tail to max_tokens, as the ONNX encoder",
        "build": {
            "command": "python models/build_static.py " + " ".join(sys.argv[1:]),
            "seed": args.seed,
            "steps": args.steps,
            "lr": args.lr,
            "batch": args.batch,
            "alpha": args.alpha,
            "pair_weight": args.pair_weight,
            "specials": bool(args.specials),
            "sif_coefficient_init": SIF_COEFFICIENT,
            "corpus": {
                "mmlu_questions": len(mmlu),
                "pydoc_paragraphs": len(prose),
                "windows": args.windows,
                "salads": args.salads,
                "single_tokens": vocab - N_SPECIAL,
                "heldout_rule": "MMLU questions whose sha256 starts with '0' are excluded",
            },
            "numpy": np.__version__,
            "seconds": round(time.time() - t_start),
        },
        "measured": {
            "validation_cosine_to_encoder_model2vec_init": round(before[0], 4),
            "validation_cosine_to_encoder_model2vec_init_real_text": round(before[1], 4),
            "validation_cosine_to_encoder_trained": round(after[0], 4),
            "validation_cosine_to_encoder_trained_real_text": round(after[1], 4),
            "pca_explained_variance": round(explained, 4),
            "stored_vs_float_cosine": round(pca_int8_cos, 5),
        },
        "sha256": {
            "static.npz": sha256(out / "static.npz"),
            "tokenizer.json": sha256(out / "tokenizer.json"),
        },
    }
    (out / "static.json").write_text(json.dumps(meta, indent=2) + "\n")
    size = (out / "static.npz").stat().st_size / 1e6
    log(f"wrote {out} ({size:.1f} MB table) in {time.time() - t_start:.0f}s")


def main(argv: Sequence[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--out", type=Path, required=True, help="output directory")
    ap.add_argument("--data-dir", default=None, help="RouteLLM data (default: as prompts.py)")
    ap.add_argument("--cache", type=Path, default=None, help="keep encoder targets here")
    ap.add_argument(
        "--dim", type=int, default=384, help="PCA dimensions stored (384: none, encoder space)"
    )
    ap.add_argument("--steps", type=int, default=1500)
    ap.add_argument("--lr", type=float, default=3e-3)
    ap.add_argument("--batch", type=int, default=1024)
    ap.add_argument("--alpha", type=float, default=0.0, help="share of the mean removed")
    ap.add_argument("--windows", type=int, default=60000)
    ap.add_argument("--salads", type=int, default=30000)
    ap.add_argument("--val", type=int, default=3000, help="training texts held back to report")
    ap.add_argument("--pair-weight", type=float, default=0.0, help="pairwise similarity loss")
    ap.add_argument(
        "--no-specials",
        dest="specials",
        action="store_false",
        help="do not model [CLS]/[SEP] as learnt rows (plain Model2Vec)",
    )
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=0, help="onnxruntime intra-op threads")
    build(ap.parse_args(argv))


if __name__ == "__main__":
    main()
