"""Tokenisation for the encoder: no fixed padding, head+tail truncation, pad to the batch's longest.

Why not the packaged settings: the MiniLM tokenizer.json pads every input to 128 tokens and
truncates the tail, so every request would pay for 128 tokens and a long prompt would lose its
end (often the actual question). Both are switched off and done here instead.

Bounded work per text: truncation keeps only the first and last tokens, so a long text's middle
is never tokenised. Its start and end are cut out at whitespace and tokenised on their own; with
BERT pre-tokenisation no word spans whitespace, so their tokens are exactly the whole text's
first and last ones (checked: a window short of tokens, e.g. all whitespace or unknown words,
falls back to the whole text). A 64 KB prompt then costs what a 3 KB one does, and the static
encoder, which runs on the event loop, never stalls it for tens of milliseconds.

Speed: ASCII text goes through ``semroute._wordpiece`` (Cython), which gives the same ids as
``tokenizers`` for a BERT uncased tokenizer without building an ``Encoding`` (an ASCII MMLU
question: 9.4 instead of ~160 µs, benchmarks/tokenizer.py). It is used only when the tokenizer
file is that kind and agrees with ``tokenizers`` on a fixed probe set at load; other text, and
text that spells a special token such as "[CLS]", goes to ``tokenizers``.

Thread safety: the wrapped ``tokenizers.Tokenizer`` is configured once in ``__init__`` and only
read afterwards (``encode``/``encode_batch`` take it by shared reference), so one instance can be
used from many threads at once.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tokenizers import Tokenizer

from semroute._wordpiece import AsciiWordPiece
from semroute.encoder.errors import EncoderError

log = logging.getLogger("semroute.encoder")

# Set to 0 to send every text to ``tokenizers`` (an escape hatch, and the A/B baseline of
# benchmarks/tokenizer.py); read when a tokenizer is loaded.
COMPILED_ENV = "SEMROUTE_COMPILED_TOKENIZER"
HEAD_TAIL = "head_tail"
HEAD = "head"

# Characters tokenised at each end of a long text, per token of max_tokens (English runs at
# ~4-5 characters a token, code at ~3: a window holds 2-3x the tokens it must).
WINDOW_CHARS_PER_TOKEN = 8
# Where a window may be cut: characters BertNormalizer keeps as whitespace. (Other characters
# Python calls space, like U+001C, are removed by it, which joins the words on either side.)
_CUTS = (" ", "\n", "\t", "\r")
# (ids, type_ids) of one text.
Tokens = tuple[list[int], list[int]]
# ASCII texts the compiled WordPiece must tokenise exactly as ``tokenizers`` does before it is
# used: punctuation, control characters, casing, digits, subword splits, an over-long word.
FAST_PATH_PROBES = (
    "",
    "   ",
    "Hello, World! How's it going?",
    "def parse_iso8601(s: str) -> datetime:\n\treturn x[0] ** 2  # TODO",
    "SELECT a.id, COUNT(*) FROM t1 a JOIN t2 b ON a.x=b.y WHERE z>=3.14;",
    "tab\tnew\nline\rcr\x00nul\x0bvt\x1fus\x7fdel end",
    "unbelievably antidisestablishmentarianism xqzjvvkw 1234567890 3.5e-7",
    "A" * 120 + " " + "b" * 100,
    "~!@#$%^&*()_+`-={}|[]\\:\";'<>?,./",
)


@dataclass(frozen=True)
class TokenBatch:
    """Model inputs for a batch, padded to its longest member (int64, shape [n, width])."""

    input_ids: np.ndarray
    attention_mask: np.ndarray
    token_type_ids: np.ndarray
    lengths: np.ndarray  # real (unpadded, post-truncation) tokens per text, int64 [n]

    def __len__(self) -> int:
        return int(self.input_ids.shape[0])

    @property
    def width(self) -> int:
        return int(self.input_ids.shape[1])

    def take(self, rows: np.ndarray) -> TokenBatch:
        """Rows ``rows`` re-padded to their own longest member (for length-sorted sub-batches)."""
        width = int(self.lengths[rows].max()) if len(rows) else 0
        return TokenBatch(
            input_ids=np.ascontiguousarray(self.input_ids[rows, :width]),
            attention_mask=np.ascontiguousarray(self.attention_mask[rows, :width]),
            token_type_ids=np.ascontiguousarray(self.token_type_ids[rows, :width]),
            lengths=self.lengths[rows],
        )


class TextTokenizer:
    """Wraps ``tokenizers.Tokenizer`` with the truncation and padding policy the encoder needs."""

    def __init__(self, path: str | Path, max_tokens: int, truncation: str = HEAD_TAIL) -> None:
        """``truncation``: "head_tail" (serving) or "head" (drop the end; measured against it
        in benchmarks/kernels.py)."""
        if truncation not in (HEAD_TAIL, HEAD):
            raise EncoderError(f"truncation must be {HEAD_TAIL!r} or {HEAD!r}, got {truncation!r}")
        self.truncation = truncation
        path = Path(path)
        if not path.is_file():
            raise EncoderError(f"tokenizer file {path} does not exist")
        try:
            tok = Tokenizer.from_file(str(path))
        except Exception as e:  # the Rust side raises a bare Exception for a malformed file
            raise EncoderError(f"cannot load tokenizer {path}: {e}") from e
        padding = tok.padding
        self.pad_id: int = int(padding["pad_id"]) if padding else _pad_id(tok)
        tok.no_padding()
        tok.no_truncation()
        self._tok = tok
        # Special tokens the post-processor adds around a single text ([CLS] … [SEP] for BERT).
        probe = tok.encode("a")
        mask = probe.special_tokens_mask
        self._lead = _run_length(mask)
        self._trail = _run_length(mask[::-1]) if self._lead < len(mask) else 0
        specials = self._lead + self._trail
        if max_tokens < specials + 2:
            raise EncoderError(
                f"max_tokens={max_tokens} leaves no room for text next to {specials} special "
                f"tokens; use at least {specials + 2}"
            )
        self.max_tokens = max_tokens
        # Text tokens each window must hold for truncation to keep exactly the whole text's.
        self._need_head = max_tokens if truncation == HEAD else max_tokens // 2 + 1
        self._need_tail = 0 if truncation == HEAD else max_tokens // 2 + 1
        bert = type(tok.pre_tokenizer).__name__ == "BertPreTokenizer" and type(
            tok.normalizer
        ).__name__ in ("BertNormalizer", "NoneType")
        self._window = max_tokens * WINDOW_CHARS_PER_TOKEN if bert else 0
        spec = json.loads(tok.to_str())
        # Added tokens are matched in the raw text before normalisation; compared lowercased
        # here, so that whatever casing the file allows goes to ``tokenizers``.
        self._specials = tuple(t["content"].lower() for t in spec.get("added_tokens") or ())
        compiled = os.environ.get(COMPILED_ENV, "1") != "0"
        self._fast = _ascii_wordpiece(spec, tok, path) if compiled else None

    @property
    def compiled(self) -> bool:
        """Whether ASCII text takes the compiled WordPiece (``semroute._wordpiece``)."""
        return self._fast is not None

    @property
    def special_tokens(self) -> int:
        """Special tokens the post-processor adds around one text ([CLS] and [SEP] for BERT)."""
        return self._lead + self._trail

    @property
    def vocab_size(self) -> int:
        return int(self._tok.get_vocab_size())

    def count_tokens(self, text: str) -> int:
        """Tokens ``text`` becomes, special tokens included, *before* truncation to max_tokens."""
        return len(self._tok.encode(text).ids)

    def ids(self, texts: Sequence[str], *, add_special_tokens: bool) -> list[list[int]]:
        """Each text's token ids, unpadded and untruncated but for a long text's middle (for
        callers that pool ids themselves, like the static encoder): a head+tail truncation
        to max_tokens keeps exactly the tokens it would keep of the whole text."""
        return [ids for ids, _ in self._tokens(texts, add_special_tokens)]

    def encode_batch(self, texts: Sequence[str]) -> TokenBatch:
        """Tokenise, truncate head+tail to max_tokens, pad to the longest text of this batch."""
        rows = [self._truncate(*t) for t in self._tokens(texts, True)]
        width = max((len(ids) for ids, _ in rows), default=0)
        n = len(rows)
        input_ids = np.full((n, width), self.pad_id, dtype=np.int64)
        attention_mask = np.zeros((n, width), dtype=np.int64)
        token_type_ids = np.zeros((n, width), dtype=np.int64)
        lengths = np.zeros(n, dtype=np.int64)
        for r, (ids, types) in enumerate(rows):
            k = len(ids)
            input_ids[r, :k] = ids
            attention_mask[r, :k] = 1
            token_type_ids[r, :k] = types
            lengths[r] = k
        return TokenBatch(input_ids, attention_mask, token_type_ids, lengths)

    def _tokens(self, texts: Sequence[str], add_special_tokens: bool) -> list[Tokens]:
        """Each text's tokens; a long text's start and end windows stand for it (see the
        module docstring), joined where its middle was."""
        pieces: list[str] = []
        spans: list[tuple[int, bool]] = []  # (first piece, windowed)
        for text in texts:
            windows = self._windows(text)
            spans.append((len(pieces), windows is not None))
            pieces.extend(windows or (text,))
        encs = self._encode(pieces, add_special_tokens)
        lead, trail = (self._lead, self._trail) if add_special_tokens else (0, 0)
        out: list[Tokens] = []
        for text, (k, windowed) in zip(texts, spans, strict=True):
            if not windowed:
                out.append(encs[k])
                continue
            (head, head_types), (tail, tail_types) = encs[k], encs[k + 1]
            specials = lead + trail
            if len(head) - specials < self._need_head or len(tail) - specials < self._need_tail:
                out.append(self._encode([text], add_special_tokens)[0])  # whitespace, unknown words
                continue
            cut = len(head) - trail
            out.append((head[:cut] + tail[lead:], head_types[:cut] + tail_types[lead:]))
        return out

    def _windows(self, text: str) -> tuple[str, str] | None:
        """A long text's start and end, each ~max_tokens x WINDOW_CHARS_PER_TOKEN characters
        cut at whitespace; None when the text is short enough to tokenise whole, or has no
        whitespace to cut at."""
        w = self._window
        if not w or len(text) <= 3 * w:
            return None
        i = max(text.rfind(c, 0, w) for c in _CUTS)
        tail_from = len(text) - w
        j = min((k for c in _CUTS if (k := text.find(c, tail_from)) != -1), default=-1)
        if i <= 0 or j < 0:
            return None
        return text[:i], text[j + 1 :]

    def _encode(self, texts: list[str], add_special_tokens: bool) -> list[Tokens]:
        """(ids, type_ids) per text: the compiled path where it is exact, else ``tokenizers``."""
        out: list[Tokens | None] = [None] * len(texts)
        rest: list[int] = []
        fast = self._fast
        for i, text in enumerate(texts):
            if fast is not None and text.isascii() and not self._spells_special(text):
                ids = fast.encode(text, add_special_tokens)
                out[i] = (ids, [0] * len(ids))
            else:
                rest.append(i)
        if len(rest) == 1:  # encode_batch's thread-pool hop costs more than it saves
            enc = self._tok.encode(texts[rest[0]], add_special_tokens=add_special_tokens)
            out[rest[0]] = (enc.ids, enc.type_ids)
        elif rest:
            encs = self._tok.encode_batch(
                [texts[i] for i in rest], add_special_tokens=add_special_tokens
            )
            for i, enc in zip(rest, encs, strict=True):
                out[i] = (enc.ids, enc.type_ids)
        return out  # type: ignore[return-value]

    def _spells_special(self, text: str) -> bool:
        """Whether ``text`` contains a special token's literal form ("[CLS]"), which
        ``tokenizers`` maps to that token's id."""
        lowered = text.lower()
        return any(s in lowered for s in self._specials)

    def _truncate(self, ids: list[int], types: list[int]) -> Tokens:
        """Keep the special tokens, the first half and the last half of an over-long text.

        The start of a prompt usually carries the instruction and the end the actual question,
        so dropping the middle loses less routing signal than dropping the tail.
        """
        if len(ids) <= self.max_tokens:
            return ids, types
        lead, trail = self._lead, self._trail
        budget = self.max_tokens - lead - trail
        tail = budget // 2 if self.truncation == HEAD_TAIL else 0
        head = budget - tail
        end = len(ids) - trail
        keep = [*range(lead + head), *range(end - tail, len(ids))]
        return [ids[i] for i in keep], [types[i] for i in keep]


