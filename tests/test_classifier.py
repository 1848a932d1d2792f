"""The route classifier: training, export parity, serving, and the runtime without torch.

The training tests run models/build_classifier.py's own functions on a tiny fixture for a few
steps (seconds), so the recipe that built the shipped model stays runnable and its exported
graph provably computes what torch computed.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from semroute.encoder import Encoder, EncoderError, default_model_dir
from semroute.encoder.route_head import HEAD_FILE, RouteHead
from semroute.encoder.static import default_static_dir
from semroute.types import Tier

from .conftest import ENCODER_BOUND_PROMPT

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "models"))

FIXTURE = [
    ("write a python function that reverses a linked list", "code_generation"),
    ("implement binary search in Go", "code_generation"),
    ("my script crashes with KeyError: 'id', how do I fix it?", "debugging"),
    ("TypeError: undefined is not a function in my React app", "debugging"),
    ("solve 3x + 5 = 20 for x", "math"),
    ("what is the integral of x^2 from 0 to 3?", "math"),
    ("write a poem about autumn leaves", "creative_writing"),
    ("tell me a short story about a dragon who bakes bread", "creative_writing"),
    ("hi there!", "greeting"),
    ("thanks, that was helpful", "greeting"),
    ("translate 'good night' into Spanish", "translation"),
    ("how do you say thank you in Japanese?", "translation"),
]


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    """A classifier trained for a few steps on FIXTURE and exported like the shipped one."""
    import build_classifier as bc

    data = tmp_path_factory.mktemp("fixture") / "routes.jsonl"
    data.write_text("".join(json.dumps({"prompt": p, "route": r}) + "\n" for p, r in FIXTURE * 3))
    out = tmp_path_factory.mktemp("model") / "tiny-routes"
    args = [
        "--out",
        str(out),
        "--examples",
        str(data),
        "--steps",
        "12",
        "--batch-size",
        "8",
        "--train-layers",
        "1",
        "--version",
        "test",
        "--threads",
        "1",
    ]
    assert bc.main(args) == 0
    return out


def test_tiny_training_run_exports_a_loadable_classifier(tiny_model: Path) -> None:
    meta = json.loads((tiny_model / "encoder.json").read_text())
    assert meta["classifier"]["version"] == "test"
    assert meta["training"]["steps"] == 12
    enc = Encoder(tiny_model, max_tokens=128)
    assert enc.route_head is not None
    assert enc.route_head.routes[: len(meta["classifier"]["routes"])] == tuple(
        meta["classifier"]["routes"]
    )


def test_acceptable_route_loss_counts_any_accepted_route() -> None:
    """-log P(route or an `also` route), hand-computed: an example whose prediction sits on
    an acceptable `also` route costs little, one on an unacceptable route costs much."""
    pytest.importorskip("torch")
    import build_classifier as bc
    import torch

    logits = torch.tensor([[2.0, 1.0, 0.0], [2.0, 1.0, 0.0]])
    p = torch.softmax(logits, -1)[0]
    accepted = torch.tensor([[False, True, True], [True, False, False]])
    got = bc.acceptable_nll(logits[:1], accepted[:1]).item()
    assert got == pytest.approx(-np.log(p[1] + p[2]).item(), abs=1e-6)
    both = bc.acceptable_nll(logits, accepted).item()
    assert both == pytest.approx((got - np.log(p[0]).item()) / 2, abs=1e-6)


def test_russian_supplement_only_adds_russian_rows() -> None:
    """The supplement is drawn by its own generator: turning it on keeps every default row
    (what the shipped model trained on) byte-identical and adds Russian rows only."""
    from route_synthetic import RUSSIAN_SUPPLEMENT, synthetic_prompts

    base = synthetic_prompts()
    more = synthetic_prompts(russian_supplement=True)
    assert more[: len(base)] == base
    added = more[len(base) :]
    assert added and {r["lang"] for r in added} == {"ru"}
    assert {r["route"] for r in added} == set(RUSSIAN_SUPPLEMENT)
    assert len({r["prompt"] for r in more}) == len(more)


def test_onnx_matches_torch_logits_and_embedding(tiny_model: Path, tmp_path: Path) -> None:
    """The fp32 graph reproduces torch exactly; the shipped int8 one closely."""
    import build_classifier as bc
    import onnxruntime as ort
    import torch

    from semroute.encoder.tokenize import TextTokenizer

    src = bc.locate_source()
    cfg = bc.BertConfig.from_json(src / "config.json")
    model = bc.make_classifier(cfg, bc.load_weights(src), len(bc.ROUTES), seed=7)
    with torch.no_grad():  # move away from the pretrained weights so the head is not trivial
        model.head.weight.normal_(0, 1)
        model.backbone.encoder.layer[5].output.dense.weight.mul_(1.5)
    tok = TextTokenizer(bc.plain_model_dir() / "tokenizer.json", 128)
    texts = [p for p, _ in FIXTURE] + ["证明根号2是无理数"]
    want_emb, want_logits = bc.predict_full(model, tok, texts)
    fp32 = tmp_path / "fp32.onnx"
    bc.export_onnx(model, cfg, fp32)
    sess = ort.InferenceSession(str(fp32), providers=["CPUExecutionProvider"])
    for i, text in enumerate(texts):
        b = tok.encode_batch([text])
        feeds = {
            "input_ids": b.input_ids.astype(np.int64),
            "attention_mask": b.attention_mask.astype(np.int64),
            "token_type_ids": b.token_type_ids.astype(np.int64),
        }
        emb, logits = sess.run(["sentence_embedding", "route_logits"], feeds)
        np.testing.assert_allclose(emb[0], want_emb[i], atol=1e-5)
        np.testing.assert_allclose(logits[0], want_logits[i], atol=1e-4)


def test_shipped_model_matches_its_reference_outputs() -> None:
    """models/minilm-l6-routes-int8 (int8) against the torch fp32 outputs saved at export."""
    enc = Encoder(default_model_dir(), max_tokens=128)
    assert enc.route_head is not None
    ref = np.load(default_model_dir() / "reference.npz")
    sentences = [str(s) for s in ref["sentences"]]
    emb = enc.encode(sentences)
    cos = (emb * ref["embeddings"]).sum(1)
    assert cos.min() > 0.99
    logits = enc.route_head.logits(emb)
    assert (logits.argmax(1) == ref["logits"].argmax(1)).mean() >= 0.95
    assert np.abs(logits - ref["logits"]).max() < 0.5


def test_a_head_from_another_build_is_refused(tmp_path: Path) -> None:
    src = default_model_dir()
    for name in ("model.onnx", "tokenizer.json", "encoder.json"):
        (tmp_path / name).write_bytes((src / name).read_bytes())
    with np.load(src / HEAD_FILE) as z:
        np.savez(tmp_path / HEAD_FILE, weight=z["weight"][::-1].copy(), bias=z["bias"])
    meta = json.loads((src / "encoder.json").read_text())
    from semroute.bundle import sha256_file

    meta["classifier"]["sha256"] = sha256_file(tmp_path / HEAD_FILE)
    (tmp_path / "encoder.json").write_text(json.dumps(meta))
    with pytest.raises(EncoderError, match="disagrees with the graph"):
        Encoder(tmp_path)


def test_route_head_probabilities_are_calibrated_softmax() -> None:
    w = np.array([[1.0, 0.0], [0.0, 1.0], [0.5, 0.5]], dtype=np.float32)
    head = RouteHead(("a", "b", "c"), w, np.zeros(3, np.float32), 2.0, "v", "route_logits")
    emb = np.array([[1.0, 0.0]], dtype=np.float32)
    z = np.array([1.0, 0.0, 0.5]) / 2.0
    want = np.exp(z) / np.exp(z).sum()
    np.testing.assert_allclose(head.probabilities(emb)[0], want, rtol=1e-6)
    np.testing.assert_allclose(head.logits(emb)[0], [1.0, 0.0, 0.5])


def test_serving_never_imports_torch() -> None:
    """The runtime loads the classifier, decides, and never imports torch (or training code)."""
    code = """
