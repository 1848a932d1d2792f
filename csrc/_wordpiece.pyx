# cython: language_level=3
"""BERT uncased WordPiece for ASCII text: the compiled core of semroute.encoder.tokenize.

One job: a text's token ids exactly as ``tokenizers`` gives them for the bundled BERT
tokenizer (BertNormalizer with lowercasing, BertPreTokenizer, WordPiece, [CLS] … [SEP]),
without building an ``Encoding`` (offsets, token strings, word ids) that serving never reads.
That object is most of the library's cost per prompt (measured: ~80 µs for an MMLU question).

Only ASCII is handled here, where the normaliser's rules are short and exact:
* control characters other than tab, newline and carriage return are dropped (BertNormalizer's
  ``clean_text``); those three and space separate words;
* letters are lowercased; accents, Chinese characters and Unicode punctuation cannot occur;
* each ASCII punctuation character is a word of its own (BertPreTokenizer);
* a word is split greedily into the longest vocabulary pieces (continuations carry "##"); a word
  over ``max_chars`` characters, or with a part no piece covers, becomes the unknown token.
The caller (TextTokenizer) sends anything else, and texts that spell a special token such as
"[CLS]", to ``tokenizers``; tests compare both on every ASCII prompt of the shared corpora.
"""

from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_FromStringAndSize
from cpython.dict cimport PyDict_GetItem
from cpython.list cimport PyList_Append
from cpython.object cimport PyObject


cdef inline bint _is_space(unsigned char c) noexcept:
    return c == 32 or c == 9 or c == 10 or c == 13


cdef inline bint _is_dropped(unsigned char c) noexcept:
    # ASCII control characters (Cc) other than the three treated as whitespace.
    return (c < 32 and not _is_space(c)) or c == 127


cdef inline bint _is_punct(unsigned char c) noexcept:
    return (33 <= c <= 47) or (58 <= c <= 64) or (91 <= c <= 96) or (123 <= c <= 126)


cdef class AsciiWordPiece:
    """Token ids of ASCII texts for one BERT uncased vocabulary (see the module docstring)."""

    cdef dict _start      # piece (bytes) -> id, for a word's first piece
    cdef dict _cont       # piece without "##" (bytes) -> id, for the pieces after it
    cdef object _unk, _cls, _sep
    cdef Py_ssize_t _max_chars

    def __init__(self, dict vocab, str unk, str cls, str sep, int max_chars):
        """``vocab``: token -> id, as in tokenizer.json's WordPiece model."""
        self._start = {}
        self._cont = {}
        for token, tid in vocab.items():
            if not token.isascii():
                continue  # unreachable from ASCII input
            if token.startswith("##") and len(token) > 2:
                self._cont[token[2:].encode()] = int(tid)
            else:
                self._start[token.encode()] = int(tid)
        self._unk = int(vocab[unk])
        self._cls = int(vocab[cls])
        self._sep = int(vocab[sep])
        self._max_chars = max_chars

    def encode(self, text, bint add_special_tokens) -> list:
        """Token ids of ``text``, which must be ASCII (ValueError otherwise); a str subclass
        such as numpy.str_ is taken as its plain value."""
        if type(text) is not str:
            text = str(text)
        if not text.isascii():
            raise ValueError("AsciiWordPiece.encode takes ASCII text only")
        cdef bytes raw = text.encode("ascii")
        cdef Py_ssize_t n = len(raw)
        cdef const unsigned char* src = <const unsigned char*> PyBytes_AS_STRING(raw)
        # The normalised text: lowercased, control characters dropped. Dropping comes before
        # splitting, as BertNormalizer runs before the pre-tokenizer: "a\x00b" is one word.
        cdef bytes norm = PyBytes_FromStringAndSize(NULL, n)
        cdef unsigned char* buf = <unsigned char*> PyBytes_AS_STRING(norm)
        cdef Py_ssize_t m = 0
        cdef Py_ssize_t i
        cdef unsigned char c
        for i in range(n):
            c = src[i]
            if _is_dropped(c):
                continue
            if 65 <= c <= 90:
                c += 32
            buf[m] = c
            m += 1
        cdef list out = []
        if add_special_tokens:
            out.append(self._cls)
        cdef Py_ssize_t start = 0
        i = 0
        while i < m:
            c = buf[i]
            if _is_space(c):
                i += 1
                continue
            if _is_punct(c):
                self._word(buf, i, i + 1, out)
                i += 1
                continue
            start = i
            while i < m and not _is_space(buf[i]) and not _is_punct(buf[i]):
                i += 1
            self._word(buf, start, i, out)
        if add_special_tokens:
            out.append(self._sep)
        return out

    cdef int _word(
        self, const unsigned char* buf, Py_ssize_t a, Py_ssize_t b, list out
    ) except -1:
        """Append the pieces of buf[a:b] (one pre-tokenised word) to ``out``."""
        if b - a > self._max_chars:
            out.append(self._unk)
            return 0
        cdef Py_ssize_t first = len(out)
        cdef Py_ssize_t start = a
        cdef Py_ssize_t end
        cdef dict table
        cdef PyObject* hit
        while start < b:
            table = self._start if start == a else self._cont
            end = b
            hit = NULL
            while end > start:
                hit = PyDict_GetItem(
                    table, PyBytes_FromStringAndSize(<const char*> buf + start, end - start)
                )
                if hit != NULL:
                    break
                end -= 1
            if hit == NULL:
                del out[first:]
                out.append(self._unk)
                return 0
            PyList_Append(out, <object> hit)
            start = end
        return 0
