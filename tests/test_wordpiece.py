"""The compiled WordPiece (csrc/_wordpiece.pyx) gives exactly the ids ``tokenizers`` gives.

Every ASCII prompt of the shared corpora and thousands of random ASCII strings (control
characters, punctuation runs, over-long words, brackets) are compared with and without the
special tokens; TextTokenizer must send what the compiled path cannot do exactly (non-ASCII
text, literal special tokens, tokenizers of another kind) to ``tokenizers``.
"""

from __future__ import annotations

import json
import random
import sys
from pathlib import Path

import pytest
from semroute._wordpiece import AsciiWordPiece
from tokenizers import Tokenizer

from semroute.encoder import default_model_dir
from semroute.encoder.tokenize import COMPILED_ENV, TextTokenizer, wordpiece_of

from .conftest import REPO, SHARED_DATA

TOKENIZER = default_model_dir() / "tokenizer.json"
# Characters that stress the normaliser and the pre-tokenizer, over-represented.
TRICKY = "aZ9 #[]##\x00\x0b\x0c\x1f\x7f\t\n\r.-'\"CLSEP"


def reference() -> Tokenizer:
    tok = Tokenizer.from_file(str(TOKENIZER))
    tok.no_padding()
    tok.no_truncation()
    return tok


def compiled() -> AsciiWordPiece:
    return wordpiece_of(json.loads(TOKENIZER.read_text())["model"])


def random_texts(n: int, seed: int) -> list[str]:
    rng = random.Random(seed)
    out = []
    for i in range(n):
        size = rng.randrange(0, 80)
        if i % 2:
            out.append("".join(chr(rng.randrange(128)) for _ in range(size)))
        else:
            out.append("".join(rng.choice(TRICKY) for _ in range(size)))
    return out


def mismatches(texts: list[str]) -> list[tuple[str, bool]]:
    ref, fast = reference(), compiled()
    bad = []
    for text in texts:
        for special in (True, False):
            if fast.encode(text, special) != ref.encode(text, add_special_tokens=special).ids:
                bad.append((text, special))
    return bad


def test_random_ascii_texts_tokenise_exactly_as_tokenizers_does() -> None:
    texts = random_texts(6000, seed=20261201)
    texts += ["x" * 100, "x" * 101, "a" + "\x00" * 200 + "b", "Hello, World!", ""]
    texts = [t for t in texts if "[" not in t or not any(s in t for s in ("[CLS]", "[SEP]"))]
    assert mismatches(texts) == []


@pytest.mark.skipif(not (SHARED_DATA / "routes-corpus").is_dir(), reason="needs ../shared/data")
def test_every_ascii_corpus_prompt_tokenises_exactly_as_tokenizers_does() -> None:
    sys.path.insert(0, str(REPO / "models"))
    from route_corpus import load_all

    # Long meeting transcripts cut to 3,000 characters: serving tokenises windows of that size.
    texts = sorted({e.text[:3000] for e in load_all(SHARED_DATA) if e.text.isascii()})
    assert len(texts) > 15000  # routes-corpus and the RouteLLM MMLU questions
    assert mismatches(texts) == []


def test_the_compiled_path_refuses_non_ascii_text() -> None:
    with pytest.raises(ValueError, match="ASCII"):
        compiled().encode("café", True)


@pytest.mark.parametrize(
    "text",
    [
        "Write a Python function that parses ISO-8601 dates",
        "hello [CLS] world [SEP] again",  # literal special tokens: ids 101 / 102
        "what does [mask] mean",
        "Résumé naïve café — “quoted” 90° × 3 → π",
        "用Python写一个快速排序",
        "Привет, как дела?",
        "\u00a0non\u00a0breaking spaces\u2009thin",
    ],
)
def test_text_tokenizer_matches_tokenizers_on_any_text(text: str) -> None:
    tok = TextTokenizer(TOKENIZER, 512)
    assert tok.compiled
    ref = reference()
    for special in (True, False):
        assert tok.ids([text], add_special_tokens=special) == [
            ref.encode(text, add_special_tokens=special).ids
        ]
    batch = tok.encode_batch([text, "short one"])
    want = ref.encode(text).ids
    assert batch.input_ids[0, : len(want)].tolist() == want
    assert int(batch.lengths[0]) == len(want)


def test_a_tokenizer_of_another_kind_is_not_compiled(tmp_path: Path) -> None:
    """A cased BERT tokenizer (lowercase off) is not what the compiled path implements."""
    spec = json.loads(TOKENIZER.read_text())
    spec["normalizer"]["lowercase"] = False
    path = tmp_path / "tokenizer.json"
    path.write_text(json.dumps(spec))
    tok = TextTokenizer(path, 128)
    assert not tok.compiled
    ref = Tokenizer.from_file(str(path))
    ref.no_padding()
    ref.no_truncation()
    text = "Hello World, MixedCase Words"
    assert tok.ids([text], add_special_tokens=True) == [ref.encode(text).ids]


def test_the_compiled_path_can_be_switched_off(monkeypatch: pytest.MonkeyPatch) -> None:
    """SEMROUTE_COMPILED_TOKENIZER=0 sends every text to tokenizers, with the same ids."""
    text = "Write a Python function that parses ISO-8601 dates"
    on = TextTokenizer(TOKENIZER, 128)
    monkeypatch.setenv(COMPILED_ENV, "0")
    off = TextTokenizer(TOKENIZER, 128)
    assert on.compiled and not off.compiled
    assert off.ids([text], add_special_tokens=True) == on.ids([text], add_special_tokens=True)


def test_a_str_subclass_is_tokenised_like_its_value() -> None:
    """numpy.str_ (texts read from .npz files) takes the compiled path like a plain str."""
    import numpy as np

    tok = TextTokenizer(TOKENIZER, 128)
    text = "Which of the following is a prime number?"
    assert tok.ids([np.str_(text)], add_special_tokens=True) == [reference().encode(text).ids]
