"""Test-only: an encoder whose every pass takes longer, to exercise a slow CPU on a fast one.

Behaviour that depends on encoder speed (admission by expected wait, swaps
under load) must be testable whatever machine runs the tests. The delay is a
sleep in the calling (inference) thread, so it holds an inference thread as
a slow pass would, without using CPU.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import numpy as np


class DelayedEncoder:
    """`inner`, with `delay_s` added to each `encode` call (one pass, any batch size)."""

    def __init__(self, inner: Any, delay_s: float) -> None:
        if delay_s < 0:
            raise ValueError("delay_s must be >= 0")
        self.inner = inner
        self.delay_s = delay_s

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        time.sleep(self.delay_s)
        return self.inner.encode(texts)

    def __getattr__(self, name: str) -> Any:  # id, dim, providers, tokenizer, ...
        return getattr(self.inner, name)
