"""Tokenisation for the encoder: no fixed padding, head+tail truncation, pad to the batch's longest.

Why not the packaged settings: the MiniLM tokenizer.json pads every input to 128 tokens and
truncates the tail, so every request would pay for 128 tokens and a long prompt would lose its
end (often the actual question). Both are switched off and done here instead.

Thread safety: the wrapped ``tokenizers.Tokenizer`` is configured once in ``__init__`` and only
read afterwards (``encode``/``encode_batch`` take it by shared reference), so one instance can be
used from many threads at once.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tokenizers import Encoding, Tokenizer

from semroute.encoder.errors import EncoderError

HEAD_TAIL = "head_tail"
HEAD = "head"


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
        """Each text's token ids, untruncated and unpadded (for callers that pool ids
        themselves, like the static encoder)."""
        if len(texts) == 1:  # encode_batch's thread-pool hop costs more than it saves
            return [self._tok.encode(texts[0], add_special_tokens=add_special_tokens).ids]
        encs = self._tok.encode_batch(list(texts), add_special_tokens=add_special_tokens)
        return [e.ids for e in encs]

    def encode_batch(self, texts: Sequence[str]) -> TokenBatch:
        """Tokenise, truncate head+tail to max_tokens, pad to the longest text of this batch."""
        encodings = self._tok.encode_batch(list(texts)) if len(texts) else []
        rows = [self._truncate(e) for e in encodings]
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

    def _truncate(self, enc: Encoding) -> tuple[list[int], list[int]]:
        """Keep the special tokens, the first half and the last half of an over-long text.

        The start of a prompt usually carries the instruction and the end the actual question,
        so dropping the middle loses less routing signal than dropping the tail.
        """
        ids, types = enc.ids, enc.type_ids
        if len(ids) <= self.max_tokens:
            return ids, types
        lead, trail = self._lead, self._trail
        budget = self.max_tokens - lead - trail
        tail = budget // 2 if self.truncation == HEAD_TAIL else 0
        head = budget - tail
        end = len(ids) - trail
        keep = [*range(lead + head), *range(end - tail, len(ids))]
        return [ids[i] for i in keep], [types[i] for i in keep]


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