def wordpiece_of(model: dict) -> AsciiWordPiece:
    """The compiled WordPiece over a tokenizer.json ``model`` section (vocab, unk_token,
    max_input_chars_per_word), with BERT's [CLS] and [SEP]; unchecked (see _ascii_wordpiece)."""
    return AsciiWordPiece(
        model["vocab"], model["unk_token"], "[CLS]", "[SEP]", int(model["max_input_chars_per_word"])
    )


def _ascii_wordpiece(spec: dict, tok: Tokenizer, path: Path) -> AsciiWordPiece | None:
    """The compiled WordPiece for this tokenizer, when it is BERT uncased WordPiece with
    [CLS] … [SEP] and agrees with ``tokenizers`` on FAST_PATH_PROBES; else None."""
    model, norm = spec.get("model") or {}, spec.get("normalizer") or {}
    post = json.dumps(spec.get("post_processor"))
    if not (
        model.get("type") == "WordPiece"
        and model.get("continuing_subword_prefix") == "##"
        and norm.get("type") == "BertNormalizer"
        and norm.get("clean_text") is True
        and norm.get("lowercase") is True
        and (spec.get("pre_tokenizer") or {}).get("type") == "BertPreTokenizer"
        and "[CLS]" in post
        and "[SEP]" in post
    ):
        return None
    vocab = model.get("vocab") or {}
    if not all(t in vocab for t in (model.get("unk_token"), "[CLS]", "[SEP]")):
        return None
    fast = wordpiece_of(model)
    for probe in FAST_PATH_PROBES:
        for special in (True, False):
            if fast.encode(probe, special) != tok.encode(probe, add_special_tokens=special).ids:
                log.warning("%s: the compiled WordPiece disagrees on %r; not used", path, probe)
                return None
    return fast


def _run_length(mask: Sequence[int]) -> int:
    """Length of the leading run of 1s in a special-tokens mask."""
    n = 0
    for m in mask:
        if not m:
            break
        n += 1
    return n


def _pad_id(tok: Tokenizer) -> int:
    """Padding id when the tokenizer file declares none: the [PAD]/<pad> token, else 0."""
    for name in ("[PAD]", "<pad>", "<|padding|>"):
        tid = tok.token_to_id(name)
        if tid is not None:
            return int(tid)
    return 0
