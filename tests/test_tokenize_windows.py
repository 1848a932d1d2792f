"""A long text's middle is never tokenised, and that changes no token the models see.

Real files: the bundled classifier's tokenizer and static table. Each case compares a tokenizer
that cuts windows with the same tokenizer made to tokenise whole texts.
"""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import pytest

from semroute.encoder import default_model_dir
from semroute.encoder.static import StaticEncoder, default_static_dir
from semroute.encoder.tokenize import HEAD, WINDOW_CHARS_PER_TOKEN, TextTokenizer

TOKENIZER = default_model_dir() / "tokenizer.json"
# fmt: off
WORDS = (
    "route", "the", "prompt", "to", "the", "cheapest", "model", "that", "answers", "it",
    "well;", "def", "parse(x):", "return", "x.split(',')", "#", "TODO", "naïve", "café",
    "Übergröße", "数学", "问题", "функция", "ошибка", "1234", "3.14",
    "supercalifragilisticexpialidocious",
)
# fmt: on


def _text(rnd: random.Random, n_words: int) -> str:
    seps = [" "] * 12 + ["\n", "\t", "  ", "\r\n", ", ", "\x1c", " \u00a0"]
    return "".join(rnd.choice(WORDS) + rnd.choice(seps) for _ in range(n_words))


def _cases() -> list[str]:
    rnd = random.Random(20261201)
    long = [_text(rnd, rnd.randint(800, 12_000)) for _ in range(24)]
    glued = "x" * 150  # one unknown word longer than WordPiece's 100 characters
    return [
        *long,
        _text(rnd, 30),  # short: tokenised whole
        "数学问题" * 3000,  # no whitespace to cut at: tokenised whole
        " " * 20_000 + _text(rnd, 50) + " " * 20_000,  # windows of blanks: falls back
        (glued + " ") * 400 + _text(rnd, 3000),  # a head of [UNK] words: falls back
        _text(rnd, 3000) + "\x1c".join(WORDS * 200),  # no cut in the tail window
    ]


def _whole(path: Path, max_tokens: int, truncation: str = "head_tail") -> TextTokenizer:
    tok = TextTokenizer(path, max_tokens, truncation)
    tok._window = 0  # the reference: every text tokenised whole
    return tok


@pytest.mark.parametrize(
    ("max_tokens", "truncation", "chars_per_token"),
    [(128, "head_tail", None), (32, "head_tail", None), (64, HEAD, None), (32, "head_tail", 3)],
)
def test_windowed_batches_equal_whole_text_batches(
    max_tokens: int, truncation: str, chars_per_token: int | None
) -> None:
    """`chars_per_token` 3: windows so tight that their last words are among the tokens kept
    (or too few, and the text is tokenised whole), so a cut in the wrong place shows."""
    windowed = TextTokenizer(TOKENIZER, max_tokens, truncation)
    if chars_per_token is not None:
        windowed._window = max_tokens * chars_per_token
    whole = _whole(TOKENIZER, max_tokens, truncation)
    texts = _cases()
    for batch in ([t] for t in texts):  # one text per call, as the encoder runs
        a, b = windowed.encode_batch(batch), whole.encode_batch(batch)
        assert np.array_equal(a.input_ids, b.input_ids)
        assert np.array_equal(a.token_type_ids, b.token_type_ids)
        assert np.array_equal(a.lengths, b.lengths)
    a, b = windowed.encode_batch(texts), whole.encode_batch(texts)  # and as one batch
    assert np.array_equal(a.input_ids, b.input_ids)
    assert np.array_equal(a.attention_mask, b.attention_mask)


def test_long_texts_are_tokenised_in_windows_not_whole() -> None:
    tok = TextTokenizer(TOKENIZER, 128)
    seen: list[int] = []
    real_encode = tok._encode

    def spy(texts, add_special_tokens):  # type: ignore[no-untyped-def]
        seen.extend(len(t) for t in texts)
        return real_encode(texts, add_special_tokens)

    tok._encode = spy  # type: ignore[method-assign]
    text = _text(random.Random(7), 12_000)  # ~70 KB
    tok.encode_batch([text])
    assert len(text) > 60_000
    assert len(seen) == 2 and max(seen) <= 128 * WINDOW_CHARS_PER_TOKEN  # two windows, nothing else
    seen.clear()
    tok.encode_batch(["数学问题" * 3000])  # nothing to cut at: whole
    assert seen == [12_000]


def test_static_embeddings_of_long_texts_are_unchanged() -> None:
    """The static encoder pools ids on the event loop: windowed ids pool to the very same
    embedding as the whole text's."""
    static = StaticEncoder(default_static_dir(), max_tokens=128)
    texts = _cases()
    windowed = static.encode(texts)
    static._tok._window = 0
    whole = static.encode(texts)
    assert np.array_equal(windowed, whole)
