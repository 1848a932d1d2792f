#!/usr/bin/env python3
"""Build the kernel variants of the route classifier and measure each against fp32.

Why: the shipped blockwise int8 graph (MatMulNBits) is the fastest on AVX-512 VNNI but the
slowest on an AVX2-only CPU, where fp32 and dynamic per-channel int8 (MatMulInteger) win. The
server picks among the variants per CPU at start (semroute/encoder/variants.py); this script
makes them, from the fp32 export of the *same* weights, and records in encoder.json what each
one measured against that fp32 graph on real corpus prompts, so only variants meeting the
accuracy bar are ever chosen automatically.

Variants written to ``<model-dir>/variants/`` (model.onnx stays the default, int8-block64):

* ``fp32.onnx``: fp32 compute. Matmul weights are stored as fp16 initializers behind a Cast,
  which onnxruntime folds into fp32 constants when the session loads, so the file is half the
  size and the runtime graph is plain fp32 MatMul. The word-embedding table is int8 per row,
  as in the default graph (a lookup; 12 MB instead of 47 MB).
* ``int8-dynamic.onnx`` (only with ``--variants fp32,int8-dynamic``; not shipped: it measured
  just below the bar, route argmax 0.989 against fp32 in batches of 16 and mean cosine
  0.9948): ``onnxruntime.quantization.quantize_dynamic``, int8 weights per output channel,
  uint8 activations per tensor (so a text's result depends on its batch), only matmuls with a
  constant weight (not the attention products), same int8 word embeddings; the route head
  ``Gemm`` stays fp32.

Inputs: the fp32 graph that models/build_classifier.py exported for the shipped model
(``--fp32-out``; it is checked against the shipped reference.npz, the torch fp32 outputs, so a
graph of other weights is refused). Deterministic for a given onnxruntime version.

Usage::

    python models/build_classifier.py --out /tmp/routes --version 20261201 \\
        --lower-cache var/train-cache/lower-n5.npz --fp32-out /tmp/routes-fp32.onnx
    python models/build_variants.py --fp32 /tmp/routes-fp32.onnx \\
        --model-dir models/minilm-l6-routes-int8
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "models"))

from build_encoder import make_session, quantize_blockwise_int8  # noqa: E402
from route_corpus import Example, load_all  # noqa: E402

from semroute.bundle import sha256_file  # noqa: E402
from semroute.encoder import default_model_dir  # noqa: E402
from semroute.encoder.tokenize import TextTokenizer  # noqa: E402
from semroute.encoder.variants import (  # noqa: E402
    BAR_ARGMAX_AGREEMENT,
    BAR_COSINE_MEAN,
    BAR_COSINE_P01,
    Variant,
)

EMBEDDING = "sentence_embedding"
LOGITS = "route_logits"
DEFAULT_VARIANT = "int8-block64"
# Initializers at least this big are stored fp16 in the fp32 variant (the matmul weights);
# biases and LayerNorm parameters stay fp32 (too small to matter for size).
FP16_MIN_ELEMENTS = 65536
MAX_TOKENS = 128  # the default config's encoder.max_tokens: measure what serving runs
SAMPLE_SEED = "kernel-variants"


# ----------------------------------------------------------------------------- graphs


def fp32_with_fp16_storage(model: onnx.ModelProto) -> onnx.ModelProto:
    """Big fp32 initializers stored as fp16 and Cast back to fp32 in the graph.

    onnxruntime's constant folding turns each Cast of an initializer into an fp32 constant at
    session creation, so the runtime graph is the fp32 one (rounded weights) at half the file.
    """
    out = onnx.ModelProto()
    out.CopyFrom(model)
    g = out.graph
    casts, inits = [], []
    for t in g.initializer:
        n = int(np.prod(t.dims)) if t.dims else 1
        if t.data_type == TensorProto.FLOAT and n >= FP16_MIN_ELEMENTS:
            arr = numpy_helper.to_array(t)
            inits.append(numpy_helper.from_array(arr.astype(np.float16), f"{t.name}_fp16"))
            casts.append(
                helper.make_node(
                    "Cast",
                    [f"{t.name}_fp16"],
                    [t.name],
                    name=f"{t.name}_cast",
                    to=TensorProto.FLOAT,
                )
            )
        else:
            inits.append(t)
    del g.initializer[:]
    g.initializer.extend(inits)
    nodes = list(g.node)
    del g.node[:]
    g.node.extend(casts + nodes)
    out.doc_string += " fp32 compute; matmul weights stored fp16 (Cast, folded at load)."
    onnx.checker.check_model(out)
    return out


def quantize_dynamic_per_channel(base: onnx.ModelProto, out_path: Path) -> None:
    """int8 per-channel weights on constant-weight MatMuls only; the Gemm head stays fp32."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / "base.onnx"
        onnx.save(base, src)
        quantize_dynamic(
            str(src),
            str(out_path),
            per_channel=True,
            reduce_range=False,
            weight_type=QuantType.QInt8,
            op_types_to_quantize=["MatMul"],
            extra_options={"MatMulConstBOnly": True},
        )


