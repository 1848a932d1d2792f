"""The static-embedding fast tier: the bundled table, the Cython pooling core, the load checks."""

from __future__ import annotations

import json
import shutil
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
from tokenizers import Tokenizer

from semroute import _static
from semroute.encoder import EncoderError
from semroute.encoder.static import TOKENIZER_FILE, StaticEncoder, default_static_dir

TEXTS = [
    "how do I reset my password",
    "Write a Python function that parses an ISO-8601 date.",
    "translate 'good morning' into German",
    "hi",
    "Prove that the square root of 2 is irrational.",
]


@pytest.fixture(scope="module")
def enc() -> StaticEncoder:
    return StaticEncoder(default_static_dir())


# --- the bundled model ------------------------------------------------------------------


def test_loads_with_metadata(enc: StaticEncoder) -> None:
    meta = json.loads((default_static_dir() / "static.json").read_text())
    assert enc.id == meta["id"]
    assert enc.dim == meta["dim"] == 384
    assert enc.providers == ["static"]
    assert enc.max_tokens == 512
    # Same width and space as the encoder it was distilled from (see models/README.md).
    assert enc.space == "source"
    assert meta["source_encoder_id"] == enc.source_encoder_id == "all-MiniLM-L6-v2/int8-block64"
    assert (default_static_dir() / "static.npz").stat().st_size < 11_500_000


def test_shapes_dtype_and_unit_rows(enc: StaticEncoder) -> None:
    out = enc.encode(TEXTS)
    assert out.shape == (len(TEXTS), enc.dim)
    assert out.dtype == np.float32 and out.flags.c_contiguous
    np.testing.assert_allclose(np.linalg.norm(out, axis=1), 1.0, atol=1e-5)
    assert enc.encode([]).shape == (0, enc.dim)


def test_batch_equals_single_exactly(enc: StaticEncoder) -> None:
    batch = enc.encode(TEXTS)
    for i, text in enumerate(TEXTS):
        assert np.array_equal(enc.encode([text])[0], batch[i])


def test_empty_and_unknown_only_texts_are_unit_rows(enc: StaticEncoder) -> None:
    # No usable token in any of them: each is "[CLS] [SEP]" (unknown ids have weight 0).
    out = enc.encode(["", "   ", "\u2603\U0001f600"])
    np.testing.assert_allclose(np.linalg.norm(out, axis=1), 1.0, atol=1e-5)
    assert np.array_equal(out[0], out[1]) and np.array_equal(out[0], out[2])


def test_long_text_keeps_head_and_tail(enc: StaticEncoder) -> None:
    head, tail = "translate this into French: ", " what is the derivative of x squared?"
    long = head + "lorem ipsum dolor sit amet " * 4000 + tail
    assert enc.count_tokens(long) > 20_000
    out = enc.encode([long])
    assert np.isfinite(out).all()
    small = StaticEncoder(default_static_dir(), max_tokens=16)
    # With 14 content ids, the text is its first 7 and last 7 tokens.
    raw = Tokenizer.from_file(str(default_static_dir() / TOKENIZER_FILE))
    raw.no_truncation()
    raw.no_padding()
    cut = raw.encode(long, add_special_tokens=False).ids
    kept = cut[:7] + cut[-7:]
    expected = small.encode([raw.decode(kept)])
    np.testing.assert_allclose(small.encode([long]), expected, atol=1e-6)


def test_count_tokens_counts_specials_before_truncation(enc: StaticEncoder) -> None:
    assert enc.count_tokens("hello world") == 4  # [CLS] hello world [SEP]
    assert enc.count_tokens("") == 2


def test_encode_rejects_a_bare_string(enc: StaticEncoder) -> None:
    with pytest.raises(TypeError):
        enc.encode("hello")  # type: ignore[arg-type]


def test_paraphrase_closer_than_unrelated(enc: StaticEncoder) -> None:
    a, b, c, d = enc.encode(
        [
            "how do I reset my password",
            "I forgot my password, how can I change it?",
            "prove Fermat's little theorem",
            "what's the weather like in Lisbon in October?",
        ]
    )
    assert a @ b > a @ c + 0.2
    assert a @ b > a @ d + 0.2