import importlib.abc, sys
class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name.split('.')[0] in ('torch', 'build_classifier', 'route_corpus'):
            raise ImportError('serving imported ' + name)
sys.meta_path.insert(0, Block())
from semroute.config import load_config
from semroute.server.app import load_router
from semroute.cli import _ensure_default_index
from semroute.types import RouteQuery
import semroute.server.service, semroute.admin.runtime
config = load_config()
_ensure_default_index(config)
# The cascade on (the default config's), so both the static tier and the classifier serve here.
tier = config.fast_tier.model_copy(update={'enabled': True})
config = config.model_copy(update={'fast_tier': tier})
router = load_router(config)
for text in ('write a rust function that sums a vector',  # the static head is sure of it
             %r):  # it is not (ENCODER_BOUND_PROMPT)
    d = router.route(RouteQuery(text=text))
    print(d.route, d.classifier_version, int(d.tier))
"""
    out = subprocess.run(
        [sys.executable, "-c", code % ENCODER_BOUND_PROMPT],
        capture_output=True,
        text=True,
        cwd=REPO,
        check=False,
    )
    assert out.returncode == 0, out.stderr
    (route, version, tier), (_, version2, tier2) = (ln.split() for ln in out.stdout.splitlines())
    assert route == "code_generation"
    static_head = json.loads((default_static_dir() / "route_head.json").read_text())
    assert (int(tier), version) == (Tier.STATIC, static_head["version"])
    assert (int(tier2), version2) == (
        Tier.ENCODER,
        json.loads((default_model_dir() / "encoder.json").read_text())["classifier"]["version"],
    )


def test_runtime_dependencies_exclude_torch() -> None:
    import tomllib

    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    runtime = " ".join(project["dependencies"]).lower()
    assert "torch" not in runtime
    assert any("torch==" in d for d in project["optional-dependencies"]["train"])