# ----------------------------------------------------------------------------- measuring


def corpus_sample(shared: Path, n: int) -> list[Example]:
    """``n`` real labelled prompts, spread over every source, chosen by a fixed hash."""
    items = [e for e in load_all(shared) if e.text.strip()]

    def rank(e: Example) -> str:
        return hashlib.sha256(f"{SAMPLE_SEED}:{e.source}:{e.text}".encode()).hexdigest()

    by_source: dict[str, list[Example]] = {}
    for e in sorted(items, key=rank):
        by_source.setdefault(e.source, []).append(e)
    out: list[Example] = []
    while len(out) < n and any(by_source.values()):
        for src in sorted(by_source):
            if by_source[src] and len(out) < n:
                out.append(by_source[src].pop(0))
    return out


def run_outputs(
    path: Path, tok: TextTokenizer, texts: Sequence[str], batch: int = 1
) -> tuple[np.ndarray, np.ndarray]:
    """Embeddings and logits, ``batch`` texts per call (1: the serving shape of one request)."""
    sess = make_session(path, 1)
    embs, logits = [], []
    for i in range(0, len(texts), batch):
        b = tok.encode_batch(list(texts[i : i + batch]))
        e, lg = sess.run(
            [EMBEDDING, LOGITS],
            {
                "input_ids": b.input_ids,
                "attention_mask": b.attention_mask,
                "token_type_ids": b.token_type_ids,
            },
        )
        embs.append(e)
        logits.append(lg)
    return np.concatenate(embs), np.concatenate(logits)