def test_threads_get_the_same_rows(enc: StaticEncoder) -> None:
    expected = enc.encode(TEXTS * 20)
    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(lambda _: enc.encode(TEXTS * 20), range(8)))
    for r in results:
        assert np.array_equal(r, expected)


# --- load checks ------------------------------------------------------------------------


def _copy(tmp_path: Path) -> Path:
    dst = tmp_path / "static"
    shutil.copytree(default_static_dir(), dst)
    return dst


def test_checksum_mismatch_is_rejected(tmp_path: Path) -> None:
    d = _copy(tmp_path)
    data = bytearray((d / "static.npz").read_bytes())
    data[len(data) // 2] ^= 0xFF
    (d / "static.npz").write_bytes(bytes(data))
    with pytest.raises(EncoderError, match="sha256"):
        StaticEncoder(d)


def test_missing_files_and_dirs_say_what_to_do(tmp_path: Path) -> None:
    with pytest.raises(EncoderError, match=r"build_static\.py"):
        StaticEncoder(tmp_path / "nope")
    d = _copy(tmp_path)
    (d / "static.json").unlink()
    with pytest.raises(EncoderError, match=r"static\.json is missing"):
        StaticEncoder(d)
    d2 = _copy(tmp_path / "b")
    (d2 / "tokenizer.json").unlink()
    with pytest.raises(EncoderError, match=r"tokenizer\.json is missing"):
        StaticEncoder(d2)


def test_max_tokens_must_leave_room_for_text() -> None:
    with pytest.raises(EncoderError, match="max_tokens"):
        StaticEncoder(default_static_dir(), max_tokens=3)


def test_env_override(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("SEMROUTE_STATIC_DIR", str(tmp_path))
    assert default_static_dir() == tmp_path
    monkeypatch.delenv("SEMROUTE_STATIC_DIR")
    assert default_static_dir().name == "minilm-l6-v2-static"


# --- the Cython core on a hand-made table ------------------------------------------------


def _pool(table, weights, seqs, empty, max_ids=-1) -> np.ndarray:
    offsets = np.zeros(len(seqs) + 1, dtype=np.int64)
    np.cumsum([len(s) for s in seqs], out=offsets[1:])
    ids = np.array([i for s in seqs for i in s], dtype=np.int32)
    out = np.full((len(seqs), table.shape[1]), np.nan, dtype=np.float32)
    _static.pool(table, weights, ids, offsets, out, empty, max_ids)
    return out


def _unit(v) -> np.ndarray:
    v = np.asarray(v, dtype=np.float64)
    return v / np.linalg.norm(v)


TABLE = np.array([[0, 0, 0], [1, 0, 0], [0, 2, 0], [1, 1, 1], [3, 0, 4]], dtype=np.float32)
WEIGHTS = np.array([0.0, 1.0, 0.5, 2.0, 1.0], dtype=np.float32)
EMPTY = np.array([0, 0, 1], dtype=np.float32)


def test_weighted_mean_by_hand() -> None:
    out = _pool(TABLE, WEIGHTS, [[1, 2], [3], [1, 3, 4], [2, 2]], EMPTY)
    # [1, 2]: (1*[1,0,0] + 0.5*[0,2,0]) / 1.5 = [2/3, 2/3, 0]
    np.testing.assert_allclose(out[0], _unit([1, 1, 0]), atol=1e-6)
    np.testing.assert_allclose(out[1], _unit([1, 1, 1]), atol=1e-6)
    # [1, 3, 4]: [1,0,0] + [2,2,2] + [3,0,4] = [6, 2, 6]
    np.testing.assert_allclose(out[2], _unit([6, 2, 6]), atol=1e-6)
    np.testing.assert_allclose(out[3], [0, 1, 0], atol=1e-6)


def test_zero_weight_unknown_and_empty_texts_fall_back() -> None:
    out = _pool(TABLE, WEIGHTS, [[], [0], [0, 0], [99, -1], [0, 1]], EMPTY)
    for row in out[:4]:
        assert np.array_equal(row, EMPTY)
    np.testing.assert_allclose(out[4], [1, 0, 0], atol=1e-6)  # id 0 skipped, not averaged


def test_head_tail_truncation() -> None:
    # 5 ids, keep 3: the first 2 and the last 1.
    seq = [1, 1, 2, 4, 3]
    out = _pool(TABLE, WEIGHTS, [seq], EMPTY, max_ids=3)
    np.testing.assert_allclose(out[0], _unit([2, 0, 0] + 2 * np.array([1, 1, 1])), atol=1e-6)
    same = _pool(TABLE, WEIGHTS, [seq], EMPTY, max_ids=5)
    np.testing.assert_allclose(same, _pool(TABLE, WEIGHTS, [seq], EMPTY), atol=0)


def test_int8_table_with_scales_in_weights() -> None:
    q = np.array([[0, 0], [127, 0], [0, 64], [-127, 127]], dtype=np.int8)
    scale = np.array([1.0, 0.01, 0.5, 0.02], dtype=np.float32)
    w = np.array([0.0, 1.0, 1.0, 1.0], dtype=np.float32) * scale
    out = _pool(q, w, [[1, 2, 3]], np.array([1, 0], dtype=np.float32))
    rows = q.astype(np.float64) * scale[:, None]
    np.testing.assert_allclose(out[0], _unit(rows[1] + rows[2] + rows[3]), atol=1e-6)


def test_pool_validates_shapes() -> None:
    offsets = np.array([0, 1], dtype=np.int64)
    ids = np.array([1], dtype=np.int32)
    with pytest.raises(ValueError, match="out has shape"):
        _static.pool(TABLE, WEIGHTS, ids, offsets, np.empty((2, 3), np.float32), EMPTY)
    with pytest.raises(ValueError, match="weights"):
        _static.pool(TABLE, WEIGHTS[:2], ids, offsets, np.empty((1, 3), np.float32), EMPTY)
    with pytest.raises(ValueError, match="outside ids"):
        bad = np.array([0, 2], dtype=np.int64)
        _static.pool(TABLE, WEIGHTS, ids, bad, np.empty((1, 3), np.float32), EMPTY)
    with pytest.raises(ValueError, match="non-decreasing"):
        bad = np.array([0, 1, 0], dtype=np.int64)
        _static.pool(TABLE, WEIGHTS, ids, bad, np.empty((2, 3), np.float32), EMPTY)


def test_pool_releases_the_gil() -> None:
    """Another Python thread runs while a pool call is in C (GIL released).

    With a switch interval far longer than the test, a thread holding the GIL is never
    asked to drop it: the main thread, waiting for the worker to start, can only run
    again once the worker releases the GIL. If pool released it, the worker is still
    inside pool then; if pool held it, the worker has finished by then.
    """
    import sys
    import threading

    rng = np.random.default_rng(0)
    table = rng.standard_normal((5000, 128)).astype(np.float32)
    weights = np.ones(5000, dtype=np.float32)
    lens = rng.integers(150, 250, 20000)  # ~4M ids x 128 dims of pooling
    offsets = np.concatenate([[0], np.cumsum(lens)]).astype(np.int64)
    ids = rng.integers(0, 5000, int(offsets[-1])).astype(np.int32)
    out = np.empty((len(lens), 128), dtype=np.float32)
    started = threading.Event()
    finished: list[bool] = []

    def work() -> None:
        started.set()
        _static.pool(table, weights, ids, offsets, out, np.ones(128, np.float32) / 8)
        finished.append(True)

    interval = sys.getswitchinterval()
    sys.setswitchinterval(1000.0)
    try:
        worker = threading.Thread(target=work)
        worker.start()
        assert started.wait(30)
        still_pooling = not finished  # read as soon as this thread holds the GIL again
    finally:
        sys.setswitchinterval(interval)
    worker.join()
    assert still_pooling and finished == [True]