def compare(
    emb: np.ndarray, logits: np.ndarray, ref_emb: np.ndarray, ref_logits: np.ndarray
) -> dict[str, float]:
    cos = (emb * ref_emb).sum(1) / (np.linalg.norm(emb, axis=1) * np.linalg.norm(ref_emb, axis=1))
    return {
        "argmax_agreement": round(float((logits.argmax(1) == ref_logits.argmax(1)).mean()), 4),
        "cosine_mean": round(float(cos.mean()), 5),
        "cosine_p01": round(float(np.quantile(cos, 0.01)), 5),
        "cosine_min": round(float(cos.min()), 5),
        "logits_max_abs_diff": round(float(np.abs(logits - ref_logits).max()), 4),
    }


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--fp32", type=Path, required=True, help="fp32 graph of the shipped weights")
    ap.add_argument("--model-dir", type=Path, default=default_model_dir())
    ap.add_argument("--shared", type=Path, default=ROOT.parent / "shared" / "data")
    ap.add_argument("--prompts", type=int, default=1000, help="corpus prompts to measure on")
    ap.add_argument(
        "--variants",
        default="fp32",
        help="comma-separated, of fp32,int8-dynamic (default fp32: int8-dynamic measured below "
        "the bar, see models/README.md; built, it is recorded and only used when forced)",
    )
    args = ap.parse_args(argv)

    import onnxruntime as ort

    model_dir: Path = args.model_dir
    meta = json.loads((model_dir / "encoder.json").read_text())
    tok = TextTokenizer(model_dir / "tokenizer.json", MAX_TOKENS)

    # The fp32 graph must be the shipped weights: reproduce the torch fp32 reference outputs.
    ref = np.load(model_dir / "reference.npz")
    sentences = [str(s) for s in ref["sentences"]]
    e32, l32 = run_outputs(args.fp32, tok, sentences)
    parity = {
        "embedding_max_abs_diff": float(np.abs(e32 - ref["embeddings"]).max()),
        "logits_max_abs_diff": float(np.abs(l32 - ref["logits"]).max()),
    }
    print(f"fp32 graph vs the shipped reference.npz (torch): {parity}", flush=True)
    if parity["embedding_max_abs_diff"] > 1e-4 or parity["logits_max_abs_diff"] > 1e-3:
        raise SystemExit(f"{args.fp32} is not the fp32 graph of {model_dir}'s weights: {parity}")

    out_dir = model_dir / "variants"
    out_dir.mkdir(exist_ok=True)
    fp32 = onnx.load(args.fp32)
    base = quantize_blockwise_int8(fp32, matmuls=False)
    wanted = [v for v in args.variants.split(",") if v]
    unknown = sorted(set(wanted) - {"fp32", "int8-dynamic"})
    if unknown:
        raise SystemExit(f"unknown variants {unknown}")
    files = {name: out_dir / f"{name}.onnx" for name in wanted}
    if "fp32" in files:
        onnx.save(fp32_with_fp16_storage(base), files["fp32"])
    if "int8-dynamic" in files:
        quantize_dynamic_per_channel(base, files["int8-dynamic"])

    sample = corpus_sample(args.shared, args.prompts)
    texts = [e.text for e in sample]
    print(
        f"measuring on {len(texts)} corpus prompts from {len({e.source for e in sample})} "
        "sources, one per call and in padded batches of 16",
        flush=True,
    )
    ref_emb, ref_logits = run_outputs(args.fp32, tok, texts)
    graphs = {DEFAULT_VARIANT: model_dir / "model.onnx", **files}
    quality: dict[str, dict[str, object]] = {}
    for name, path in graphs.items():
        emb, logits = run_outputs(path, tok, texts)
        q: dict[str, object] = compare(emb, logits, ref_emb, ref_logits)
        bemb, blog = run_outputs(path, tok, texts, batch=16)
        q["batched16"] = compare(bemb, blog, ref_emb, ref_logits)
        q["batch_vs_single_max_abs_diff"] = float(np.abs(bemb - emb).max())
        se, sl = run_outputs(path, tok, sentences)
        q["reference_sentences_vs_torch"] = compare(se, sl, ref["embeddings"], ref["logits"])
        q["prompts"] = len(texts)
        v = Variant(name, path, quality=q)
        q["meets_bar"] = v.meets_bar
        quality[name] = q
        print(f"{name}: {json.dumps(q)}", flush=True)

    meta["variant"] = DEFAULT_VARIANT
    meta["quality_vs_fp32_corpus"] = quality[DEFAULT_VARIANT]
    meta["accuracy_bar"] = {
        "reference": "fp32 graph of the same weights (build_classifier.py --fp32-out)",
        "argmax_agreement_min": BAR_ARGMAX_AGREEMENT,
        "cosine_mean_min": BAR_COSINE_MEAN,
        "cosine_p01_min": BAR_COSINE_P01,
        "prompts": f"{len(texts)} from ../shared/data (models/route_corpus.py), one per call, "
        f"max_tokens {MAX_TOKENS}",
    }
    methods = {
        "fp32": "fp32 compute; matmul weights stored fp16 + Cast (folded at load); word "
        "embeddings int8 per row; route head fp32 (Gemm)",
        "int8-dynamic": "onnxruntime quantize_dynamic: int8 weights per output channel, uint8 "
        "activations per tensor, constant-weight MatMuls only (MatMulConstBOnly); word "
        "embeddings int8 per row; route head fp32 (Gemm)",
    }
    meta["variants"] = {
        name: {
            "file": str(path.relative_to(model_dir)),
            "sha256": sha256_file(path),
            "bytes": path.stat().st_size,
            "method": methods[name],
            "quality": quality[name],
            "script": "models/build_variants.py",
            "onnxruntime": ort.__version__,
            "onnx": onnx.__version__,
        }
        for name, path in files.items()
    }
    (model_dir / "encoder.json").write_text(json.dumps(meta, indent=2, ensure_ascii=False) + "\n")
    failing = [n for n, q in quality.items() if not q["meets_bar"]]
    print(f"wrote {', '.join(str(p) for p in files.values())}; below the bar: {failing or 'none'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
